"""Memory per input pixel of one request's CPU stages, the figure behind the pixel budget's bound (docs/operations.md).

Each case runs in a fresh process (so one case's allocator state cannot hide
another's) and reads its own peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) around the service's own stage functions: decode +
prepare, then finish + encode, on a gray image of the given side. Linux only.

    python benchmarks/pixel_memory.py [--side 2048] [--out benchmarks/results/pixel_memory.md]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = (("png", "png"), ("jpeg", "jpeg"), ("png", "jpeg"), ("jpeg", "png"), ("rgb-jpeg", "jpeg"), ("rgb-png", "png"))


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(side: int, upload_format: str, answer_format: str) -> str:
    """One table row: bytes per pixel of each stage, this process's peak RSS over its RSS before."""
    import numpy as np
    import torch
    from PIL import Image

    from model import Colorizer, default_checkpoint_path
    from service.encoding import OutputFormat
    from service.inference import _finish_color, decode_and_prepare
    from service.schemas import ColorizeOptions

    torch.set_num_threads(1)
    checkpoint = default_checkpoint_path()
    assert checkpoint is not None
    colorizer = Colorizer.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    yy, xx = np.mgrid[0:side, 0:side]
    noise = np.random.default_rng(0).integers(0, 30, (side, side))
    gray = Image.fromarray(((xx + yy + noise) % 255).astype(np.uint8), "L")
    if upload_format.startswith("rgb-"):  # a colour upload: its luma is computed from three planes
        gray = Image.merge("RGB", [gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gray])
    container = upload_format.removeprefix("rgb-")
    buffer = io.BytesIO()
    gray.save(buffer, container.upper(), **({"quality": 90} if container == "jpeg" else {"compress_level": 1}))
    data = buffer.getvalue()
    del gray, xx, yy, noise
    rgb = torch.rand(3, colorizer.render_size, colorizer.render_size)
    fmt = OutputFormat(answer_format)
    pixels = side * side
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    base = _kib("VmRSS")
    item = decode_and_prepare(data, colorizer=colorizer, render_size=colorizer.render_size, max_pixels=pixels)
    decode_peak, held = _kib("VmHWM"), _kib("VmRSS")
    encoded = _finish_color(colorizer, item, rgb, ColorizeOptions(format=fmt), fmt)
    peak = _kib("VmHWM")

    def per_pixel(kib: int) -> str:
        return f"{kib * 1024 / pixels:.1f}"

    return (
        f"| {side}x{side} | {upload_format} | {answer_format} | {len(data) / pixels:.2f} | {per_pixel(decode_peak - base)} "
        f"| {per_pixel(held - base)} | {per_pixel(peak - base)} | {len(encoded.data) / pixels:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pixel_memory.md")
    parser.add_argument("--case", nargs=2, metavar=("UPLOAD", "ANSWER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(measure(args.side, *args.case))
        return
    rows = []
    for upload, answer in CASES:
        command = [sys.executable, __file__, "--side", str(args.side), "--case", upload, answer]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        rows.append(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout.strip())
    lines = [
        "# Memory per input pixel of one request",
        "",
        "`python benchmarks/pixel_memory.py` -- a gray image (rgb-: a colour one), one process per row, bundled checkpoint, fp32; "
        "bytes per input pixel of peak RSS over the RSS before the request (the upload already in memory). "
        "'held' is what the request keeps while it waits for the model. A JPEG answer of an image without "
        "alpha is written from YCbCr planes (`Colorizer.finish_ycbcr`), a PNG answer from the full RGB.",
        "",
        "| image | upload | answer | upload B/px | decode + prepare peak B/px | held B/px | "
        "finish + encode peak B/px | answer B/px |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
