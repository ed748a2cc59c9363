"""Colorizer.finish_ycbcr: the planes of a 4:2:0 JPEG answer, equivalent to finish's RGB."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from model_test_helpers import make_generator
from PIL import Image

from model import Colorizer

QUALITY = 90


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer(make_generator(seed=3, with_saliency=False), device="cpu")


def _gray(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 8, (height, width)), 0, 255).astype(np.uint8), "L")


def _prediction(seed: int = 0) -> torch.Tensor:
    """A smooth, well saturated 3 x 256 x 256 RGB prediction (some of it leaves the cube at extreme luma)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 8, 8, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(256, 256), mode="bilinear", align_corners=False)[0]


def _jpeg(image: Image.Image) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=QUALITY, subsampling="4:2:0")
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.mark.parametrize("size", [(64, 48), (65, 47), (1, 1), (3, 2)])
def test_planes_keep_the_exact_luma_and_halve_the_chroma(colorizer: Colorizer, size: tuple[int, int]) -> None:
    gray = _gray(*size)
    planes = colorizer.finish_ycbcr(colorizer.prepare(gray), _prediction())
    assert np.array_equal(planes.y, np.asarray(gray))
    half = ((size[1] + 1) // 2, (size[0] + 1) // 2)
    assert planes.cb.shape == planes.cr.shape == half
    image = planes.to_image()
    assert (image.mode, image.size) == ("YCbCr", size)


def test_a_jpeg_of_the_planes_matches_a_jpeg_of_finish(colorizer: Colorizer) -> None:
    gray = _gray(160, 120, seed=1)
    prepared = colorizer.prepare(gray)
    rgb = _prediction(seed=1)
    lossless = colorizer.finish(prepared, rgb)
    current = _jpeg(lossless)
    planes = _jpeg(colorizer.finish_ycbcr(prepared, rgb).to_image())
    truth = np.asarray(lossless)
    assert _psnr(planes, current) >= 44.0
    # As close to the lossless RGB as the JPEG of the RGB itself is.
    assert _psnr(planes, truth) >= _psnr(current, truth) - 0.2


def test_no_chroma_gives_neutral_planes(colorizer: Colorizer) -> None:
    planes = colorizer.finish_ycbcr(colorizer.prepare(_gray(20, 10)), _prediction(), chroma_gain=0.0)
    assert (planes.cb == 128).all() and (planes.cr == 128).all()


def test_images_with_alpha_take_the_rgb_path(colorizer: Colorizer) -> None:
    rgba = _gray(20, 10).convert("RGBA")
    prepared = colorizer.prepare(rgba)
    assert not colorizer.can_finish_ycbcr(prepared)
    with pytest.raises(ValueError, match="alpha"):
        colorizer.finish_ycbcr(prepared, _prediction())
