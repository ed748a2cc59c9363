"""Colorize real black-and-white photographs (never colour) with a checkpoint: the model card's grid.

They come from scikit-image's bundled data, each with its licence as scikit-image documents it:
``camera`` (CC0, Lav Varshney), ``coins`` (Brooklyn Museum, no known copyright restrictions),
``grass`` (CC0, linolafett on DeviantArt) and ``clock`` (public domain, Stefan van der Walt).
Needs ``pip install scikit-image==0.26.0`` (not a project dependency). Run from the repository root:

    python docs/starter-training/v3/bw_photos_grid.py [--checkpoint CKPT] [--out docs/starter-training/v3/bw_photos.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import skimage.data
from PIL import Image, ImageDraw

from model.pipeline import Colorizer
from model.weights import default_checkpoint_path

PHOTOS = (
    ("camera", "CC0, Lav Varshney"),
    ("grass", "CC0, linolafett"),
    ("coins", "Brooklyn Museum, no known restrictions"),
    ("clock", "public domain, S. van der Walt"),
)
TILE = 256


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=default_checkpoint_path())
    p.add_argument("--out", type=Path, default=Path("docs/starter-training/v3/bw_photos.png"))
    args = p.parse_args()
    colorizer = Colorizer.from_checkpoint(args.checkpoint, device="cpu", precision="fp32")
    grays = [Image.fromarray(getattr(skimage.data, name)()).convert("L") for name, _ in PHOTOS]
    colours = colorizer.colorize(grays)
    canvas = Image.new("RGB", (2 * TILE + 12, len(PHOTOS) * (TILE + 18) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for row, ((name, licence), gray, colour) in enumerate(zip(PHOTOS, grays, colours)):
        y = 4 + row * (TILE + 18)
        for col, image in enumerate((gray.convert("RGB"), colour.convert("RGB"))):
            tile = image.copy()
            tile.thumbnail((TILE, TILE))
            canvas.paste(tile, (4 + col * (TILE + 4), y))
        draw.text((4, y + TILE + 3), f"{name} ({licence}): gray | colorized", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out} with {args.checkpoint}")


if __name__ == "__main__":
    main()
