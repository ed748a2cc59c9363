"""The service's compile cache (SCGAN_COMPILE_CACHE_DIR): a warm start loads, answers as the cold one, survives damage.

The packages are built by ``tiny_models.ExportCompiler`` (the exported program stands in for the
AOTInductor build: seconds, not minutes); tests/service/test_service_compiled_slow.py runs the real compiler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from service_test_helpers import gray_image, image_bytes, run_app
from tiny_models import ExportCompiler

from service import Settings

pytestmark = pytest.mark.anyio

UPLOAD = image_bytes(gray_image(80, 60, seed=3), "PNG")


async def _start_and_colorize(settings: Settings) -> tuple[list[int], list[bytes]]:
    """Start the app, read its compiled batch sizes, colorize the upload alone; the answers' bytes."""
    async with run_app(settings) as running:
        sizes = (await running.client.get("/v1/model")).json()["compiled_batch_sizes"]
        response = await running.client.post("/colorize", files={"file": ("x.png", UPLOAD, "image/png")})
        assert response.status_code == 200, response.text
        return sizes, [response.content]


@pytest.fixture()
def cached_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(compile="on", max_batch_size=1, compile_cache_dir=tmp_path / "cache", **overrides)

    return factory


async def test_a_warm_start_loads_every_shape_and_answers_as_the_cold_one(
    monkeypatch: pytest.MonkeyPatch, cached_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    compiler = ExportCompiler().install(monkeypatch)
    caplog.set_level(logging.INFO)
    cold_sizes, cold = await _start_and_colorize(cached_settings())
    assert cold_sizes == [1] and compiler.builds == 1
    assert caplog.text.count("compiled and cached in") == 1
    caplog.clear()
    warm_sizes, warm = await _start_and_colorize(cached_settings())
    assert warm_sizes == [1] and compiler.builds == 1, "nothing compiled on the warm start"
    assert caplog.text.count("loaded from the cache in") == 1
    assert "(1 loaded from the cache)" in caplog.text
    assert warm == cold


async def test_a_corrupt_entry_is_rebuilt_and_the_service_answers(
    monkeypatch: pytest.MonkeyPatch, cached_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    compiler = ExportCompiler().install(monkeypatch)
    _, cold = await _start_and_colorize(cached_settings())
    packages = sorted((cached_settings().compile_cache_dir or Path()).glob("*/forward.pt2"))
    assert len(packages) == 1
    for package in packages:  # a torn write or a bad disk: the bytes no longer match the recorded checksum
        package.write_bytes(package.read_bytes()[:-100])
    caplog.set_level(logging.INFO)
    sizes, again = await _start_and_colorize(cached_settings())
    assert sizes == [1] and compiler.builds == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "model.compiled"]
    assert len(warnings) == 1 and all("is corrupt" in w and "rebuilding it" in w and "\n" not in w for w in warnings)
    assert again == cold


def test_the_cache_folder_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Settings().compile_cache_dir == tmp_path / "xdg" / "scgan-colorize" / "compile"
    monkeypatch.setenv("SCGAN_COMPILE_CACHE_DIR", "")
    assert Settings().compile_cache_dir is None  # empty: no cache, every start compiles
    afile = tmp_path / "a-file"
    afile.write_text("")
    monkeypatch.setenv("SCGAN_COMPILE_CACHE_DIR", str(afile))
    with pytest.raises(ValidationError, match="compile_cache_dir") as caught:
        Settings()
    assert "is not a folder" in str(caught.value)
