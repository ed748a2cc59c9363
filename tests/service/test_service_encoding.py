"""Answer encoding: PNGs are lossless whichever encoder writes them, and keep the ICC profile and DPI."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from service import encoding
from service.encoding import OutputFormat, encode_image


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
