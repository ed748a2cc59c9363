"""Shared fixtures for the service tests: settings, the reference model, the predict seam (tiny checkpoints: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from service_test_helpers import GatedPredict

from model import Colorizer
from service import Settings


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def reference(tiny_checkpoint: Path) -> Colorizer:
    """The same checkpoint loaded directly through the model API: the expected outputs."""
    return Colorizer.from_checkpoint(tiny_checkpoint, device="cpu", precision="fp32")


@pytest.fixture()
def make_settings(tiny_checkpoint: Path) -> Callable[..., Settings]:
    """Settings for a test app: the tiny checkpoint on the CPU, small batches, short delays."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "checkpoint": tiny_checkpoint,
            "device": "cpu",
            "precision": "fp32",
            "max_batch_size": 4,
            "max_batch_delay_ms": 2.0,
            "queue_capacity": 16,
            "request_timeout_s": 20.0,
            "cpu_threads": 2,
            "shutdown_timeout_s": 10.0,
            # One intra-op thread: on 2 shared cores, torch's spinning worker threads slow everything down.
            "torch_threads": 1,
            "compile": "off",  # see tests/conftest.py
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture()
def gated(reference: Colorizer) -> GatedPredict:
    """The predict seam: the real forward, behind a gate the test controls."""
    return GatedPredict(inner=lambda batch, saliency: reference.predict(batch, saliency=saliency))


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Apps set torch's (process-wide) thread count; give other tests back the one they had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SCGAN_* variables of the developer's shell must not leak into the tests' settings; forwards stay eager."""
    import os

    for name in list(os.environ):
        if name.startswith("SCGAN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SCGAN_COMPILE", "off")
