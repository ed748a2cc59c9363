"""Smoke test of benchmarks/model_forward.py, so the script cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "model_forward.py"


def test_benchmark_runs_and_prints_a_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("model_forward_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)

    assert module.gflop_per_image(module.WIDTHS["published"]) == pytest.approx(106.4, abs=0.1)
    args = ["--widths", "compact", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0", "--device", "cpu"]
    args += ["--no-compile", "--no-torchscript", "--peak-size", "256", "--peak-seconds", "0.05"]
    assert module.main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| compact |")]
    # fp32 eager, channels_last, BN-fused channels_last (the service's CPU path), bf16, unfolded spectral norm
    assert len(rows) == 5
    assert "unfolded SN" in out and "GFLOP per 256x256 image" in out
    assert "Peak matrix multiply" in out and "| 1.00x |" in rows[0]
    # The BN-fused path computes what fp32 eager computes.
    assert float(rows[2].split("|")[11]) < 1e-4
