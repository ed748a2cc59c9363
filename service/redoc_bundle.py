"""ReDoc's JavaScript bundle without its one third-party request, served in place of fastapi-offline's copy.

The bundle (fastapi-offline's ``redoc.standalone.js``) draws the sidebar's
"API docs by Redocly" footer with an image from cdn.redoc.ly, and no ReDoc
option hides it. The copy served here has that address replaced by an empty
inline SVG, so /redoc asks no other host for anything (a network without
internet, and no third party learning who reads the docs).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: The footer logo's address inside the bundle.
REDOC_LOGO_URL = "https://cdn.redoc.ly/redoc/logo-mini.svg"
#: What it becomes: an empty image (the footer's link text stays); data: URLs are in the docs' img-src policy.
EMPTY_LOGO_URL = "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'/%3E"
BUNDLE_NAME = "redoc.standalone.js"


@cache
def redoc_bundle() -> bytes:
    """fastapi-offline's ReDoc bundle with :data:`REDOC_LOGO_URL` replaced by :data:`EMPTY_LOGO_URL`."""
    source = files("fastapi_offline").joinpath("static", BUNDLE_NAME).read_text(encoding="utf-8")
    return source.replace(REDOC_LOGO_URL, EMPTY_LOGO_URL).encode()


async def _serve_bundle(request: Request) -> Response:
    return Response(
        redoc_bundle(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def serve_redoc_bundle(app: FastAPI, assets_url: str) -> None:
    """Answer ``{assets_url}/redoc.standalone.js`` with :func:`redoc_bundle`.

    The route goes ahead of fastapi-offline's static mount at ``assets_url``
    (which the /redoc page loads the bundle from), so it shadows the
    package's file there and every other asset still comes from the mount.
    """
    app.router.routes.insert(0, Route(f"{assets_url}/{BUNDLE_NAME}", _serve_bundle, methods=["GET", "HEAD"]))


__all__ = ["EMPTY_LOGO_URL", "REDOC_LOGO_URL", "redoc_bundle", "serve_redoc_bundle"]
