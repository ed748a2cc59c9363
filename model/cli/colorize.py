"""``scgan-colorize INPUT... -o OUTDIR``: colorize files and folders in batches."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from model.cli.common import add_precision_argument, open_colorizer
from model.images import is_image_file

log = logging.getLogger("scgan.colorize")

_FORMATS = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}


def iter_inputs(paths: Sequence[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, name relative to its input) pairs: files as given, folders searched recursively, sorted."""
    for path in paths:
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if is_image_file(p)):
                yield found, found.relative_to(path)
        else:
            yield path, Path(path.name)


def output_names(relatives: Sequence[Path], suffix: str) -> list[Path]:
    """Output paths mirroring the inputs' relative paths; clashes (a.png and a.jpg) get the source suffix added."""
    plain = [rel.with_suffix(suffix) for rel in relatives]
    counts: dict[Path, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    names: list[Path] = []
    seen: set[Path] = set()
    for rel, name in zip(relatives, plain):
        if counts[name] > 1:
            name = rel.with_name(f"{rel.stem}.{rel.suffix.lstrip('.') or 'img'}{suffix}")
        stem, n = name, 1
        while name in seen:
            n += 1
            name = stem.with_name(f"{stem.stem}-{n}{suffix}")
        seen.add(name)
        names.append(name)
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scgan-colorize", description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the bundled starter)")
    p.add_argument("--render-size", type=int, default=None, help="working resolution, a multiple of 256")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    add_precision_argument(p)
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
    colorizer = open_colorizer(args, log)
    if colorizer is None:
        return 2
    if args.saliency and not colorizer.has_saliency:
        log.error("the checkpoint has no saliency branch; drop --saliency")
        return 2

    inputs = list(iter_inputs(args.inputs))
    suffix = _FORMATS[args.format][1]
    destinations = output_names([rel for _, rel in inputs], suffix)
    failed = 0
    for start in tqdm(range(0, len(inputs), args.batch_size), desc="colorizing", unit="batch", disable=None):
        batch: list[tuple[Path, Path, Image.Image]] = []
        chunk = slice(start, start + args.batch_size)
        for (path, _), dest in zip(inputs[chunk], destinations[chunk]):
            try:
                with Image.open(path) as opened:
                    opened.load()
                    batch.append((path, dest, opened.copy()))
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
                log.warning("skipping %s: %s", path, exc)
                failed += 1
        if not batch:
            continue
        results: list[tuple[Image.Image | None, Image.Image | None]]
        try:
            results = [*colorizer.colorize_with_saliency([img for _, _, img in batch], saliency=args.saliency)]
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("batch of %d images failed (%s); retrying them one by one", len(batch), exc)
            results = []
            for path, _, img in batch:
                try:
                    results.append(colorizer.colorize_with_saliency([img], saliency=args.saliency)[0])
                except (OSError, ValueError, RuntimeError) as one_exc:
                    log.warning("skipping %s: %s", path, one_exc)
                    failed += 1
                    results.append((None, None))
        for (_, dest, _), (out, sal) in zip(batch, results):
            if out is None:
                continue
            _save(out, args.output / dest, args.format)
            if sal is not None:
                sal.save(args.output / dest.with_name(f"{dest.stem}.saliency.png"))
    log.info("colorized %d of %d images into %s", len(inputs) - failed, len(inputs), args.output)
    return 1 if failed or not inputs else 0


if __name__ == "__main__":
    sys.exit(main())
