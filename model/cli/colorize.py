"""``scgan-colorize INPUT... -o OUTDIR``: colorize files and folders in batches."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from model.checkpoint import CheckpointError
from model.pipeline import Colorizer
from model.weights import default_checkpoint_path

log = logging.getLogger("scgan.colorize")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
_FORMATS = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}


def iter_inputs(paths: Sequence[Path]) -> Iterator[Path]:
    """Files as given; folders searched recursively for image suffixes, in sorted order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scgan-colorize", description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the bundled starter)")
    p.add_argument("--render-size", type=int, default=None, help="working resolution, a multiple of 256")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--format", default="png", choices=tuple(_FORMATS))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--saliency", action="store_true", help="also write each image's saliency map")
    return p


def _save(image: Image.Image, dest: Path, fmt: str) -> None:
    pil_format, _ = _FORMATS[fmt]
    if pil_format == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, pil_format)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    checkpoint = args.checkpoint or default_checkpoint_path()
    if checkpoint is None:
        log.error("no --checkpoint given and no bundled starter checkpoint is installed")
        return 2
    try:
        colorizer = Colorizer.from_checkpoint(
            checkpoint, device=args.device, precision=args.precision,
            render_size=args.render_size, batch_size=args.batch_size,
        )
    except (CheckpointError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if args.saliency and not colorizer.has_saliency:
        log.error("checkpoint %s has no saliency branch; drop --saliency", checkpoint)
        return 2

    files = list(iter_inputs(args.inputs))
    failed = 0
    suffix = _FORMATS[args.format][1]
    for start in tqdm(range(0, len(files), args.batch_size), desc="colorizing", unit="batch", disable=None):
        batch_paths, images = [], []
        for path in files[start : start + args.batch_size]:
            try:
                with Image.open(path) as img:
                    img.load()
                    images.append(img.copy())
                batch_paths.append(path)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                log.warning("skipping %s: %s", path, exc)
                failed += 1
        if not images:
            continue
        colored = colorizer.colorize(images)
        maps = colorizer.saliency(images) if args.saliency else [None] * len(images)
        for path, out, sal in zip(batch_paths, colored, maps):
            _save(out, args.output / f"{path.stem}{suffix}", args.format)
            if sal is not None:
                sal.save(args.output / f"{path.stem}.saliency.png")
    done = len(files) - failed
    log.info("colorized %d of %d images into %s", done, len(files), args.output)
    return 1 if failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
