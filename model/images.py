"""Turn a PIL image of any mode into float planes the pipeline can use.

Handles what real uploads contain: EXIF orientation, animated files (first
frame), palettes with transparency, 16-bit gray, CMYK and alpha channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

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
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return ImagePlanes(pixels, alpha)


__all__ = ["ImagePlanes", "first_frame", "to_planes"]
