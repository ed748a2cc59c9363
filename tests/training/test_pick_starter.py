"""configs/starter-v3/pick_starter.py: the starter selection rule, run as its command on scgan-eval-shaped reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "configs" / "starter-v3" / "pick_starter.py"


def _candidate(
    root: Path, name: str, *, dpsnr: float, matched: float | None, warm: float, green: float, blue: float
) -> None:
    report = root / name
    report.mkdir()
    summary = {
        "psnr": {"mean_delta_vs_gray": dpsnr, "worst_delta_vs_gray": -5.0},
        "matched_colorfulness": {"mean_psnr_delta_vs_gray": matched},
        "colorfulness": {"ratio_model_to_original": 0.6},
        "below_gray": {"share": 0.1},
        "hue_recall": {"recall": {"warm": warm, "green": green, "blue": blue, "purple": 0.1}},
    }
    (report / "summary.json").write_text(json.dumps(summary))
    torch.save({"config": {"hints": True}}, root / f"{name}.pt")


def _chosen(root: Path, *flags: str) -> str:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--baseline", "starter", *flags],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    return out.strip().splitlines()[-1].removeprefix("chosen: ")


def test_a_hue_recall_at_the_bar_counts_as_kept_only_with_bars(tmp_path: Path) -> None:
    _candidate(tmp_path, "starter", dpsnr=1.06, matched=1.13, warm=0.83, green=0.01, blue=0.38)
    # Warm falls from 0.83 to 0.70: worse than the starter's less 0.02, but above the 0.65 bar.
    _candidate(tmp_path, "greener", dpsnr=0.9, matched=1.2, warm=0.70, green=0.50, blue=0.72)
    assert _chosen(tmp_path) == "starter"
    assert _chosen(tmp_path, "--bars") == "greener"


def test_a_negative_mean_dpsnr_never_qualifies(tmp_path: Path) -> None:
    _candidate(tmp_path, "starter", dpsnr=1.06, matched=1.13, warm=0.83, green=0.01, blue=0.38)
    _candidate(tmp_path, "vivid", dpsnr=-0.2, matched=1.5, warm=0.90, green=0.50, blue=0.72)
    _candidate(tmp_path, "slightly-better", dpsnr=0.8, matched=1.14, warm=0.82, green=0.01, blue=0.37)
    assert _chosen(tmp_path, "--bars") == "slightly-better"


def test_a_candidate_too_gray_to_match_colourfulness_ranks_last(tmp_path: Path) -> None:
    # scgan-eval reports no matched dPSNR when no allowed gain brings the output to 60% colourfulness.
    _candidate(tmp_path, "starter", dpsnr=1.06, matched=1.13, warm=0.83, green=0.01, blue=0.38)
    _candidate(tmp_path, "gray", dpsnr=1.5, matched=None, warm=0.90, green=0.50, blue=0.72)
    assert _chosen(tmp_path, "--bars") == "starter"
    (tmp_path / "starter" / "summary.json").unlink()
    assert _chosen(tmp_path, "--bars") == "gray"  # the only candidate left
