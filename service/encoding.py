"""A result image -> bytes in the format the client asked for.

PNG and WebP keep alpha. JPEG has no alpha channel: a transparent input is
flattened onto white (what viewers show for transparent areas), so the answer
looks as the input did rather than revealing whatever colour hid under alpha 0.
An RGB ICC profile of the input is carried over, so colour-managed viewers
interpret the (unchanged) luma as the input's; EXIF is not, because orientation
has already been applied to the pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from enum import Enum

from PIL import Image

try:  # a pinned dependency (benchmarks/results/encode.md); an install without it writes PNG with Pillow
    from fpng import fpng_ext as _fpng
except ImportError:  # pragma: no cover - exercised only in such an install
    _fpng = None
try:  # likewise: JPEGs straight from YCbCr planes; without it Pillow writes them from a full-size YCbCr image
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover
    _simplejpeg = None

from model.pipeline import YCbCrPlanes


class OutputFormat(str, Enum):
    """Formats the service writes."""

    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"


#: Default quality for the lossy formats; PNG is lossless and ignores ``quality``.
DEFAULT_QUALITY = 90
#: Pillow's zlib level for the PNGs fpng cannot write (gray, or without fpng): several times faster than
#: its default 6 for photographs, for files somewhat larger.
_PNG_COMPRESS_LEVEL = 1
#: A PNG's signature and IHDR chunk: metadata chunks go right after them.
_PNG_HEAD = 8 + 4 + 4 + 13 + 4
#: A JPEG's SOI and JFIF APP0 segment (16 bytes, no thumbnail): the density is in it, the ICC profile follows it.
_JFIF_HEAD = 2 + 2 + 16
_ICC_MARKER = b"ICC_PROFILE\0"
#: Most profile bytes one APP2 segment carries (65535 less the length field, the name and the chunk numbers).
_ICC_CHUNK = 65535 - 2 - len(_ICC_MARKER) - 2


@dataclass(frozen=True)
class Encoded:
    """Encoded image bytes and their media type."""

    data: bytes
    media_type: str
    alpha_flattened: bool


def _flatten(image: Image.Image) -> Image.Image:
    """Composite an image with alpha onto white."""
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image.convert("RGB"), mask=image.getchannel("A"))
    return background


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _fast_png(image: Image.Image, icc_profile: bytes | None, dpi: tuple[float, float] | None) -> bytes | None:
    """An RGB(A) image as PNG by fpng (many times Pillow's speed, lossless), with the metadata Pillow would write.

    None when fpng is not installed or cannot write this image (other modes).
    """
    if _fpng is None or image.mode not in ("RGB", "RGBA"):
        return None
    data = bytes(_fpng.encode_image_to_memory(image.tobytes(), image.width, image.height, len(image.mode)))
    if data[12:16] != b"IHDR":
        return None
    chunks = b""
    if icc_profile:  # as Pillow names it; iCCP and pHYs must precede the image data
        chunks += _png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile))
    if dpi:
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", int(dpi[0] / 0.0254 + 0.5), int(dpi[1] / 0.0254 + 0.5), 1))
    return data[:_PNG_HEAD] + chunks + data[_PNG_HEAD:]


def encode_image(
    image: Image.Image,
    fmt: OutputFormat,
    *,
    quality: int | None = None,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
) -> Encoded:
    """Encode ``image`` (RGB, RGBA or L) as ``fmt``."""
    params: dict[str, object] = {}
    if icc_profile and image.mode != "L":
        params["icc_profile"] = icc_profile
    if dpi:
        params["dpi"] = dpi
    flattened = False
    if fmt is OutputFormat.JPEG:
        if "A" in image.getbands():
            image = _flatten(image)
            flattened = True
        params.update(quality=quality or DEFAULT_QUALITY)
        pil_format = "JPEG"
    elif fmt is OutputFormat.WEBP:
        q = quality or DEFAULT_QUALITY
        params.update(quality=q, lossless=q == 100, method=4)
        pil_format = "WEBP"
    else:
        fast = _fast_png(image, icc_profile if image.mode != "L" else None, dpi)
        if fast is not None:
            return Encoded(fast, fmt.media_type, False)
        params.update(compress_level=_PNG_COMPRESS_LEVEL)
        pil_format = "PNG"
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **params)
    return Encoded(buffer.getvalue(), fmt.media_type, flattened)


def _jpeg_metadata(data: bytes, icc_profile: bytes | None, dpi: tuple[float, float] | None) -> bytes | None:
    """``data`` (a JFIF JPEG) with the density and ICC profile Pillow would have written; None if not JFIF as expected."""
    if data[2:4] != b"\xff\xe0" or data[4:6] != b"\x00\x10" or data[6:11] != b"JFIF\0":
        return None
    head = bytearray(data[:_JFIF_HEAD])
    if dpi:
        head[13] = 1  # dots per inch
        head[14:18] = struct.pack(">HH", *(min(65535, max(1, round(v))) for v in dpi))
    segments = b""
    if icc_profile:
        chunks = [icc_profile[i : i + _ICC_CHUNK] for i in range(0, len(icc_profile), _ICC_CHUNK)]
        if len(chunks) > 255:
            return None
        for number, chunk in enumerate(chunks, 1):
            payload = _ICC_MARKER + bytes((number, len(chunks))) + chunk
            segments += b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload
    return bytes(head) + segments + data[_JFIF_HEAD:]


def encode_ycbcr_jpeg(
    planes: YCbCrPlanes,
    *,
    quality: int | None = None,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
) -> Encoded:
    """A 4:2:0 JPEG of ``planes``, written as they are: no RGB image, no colour conversion in the encoder.

    simplejpeg takes the half-resolution chroma as it is; Pillow (the fallback) needs it at full size.
    """
    if _simplejpeg is not None:
        data = _simplejpeg.encode_jpeg_yuv_planes(planes.y, planes.cb, planes.cr, quality=quality or DEFAULT_QUALITY)
        with_metadata = _jpeg_metadata(data, icc_profile, dpi)
        if with_metadata is not None:
            return Encoded(with_metadata, OutputFormat.JPEG.media_type, False)
    params: dict[str, object] = {"quality": quality or DEFAULT_QUALITY, "subsampling": "4:2:0"}
    if icc_profile:
        params["icc_profile"] = icc_profile
    if dpi:
        params["dpi"] = dpi
    buffer = io.BytesIO()
    planes.to_image().save(buffer, "JPEG", **params)
    return Encoded(buffer.getvalue(), OutputFormat.JPEG.media_type, False)


__all__ = ["DEFAULT_QUALITY", "Encoded", "OutputFormat", "encode_image", "encode_ycbcr_jpeg"]
