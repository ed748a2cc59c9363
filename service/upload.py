"""Getting the image out of a request: a multipart ``file`` field or a raw ``image/*`` body, within limits.

Multipart files are spooled by Starlette (memory up to 1 MiB, then a temporary
file), raw bodies are read chunk by chunk with a running count, so an upload
over the limit is refused as soon as it crosses it. The image is never decoded
here; that happens on the CPU pool.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import IO

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from service.exceptions import EmptyUpload, UnsupportedImage, UploadTooLarge

#: Form fields other than the file are short option values, or the colour hints.
_MAX_FIELD_BYTES = 16 * 1024
#: Room per hint in the ``hints`` field: one is about 45 bytes of JSON; the rest is for whitespace.
_BYTES_PER_HINT = 128
_MAX_FIELDS = 16
_RAW_TYPES = ("application/octet-stream", "")


@dataclass
class Upload:
    """An uploaded image's bytes (in memory or spooled to disk) and the option fields sent with it."""

    source: bytes | IO[bytes]
    size: int
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)
    _form: FormData | None = None

    async def close(self) -> None:
        """Release the spooled file, if any."""
        if self._form is not None:
            await self._form.close()


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def max_field_bytes(max_hints: int) -> int:
    """The largest form field accepted: room for ``max_hints`` hints, and never less than an option needs.

    A longer field is a 400 from the multipart parser before anything is read; hints that fit but are
    more than ``max_hints`` are a 422 that says so (:func:`model.hints.parse_hints`).
    """
    return max(_MAX_FIELD_BYTES, _BYTES_PER_HINT * max_hints)


async def _read_multipart(request: Request, max_bytes: int, max_hints: int) -> Upload:
    form = await request.form(max_files=1, max_fields=_MAX_FIELDS, max_part_size=max_field_bytes(max_hints))
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise EmptyUpload("no image: send it as the multipart field 'file'")
        size = part.size if part.size is not None else 0
        if size > max_bytes:
            raise UploadTooLarge(f"the file is {size} bytes; the limit is {max_bytes}")
        if size == 0:
            raise EmptyUpload("the uploaded file is empty")
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        return Upload(part.file, size, (part.content_type or "").lower(), fields, form)
    except BaseException:
        await form.close()
        raise


async def _read_raw(request: Request, max_bytes: int) -> Upload:
    media_type = _media_type(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise UploadTooLarge(f"the request body exceeds the limit of {max_bytes} bytes")
    if not body:
        raise EmptyUpload("empty request body: send an image as multipart field 'file' or as an image/* body")
    if media_type == "application/x-www-form-urlencoded":
        raise EmptyUpload("no image: a url-encoded form cannot carry a file; send multipart field 'file'")
    if not (media_type.startswith("image/") or media_type in _RAW_TYPES):
        raise UnsupportedImage(
            f"content type {media_type!r} is not an image: send multipart/form-data with a 'file' field "
            "or the raw image with an image/* content type"
        )
    return Upload(bytes(body), len(body), media_type)


async def read_upload(request: Request, *, max_bytes: int, max_hints: int) -> Upload:
    """The uploaded image, from a multipart ``file`` field or the raw body; form fields have room for ``max_hints``."""
    if _media_type(request) == "multipart/form-data":
        return await _read_multipart(request, max_bytes, max_hints)
    return await _read_raw(request, max_bytes)


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client disconnects. Call only after the body was read (it consumes ASGI messages)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0)


__all__ = ["Upload", "max_field_bytes", "read_upload", "wait_for_disconnect"]
