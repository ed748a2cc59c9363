"""Training faults on tiny real runs: a killed run resumed, checkpoint rotation, a NaN batch, a stage
mismatch on resume, and best.pt across several validations."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.conftest import tiny_config, write_tiny_config
from training.data import ColorPhotoDataset
from training.loop import train
from training.state import StateError, load_state

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _cli(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "training.cli", str(config), *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _train_steps(out_dir: Path) -> list[int]:
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [r["step"] for r in rows if r["kind"] == "train"]


def _assert_same(a: Any, b: Any, where: str = "state") -> int:
    """Recursively equal, tensors bit for bit; the number of tensors compared."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
        return 1
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        return sum(_assert_same(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        return sum(_assert_same(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    assert a == b, f"{where}: {a!r} != {b!r}"
    return 0


def test_a_run_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path: Path, photos: Path) -> None:
    """SIGKILL after step 7 (checkpoints every 3 steps), then ``--resume``: bit-identical to a run never stopped."""
    sections: dict[str, Any] = {"run": {"stage": "stage2", "max_steps": 12, "checkpoint_every": 3, "ema_decay": 0.9}}
    full = write_tiny_config(tmp_path / "full", tmp_path / "full", photos, **sections)
    killed = write_tiny_config(tmp_path / "killed", tmp_path / "killed", photos, **sections)
    uninterrupted = _cli(full)
    victim = _cli(killed)
    try:
        deadline = time.monotonic() + 240
        while max(_train_steps(tmp_path / "killed"), default=0) < 7:
            assert victim.poll() is None, f"the run ended before it could be killed: {victim.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(30) == -signal.SIGKILL
    finally:
        victim.kill()
        victim.communicate()
    assert uninterrupted.wait(240) == 0, uninterrupted.communicate()[1][-2000:]
    stopped_at = load_state(tmp_path / "killed" / "ckpt" / "last.pt")["step"]
    assert 6 <= stopped_at < 12 and stopped_at % 3 == 0
    resumed = _cli(killed, "--resume")
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-2000:]
    assert f"resumed {tmp_path / 'killed' / 'ckpt' / 'last.pt'} at step {stopped_at}" in err
    a = load_state(tmp_path / "full" / "ckpt" / "last.pt")
    b = load_state(tmp_path / "killed" / "ckpt" / "last.pt")
    for state in (a, b):
        del state["path"]
        state["config"]["run"]["out_dir"] = ""
    assert a["step"] == 12
    tensors = _assert_same(a, b)
    # main, critic, EMA, both optimizers' moments, the RNG: hundreds of tensors, none missing
    assert tensors > 3 * len(a["main"])
    assert a["opt_critic"]["state"] and a["opt_main"]["state"] and a["ema"]


@pytest.mark.parametrize("keep, kept", [(0, []), (2, [6, 7]), (10, [2, 4, 6, 7])])
def test_periodic_checkpoints_are_rotated(tmp_path: Path, photos: Path, keep: int, kept: list[int]) -> None:
    cfg = tiny_config(tmp_path / "run", photos, run={"max_steps": 7, "checkpoint_every": 2, "keep_checkpoints": keep})
    train(cfg)
    ckpt = tmp_path / "run" / "ckpt"
    names = sorted(p.name for p in ckpt.glob("step-*.pt"))
    assert names == [f"step-{s:08d}.pt" for s in kept]
    for step in kept:
        assert load_state(ckpt / f"step-{step:08d}.pt")["step"] == step
    last = load_state(ckpt / "last.pt")
    assert last["step"] == 7
    if kept:
        assert _assert_same(last["main"], load_state(ckpt / f"step-{kept[-1]:08d}.pt")["main"]) > 0


def test_a_nan_batch_stops_the_run_before_it_checkpoints(
    tmp_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ColorPhotoDataset.__getitem__
    served = [0]

    def poisoned(self: ColorPhotoDataset, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        item = original(self, key)
        served[0] += 1
        if served[0] > 4:  # batches of 2: steps 1 and 2 are clean, step 3 is NaN
            item["input"] = torch.full_like(item["input"], float("nan"))
        return item

    monkeypatch.setattr(ColorPhotoDataset, "__getitem__", poisoned)
    cfg = tiny_config(tmp_path / "run", photos, run={"max_steps": 6, "checkpoint_every": 1})
    with pytest.raises(FloatingPointError, match=r"^loss \w+ became nan at step 3$"):
        train(cfg)
    last = load_state(tmp_path / "run" / "ckpt" / "last.pt")
    assert last["step"] == 2
    assert all(torch.isfinite(v).all() for v in last["main"].values() if v.is_floating_point())
    assert _train_steps(tmp_path / "run") == [1, 2]


def test_resuming_another_stage_fails_in_one_line(tmp_path: Path, photos: Path) -> None:
    train(tiny_config(tmp_path / "run", photos, run={"stage": "stage1", "max_steps": 1}))
    stage2 = tiny_config(tmp_path / "run", photos, run={"stage": "stage2", "max_steps": 2})
    with pytest.raises(StateError, match="is a stage1 run, not stage2"):
        train(stage2, resume=True)
    config = write_tiny_config(tmp_path / "stage2", tmp_path / "run", photos, run={"stage": "stage2", "max_steps": 2})
    proc = _cli(config, "--resume")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "last.pt is a stage1 run, not stage2" in errors[0], err
    assert "Traceback" not in err
    assert load_state(tmp_path / "run" / "ckpt" / "last.pt")["stage"] == "stage1"  # left as it was


def test_best_checkpoint_follows_the_selection_metric(
    tmp_path: Path, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scores = iter([1.0, 3.0, 2.0, 4.0, 0.5])  # psnr_delta at steps 1..5; ssim falls as it rises

    def make_validator(*_: Any) -> Any:
        def validate(net: torch.nn.Module) -> dict[str, float]:
            delta = next(scores)
            return {"psnr_delta": delta, "ssim": 1.0 - delta / 10}

        return validate

    cfg = tiny_config(tmp_path / "run", photos, run={"max_steps": 5, "validate_every": 1, "keep_validated": True})
    with caplog.at_level(logging.INFO, logger="scgan.train"):
        summary = train(cfg, make_validator=make_validator)
    ckpt = tmp_path / "run" / "ckpt"
    best = load_state(ckpt / "best.pt")
    assert best["step"] == 4 and best["best"] == {"step": 4, "psnr_delta": 4.0, "ssim": 0.6}
    assert summary["best"] == best["best"] and summary["last_validation"]["psnr_delta"] == 0.5
    # best.pt holds step 4's weights, not the last ones
    assert _assert_same(best["main"], load_state(ckpt / "val-step-00000004.pt")["main"]) > 0
    last = load_state(ckpt / "last.pt")
    assert not all(torch.equal(v, last["main"][k]) for k, v in best["main"].items())
    assert [r.getMessage().split(" at step ")[1] for r in caplog.records if "new best" in r.getMessage()] == [
        "1",
        "2",
        "4",
    ]

    # Resumed, the run still knows its best: a later, lower score does not replace best.pt.
    scores = iter([3.5])
    resumed = tiny_config(tmp_path / "run", photos, run={"max_steps": 6, "validate_every": 1})
    assert train(resumed, resume=True, make_validator=make_validator)["best"]["step"] == 4
    assert load_state(ckpt / "best.pt")["step"] == 4
