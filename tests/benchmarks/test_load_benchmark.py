"""Smoke test of benchmarks/load/ in --quick mode on a tiny generator: every configuration gets its rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tiny_models import TINY_CONFIG

from benchmarks.load.config import DEFAULT_MODES
from model import Generator, save_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def load_benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark package, benchmarks/load/, imported as ``python -m benchmarks.load`` runs it."""
    monkeypatch.syspath_prepend(str(REPO))
    return importlib.import_module("benchmarks.load")


def test_quick_load_benchmark_reports_every_configuration(
    load_benchmark: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    tiny = Generator(TINY_CONFIG, spectral_norm=False)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", tiny.eval(), working_resolution=256)
    out = tmp_path / "results"
    args = [
        "--quick",
        "--checkpoint", str(checkpoint),
        "--out-dir", str(out),
        "--device", "cpu",
        "--torch-threads", "1",  # no OpenMP stalls when the test shares the cores with other work
        "--compile", "off",  # compiling costs a minute (tests/conftest.py)
        "--max-batch-size", "2",
        "--concurrency", "1", "2",
        "--duration", "0.3",
        "--warmup", "0.1",
        "--min-answers", "2",
        "--soak-requests", "8",
        "--soak-concurrency", "2",
        "--raw-budget", "0.2",
    ]  # fmt: skip
    assert load_benchmark.main(args) == 0

    report = (out / "load.md").read_text()
    assert report in capsys.readouterr().out
    labels = [load_benchmark.MODES[mode] for mode in DEFAULT_MODES]  # baseline: only with --baseline
    summary = [line for line in report.splitlines() if line.startswith("| ") and "|---" not in line]
    for label in labels:
        # summary row + one per concurrency in the sweep and in the CPU table
        assert sum(line.startswith(f"| {label} | ") for line in summary) == 5
    # Nothing is compiled (--compile off), so the service's own eager forward is the ceiling.
    assert any(line.startswith("| raw model (`Colorizer.predict`") for line in summary)
    assert "## CPU per image and efficiency" in report and "Workers (default `SCGAN_WORKERS`" in report
    assert "**Memory soak**" in report and "peak RSS" in report
    assert "compiled batch sizes none (eager) (SCGAN_COMPILE=off)" in report

    results = json.loads((out / "load.json").read_text())
    points = results["points"]
    assert [(p["mode"], p["concurrency"]) for p in points] == [(mode, n) for mode in DEFAULT_MODES for n in (1, 2)]
    assert all(p["ok"] >= 2 and p["errors"] == 0 and p["timeouts"] == 0 for p in points)
    assert all(p["raw_now"] > 0 and p["raw_now_cpu_ms"] > 0 for p in points)
    # CPU per image over the window: the server's process tree, the client's own, and raw ÷ service.
    assert all(p["server_cpu_window_s"] > 0 and p["server_cpu_ms_per_img"] > 0 for p in points)
    assert all(0 < p["efficiency"] and p["client_cpu_ms_per_img"] > 0 and p["client_cores"] > 0 for p in points)
    assert set(results["workers"]) == {"1", "2"} and all(r > 0 for r in results["workers"].values())
    assert results["model"]["ceiling"] == "service path" and results["raw_service_path"] is None
    assert set(results["raw_cpu_ms_per_img"]["before"]) == {"1", "2"}
    assert results["raw_ceiling_img_per_s"] > 0
    assert set(results["raw_img_per_s"]["before"]) == {"1", "2"}
    assert results["soak"]["ok"] == 8 and results["soak"]["rss_start"] > 0
    assert all(results["peak_rss_bytes"][mode] > 0 for mode in DEFAULT_MODES)
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_name_paths_relative_to_the_repository(tmp_path: Path) -> None:
    """load.json records no path of the machine it ran on: repository paths are relative, others are names."""
    from benchmarks.load.config import portable

    assert portable(REPO / "benchmarks" / "results" / "bar") == "benchmarks/results/bar"
    assert portable(tmp_path / "before") == "before"
    for result in (REPO / "benchmarks" / "results").rglob("*.json"):
        text = result.read_text()
        for machine_path in (str(REPO), "/tmp/", "/work/", "/home/", "/root/"):
            assert machine_path not in text, (result, machine_path)
