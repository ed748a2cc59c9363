"""Training crops per second on this machine, recipe by recipe: where a CPU's minutes go (issue 20, item 4).

Each row is a real ``scgan-train`` run (subprocess, the repository's CLI) of ``--steps`` steps with
validation and sample images off; its rate is read from the run's own ``metrics.jsonl`` between the
second log record and the last, so start-up (loading photos, building networks) and the first steps'
warm-up are left out. The rows take turns in ``--rounds`` rounds, so the machine's drift hits them alike;
the table gives the median and every round's value.

Rows: the v2 starter's recipe (``configs/starter-stage1.toml``: SCGAN's generator with a Lite0 global
network) and the v3 recipe (``configs/starter-v3/base.toml``: the Lite2 encoder U-Net, bins head, hints)
with the levers a CPU has: a frozen trunk (no backward through it), 128 px crops (chroma is smooth), bf16
autocast, and NHWC memory (``run.channels_last``, against the NCHW every recipe trained in before it).
Batch 8 and one data worker everywhere.

    python benchmarks/training_throughput.py [--steps 25] [--rounds 2] [--out benchmarks/results/training_throughput.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_study import emit
from model.device import cpu_runs_bf16_natively

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "training.cli"]


@dataclass(frozen=True)
class Recipe:
    name: str
    config: str
    overrides: tuple[str, ...]


V3 = "configs/starter-v3/base.toml"
V2 = "configs/starter-stage1.toml"
NCHW = "run.channels_last=false"  # the layout every recipe trained in before run.channels_last
RECIPES = (
    Recipe("v2 starter recipe (SCGAN + Lite0 global), 256 px, bf16, NCHW", V2, (NCHW,)),
    Recipe("v2 starter recipe (SCGAN + Lite0 global), 256 px, bf16, channels_last", V2, ()),
    Recipe("v3 recipe, trunk fine-tuned (0.1x), 256 px, bf16, NCHW", V3, ("optim.lr_global_scale=0.1", NCHW)),
    Recipe("v3 recipe, trunk fine-tuned (0.1x), 256 px, bf16, channels_last", V3, ("optim.lr_global_scale=0.1",)),
    Recipe("v3 recipe, trunk frozen, 256 px, bf16, NCHW", V3, (NCHW,)),
    Recipe("v3 recipe, trunk frozen, 256 px, bf16, channels_last", V3, ()),
    Recipe("v3 recipe, trunk frozen, 128 px, bf16, NCHW", V3, ("data.crop_size=128", NCHW)),
    Recipe("v3 recipe, trunk frozen, 128 px, bf16, channels_last", V3, ("data.crop_size=128",)),
    Recipe("v3 recipe, trunk frozen, 128 px, fp32, channels_last", V3, ("data.crop_size=128", "run.precision=fp32")),
)
COMMON = (
    "optim.batch_size=8",
    "data.num_workers=1",
    "run.validate_every=0",
    "run.sample_images=0",
    "run.max_minutes=0",
    "run.log_every=5",
    "run.checkpoint_every=100000",
    "run.threads=0",
)


def crops_per_second(recipe: Recipe, steps: int, out_dir: Path, cache: Path) -> float:
    """Run ``recipe`` for ``steps`` steps in ``out_dir``; crops per second between its 2nd and last log record."""
    overrides = [*COMMON, *recipe.overrides, f"run.max_steps={steps}", f"run.out_dir={out_dir}"]
    overrides.append(f"data.saliency_cache={cache}")
    command = [*TRAIN, recipe.config, *(arg for o in overrides for arg in ("--set", o))]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    first, last = train[1], train[-1]
    return 8 * (last["step"] - first["step"]) / (last["time"] - first["time"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.steps < 15:
        raise SystemExit("--steps must be at least 15 (the rate is read from step 10 on)")
    work = Path(tempfile.mkdtemp(prefix="scgan-throughput-"))
    cache = REPO / "runs" / "saliency-cache"  # the configs' own cache: computed once, shared by every run
    began = time.perf_counter()
    try:
        # Not timed: fills the saliency cache and the first-import caches.
        crops_per_second(RECIPES[-1], 15, work / "warm-up", cache)
        rates: dict[str, list[float]] = {r.name: [] for r in RECIPES}
        for round_ in range(args.rounds):
            for index, recipe in enumerate(RECIPES):
                rate = crops_per_second(recipe, args.steps, work / f"r{round_}-{index}", cache)
                rates[recipe.name].append(rate)
                print(f"round {round_ + 1}: {recipe.name}: {rate:.2f} crops/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - began

    base = statistics.median(rates[RECIPES[0].name])
    lines = [
        "# Training throughput on this machine, recipe by recipe",
        "",
        f"`python benchmarks/training_throughput.py --steps {args.steps} --rounds {args.rounds}`; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; {elapsed / 60:.0f} min in all. "
        + ("" if cpu_runs_bf16_natively() else "This CPU has no native bf16: the bf16 rows trained in fp32. ")
        + "Batch 8, one data worker, validation off; rate between steps 10 and "
        f"{args.steps} of each run (start-up and the first 10 steps left out), rows taking turns round by round.",
        "",
        "| recipe | crops/s (median) | each round | vs the v2 recipe |",
        "|---|---:|---|---:|",
    ]
    for recipe in RECIPES:
        values = rates[recipe.name]
        median = statistics.median(values)
        each = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {recipe.name} | {median:.2f} | {each} | {median / base:.2f}x |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
