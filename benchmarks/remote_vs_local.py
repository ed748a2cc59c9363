"""How far ``scgan-colorize --server`` outputs are from the local run's: per precision, eager vs compiled.

The local run (``scgan-colorize`` without ``--server``) runs the generator eagerly in batches of
``--batch-size``; the service, by default, runs a ``torch.compile``-d forward (``SCGAN_COMPILE=auto``,
on CPUs with a C++ compiler) on batches of whatever arrived together. Both resolve ``--precision`` /
``SCGAN_PRECISION`` ``auto`` alike (bf16 on CPUs with native bf16, else fp32; fp16 on CUDA). This
script colorizes the bundled example photos both ways, in one process, with the same code as the two
paths (``Colorizer.colorize``; the service's answer is a lossless PNG of the same image), and prints the
per-channel difference of the 8-bit outputs: its maximum over all pixels and photos, and its mean.

    python benchmarks/remote_vs_local.py [--precisions auto,fp32] [--out benchmarks/results/remote_vs_local.md]

Each compiled row compiles one shape (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import Colorizer, default_checkpoint_path  # noqa: E402
from model.device import resolve_precision  # noqa: E402

PHOTOS = REPO / "service" / "web" / "static" / "examples"


def _colorize(colorizer: Colorizer, images: list[Image.Image], batch: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch):
        out += [np.asarray(image) for image in colorizer.colorize(images[start : start + batch])]
    return out


def _shown(folder: Path) -> str:
    """``folder`` relative to the repository (or to its parent, for ../shared): no machine's absolute path."""
    folder = folder.resolve()
    return str(
        folder.relative_to(REPO) if folder.is_relative_to(REPO) else Path("..") / folder.relative_to(REPO.parent)
    )


def _difference(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[int, float]:
    diffs = [np.abs(x.astype(np.int16) - y.astype(np.int16)) for x, y in zip(a, b)]
    return int(max(d.max() for d in diffs)), float(np.mean([d.mean() for d in diffs]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="auto,fp32")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="a folder of JPEG photos (default: the examples)")
    parser.add_argument("--limit", type=int, default=None, help="the first N photos of the folder, by name")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args()
    checkpoint = default_checkpoint_path()
    if checkpoint is None:
        print("no bundled checkpoint", file=sys.stderr)
        return 2
    paths = sorted(args.photos.glob("*.jpg"))[: args.limit]
    images = [Image.open(p).convert("L") for p in paths]
    rows = []
    for setting in args.precisions.split(","):
        precision = resolve_precision(setting, torch.device("cpu"))
        local = Colorizer.from_checkpoint(checkpoint, device="cpu", precision=setting, batch_size=8)
        eager_8 = _colorize(local, images, 8)
        rows.append(
            (
                setting,
                precision,
                "eager, batch 1 (local, --batch-size 1)",
                *_difference(_colorize(local, images, 1), eager_8),
                "",
            )
        )
        served = Colorizer.from_checkpoint(checkpoint, device="cpu", precision=setting, batch_size=8)
        started = time.monotonic()
        report = served.compile([1])
        compiled = (
            f"{time.monotonic() - started:.0f} s to compile" if report.compiled else f"not compiled: {report.failed}"
        )
        rows.append(
            (
                setting,
                precision,
                "compiled, batch 1 (the service)",
                *_difference(_colorize(served, images, 1), eager_8),
                compiled,
            )
        )
        print(*rows[-2:], sep="\n", flush=True)
    lines = [
        f"Outputs of the remote path against the local run (eager, batch 8), bundled checkpoint, {len(images)} "
        f"photos of `{_shown(args.photos)}` ({paths[0].name} to {paths[-1].name}), "
        "8-bit RGB, CPU: "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads.",
        f"Written by `python benchmarks/remote_vs_local.py {' '.join(sys.argv[1:])}`.",
        "",
        "| --precision / SCGAN_PRECISION | resolved | other path | max level difference per channel | mean | note |",
        "|---|---|---|---|---|---|",
        *(f"| {s} | {p} | {what} | {mx} | {mean:.3f} | {note} |" for s, p, what, mx, mean, note in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
