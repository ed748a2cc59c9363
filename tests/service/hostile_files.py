"""Hostile image files built in memory, for the hostile-upload tests: truncated, lying headers, bombs, odd chunks."""

from __future__ import annotations

import struct
import zlib
from functools import cache

import numpy as np
from service_test_helpers import gray_image, image_bytes, rgb_image

SIGNATURES = {
    "PNG": b"\x89PNG\r\n\x1a\n",
    "JPEG": b"\xff\xd8\xff\xe0",
    "GIF": b"GIF89a",
    "WEBP": b"RIFF\x00\x10\x00\x00WEBP",
    "BMP": b"BM\x36\x10\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",  # file header + 40-byte info
    "TIFF": b"II*\x00",
}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, idat: bytes, *, bit_depth: int = 8, extra: bytes = b"") -> bytes:
    """A grayscale PNG with the given IHDR dimensions and IDAT payload (``extra`` chunks before IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return SIGNATURES["PNG"] + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zlib_of_zeros(length: int, block: int = 1 << 20) -> bytes:
    """A valid zlib stream of ``length`` zero bytes, built in milliseconds.

    After a full flush deflate forgets its history, so every further block of
    zeros compresses to the same bytes: compress two, repeat the second, and close
    the stream with an empty final block and the Adler-32 of n zeros ((n << 16) | 1).
    """
    full, rest = divmod(length, block)
    if full < 2:
        return zlib.compress(b"\0" * length, 9)
    compressor = zlib.compressobj(9)
    zeros = b"\0" * block
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(b"\0" * rest) + compressor.flush(zlib.Z_SYNC_FLUSH)
    final_empty_block = b"\x03\x00"
    return head + repeat * (full - 1) + tail + final_empty_block + struct.pack(">I", ((length % 65521) << 16) | 1)


@cache
def png_bomb(side: int) -> bytes:
    """A complete, valid 1-bit ``side`` x ``side`` PNG of zeros: ~110 KB that decode to ``side``^2 pixels."""
    row = 1 + (side + 7) // 8  # filter byte + packed bits
    return png(side, side, zlib_of_zeros(row * side), bit_depth=1)


def png_header_claiming(width: int, height: int) -> bytes:
    return png(width, height, zlib.compress(b"\0" * 64))


def gif_claiming(width: int, height: int) -> bytes:
    data = image_bytes(rgb_image(8, 8).convert("P"), "GIF")
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def jpeg_claiming(width: int, height: int) -> bytes:
    data = image_bytes(rgb_image(8, 8), "JPEG")
    sof = data.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height (2), width (2)
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def bmp_claiming(width: int, height: int) -> bytes:
    data = image_bytes(rgb_image(8, 8), "BMP")
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


def webp_claiming(width: int, height: int) -> bytes:
    data = image_bytes(rgb_image(8, 8), "WEBP", lossless=True)
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    (bits,) = struct.unpack("<I", data[21:25])
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)  # 14 bits each, minus one
    return data[:21] + struct.pack("<I", bits) + data[25:]


def tiff_claiming(width: int, height: int) -> bytes:
    data = bytearray(image_bytes(rgb_image(8, 8), "TIFF"))
    (ifd,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(entries):
        entry = ifd + 2 + 12 * k
        (tag,) = struct.unpack("<H", data[entry : entry + 2])
        if tag in (256, 257):  # ImageWidth, ImageLength: rewritten as LONG
            data[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
    return bytes(data)


def valid(fmt: str, width: int = 96, height: int = 64) -> bytes:
    image = rgb_image(width, height)
    return image_bytes(image.convert("P") if fmt == "GIF" else image, fmt)


def random_behind_signature(fmt: str, seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    if fmt == "GIF":  # a sane logical screen size, then noise: otherwise the noise is a (too large) size
        return SIGNATURES["GIF"] + struct.pack("<HH", 16, 16) + noise
    return SIGNATURES[fmt] + noise


def metadata_bomb(kind: bytes) -> bytes:
    """A valid PNG with a zTXt or iCCP chunk that inflates to 64 MiB."""
    inflated = zlib_of_zeros(64 * 1024 * 1024)
    payload = b"Comment\0\0" + inflated if kind == b"zTXt" else b"icc\0\0" + inflated
    base = image_bytes(gray_image(32, 32), "PNG")
    return base[:33] + png_chunk(kind, payload) + base[33:]  # after the signature and IHDR


def png_with_chunks(chunks: bytes) -> bytes:
    """A valid 32 x 32 PNG with ``chunks`` inserted after its IHDR."""
    base = image_bytes(gray_image(32, 32), "PNG")
    return base[:33] + chunks + base[33:]


def png_split_idat(count: int) -> bytes:
    """A valid PNG whose image data is split across ``count`` IDAT chunks (legal, and what some encoders do)."""
    image = gray_image(96, 64)
    raw = b"".join(b"\0" + image.tobytes()[y * 96 : (y + 1) * 96] for y in range(64))
    stream = zlib.compress(raw)
    step = -(-len(stream) // count)
    idat = b"".join(png_chunk(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step))
    return png(96, 64, b"", extra=b"")[:33] + idat + png_chunk(b"IEND", b"")


def png_chunk_kinds(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, in order, up to and without IEND."""
    kinds, offset = [], 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"IEND":
            break
        kinds.append(kind)
        offset += 12 + length
    return kinds
