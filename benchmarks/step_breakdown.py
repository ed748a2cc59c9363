"""Where a v3 training step's CPU time goes, and so what caching the frozen trunk's features could save.

Issue 20, item 4 asks for cached frozen-encoder features "or another way you measure". A frozen trunk
gives the same features for the same crop, so a cache can remove at most the trunk's forward pass from a
step. This times, on one real batch of the training photos (the v3 recipe, ``configs/starter-v3/base.toml``,
trunk frozen, batch 8, bf16 autocast, the run's memory format), in turns over ``--rounds`` rounds:

- the whole step: forward, every loss, backward and the Adam update (what ``scgan-train`` does per step);
- the frozen trunk's forward pass alone (what a feature cache would remove);
- the perceptual loss alone (Lite0 on output and target, forward and backward);
- the bins loss alone (soft-encoding the target's chroma, rebalanced cross-entropy, backward), and the same
  loss as it was computed before the candidate-table search: dense soft targets from a top-k over all Q bins.

    python benchmarks/step_breakdown.py [--sizes 128,256] [--rounds 3] [--out benchmarks/results/step_breakdown.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_study import emit
from model.chroma_bins import BIN_STEP
from model.color import rgb_to_chroma
from model.device import autocast
from model.efficientnet_lite import normalize_input
from training.colour_losses import bins_loss
from training.config import load_config
from training.losses import ColorizationObjective
from training.stages import build_stage, main_param_groups

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "starter-v3" / "base.toml"
BATCH = 8
PARTS = ("step", "trunk forward", "perceptual", "bins loss", "bins loss, dense")


def _dense_bins_loss(
    logits: torch.Tensor, rgb: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The bins loss as computed before ``soft_encode_sparse``: the 5 nearest of all Q bins, dense targets."""
    chroma = F.interpolate(rgb_to_chroma(rgb.float()), size=logits.shape[-2:], mode="area")
    b, _, h, w = chroma.shape
    flat = chroma.permute(0, 2, 3, 1).reshape(-1, 2)
    near, index = torch.cdist(flat, centres).square().topk(5, dim=1, largest=False)
    soft = torch.exp(-near / (2.0 * (0.5 * BIN_STEP) ** 2))
    soft = soft / soft.sum(1, keepdim=True)
    targets = torch.zeros(flat.shape[0], centres.shape[0]).scatter_(1, index, soft)
    targets = targets.reshape(b, h, w, -1).permute(0, 3, 1, 2)
    ce = -(targets * F.log_softmax(logits.float(), dim=1)).sum(1)
    return (weights[targets.argmax(1)] * ce).mean()


def _timer(size: int) -> dict[str, Callable[[], None]]:
    """The four timed callables for ``size`` px crops, sharing one batch and one set of networks."""
    cfg = load_config(
        CONFIG,
        [
            f"data.crop_size={size}",
            f"optim.batch_size={BATCH}",
            "data.num_workers=0",
            "run.out_dir=runs/step-breakdown",
        ],
    )
    parts = build_stage(cfg)
    objective = parts.objective
    assert isinstance(objective, ColorizationObjective) and objective.perceptual is not None
    fmt = cfg.run.memory_format
    main = parts.main.to(memory_format=fmt).train()
    objective.perceptual.to(memory_format=fmt)
    batch = {
        k: torch.stack([parts.train_set[(i, i)][k] for i in range(BATCH)]).contiguous(memory_format=fmt)
        for k in parts.train_set[(0, 0)]
    }
    optimizer = torch.optim.Adam(main_param_groups(main, cfg), lr=cfg.optim.lr_g)
    trunk = main.trunk
    gray3 = normalize_input(batch["input"].expand(-1, 3, -1, -1))
    with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
        head = objective.forward(main, batch)["head"].float()
    assert objective.rebalance is not None
    centres, weights = objective.rebalance

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu"), "bf16"):
            out = objective.forward(main, batch)
            loss, _ = objective.main_loss(None, batch, out)
        loss.backward()
        optimizer.step()

    def trunk_forward() -> None:
        with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
            trunk.stages(gray3, (*main.skip_blocks, -1))

    def perceptual() -> None:
        fake = batch["rgb"].detach().clone().requires_grad_(True)
        with autocast(torch.device("cpu"), "bf16"):
            loss = objective.perceptual(fake, batch["rgb"])
        loss.backward()

    def bins() -> None:
        logits = head.detach().clone().requires_grad_(True)
        bins_loss(logits, batch["rgb"], centres, weights).backward()

    def bins_dense() -> None:
        logits = head.detach().clone().requires_grad_(True)
        _dense_bins_loss(logits, batch["rgb"], centres, weights).backward()

    return dict(zip(PARTS, (step, trunk_forward, perceptual, bins, bins_dense), strict=True))


def _ms(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up: allocation, oneDNN primitive creation
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - began) / repeats * 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="128,256")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.manual_seed(0)
    timers = {size: _timer(size) for size in sizes}
    times: dict[tuple[int, str], list[float]] = {(s, part): [] for s in sizes for part in PARTS}
    for round_ in range(args.rounds):
        for size in sizes:
            for part, fn in timers[size].items():
                times[size, part].append(_ms(fn, args.repeats))
        print(f"round {round_ + 1} done", flush=True)

    lines = [
        "# Where a v3 training step's CPU time goes (issue 20, item 4: what caching the frozen trunk could save)",
        "",
        f"`python benchmarks/step_breakdown.py --sizes {args.sizes} --rounds {args.rounds}`; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} threads, torch {torch.__version__}. The v3 recipe "
        f"(`configs/starter-v3/base.toml`), trunk frozen, batch {BATCH} of real training crops, bf16 autocast, "
        "the config's memory format (channels_last); each figure the median over rounds of the mean of "
        f"{args.repeats} calls, the parts taking turns. The trunk's share is the most a cache of its features "
        "could save per step.",
        "",
        "| crop | step (ms) | crops/s | trunk forward (ms) | trunk share | perceptual loss (ms) | bins loss (ms) "
        "| bins loss as before: top-k over all bins, dense targets (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        med = {part: statistics.median(times[size, part]) for part in PARTS}
        lines.append(
            f"| {size} px | {med['step']:.0f} | {BATCH / med['step'] * 1000:.1f} | {med['trunk forward']:.0f} | "
            f"{med['trunk forward'] / med['step']:.0%} | {med['perceptual']:.0f} | {med['bins loss']:.0f} | "
            f"{med['bins loss, dense']:.0f} |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
