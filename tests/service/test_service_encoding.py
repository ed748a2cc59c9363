"""Answer encoding: PNGs are lossless whichever encoder writes them, and keep the ICC profile and DPI."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from model.pipeline import YCbCrPlanes
from service import encoding
from service.encoding import OutputFormat, encode_image, encode_ycbcr_jpeg


def _image(mode: str, width: int = 67, height: int = 45) -> Image.Image:
    rng = np.random.default_rng(0)
    channels = len(mode)
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_the_fast_png_encoder_is_installed() -> None:
    assert encoding._fpng is not None, "fpng is a pinned dependency (pyproject.toml)"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_png_answers_are_lossless(mode: str) -> None:
    image = _image(mode)
    decoded = _decode(encode_image(image, OutputFormat.PNG).data)
    assert decoded.format == "PNG" and decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_png_answers_keep_the_icc_profile_and_dpi() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    encoded = encode_image(_image("RGB"), OutputFormat.PNG, icc_profile=profile, dpi=(300.0, 150.0))
    decoded = _decode(encoded.data)
    assert decoded.info["icc_profile"] == profile
    assert tuple(round(v) for v in decoded.info["dpi"]) == (300, 150)
    assert np.array_equal(np.asarray(decoded), np.asarray(_image("RGB")))


def test_pillow_writes_the_png_when_fpng_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoding, "_fpng", None)
    image = _image("RGBA")
    assert np.array_equal(np.asarray(_decode(encode_image(image, OutputFormat.PNG).data)), np.asarray(image))


def _planes() -> YCbCrPlanes:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 256, (45, 67), dtype=np.uint8)
    cb, cr = (rng.integers(100, 156, (23, 34), dtype=np.uint8) for _ in range(2))
    return YCbCrPlanes(y, cb, cr)


@pytest.mark.parametrize("fast", [True, False], ids=["simplejpeg", "pillow"])
def test_ycbcr_jpegs_keep_the_icc_profile_and_dpi(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fast:
        assert encoding._simplejpeg is not None, "simplejpeg is a pinned dependency (pyproject.toml)"
    else:
        monkeypatch.setattr(encoding, "_simplejpeg", None)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    big = profile + bytes(150_000)  # three APP2 segments
    for icc in (profile, big):
        encoded = encode_ycbcr_jpeg(_planes(), quality=90, icc_profile=icc, dpi=(300.0, 72.0))
        assert encoded.media_type == "image/jpeg"
        decoded = _decode(encoded.data)
        assert decoded.format == "JPEG" and decoded.size == (67, 45)
        assert decoded.info["icc_profile"] == icc
        assert tuple(round(v) for v in decoded.info["dpi"]) == (300, 72)
    plain = _decode(encode_ycbcr_jpeg(_planes()).data)
    assert "icc_profile" not in plain.info


def test_both_ycbcr_jpeg_writers_are_as_faithful(monkeypatch: pytest.MonkeyPatch) -> None:
    planes = _planes()

    def luma_error() -> float:
        decoded = _decode(encode_ycbcr_jpeg(planes, quality=90).data).convert("YCbCr")
        return float(np.abs(np.asarray(decoded, dtype=np.float64)[..., 0] - planes.y).mean())

    fast = luma_error()
    monkeypatch.setattr(encoding, "_simplejpeg", None)
    slow = luma_error()
    assert fast <= 1.1 * slow + 0.1, (fast, slow)
