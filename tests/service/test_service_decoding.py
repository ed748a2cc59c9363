"""Upload decoding: every supported container, every way an upload can be bad, and fuzzing."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from service_test_helpers import gray_image, image_bytes, png_header_only, rgb_image

from model import Colorizer
from model.color import GRAY_WEIGHTS
from service.decoding import decode_image
from service.exceptions import CorruptImage, EmptyUpload, ImageTooLarge, ServiceError, UnsupportedImage
from service.inference import PreparedUpload, decode_and_prepare

LIMIT = 4096 * 4096


@pytest.mark.parametrize(
    ("image", "fmt", "params", "expected_format"),
    [
        (rgb_image(), "JPEG", {}, "jpeg"),
        (rgb_image(), "JPEG", {"progressive": True}, "jpeg"),
        (rgb_image().convert("CMYK"), "JPEG", {}, "jpeg"),
        (gray_image(), "PNG", {}, "png"),
        (rgb_image().convert("P"), "PNG", {"transparency": 0}, "png"),
        (rgb_image().convert("RGBA"), "PNG", {}, "png"),
        (Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20), "PNG", {}, "png"),
        (rgb_image(), "WEBP", {"lossless": True}, "webp"),
        (rgb_image(), "BMP", {}, "bmp"),
        (rgb_image(), "TIFF", {}, "tiff"),
        (rgb_image().convert("P"), "GIF", {}, "gif"),
        (rgb_image(), "MPO", {"save_all": True, "append_images": [rgb_image(seed=1)]}, "jpeg"),
    ],
    ids=[
        "jpeg",
        "jpeg-progressive",
        "jpeg-cmyk",
        "png-gray",
        "png-palette-alpha",
        "png-rgba",
        "png-16bit",
        "webp",
        "bmp",
        "tiff",
        "gif",
        "mpo",
    ],
)
def test_supported_formats_decode(
    image: Image.Image, fmt: str, params: dict[str, object], expected_format: str
) -> None:
    data = image_bytes(image, fmt, **params)
    upload = io.BytesIO(data)
    decoded = decode_image(upload, max_pixels=LIMIT)
    upload.close()  # the pixels are in memory: nothing reads the upload later
    assert decoded.format == expected_format
    assert decoded.size == image.size
    assert decoded.image.mode == image.mode
    pixels = np.asarray(decoded.image.convert("RGBA"))
    with Image.open(io.BytesIO(data)) as pillow:  # exactly what Pillow decodes (the first frame of an MPO)
        assert np.array_equal(pixels, np.asarray(pillow.convert("RGBA")))
    if fmt not in ("JPEG", "MPO") and "transparency" not in params:  # lossless: the pixels that were saved
        assert np.array_equal(pixels, np.asarray(image.convert("RGBA")))


def test_file_objects_decode_too() -> None:
    data = image_bytes(rgb_image(), "PNG")
    assert decode_image(io.BytesIO(data), max_pixels=LIMIT).size == (64, 48)


def test_rgb_icc_profile_is_kept_for_the_output() -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = image_bytes(rgb_image(), "PNG", icc_profile=profile)
    assert decode_image(data, max_pixels=LIMIT).icc_profile == profile


@pytest.mark.parametrize("data", [b"", io.BytesIO(b"")], ids=["bytes", "file"])
def test_empty_upload(data: bytes | io.BytesIO) -> None:
    with pytest.raises(EmptyUpload):
        decode_image(data, max_pixels=LIMIT)


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is plain text and no image at all",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        image_bytes(rgb_image(), "ICO"),
        image_bytes(rgb_image(), "TGA"),
        image_bytes(rgb_image(), "PPM"),
    ],
    ids=["text", "pdf", "ico", "tga", "ppm"],
)
def test_not_an_image_or_unsupported_format(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        decode_image(data, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    data = image_bytes(rgb_image(256, 256) if fmt != "GIF" else rgb_image(256, 256).convert("P"), fmt)
    with pytest.raises((CorruptImage, UnsupportedImage)):
        decode_image(data[: len(data) // 2], max_pixels=LIMIT)


def test_truncated_png_is_corrupt_not_unsupported() -> None:
    data = image_bytes(rgb_image(256, 256), "PNG")
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2], max_pixels=LIMIT)


def test_tiff_strip_offset_past_seek_range_is_corrupt() -> None:
    # Found by the property test below: one flipped byte of the strip-offset tag made Pillow's
    # seek raise OverflowError, which escaped as a 500.
    data = bytearray(image_bytes(rgb_image(32, 32), "TIFF"))
    data[72] = 16
    with pytest.raises(CorruptImage):
        decode_image(bytes(data), max_pixels=LIMIT)


def test_over_max_pixels_is_refused_from_the_header() -> None:
    # 100000 x 100000 would need 10 GB decoded; the header alone is enough to refuse it.
    with pytest.raises(
        ImageTooLarge,
        match=r"the image is 3000 x 2000 = 6,000,000 pixels; the limit is 4,194,304 pixels \(2048 x 2048\)",
    ):
        decode_image(png_header_only(3000, 2000), max_pixels=2048 * 2048)
    with pytest.raises(ImageTooLarge, match=r"100000 x 100000 .* \(about 1000 x 1000\)"):
        decode_image(png_header_only(100_000, 100_000), max_pixels=1_000_500)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP"])
def test_pillow_decompression_bomb_is_too_large_not_corrupt(fmt: str) -> None:
    """Past 2x Pillow's MAX_IMAGE_PIXELS, Image.open itself refuses the file: the 413 still names its size."""
    data = image_bytes(gray_image(8, 8), fmt)
    with pytest.raises(
        ImageTooLarge, match=r"the image is 20000 x 20000 = 400,000,000 pixels; the limit is 178,956,970"
    ):
        if fmt == "PNG":
            data = png_header_only(20_000, 20_000)
        elif fmt == "GIF":
            data = data[:6] + struct.pack("<HH", 20_000, 20_000) + data[10:]
        else:
            data = data[:18] + struct.pack("<ii", 20_000, 20_000) + data[26:]
        decode_image(data, max_pixels=178_956_970)


def test_limit_is_inclusive() -> None:
    data = image_bytes(gray_image(64, 48), "PNG")
    assert decode_image(data, max_pixels=64 * 48).size == (64, 48)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=64 * 48 - 1)


_VALID = [image_bytes(rgb_image(32, 32), fmt) for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF")] + [
    image_bytes(rgb_image(32, 32).convert("P"), "GIF"),
    image_bytes(rgb_image(32, 32).convert("RGBA"), "PNG"),
    image_bytes(gray_image(32, 32), "PNG"),
]


@pytest.mark.parametrize("data", _VALID, ids=["png", "jpeg", "webp", "bmp", "tiff", "gif", "png-rgba", "png-gray"])
def test_the_fuzz_bases_undamaged_keep_size_alpha_and_luma(reference: Colorizer, data: bytes) -> None:
    """The success branch of the fuzz tests below, once per base for sure."""
    upload = decode_and_prepare(data, colorizer=reference, render_size=256, max_pixels=LIMIT)
    assert_answer_keeps_the_upload(reference, data, upload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(_VALID),
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.integers(0, 255)), max_size=8),
)
def test_damaged_uploads_only_raise_domain_errors(
    reference: Colorizer, base: bytes, cut: int, flips: list[tuple[int, int]]
) -> None:
    """Truncated or bit-flipped files give a 4xx-mapped error, or an answer as big as the image that keeps its luma."""
    data = bytearray(base[: max(1, len(base) - cut)])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        upload = decode_and_prepare(bytes(data), colorizer=reference, render_size=256, max_pixels=LIMIT)
    except ServiceError:
        return
    assert_answer_keeps_the_upload(reference, bytes(data), upload)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=512))
def test_random_bytes_only_raise_domain_errors(reference: Colorizer, data: bytes) -> None:
    try:
        upload = decode_and_prepare(data, colorizer=reference, render_size=256, max_pixels=LIMIT)
    except ServiceError:
        return
    assert_answer_keeps_the_upload(reference, data, upload)


def assert_answer_keeps_the_upload(colorizer: Colorizer, data: bytes, upload: PreparedUpload) -> None:
    """What a decodable upload must give: the model's input, and an answer of the image's size (alpha kept) whose
    BT.601 luma is the image's own, within the rounding to 8 bits."""
    decoded = ImageOps.exif_transpose(decode_image(data, max_pixels=LIMIT).image)
    prepared = upload.prepared
    assert prepared.model_input.shape == (1, 256, 256)
    assert prepared.size == decoded.size
    rgb, _ = colorizer.predict(prepared.model_input[None])
    answer = colorizer.finish(prepared, rgb[0])
    assert answer.size == decoded.size
    has_alpha = decoded.mode in ("RGBA", "LA", "PA") or "transparency" in decoded.info
    assert answer.mode == ("RGBA" if has_alpha else "RGB")
    answer_luma = np.asarray(answer.convert("RGB"), dtype=np.float64) @ np.asarray(GRAY_WEIGHTS, dtype=np.float64)
    assert np.abs(answer_luma - prepared.luma[0].double().numpy() * 255).max() <= 0.5 + 1e-3
    if decoded.mode in ("L", "RGB", "RGBA", "P", "LA", "PA"):  # 8-bit: the luma Pillow's own pixels give
        image_luma = np.asarray(decoded.convert("RGB"), dtype=np.float64) @ np.asarray(GRAY_WEIGHTS, dtype=np.float64)
        assert np.abs(answer_luma - image_luma).max() <= 0.5 + 1e-3
