"""Smoke test of benchmarks/encode.py, so the script cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "encode.py"


def test_encode_benchmark_writes_its_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("encode_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)

    photos = tmp_path / "photos"
    photos.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(photos / "a.jpg")
    out = tmp_path / "encode.md"
    module.main([str(photos), "--photos", "1", "--rounds", "1", "--sizes", "64x48", "--out", str(out)])
    text = out.read_text()
    assert "| 64x48 | Pillow level 1 |" in text and "| 64x48 | Pillow q90 (RGB in) |" in text
    assert "| NO |" not in text  # every PNG encoder is lossless
    ycbcr = next(line for line in text.splitlines() if "encode_ycbcr_jpeg (service)" in line)
    assert ycbcr.rstrip().endswith("| yes |")  # the input's luma, exactly
