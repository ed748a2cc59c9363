"""DDP on CPU: two gloo ranks launched by torchrun must end with the same weights, with gradient accumulation too.

DDP decides in a forward pass whether the NEXT backward all-reduces. If the micro-batches' forwards all
ran first and their backwards after, the all-reduce would fire in the first micro-batch's backward and
the others' gradients would stay on their rank: the ranks would drift apart from the first step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import write_tiny_config

REPO = Path(__file__).resolve().parents[2]


def torchrun_summary(tmp_path: Path, photos: Path, *, stage: str, grad_accum: int, steps: int) -> dict:
    """Train ``stage`` on two CPU processes (gloo) through the CLI; the run's summary row."""
    config = write_tiny_config(
        tmp_path / "ddp",
        tmp_path / "ddp",
        photos,
        run={"stage": stage, "max_steps": steps},
        optim={"batch_size": 1, "grad_accum": grad_accum},
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "training.cli", str(config)], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "summary"][-1]


@pytest.mark.parametrize("stage, grad_accum", [("stage2", 1), ("stage1", 2), ("stage2", 2)])
def test_torchrun_two_processes_on_cpu_stay_in_sync(tmp_path: Path, photos: Path, stage: str, grad_accum: int) -> None:
    summary = torchrun_summary(tmp_path, photos, stage=stage, grad_accum=grad_accum, steps=3)
    assert summary["steps"] == 3
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], digests
