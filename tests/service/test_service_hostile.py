"""Hostile uploads over HTTP: each gets its documented status, and the service stays healthy after it.

Everything is generated here, in memory: truncated files, random bytes behind
each image signature, decompression bombs and absurd header dimensions, degenerate
sizes, awkward modes, animations, every EXIF orientation, and lying content types.
After each one, /readyz must still be 200 and an ordinary image must still be
colorized. The documented codes are the error table in docs/api.md (service/http_errors.py):
400 corrupt_image, 413 image_too_large / upload_too_large, 415 unsupported_media_type.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    SIGNATURES,
    bmp_claiming,
    gif_claiming,
    jpeg_claiming,
    metadata_bomb,
    png_bomb,
    png_chunk,
    png_chunk_kinds,
    png_header_claiming,
    png_split_idat,
    png_with_chunks,
    random_behind_signature,
    tiff_claiming,
    valid,
    webp_claiming,
)
from PIL import Image, ImageOps
from service_test_helpers import RunningApp, decode, gray_image, image_bytes, max_abs_diff, rgb_image, run_app

from model import Colorizer
from service import Settings
from service.decoding import MAX_PNG_CHUNKS, MAX_PNG_METADATA_CHUNKS

pytestmark = pytest.mark.anyio

MAX_PIXELS = 4096 * 4096
MAX_UPLOAD = 2 * 1024 * 1024
_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")


@pytest.fixture(scope="module")
async def svc(tiny_checkpoint: Path) -> AsyncIterator[RunningApp]:
    settings = Settings(
        checkpoint=tiny_checkpoint,
        device="cpu",
        precision="fp32",
        max_batch_size=2,
        cpu_threads=2,
        torch_threads=1,
        max_upload_bytes=MAX_UPLOAD,
        max_pixels=MAX_PIXELS,
    )
    async with run_app(settings) as running:
        yield running


# -- refused uploads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    id: str
    data: bytes
    status: int
    code: str
    #: Noise can also spell a frame header claiming a huge size: then 413 is the documented answer.
    or_too_large: bool = False


REFUSED: list[Refused] = [
    *(Refused(f"truncated-half-{f}", valid(f)[: len(valid(f)) // 2], 400, "corrupt_image") for f in _FORMATS),
    *(Refused(f"truncated-to-signature-{f}", valid(f)[:12], 400, "corrupt_image") for f in _FORMATS),
    *(
        Refused(f"random-behind-signature-{f}-{seed}", random_behind_signature(f, seed), 400, "corrupt_image", True)
        for f in _FORMATS
        for seed in (0, 1)
    ),
    Refused("png-bomb-30000x30000", png_bomb(30_000), 413, "image_too_large"),
    Refused("png-ihdr-width-2^31-1", png_header_claiming(2**31 - 1, 1), 413, "image_too_large"),
    Refused("png-ihdr-height-2^31-1", png_header_claiming(1, 2**31 - 1), 413, "image_too_large"),
    Refused("png-ihdr-2^32-1-square", png_header_claiming(2**32 - 1, 2**32 - 1), 413, "image_too_large"),
    Refused("png-ihdr-zero-width", png_header_claiming(0, 10), 400, "corrupt_image"),
    Refused("gif-65535x65535", gif_claiming(65535, 65535), 413, "image_too_large"),
    Refused("jpeg-sof-65500x65500", jpeg_claiming(65500, 65500), 413, "image_too_large"),
    Refused("jpeg-sof-0x0", jpeg_claiming(0, 0), 400, "corrupt_image"),
    Refused("bmp-2^31-1-square", bmp_claiming(2**31 - 1, 2**31 - 1), 413, "image_too_large"),
    Refused("bmp-top-down-height-2^31", bmp_claiming(8, -(2**31)), 413, "image_too_large"),
    Refused("webp-16384x16384", webp_claiming(16384, 16384), 413, "image_too_large"),
    Refused("tiff-2^31-1-square", tiff_claiming(2**31 - 1, 2**31 - 1), 413, "image_too_large"),
    Refused("tiff-100000x100000", tiff_claiming(100_000, 100_000), 413, "image_too_large"),
    Refused("png-ztxt-bomb", metadata_bomb(b"zTXt"), 400, "corrupt_image"),
    Refused("png-iccp-bomb", metadata_bomb(b"iCCP"), 400, "corrupt_image"),
    # Pillow parses chunks in Python: 100,000 of them cost about a second of CPU before this limit.
    Refused("png-100k-text-chunks", png_with_chunks(png_chunk(b"tEXt", b"k\0v") * 100_000), 413, "image_too_large"),
    Refused("png-100k-empty-idat", png_with_chunks(png_chunk(b"IDAT", b"") * 100_000), 413, "image_too_large"),
    Refused("over-max-upload", SIGNATURES["PNG"] + b"\0" * MAX_UPLOAD, 413, "upload_too_large"),
]


async def assert_healthy(svc: RunningApp) -> None:
    """Ready, nothing stuck in the queue, and an ordinary image still colorized."""
    ready = await svc.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    good = await svc.client.post("/colorize", files={"file": ("ok.png", image_bytes(gray_image(24, 16), "PNG"))})
    assert good.status_code == 200, good.text
    assert decode(good.content).size == (24, 16)
    assert svc.state.batcher.depth == 0


def assert_error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["x-request-id"]  # type: ignore[attr-defined]


def test_the_bomb_is_a_real_one() -> None:
    """The 30000 x 30000 PNG is complete and valid (checked at a smaller side: same construction)."""
    small = Image.open(io.BytesIO(png_bomb(3000)))
    small.load()
    assert small.size == (3000, 3000) and small.getextrema() == (0, 0)
    bomb = png_bomb(30_000)
    assert len(bomb) < 150_000
    assert struct.unpack(">II", bomb[16:24]) == (30_000, 30_000)  # IHDR
    idat = bomb.index(b"IDAT") + 4
    inflater = zlib.decompressobj()
    assert len(inflater.decompress(bomb[idat : idat + 4096], 64 * 1024 * 1024)) > 1_000_000  # ~1000:1


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
@pytest.mark.parametrize("transport", ["multipart", "raw"])
async def test_hostile_upload_gets_its_documented_status(svc: RunningApp, case: Refused, transport: str) -> None:
    if transport == "multipart":
        response = await svc.client.post("/colorize", files={"file": ("upload", case.data, "application/octet-stream")})
    else:
        response = await svc.client.post("/colorize", content=case.data, headers={"content-type": "image/png"})
    if case.or_too_large and response.status_code == 413:
        assert_error(response, 413, "image_too_large")
    else:
        assert_error(response, case.status, case.code)
    await assert_healthy(svc)


async def test_hostile_uploads_to_saliency_too(svc: RunningApp) -> None:
    chosen = {"truncated-half-PNG", "random-behind-signature-PNG-0", "png-bomb-30000x30000", "tiff-2^31-1-square"}
    for case in (c for c in REFUSED if c.id in chosen):
        response = await svc.client.post("/saliency", files={"file": ("upload", case.data)})
        assert_error(response, case.status, case.code)
    await assert_healthy(svc)


# -- awkward but valid uploads: 200, the input's size, and exactly the model's answer -------------------


def _i16() -> Image.Image:
    image = Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 53)
    assert image.mode == "I;16"
    return image


AWKWARD: dict[str, bytes] = {
    **{f"1x1-{f}": image_bytes(gray_image(1, 1).convert("P" if f == "GIF" else "L"), f) for f in _FORMATS},
    **{f"1x2000-{f}": image_bytes(gray_image(1, 2000), f) for f in ("PNG", "JPEG")},
    **{f"2000x1-{f}": image_bytes(gray_image(2000, 1), f) for f in ("PNG", "JPEG")},
    "2x1-webp": image_bytes(gray_image(2, 1), "WEBP", lossless=True),
    "png-16bit-I;16": image_bytes(_i16(), "PNG"),
    "tiff-16bit-I;16": image_bytes(_i16(), "TIFF"),
    "png-palette": image_bytes(rgb_image(40, 30).convert("P"), "PNG"),
    "png-palette-transparency": image_bytes(rgb_image(40, 30).convert("P"), "PNG", transparency=3),
    "png-1bit": image_bytes(gray_image(40, 30).convert("1"), "PNG"),
    "png-LA": image_bytes(gray_image(40, 30).convert("LA"), "PNG"),
    "tiff-32bit-I": image_bytes(Image.fromarray(np.arange(1200, dtype=np.int32).reshape(30, 40) * 40), "TIFF"),
    "tiff-float-F": image_bytes(Image.fromarray(np.linspace(0, 255, 1200, dtype=np.float32).reshape(30, 40)), "TIFF"),
    "jpeg-cmyk": image_bytes(rgb_image(40, 30).convert("CMYK"), "JPEG"),
    "tiff-cmyk": image_bytes(rgb_image(40, 30).convert("CMYK"), "TIFF"),
    "gif-zero-screen-size": gif_claiming(0, 0),  # the frame's own descriptor says 8 x 8
    "png-1000-text-chunks": png_with_chunks(png_chunk(b"tEXt", b"k\0v") * 1000),  # under the limit
    "png-data-in-3000-idat-chunks": png_split_idat(3000),
}


@pytest.mark.parametrize("name", list(AWKWARD))
async def test_awkward_valid_images_are_colorized(svc: RunningApp, reference: Colorizer, name: str) -> None:
    data = AWKWARD[name]
    response = await svc.client.post("/colorize?format=png", files={"file": ("upload", data)})
    assert response.status_code == 200, response.text
    out = decode(response.content)
    source = decode(data)
    assert out.size == source.size
    assert max_abs_diff(out, reference.colorize_one(source)) == 0
    await assert_healthy(svc)


def _frames(count: int, size: tuple[int, int] = (40, 30)) -> list[Image.Image]:
    """Frames that differ a lot (so colorizing the wrong one shows)."""
    return [Image.fromarray(np.asarray(gray_image(*size, seed=i)) // (i + 1), "L") for i in range(count)]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
async def test_animations_use_the_first_frame(svc: RunningApp, reference: Colorizer, fmt: str) -> None:
    frames = _frames(3)
    if fmt == "GIF":
        frames = [frame.convert("P") for frame in frames]
        data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    else:
        frames = [frame.convert("RGB") for frame in frames]
        data = image_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=50)
    animation = Image.open(io.BytesIO(data))
    assert animation.n_frames == 3 and animation.is_animated
    first = decode(data)  # frame 0
    animation.seek(2)
    last = animation.convert(first.mode)
    response = await svc.client.post("/colorize?format=png", files={"file": ("anim", data)})
    assert response.status_code == 200, response.text
    out = decode(response.content)
    assert max_abs_diff(out, reference.colorize_one(first)) == 0
    assert max_abs_diff(out, reference.colorize_one(last)) > 0
    await assert_healthy(svc)


@cache
def many_frames_gif() -> bytes:
    """3000 frames of 16 x 16: well under the upload limit, thousands of frame headers to walk."""
    frames = [frame.convert("P") for frame in _frames(7, (16, 16))] * 430
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:3000])
    assert len(data) < MAX_UPLOAD
    return data


async def test_thousands_of_frames_only_the_first_is_decoded(svc: RunningApp, reference: Colorizer) -> None:
    data = many_frames_gif()
    response = await svc.client.post("/colorize?format=png", files={"file": ("anim.gif", data)})
    assert response.status_code == 200, response.text
    assert max_abs_diff(decode(response.content), reference.colorize_one(decode(data))) == 0
    await assert_healthy(svc)


# -- EXIF orientation ------------------------------------------------------------------------------------


def _with_orientation(image: Image.Image, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    params: dict[str, object] = {"exif": exif.tobytes()}
    if fmt == "JPEG":
        params["quality"] = 95
    return image_bytes(image, fmt, **params)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
async def test_every_exif_orientation_is_applied(svc: RunningApp, orientation: int, fmt: str) -> None:
    """The answer is the displayed image: its luma is the input's, transposed as EXIF says (independent check)."""
    stored = Image.fromarray(np.asarray(gray_image(48, 32)) // 2 + np.tri(32, 48, dtype=np.uint8) * 120, "L")
    data = _with_orientation(stored.convert("RGB"), orientation, fmt)
    response = await svc.client.post("/colorize?format=png", files={"file": ("photo", data)})
    assert response.status_code == 200, response.text
    out = decode(response.content)
    displayed = ImageOps.exif_transpose(decode(data).convert("L"))  # Pillow's own reading of the tag
    assert out.size == ((48, 32) if orientation <= 4 else (32, 48))
    assert max_abs_diff(out.convert("L"), displayed) <= 2
    assert "exif" not in out.info


@pytest.mark.parametrize("orientation", [0, 9, 65535])
async def test_invalid_exif_orientations_are_ignored(svc: RunningApp, orientation: int) -> None:
    data = _with_orientation(gray_image(48, 32).convert("RGB"), orientation, "JPEG")
    response = await svc.client.post("/colorize?format=png", files={"file": ("photo", data)})
    assert response.status_code == 200, response.text
    assert decode(response.content).size == (48, 32)
    await assert_healthy(svc)


def _damaged_exif(damage: str) -> bytes:
    """A JPEG with orientation 6 whose EXIF block is then damaged in one way."""
    data = bytearray(_with_orientation(gray_image(48, 32).convert("RGB"), 6, "JPEG"))
    tiff = data.index(b"Exif\0\0") + 6  # the EXIF TIFF header; its first IFD follows at +8
    endian = "<" if data[tiff : tiff + 2] == b"II" else ">"
    entry = tiff + 10  # the orientation entry: tag, type, count, value
    if damage == "garbage-ifd":
        data[tiff + 8 : tiff + 40] = b"\xff" * 32
    elif damage == "huge-count":
        data[entry + 2 : entry + 8] = struct.pack(endian + "HI", 12, 1_000_000)
    elif damage == "unknown-type":
        data[entry + 2 : entry + 4] = struct.pack(endian + "H", 99)
    elif damage == "orientation-as-text":
        data[entry + 2 : entry + 12] = struct.pack(endian + "HI", 2, 2) + b"6\0\0\0"
    elif damage == "ifd-offset-past-the-end":
        data[tiff + 4 : tiff + 8] = struct.pack(endian + "I", 0xFFFFFFF0)
    return bytes(data)


@pytest.mark.parametrize(
    ("damage", "status"),
    [
        ("garbage-ifd", 400),  # Pillow cannot read the JPEG at all: a damaged image
        ("huge-count", 200),  # the rest: the EXIF is unreadable, the pixels are fine; no rotation
        ("unknown-type", 200),
        ("orientation-as-text", 200),
        ("ifd-offset-past-the-end", 200),
    ],
)
async def test_damaged_exif(svc: RunningApp, damage: str, status: int) -> None:
    response = await svc.client.post("/colorize?format=png", files={"file": ("photo", _damaged_exif(damage))})
    if status == 200:
        assert response.status_code == 200, response.text
        assert decode(response.content).size == (48, 32)
    else:
        assert_error(response, 400, "corrupt_image")
    await assert_healthy(svc)


# -- lying content types ---------------------------------------------------------------------------------

_PNG = image_bytes(gray_image(40, 30), "PNG")
_JPEG = image_bytes(gray_image(40, 30), "JPEG")
_TEXT = b"these are not the pixels you are looking for\n" * 20
_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'


@pytest.mark.parametrize(
    ("data", "declared", "filename", "status", "answer_type"),
    [
        (_PNG, "image/jpeg", "photo.jpg", 200, "image/png"),
        (_PNG, "text/plain", "notes.txt", 200, "image/png"),
        (_PNG, "application/x-msdownload", "setup.exe", 200, "image/png"),
        (_JPEG, "image/png", "photo.png", 200, "image/jpeg"),
        (_TEXT, "image/png", "photo.png", 415, None),
        (_SVG, "image/png", "photo.png", 415, None),
        (_SVG, "image/svg+xml", "drawing.svg", 415, None),
    ],
    ids=[
        "png-as-jpeg",
        "png-as-text",
        "png-as-exe",
        "jpeg-as-png",
        "text-as-png",
        "svg-as-png",
        "svg-as-svg",
    ],
)
async def test_multipart_content_type_is_not_trusted(
    svc: RunningApp, data: bytes, declared: str, filename: str, status: int, answer_type: str | None
) -> None:
    """The part's declared type and file name are ignored: the bytes decide (sniffed, never trusted)."""
    response = await svc.client.post("/colorize", files={"file": (filename, data, declared)})
    if status == 200:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == answer_type  # the input's real format, not the declared one
        assert decode(response.content).format == answer_type.split("/")[1].upper()
    else:
        assert_error(response, 415, "unsupported_media_type")
    await assert_healthy(svc)


@pytest.mark.parametrize(
    ("data", "declared", "status", "answer_type"),
    [
        (_PNG, "image/jpeg", 200, "image/png"),
        (_JPEG, "image/gif", 200, "image/jpeg"),
        (_PNG, "application/octet-stream", 200, "image/png"),
        (_TEXT, "image/png", 415, None),
        (_PNG, "text/plain", 415, None),  # a raw body must say it is an image (docs/api.md: `image/*` body)
        (_PNG, "application/json", 415, None),
    ],
    ids=["png-as-jpeg", "jpeg-as-gif", "png-as-octet-stream", "text-as-png", "png-as-text", "png-as-json"],
)
async def test_raw_body_content_type(
    svc: RunningApp, data: bytes, declared: str, status: int, answer_type: str | None
) -> None:
    response = await svc.client.post("/colorize", content=data, headers={"content-type": declared})
    if status == 200:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == answer_type
    else:
        assert_error(response, 415, "unsupported_media_type")
    await assert_healthy(svc)


# -- the PNG chunk limits at their boundaries ------------------------------------------------------------------------


def png_with_metadata_chunks(count: int) -> bytes:
    """A valid PNG holding exactly ``count`` metadata chunks (its IHDR is one: the decoder counts it)."""
    base_metadata = sum(kind != b"IDAT" for kind in png_chunk_kinds(png_with_chunks(b"")))
    return png_with_chunks(png_chunk(b"tEXt", b"k\0v") * (count - base_metadata))


def png_with_chunks_in_all(count: int) -> bytes:
    """A valid PNG of exactly ``count`` chunks before IEND (empty IDAT chunks, which Pillow accepts, make up the rest)."""
    return png_with_chunks(png_chunk(b"IDAT", b"") * (count - len(png_chunk_kinds(png_with_chunks(b"")))))


@pytest.mark.parametrize(
    ("build", "count", "status"),
    [
        (png_with_metadata_chunks, MAX_PNG_METADATA_CHUNKS, 200),
        (png_with_metadata_chunks, MAX_PNG_METADATA_CHUNKS + 1, 413),
        (png_with_chunks_in_all, MAX_PNG_CHUNKS, 200),
        (png_with_chunks_in_all, MAX_PNG_CHUNKS + 1, 413),
    ],
    ids=["metadata-at-limit", "metadata-one-over", "all-at-limit", "all-one-over"],
)
async def test_png_chunk_limits_hold_at_their_boundaries(
    svc: RunningApp, build: object, count: int, status: int
) -> None:
    data = build(count)  # type: ignore[operator]
    kinds = png_chunk_kinds(data)
    if build is png_with_metadata_chunks:
        assert sum(kind != b"IDAT" for kind in kinds) == count
    else:
        assert len(kinds) == count
    response = await svc.client.post("/colorize", files={"file": ("chunks.png", data, "image/png")})
    if status == 200:
        assert response.status_code == 200, response.text
        assert decode(response.content).size == (32, 32)
    else:
        assert_error(response, 413, "image_too_large")
    await assert_healthy(svc)


# -- colour profile and resolution pass through HTTP; a gray or CMYK profile is dropped --------------------------


def icc_profile(colour_space: bytes) -> bytes:
    """An sRGB ICC profile, its header's colour space set to ``colour_space`` (all the service reads of it)."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + colour_space + srgb[20:]


@pytest.mark.parametrize("answer", ["png", "jpeg", "webp"])
async def test_an_rgb_profile_and_the_dpi_reach_the_answer(svc: RunningApp, answer: str) -> None:
    profile = icc_profile(b"RGB ")
    data = image_bytes(gray_image(40, 30).convert("RGB"), "PNG", icc_profile=profile, dpi=(300, 150))
    response = await svc.client.post(f"/colorize?format={answer}", files={"file": ("in.png", data, "image/png")})
    assert response.status_code == 200, response.text
    out = decode(response.content)
    assert out.format == answer.upper()
    assert out.info.get("icc_profile") == profile
    if answer != "webp":  # WebP has no resolution field
        assert tuple(round(v) for v in out.info["dpi"]) == (300, 150)


@pytest.mark.parametrize(
    ("image", "fmt", "space"),
    [(gray_image(40, 30), "PNG", b"GRAY"), (rgb_image(40, 30).convert("CMYK"), "JPEG", b"CMYK")],
    ids=["gray-png", "cmyk-jpeg"],
)
async def test_a_gray_or_cmyk_profile_is_dropped(svc: RunningApp, image: Image.Image, fmt: str, space: bytes) -> None:
    """Such a profile cannot describe the RGB answer: kept, it would make viewers misread its colours."""
    data = image_bytes(image, fmt, icc_profile=icc_profile(space), dpi=(200, 200))
    assert Image.open(io.BytesIO(data)).info["icc_profile"][16:20] == space
    for answer in ("png", "jpeg"):
        response = await svc.client.post(f"/colorize?format={answer}", files={"file": ("in", data, "image/*")})
        assert response.status_code == 200, response.text
        out = decode(response.content)
        assert out.mode == "RGB" and "icc_profile" not in out.info
        assert tuple(round(v) for v in out.info["dpi"]) == (200, 200)  # the resolution still is the input's
