"""GET / (the page) and GET /web/{name} (its CSS, JS and example photos).

The files are listed once at import, so only what ships in ``static/`` can be
served (no path is ever joined from the request). The Content-Security-Policy
keeps the page to its own origin: it must work on a network with no internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Same origin only; blob: for the uploaded and returned images, which the page holds as object URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}

#: name relative to static/ (posix) -> file; everything the page may load.
_FILES: dict[str, Path] = {
    path.relative_to(STATIC_DIR).as_posix(): path
    for path in sorted(STATIC_DIR.rglob("*"))
    if path.is_file() and path.suffix in _MEDIA_TYPES
}

router = APIRouter(tags=["web"])


def _file(name: str, *, cache: str) -> FileResponse:
    path = _FILES.get(name)
    if path is None:
        raise StarletteHTTPException(404, f"no such file: {name}")
    headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=headers)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return _file("index.html", cache="no-cache")


@router.get("/web/{name:path}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    return _file(name, cache="public, max-age=3600")


__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "router"]
