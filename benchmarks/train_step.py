"""Training speed on this machine: steps/s of stage 1 and stage 2 through the real training loop.

Prints a markdown table for the compact and the published widths at 256 px, with the
published per-process batch sizes (8 for stage 1, 4 for stage 2). Synthetic photos are
generated into a temporary folder; the time between logged steps is measured inside one run,
so set-up and the first step (allocation, warm-up) are excluded.

    python benchmarks/train_step.py [--widths compact,published] [--steps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.config import build_config
from training.loop import train

WIDTHS = {
    "compact": {"start_channels": 16, "latent_channels": 32, "global_channels": 16, "discriminator_channels": 16},
    "starter": {"start_channels": 12, "latent_channels": 16, "global_channels": 12, "discriminator_channels": 16},
    "published": {"start_channels": 64, "latent_channels": 128, "global_channels": 64, "discriminator_channels": 64},
}


def _photos(folder: Path, count: int = 16) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _seconds_per_step(stage: str, width: str, steps: int, root: Path) -> float:
    """Median wall time between consecutive steps of ``training.loop.train``, the first step excluded."""
    out_dir = root / f"{stage}-{width}"
    cfg = build_config(
        {
            "run": {
                "stage": stage,
                "out_dir": str(out_dir),
                "max_steps": steps + 1,
                "log_every": 1,
                "checkpoint_every": 10**9,
                "sample_images": 0,
            },
            "data": {"train_dir": str(root / "photos"), "saliency_cache": str(root / "cache")},
            "model": WIDTHS[width],
        }
    )
    train(cfg)
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if r["kind"] == "train"]
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="compact,starter,published")
    parser.add_argument("--stages", default="stage1,stage2")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu\n")
    print("| width | stage | batch | s/step | steps/s | images/s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _photos(root / "photos")
        for width in args.widths.split(","):
            for stage in args.stages.split(","):
                batch = 8 if stage == "stage1" else 4
                sec = _seconds_per_step(stage, width, args.steps, root)
                print(f"| {width} | {stage} | {batch} | {sec:.2f} | {1 / sec:.3f} | {batch / sec:.2f} |", flush=True)


if __name__ == "__main__":
    main()
