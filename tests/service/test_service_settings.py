"""Settings: SCGAN_* environment variables, validation, documented defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from service import Settings


def test_defaults_are_safe() -> None:
    settings = Settings()
    assert settings.checkpoint is None
    assert settings.device == "auto" and settings.precision == "auto"
    assert settings.host == "127.0.0.1"  # loopback unless an operator opens it up
    assert settings.max_batch_size == (8 if torch.cuda.is_available() else 4) and settings.queue_capacity == 64
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.max_pixels == 4096 * 4096
    assert settings.max_hints == 256
    assert settings.cpu_threads >= 1
    assert (
        Settings.model_fields["compile"].default == "auto"
    )  # the tests run with SCGAN_COMPILE=off (tests/conftest.py)


def test_every_field_is_documented_or_self_explanatory() -> None:
    undocumented = {name for name, field in Settings.model_fields.items() if not field.description}
    assert undocumented <= {"port", "log_level"}


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    monkeypatch.setenv("SCGAN_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.setenv("SCGAN_MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("SCGAN_MAX_BATCH_DELAY_MS", "2.5")
    monkeypatch.setenv("SCGAN_PRECISION", "bf16")
    monkeypatch.setenv("SCGAN_LOG_LEVEL", "debug")
    monkeypatch.setenv("SCGAN_LOG_FORMAT", "json")
    monkeypatch.setenv("SCGAN_DEVICE", "CPU")
    settings = Settings()
    assert settings.checkpoint == tiny_checkpoint
    assert settings.max_batch_size == 3
    assert settings.max_batch_delay_s == pytest.approx(0.0025)
    assert settings.precision == "bf16"
    assert settings.log_level == "DEBUG" and settings.log_format == "json"
    assert settings.device == "cpu"


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCGAN_MAX_BATCH_SIZE", "3")
    assert Settings(max_batch_size=5).max_batch_size == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_batch_size", "0"),
        ("max_batch_size", "1000"),
        ("max_batch_delay_ms", "-1"),
        ("queue_capacity", "0"),
        ("request_timeout_s", "0"),
        ("precision", "fp8"),
        ("device", "gpu0"),
        ("render_size", "300"),
        ("max_render_size", "100"),
        ("max_upload_bytes", "10"),
        ("max_pixels", "0"),
        ("port", "70000"),
        ("log_level", "LOUD"),
        ("log_format", "xml"),
        ("checkpoint", "/does/not/exist.pt"),
        ("cpu_threads", "0"),
        ("max_hints", "0"),
        ("max_hints", "5000"),
        ("max_hints", "many"),
        ("worker_heartbeat_timeout_s", "0.1"),
        ("worker_heartbeat_timeout_s", "soon"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"SCGAN_{name.upper()}", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert name in str(info.value)


def test_render_size_cannot_exceed_its_maximum() -> None:
    with pytest.raises(ValidationError):
        Settings(render_size=1024, max_render_size=512)


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.max_batch_size = 2  # type: ignore[misc]
