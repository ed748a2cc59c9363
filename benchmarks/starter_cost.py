"""CPU cost per image of two checkpoints side by side (issue 20's bar: the new starter costs no more than the old).

For each checkpoint: parameters, file size, GFLOP per image at the working size (``torch.utils.flop_counter``,
inference path), and the time per image of ``Colorizer.predict`` at the service's default precision
(bf16 on a CPU with it), eager and compiled (``Colorizer.compile``, the service's path), at each batch size.
The checkpoints take turns call by call, so load drifting on a shared machine hits both alike; medians.

    python benchmarks/starter_cost.py OLD.pt NEW.pt [--batch-sizes 1 4] [--repeats 15] [--out benchmarks/results/starter_cost.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.checkpoint import load_generator
from model.pipeline import Colorizer


def gflop(path: Path, size: int) -> float:
    net = load_generator(path).eval()
    x = torch.rand(1, net.config.input_channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.predict(x)
    return counter.get_total_flops() / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs=2, type=Path, metavar="CKPT", help="the old starter, then the new one")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--no-compile", action="store_true", help="eager rows only")
    p.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = p.parse_args()
    names = [
        f"{path.name} ({i})" if args.checkpoints[0].name == args.checkpoints[1].name else path.name
        for i, path in enumerate(args.checkpoints)
    ]
    colorizers = {n: Colorizer.from_checkpoint(path, device="cpu") for n, path in zip(names, args.checkpoints)}
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; precision "
        f"{next(iter(colorizers.values())).precision}; working size {next(iter(colorizers.values())).render_size}",
        "",
        "| checkpoint | parameters | file MB | GFLOP / image |",
        "|---|---:|---:|---:|",
    ]
    for name, path in zip(names, args.checkpoints):
        c = colorizers[name]
        params = sum(t.numel() for t in load_generator(path).parameters())
        lines.append(
            f"| {name} | {params / 1e6:.2f} M | {path.stat().st_size / 1e6:.1f} | {gflop(path, c.render_size):.2f} |"
        )
    lines += [
        "",
        "| path | batch | " + " | ".join(f"{n} ms/image" for n in names) + " | new / old |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    modes = ["eager"] if args.no_compile else ["eager", "compiled"]
    with tempfile.TemporaryDirectory() as cache:
        for mode in modes:
            if mode == "compiled":
                for c in colorizers.values():
                    c.compile(args.batch_sizes, cache_dir=Path(cache))
            for batch in args.batch_sizes:
                inputs = {
                    n: torch.rand(batch, c.input_channels, c.render_size, c.render_size) for n, c in colorizers.items()
                }
                for n, c in colorizers.items():
                    c.predict(inputs[n])  # warm-up
                times: dict[str, list[float]] = {n: [] for n in colorizers}
                for _ in range(args.repeats):
                    for n, c in colorizers.items():
                        start = time.perf_counter()
                        c.predict(inputs[n])
                        times[n].append((time.perf_counter() - start) / batch * 1e3)
                medians = [statistics.median(times[n]) for n in names]
                lines.append(
                    f"| {mode} | {batch} | "
                    + " | ".join(f"{m:.1f}" for m in medians)
                    + f" | {medians[1] / medians[0]:.2f} |"
                )
    text = "\n".join(lines)
    print(text)
    if args.out:
        command = " ".join(["python benchmarks/starter_cost.py", *(c.name for c in args.checkpoints)])
        args.out.write_text(f"# CPU cost per image: old vs new starter\n\n`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()
