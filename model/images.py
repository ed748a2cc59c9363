"""Image files and PIL images: the suffixes we read, the one RGB loader, and float planes for the pipeline.

:func:`to_planes` handles what real uploads contain: EXIF orientation, animated
files (first frame), palettes with transparency, 16-bit gray, CMYK and alpha
channels. :func:`load_rgb` is the loader of training, validation and evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: File suffixes (lower case) taken as images when a folder is searched: CLIs, training data, evaluation.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: The filter that downscales photos to a ``max_side`` (training, validation, evaluation): antialiased Lanczos.
DOWNSCALE_FILTER = Image.Resampling.LANCZOS

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


@dataclass(frozen=True)
class ImagePlanes:
    """An upload as float32 planes in [0, 1] (H x W x 1 or H x W x 3) plus its alpha, oriented for display."""

    pixels: np.ndarray
    alpha: Image.Image | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.pixels.shape[1], self.pixels.shape[0]


def first_frame(image: Image.Image) -> Image.Image:
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    return image


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        if image.mode in ("RGBa", "La", "PA"):
            image = image.convert("RGBA")
        alpha = image.getchannel("A")
        return image.convert("L" if image.mode == "LA" else "RGB"), alpha
    return image, None


def to_planes(image: Image.Image) -> ImagePlanes:
    """Decode ``image`` (first frame, EXIF orientation applied) to float planes and alpha."""
    image = first_frame(image)
    image = ImageOps.exif_transpose(image) or image
    if image.mode in _SIXTEEN_BIT_MODES:
        gray16 = np.asarray(image, dtype=np.float32) / 65535.0
        return ImagePlanes(np.clip(gray16, 0.0, 1.0)[..., None], None)
    if image.mode == "F":
        gray_f = np.asarray(image, dtype=np.float32) / 255.0
        return ImagePlanes(np.clip(gray_f, 0.0, 1.0)[..., None], None)
    image, alpha = _split_alpha(image)
    if image.mode == "1":
        image = image.convert("L")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    pixels = np.asarray(image, dtype=np.float32)  # a fresh converted copy: scaled in place, no second array
    pixels /= 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return ImagePlanes(pixels, alpha)


def is_image_file(path: Path) -> bool:
    """A regular file whose suffix is one of :data:`IMAGE_SUFFIXES`."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """``image`` downscaled (:data:`DOWNSCALE_FILTER`) so its long side is at most ``max_side``; None or 0: as is."""
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, DOWNSCALE_FILTER)


def load_rgb(source: str | os.PathLike[str] | Image.Image, max_side: int | None = None) -> Image.Image:
    """An RGB copy of a file or PIL image (first frame, EXIF orientation applied, alpha dropped), :func:`fit_within`.

    Raises what PIL raises for an unreadable file (``OSError``, including
    ``UnidentifiedImageError``, or ``ValueError``).
    """
    if isinstance(source, Image.Image):
        image = first_frame(source)
        rgb = (ImageOps.exif_transpose(image) or image).convert("RGB")
    else:
        with Image.open(source) as opened:
            opened.load()
            rgb = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    return fit_within(rgb, max_side)


__all__ = [
    "DOWNSCALE_FILTER",
    "IMAGE_SUFFIXES",
    "ImagePlanes",
    "first_frame",
    "fit_within",
    "is_image_file",
    "load_rgb",
    "to_planes",
]
