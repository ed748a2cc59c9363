"""Does bf16 autocast pay on this CPU? One training-shaped step of the bundled starter's network, fp32 against bf16.

A step is the generator's forward and backward at batch 8 on 256 px crops (hints on, channels_last), the
shape of the CPU fine-tunes (``configs/starter-v3/cpu-hue-finetune.sh``), on the bundled starter's
architecture in training mode. The two precisions take turns step by step for ``--rounds`` rounds after one
untimed step each, so the machine's drift hits them alike. Where oneDNN has no native bf16 kernels
(``model.device.cpu_runs_bf16_natively``) it emulates them; the training loop then trains in fp32
(``training.loop.training_precision``), and this table is why.

    python benchmarks/cpu_bf16_step.py [--rounds 3] [--batch 8] [--size 256] [--out benchmarks/results/cpu_bf16_step.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_study import emit
from model.checkpoint import read_generator
from model.device import autocast, cpu_runs_bf16_natively
from model.options import Precision
from model.weights import default_checkpoint_path

PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    checkpoint = default_checkpoint_path()
    if checkpoint is None:
        raise SystemExit("no starter checkpoint is bundled")
    net, info = read_generator(checkpoint)
    net = net.train().to(memory_format=torch.channels_last)
    device = torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    # gray plus, for a hint-taking network, its hint planes (none given: zeros)
    x = torch.zeros(args.batch, info.config.input_channels, args.size, args.size)
    x[:, :1] = torch.rand(args.batch, 1, args.size, args.size, generator=gen)
    x = x.to(memory_format=torch.channels_last)

    def step(precision: Precision) -> float:
        began = time.perf_counter()
        with autocast(device, precision):
            rgb = net(x)[0]
        rgb.float().square().mean().backward()
        net.zero_grad(set_to_none=True)
        return time.perf_counter() - began

    for precision in PRECISIONS:
        step(precision)
    times: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for _ in range(args.rounds):
        for precision in PRECISIONS:
            times[precision].append(step(precision))
    fp32 = statistics.median(times["fp32"])
    lines = [
        "# bf16 autocast against fp32 for a training-shaped step on this CPU",
        "",
        f"`python benchmarks/cpu_bf16_step.py --rounds {args.rounds} --batch {args.batch} --size {args.size}`; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {'yes' if cpu_runs_bf16_natively() else 'no'}. "
        f"Forward and backward of the bundled starter's network ({info.config.encoder}), batch {args.batch}, "
        f"{args.size} px, channels_last; precisions taking turns step by step.",
        "",
        "| precision | s per step (median) | each round | vs fp32 |",
        "|---|---:|---|---:|",
    ]
    for precision in PRECISIONS:
        values = times[precision]
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {precision} | {median:.2f} | {rounds} | {median / fp32:.2f}x |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
