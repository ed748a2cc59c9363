"""configs/starter-v3/interpolate.py: weight-space interpolation of two serving checkpoints, run as its command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import TINY_CONFIG, make_generator

from model.checkpoint import read_generator, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "configs" / "starter-v3" / "interpolate.py"


def _run(*args: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=REPO)


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    base, tuned = tmp_path / "base.pt", tmp_path / "tuned.pt"
    save_checkpoint(base, make_generator(seed=0), metrics={"which": "base"})
    save_checkpoint(tuned, make_generator(seed=1), metrics={"which": "tuned"}, extra={"step": 300})
    return base, tuned


def test_interpolation_is_the_weighted_mean_of_every_tensor_with_the_tuned_record(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    base, tuned = pair
    out = tmp_path / "mix.pt"
    assert _run(base, tuned, "0.25", out).returncode == 0
    state_base = read_generator(base)[0].state_dict()
    state_tuned = read_generator(tuned)[0].state_dict()
    mixed, info = read_generator(out)
    compared = 0
    for k, v in mixed.state_dict().items():
        if v.is_floating_point():
            expected = 0.75 * state_base[k] + 0.25 * state_tuned[k]
            torch.testing.assert_close(v, expected.half().float(), atol=2e-3, rtol=2e-3)  # stored in float16
            compared += 1
    assert compared > 10
    assert torch.load(out, weights_only=True)["state_dict"]["down1.conv2d.weight"].dtype == torch.float16
    # the tuned file's validation figures and step describe other weights: not carried
    assert info.metadata["metrics"] == {} and "step" not in info.metadata
    record = info.metadata["interpolated"]
    assert record["alpha"] == 0.25 and record["base"] == "base.pt" and record["tuned"] == "tuned.pt"
    assert record["tuned_sha256"] == read_generator(tuned)[1].sha256


def test_different_networks_and_alphas_outside_0_1_are_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    base, _ = pair
    other = tmp_path / "other.pt"
    save_checkpoint(other, make_generator(TINY_CONFIG))  # narrower than the pair's TINY_COLOURFUL_CONFIG
    refused = _run(base, other, "0.5", tmp_path / "no.pt")
    assert refused.returncode == 1 and refused.stderr.strip().endswith("cannot be interpolated")
    out_of_range = _run(base, pair[1], "1.5", tmp_path / "no.pt")
    assert out_of_range.returncode == 1 and "alpha must be in [0, 1], got 1.5" in out_of_range.stderr
    assert "Traceback" not in refused.stderr + out_of_range.stderr
    assert not (tmp_path / "no.pt").exists()
