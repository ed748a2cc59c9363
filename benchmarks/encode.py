"""What the CPU pays around the forward: answer encoders side by side, and the JPEG answer without RGB.

Colorized-like images (a photo's luma, its chroma blurred as the model's is) at a
few sizes, encoded by every PNG and JPEG option worth weighing, timed
interleaved in one run (so load from other processes hits all rows alike):
Pillow's zlib levels, ``optimize`` and zlib strategies, and the PyPI encoders
that can be imported here (imagecodecs, fpng, OpenCV, simplejpeg). Encoders fed
numpy arrays pay for the conversion from the PIL image the pipeline holds.
PNG rows are checked lossless (decoded and compared pixel for pixel).

The ``finish`` section times the service's post-processing as it runs per
request -- ``Colorizer.finish`` + encoding vs. ``Colorizer.finish_ycbcr`` +
a YCbCr JPEG -- on a bundled-checkpoint colorizer, with the PSNR of each JPEG
against the current path's.

    python benchmarks/encode.py [PHOTO_FOLDER] [--photos 4] [--rounds 15] [--sizes 512x384,1024x768] [--out FILE]

Alternative encoders that are not installed are skipped (listed in the output).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features

from model import Colorizer, default_checkpoint_path
from model.images import IMAGE_SUFFIXES
from model.pipeline import YCbCrPlanes
from service.encoding import OutputFormat, encode_image, encode_ycbcr_jpeg

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos" / "train"
SIZES = ((512, 384), (1024, 768))
JPEG_QUALITY = 90

Encoder = Callable[[Image.Image], bytes]

# zlib strategies (zlib.h), Pillow's ``compress_type``.
Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED = 1, 2, 3, 4


def _pil(fmt: str, **params: object) -> Encoder:
    def encode(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **params)
        return buffer.getvalue()

    return encode


def png_encoders() -> tuple[dict[str, Encoder], list[str]]:
    """name -> encoder of an RGB image to PNG bytes, and the alternatives that could not be imported."""
    encoders: dict[str, Encoder] = {}
    for level in (0, 1, 2, 3, 6):
        encoders[f"Pillow level {level}"] = _pil("PNG", compress_level=level)
    encoders["Pillow optimize (level 9)"] = _pil("PNG", optimize=True)
    for name, strategy in (("filtered", Z_FILTERED), ("huffman only", Z_HUFFMAN_ONLY), ("RLE", Z_RLE)):
        encoders[f"Pillow level 1, {name}"] = _pil("PNG", compress_level=1, compress_type=strategy)
    encoders["Pillow level 6, RLE"] = _pil("PNG", compress_level=6, compress_type=Z_RLE)
    missing = []
    try:
        import imagecodecs

        encoders["imagecodecs png level 1"] = lambda im: bytes(imagecodecs.png_encode(np.asarray(im), level=1))
        encoders["imagecodecs png level 1, RLE, sub"] = lambda im: bytes(
            imagecodecs.png_encode(np.asarray(im), level=1, strategy=3, filter=16)
        )
        encoders["imagecodecs spng level 1"] = lambda im: bytes(imagecodecs.spng_encode(np.asarray(im), level=1))
    except ImportError:
        missing.append("imagecodecs")
    try:
        from fpng import fpng_ext

        encoders["fpng"] = lambda im: bytes(fpng_ext.encode_image_to_memory(im.tobytes(), im.width, im.height, 3))
    except ImportError:
        missing.append("fpng")
    try:
        import cv2

        def opencv_png(im: Image.Image) -> bytes:
            bgr = cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)
            ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok
            return data.tobytes()

        encoders["OpenCV level 1 (RLE, sub)"] = opencv_png
    except ImportError:
        missing.append("opencv-python-headless")
    return encoders, missing


def jpeg_encoders() -> tuple[dict[str, Encoder], list[str]]:
    encoders: dict[str, Encoder] = {"Pillow q90 (RGB in)": _pil("JPEG", quality=JPEG_QUALITY)}
    missing = []
    try:
        import simplejpeg

        encoders["simplejpeg q90 4:2:0"] = lambda im: simplejpeg.encode_jpeg(
            np.asarray(im), quality=JPEG_QUALITY, colorsubsampling="420"
        )
    except ImportError:
        missing.append("simplejpeg")
    try:
        import cv2

        def opencv_jpeg(im: Image.Image) -> bytes:
            bgr = cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)
            ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            assert ok
            return data.tobytes()

        encoders["OpenCV q90"] = opencv_jpeg
    except ImportError:
        missing.append("opencv-python-headless")
    return encoders, missing


def colorized_like(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``photo`` cropped and resized to ``size``, its chroma blurred as a 256 px prediction upsampled is."""
    width, height = size
    scale = max(width / photo.width, height / photo.height)
    resized = photo.resize((math.ceil(photo.width * scale), math.ceil(photo.height * scale)), Image.Resampling.LANCZOS)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    y, cb, cr = resized.crop((left, top, left + width, top + height)).convert("YCbCr").split()
    small = (max(1, width * 256 // max(size)), max(1, height * 256 // max(size)))
    blurred = [c.resize(small, Image.Resampling.BILINEAR).resize(size, Image.Resampling.BILINEAR) for c in (cb, cr)]
    return Image.merge("YCbCr", [y, *blurred]).convert("RGB")


@dataclass
class Row:
    """Timings (wall and CPU ms) and output sizes of one case."""

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    note: str = ""


def timed(fn: Callable[[], bytes], row: Row) -> bytes:
    c0, t0 = time.thread_time(), time.perf_counter()
    data = fn()
    row.wall_ms.append((time.perf_counter() - t0) * 1e3)
    row.cpu_ms.append((time.thread_time() - c0) * 1e3)
    row.sizes.append(len(data))
    return data


def run_interleaved(cases: dict[str, Callable[[], bytes]], rounds: int) -> dict[str, Row]:
    """Every case once per round, the order rotated each round; the first round is a warm-up."""
    rows = {name: Row() for name in cases}
    names = list(cases)
    for r in range(rounds + 1):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            row = rows[name] if r else Row()
            timed(cases[name], row)
    return rows


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def encoder_table(
    title: str, encoders: dict[str, Encoder], images: dict[tuple[int, int], list[Image.Image]], rounds: int, png: bool
) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| size | encoder | CPU ms (median) | wall ms (median) | KiB (mean) | KiB x CPU ms | lossless |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for size, group in images.items():
        cases = {
            f"{name}#{i}": (lambda e=enc, im=im: e(im)) for name, enc in encoders.items() for i, im in enumerate(group)
        }
        rows = run_interleaved(cases, rounds)
        results = []
        for name, enc in encoders.items():
            per_image = [rows[f"{name}#{i}"] for i in range(len(group))]
            cpu = statistics.mean(statistics.median(r.cpu_ms) for r in per_image)
            wall = statistics.mean(statistics.median(r.wall_ms) for r in per_image)
            kib = statistics.mean(r.sizes[0] for r in per_image) / 1024
            lossless = ""
            if png:
                same = all(np.array_equal(decoded(enc(im)), np.asarray(im)) for im in group)
                lossless = "yes" if same else "NO"
            results.append(
                (
                    kib * cpu,
                    f"| {size[0]}x{size[1]} | {name} | {cpu:.2f} | {wall:.2f} | {kib:.0f} | {kib * cpu:.0f} | {lossless} |",
                )
            )
        lines += [line for _, line in sorted(results)]
    return lines + [""]


def _pillow_ycbcr_jpeg(planes: YCbCrPlanes) -> bytes:
    buffer = io.BytesIO()
    planes.to_image().save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0")
    return buffer.getvalue()


def finish_table(
    colorizer: Colorizer, photos: list[Image.Image], rounds: int, sizes: tuple[tuple[int, int], ...] = SIZES
) -> list[str]:
    """Post-processing of one gray JPEG upload, per request: the current path vs. the YCbCr planes."""
    lines = [
        "## Post-processing of a gray upload (finish + encode), per image",
        "",
        "Gray input (the photo's luma), prediction = the photo's colours at the render size. "
        "PSNR (worst photo): the decoded answer vs. the current path's decoded JPEG, and vs. the lossless "
        "RGB that `finish` computes (what a JPEG approximates).",
        "",
        "| size | path | CPU ms (median) | wall ms (median) | KiB (mean) | PSNR vs current JPEG (dB) "
        "| PSNR vs lossless RGB (dB) | Y exact |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    render = colorizer.render_size
    paths: dict[str, Callable[[object, torch.Tensor], bytes]] = {
        "finish + PNG (RGB)": lambda p, rgb: encode_image(colorizer.finish(p, rgb), OutputFormat.PNG).data,  # type: ignore[arg-type]
        "finish + JPEG (RGB, current)": lambda p, rgb: (
            encode_image(
                colorizer.finish(p, rgb),
                OutputFormat.JPEG,
                quality=JPEG_QUALITY,  # type: ignore[arg-type]
            ).data
        ),
        "finish_ycbcr + Pillow JPEG of a YCbCr image": lambda p, rgb: _pillow_ycbcr_jpeg(
            colorizer.finish_ycbcr(p, rgb)  # type: ignore[arg-type]
        ),
    }
    try:
        import simplejpeg

        def simple(p: object, rgb: torch.Tensor) -> bytes:
            planes = colorizer.finish_ycbcr(p, rgb)  # type: ignore[arg-type]
            return simplejpeg.encode_jpeg_yuv_planes(planes.y, planes.cb, planes.cr, quality=JPEG_QUALITY)

        paths["finish_ycbcr + simplejpeg planes"] = simple
    except ImportError:
        pass
    paths["finish_ycbcr + encode_ycbcr_jpeg (service)"] = lambda p, rgb: (
        encode_ycbcr_jpeg(colorizer.finish_ycbcr(p, rgb), quality=JPEG_QUALITY).data  # type: ignore[arg-type]
    )
    for size in sizes:
        inputs = []
        for photo in photos:
            color = colorized_like(photo, size)
            gray = color.convert("L")
            prepared = colorizer.prepare(gray)
            small = np.array(color.resize((render, render), Image.Resampling.BILINEAR))
            rgb = torch.from_numpy(small).permute(2, 0, 1).float().div(255.0)
            inputs.append((gray, prepared, rgb))
        cases = {
            f"{name}#{i}": (lambda f=fn, p=p, rgb=rgb: f(p, rgb))
            for name, fn in paths.items()
            for i, (_, p, rgb) in enumerate(inputs)
        }
        rows = run_interleaved(cases, rounds)
        for name, fn in paths.items():
            per_image = [rows[f"{name}#{i}"] for i in range(len(inputs))]
            cpu = statistics.mean(statistics.median(r.cpu_ms) for r in per_image)
            wall = statistics.mean(statistics.median(r.wall_ms) for r in per_image)
            kib = statistics.mean(r.sizes[0] for r in per_image) / 1024
            worst = min(
                psnr(decoded(fn(p, rgb)), decoded(paths["finish + JPEG (RGB, current)"](p, rgb)))
                for _, p, rgb in inputs
            )
            truth = min(psnr(decoded(fn(p, rgb)), np.asarray(colorizer.finish(p, rgb))) for _, p, rgb in inputs)
            exact = ""
            if "ycbcr" in name:
                exact = (
                    "yes"
                    if all(np.array_equal(colorizer.finish_ycbcr(p, rgb).y, np.asarray(g)) for g, p, rgb in inputs)
                    else "NO"
                )
            shown = "reference" if "current" in name else ("lossless" if "PNG" in name else f"{worst:.1f}")
            lines.append(
                f"| {size[0]}x{size[1]} | {name} | {cpu:.2f} | {wall:.2f} | {kib:.0f} | {shown} | {truth:.1f} | {exact} |"
            )
    return lines + [""]


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(w), int(h)) for w, h in (part.split("x") for part in text.split(",")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="?", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--photos", dest="count", type=int, default=4, help="photos used (the first N by name)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a CPU-pool thread's share)")
    parser.add_argument("--sizes", type=_sizes, default=SIZES, help="image sizes, e.g. 512x384,1024x768")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "encode.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.count]
    if not files:
        sys.exit(f"no photos in {args.photos}")
    photos = [Image.open(f).convert("RGB") for f in files]
    images = {size: [colorized_like(p, size) for p in photos] for size in args.sizes}
    png, png_missing = png_encoders()
    jpeg, jpeg_missing = jpeg_encoders()
    checkpoint = default_checkpoint_path()
    assert checkpoint is not None, "the bundled checkpoint is needed for the finish section"
    colorizer = Colorizer.from_checkpoint(checkpoint, device="cpu", precision="fp32")
    versions = [
        f"Pillow {Image.__version__} (zlib {features.version('zlib')}, libjpeg-turbo {features.version('jpg')})"
    ]
    for module in ("imagecodecs", "fpng", "cv2", "simplejpeg"):
        mod = sys.modules.get(module)
        if mod is not None:
            versions.append(f"{module} {getattr(mod, '__version__', '?')}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    header = [
        "# Encoding and post-processing CPU per answer",
        "",
        "`python benchmarks/encode.py` -- " + "; ".join(versions) + ".",
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, load average at start {load}; "
        f"{len(files)} photos from {args.photos.name}/, {args.rounds} interleaved rounds; "
        f"not installed: {', '.join(sorted(set(png_missing + jpeg_missing))) or 'none'}.",
        "",
        "Medians per image, averaged over the photos. Encoders fed numpy include the PIL -> numpy copy. "
        "Sorted by KiB x CPU ms (smaller is better).",
        "",
    ]
    body = encoder_table("PNG (RGB, colorized-like)", png, images, args.rounds, png=True)
    body += encoder_table("JPEG q90 (RGB, colorized-like)", jpeg, images, args.rounds, png=False)
    body += finish_table(colorizer, photos, args.rounds, args.sizes)
    text = "\n".join(header + body)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
