"""Uploaded bytes -> a fully decoded PIL image, within limits, or a domain error saying why not.

Runs on the CPU thread pool. The size is checked from the header, before any
pixel is decoded, so a decompression bomb costs a few hundred bytes of parsing.
Only the formats listed in :data:`READABLE_FORMATS` are even tried, which keeps
Pillow's rarer (and less hardened) decoders out of reach of the internet.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from service.exceptions import CorruptImage, EmptyUpload, ImageTooLarge, UnsupportedImage

_log = logging.getLogger(__name__)

#: Pillow decoders the service tries (the JPEG one also opens MPO, the multi-picture JPEG many phones write).
READABLE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_READABLE_LIST = list(READABLE_FORMATS)  # what Image.open takes, built once

#: Canonical lower-case name of each readable format (what clients see, what ``format`` accepts).
_FORMAT_NAMES = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
    "GIF": "gif",
}

#: What Pillow's plugins raise on damaged data. ArithmeticError covers a TIFF strip offset past
#: what ``seek`` takes (OverflowError) and a zero in a header field used as a divisor.
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    TypeError,
    ArithmeticError,
)

#: Leading bytes of each readable format: a file that starts like one of them but cannot be
#: opened is a damaged image of that format (400), not an unknown format (415).
_SIGNATURES: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("PNG", (b"\x89PNG\r\n\x1a\n",)),
    ("JPEG", (b"\xff\xd8\xff",)),
    ("GIF", (b"GIF87a", b"GIF89a")),
    ("TIFF", (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),
)
#: Sizes of the BMP info headers Pillow knows (bytes 14-17 of the file).
_BMP_INFO_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Chunks that carry pixels (IDAT; APNG's fdAT and fcTL): a large PNG legitimately splits its data into thousands.
_PNG_IMAGE_CHUNKS = frozenset({b"IDAT", b"fdAT", b"fcTL"})
#: Limits on a PNG's chunk structure. Pillow parses every chunk in Python: a 1.2 MB PNG of 100,000
#: empty text chunks cost about 1 s of CPU, a 20 MB one would cost 15 s. Real files stay far below
#: (a few dozen metadata chunks; 8 KiB IDAT chunks put 2,600 in a 20 MB file).
MAX_PNG_METADATA_CHUNKS = 1024
MAX_PNG_CHUNKS = 65536


def _claimed_format(prefix: bytes) -> str | None:
    """The readable format whose signature ``prefix`` starts with, if any (a sniff, not a validation)."""
    for name, signatures in _SIGNATURES:
        if prefix.startswith(signatures):
            return name
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "WEBP"
    if prefix[:2] == b"BM" and (len(prefix) < 18 or struct.unpack("<I", prefix[14:18])[0] in _BMP_INFO_SIZES):
        return "BMP"
    return None


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload and what we keep from its container."""

    image: Image.Image
    format: str  # canonical lower-case name, e.g. "jpeg"
    icc_profile: bytes | None  # kept for the output only when it describes RGB
    dpi: tuple[float, float] | None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def _rgb_icc(image: Image.Image) -> bytes | None:
    """The embedded ICC profile if it is an RGB one (a gray or CMYK profile cannot tag an RGB output)."""
    profile = image.info.get("icc_profile")
    if isinstance(profile, bytes) and len(profile) >= 20 and profile[16:20] == b"RGB ":
        return profile
    return None


def _dpi(image: Image.Image) -> tuple[float, float] | None:
    dpi = image.info.get("dpi")
    try:
        x, y = (float(v) for v in dpi)  # type: ignore[union-attr]  # whatever the file holds: checked by the except
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


def _check_png_chunks(fp: IO[bytes]) -> None:
    """Walk a PNG's chunk headers (not their data) and refuse one with absurdly many chunks."""
    fp.seek(len(_PNG_SIGNATURE))
    metadata = total = 0
    while True:
        header = fp.read(8)
        if len(header) < 8:
            break  # truncated: Pillow reports that as it reads the pixels
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            break
        total += 1
        metadata += kind not in _PNG_IMAGE_CHUNKS
        if metadata > MAX_PNG_METADATA_CHUNKS or total > MAX_PNG_CHUNKS:
            raise ImageTooLarge(
                f"the PNG has more than {MAX_PNG_METADATA_CHUNKS} metadata chunks or {MAX_PNG_CHUNKS} chunks in all"
            )
        fp.seek(length + 4, io.SEEK_CUR)  # data and CRC
    fp.seek(0)


def _limit_text(max_pixels: int) -> str:
    """``max_pixels`` as a count and as a square: "16,777,216 pixels (4096 x 4096)"."""
    side = math.isqrt(max_pixels)
    return f"{max_pixels:,} pixels ({'' if side * side == max_pixels else 'about '}{side} x {side})"


def too_large(width: int, height: int, max_pixels: int) -> ImageTooLarge:
    """The 413: the image's width x height and the limit, as a count and as a square."""
    return ImageTooLarge(
        f"the image is {width} x {height} = {width * height:,} pixels; the limit is {_limit_text(max_pixels)}"
    )


def _bomb_size(fp: IO[bytes]) -> tuple[int, int] | None:
    """Width and height from the header of a file Pillow refused to open as a decompression bomb, if readable.

    Pillow checks the size inside ``Image.open`` and drops the image; its format plugin, called directly,
    reads the header without that check (and without decoding a pixel).
    """
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in _READABLE_LIST:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None or (accept is not None and not accept(prefix)):
            continue
        try:
            fp.seek(0)
            with factory(fp, "") as image:
                width, height = image.size
                return int(width), int(height)
        except Exception:  # noqa: BLE001 - best effort: the message then gives the limit alone
            continue
    return None


def _bomb(fp: IO[bytes], max_pixels: int) -> ImageTooLarge:
    size = _bomb_size(fp)
    if size is None:
        return ImageTooLarge(f"the image's width x height exceeds the limit of {_limit_text(max_pixels)}")
    return too_large(*size, max_pixels)


def decode_image(
    source: bytes | IO[bytes], *, max_pixels: int, reserve: Callable[[int], None] | None = None
) -> DecodedImage:
    """Decode ``source`` (bytes or a binary file) completely, or raise a :mod:`service.exceptions` error.

    ``reserve`` is called with width x height once the header passed the checks,
    before any pixel is decoded (the pixel budget); what it raises propagates.

    Raises :class:`EmptyUpload` (no bytes), :class:`UnsupportedImage` (not an image
    or a format we do not read), :class:`ImageTooLarge` (a PNG of absurdly many chunks; width x height over
    ``max_pixels``, checked before decoding) or :class:`CorruptImage`.
    """
    fp: IO[bytes] = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    fp.seek(0, io.SEEK_END)
    if fp.tell() == 0:
        raise EmptyUpload("the uploaded file is empty")
    fp.seek(0)
    if fp.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE:
        _check_png_chunks(fp)
    fp.seek(0)
    with warnings.catch_warnings(record=True) as caught:
        # Recorded, not printed: our own pixel limit supersedes Pillow's bomb warning, and a
        # "Truncated File Read" warning (TIFF) means corrupt data, reported as such below.
        # The same warning while a JPEG, PNG or WebP is opened is about its EXIF block (a
        # TIFF structure too): damaged metadata, readable pixels, so it does not count.
        warnings.simplefilter("always")
        try:
            image = Image.open(fp, formats=_READABLE_LIST)
        except Image.DecompressionBombError as exc:
            raise _bomb(fp, max_pixels) from exc
        except UnidentifiedImageError as exc:
            fp.seek(0)
            claimed = _claimed_format(fp.read(32))
            if claimed is not None:  # Pillow's plugin refused a file of a format we read: it is damaged
                raise CorruptImage(f"the file starts like a {claimed} image but its header cannot be read") from exc
            raise UnsupportedImage("not an image, or not a supported format (JPEG, PNG, WebP, BMP, TIFF, GIF)") from exc
        except DECODE_ERRORS as exc:
            raise CorruptImage(f"the image header cannot be read: {exc}") from exc
        width, height = image.size
        if width < 1 or height < 1:
            raise CorruptImage(f"the image has an empty size {width}x{height}")
        if width * height > max_pixels:
            raise too_large(width, height, max_pixels)
        fmt = _FORMAT_NAMES[image.format or "PNG"]
        if reserve is not None:
            try:
                reserve(width * height)
            except BaseException:
                image.close()
                raise
        metadata_warnings = 0 if fmt == "tiff" else len(caught)
        try:
            image.load()
        except Image.DecompressionBombError as exc:  # a frame larger than the header said
            raise ImageTooLarge(f"the image's width x height exceeds the limit of {_limit_text(max_pixels)}") from exc
        except DECODE_ERRORS as exc:
            raise CorruptImage(f"the {fmt.upper()} data is corrupt or truncated: {exc}") from exc
    for warning in caught[metadata_warnings:]:
        if "truncated" in str(warning.message).lower():
            raise CorruptImage(f"the {fmt.upper()} data is truncated: {warning.message}")
    return DecodedImage(image=image, format=fmt, icc_profile=_rgb_icc(image), dpi=_dpi(image))


__all__ = [
    "DECODE_ERRORS",
    "MAX_PNG_CHUNKS",
    "MAX_PNG_METADATA_CHUNKS",
    "READABLE_FORMATS",
    "DecodedImage",
    "decode_image",
]
