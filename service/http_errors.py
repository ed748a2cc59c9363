"""The one place where errors become HTTP answers.

Every error body is ``{"error": {"code", "message", "request_id"}}``; the code
is a stable, machine-readable string, the message is for humans. Domain errors
(:mod:`service.exceptions`, :mod:`service.batcher`) map to status codes in
:data:`_STATUS`; anything unexpected is a 500 whose details stay in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from service.batcher import BatcherClosed, BatchFailed, DeadlineExceeded, QueueFull
from service.exceptions import (
    ClientDisconnected,
    CorruptImage,
    EmptyUpload,
    HeadersTooLarge,
    ImageTooLarge,
    InferenceFailed,
    InvalidHints,
    InvalidOptions,
    NotReady,
    PixelBudgetFull,
    SaliencyUnavailable,
    ShuttingDown,
    Unauthorized,
    UnsupportedImage,
    UploadTimedOut,
    UploadTooLarge,
)
from service.logging_setup import request_id_var

_log = logging.getLogger(__name__)

#: Status 499 (nginx's "client closed request"): logged and counted, never actually received by anyone.
CLIENT_CLOSED_REQUEST = 499

#: exception class -> (status, code). Looked up along the MRO, so subclasses inherit their parent's mapping.
_STATUS: dict[type[Exception], tuple[int, str]] = {
    EmptyUpload: (400, "empty_upload"),
    Unauthorized: (401, "unauthorized"),
    CorruptImage: (400, "corrupt_image"),
    UploadTimedOut: (408, "upload_timeout"),
    UploadTooLarge: (413, "upload_too_large"),
    ImageTooLarge: (413, "image_too_large"),
    UnsupportedImage: (415, "unsupported_media_type"),
    HeadersTooLarge: (431, "headers_too_large"),
    InvalidOptions: (422, "invalid_options"),
    InvalidHints: (422, "invalid_hints"),
    SaliencyUnavailable: (501, "saliency_unavailable"),
    ClientDisconnected: (CLIENT_CLOSED_REQUEST, "client_disconnected"),
    QueueFull: (503, "queue_full"),
    PixelBudgetFull: (503, "pixel_budget_full"),
    NotReady: (503, "not_ready"),
    ShuttingDown: (503, "shutting_down"),
    BatcherClosed: (503, "unavailable"),
    DeadlineExceeded: (504, "timeout"),
    InferenceFailed: (500, "inference_failed"),
    BatchFailed: (500, "inference_failed"),
}

#: Answers a client may simply retry later get a Retry-After header.
_RETRYABLE = {503}
#: RFC 6750: a 401 says which scheme it wants.
_CHALLENGE = 'Bearer realm="scgan-colorize"'


def status_for(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, error code) of an exception; (500, "internal_error") for anything unexpected."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500, "internal_error"


def error_body(status: int, code: str, message: str, request_id: str | None = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "request_id": request_id or request_id_var.get()}}


def record_error(scope: Scope, code: str) -> None:
    """Note the error code on the request, for the request middleware's ``scgan_errors_total``."""
    scope.setdefault("state", {})["error_code"] = code


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str | None = None,
    retry_after_s: int | None = None,
    scope: Scope | None = None,
) -> JSONResponse:
    """The JSON error answer; 503s carry Retry-After, 401s ``WWW-Authenticate: Bearer``."""
    if scope is not None:
        record_error(scope, code)
    headers = {}
    if status in _RETRYABLE and retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if status == 401:
        headers["WWW-Authenticate"] = _CHALLENGE
    return JSONResponse(error_body(status, code, message, request_id), status_code=status, headers=headers)


def exception_response(
    exc: BaseException, *, retry_after_s: int | None = None, scope: Scope | None = None
) -> JSONResponse:
    """Map any exception to its answer.

    Server-side failures (5xx other than 503) get a fixed message and their
    details go to the log under the request id: exception texts can hold paths,
    shapes or device names that are nobody else's business.
    """
    status, code = status_for(exc)
    if code == "internal_error":
        _log.error("unhandled error", exc_info=exc)
        message = "internal server error; quote the request id when reporting it"
    elif status >= 500 and status != 503:
        _log.error("%s: %s", code, exc)
        message = f"{HTTPStatus(status).phrase} ({code.replace('_', ' ')}); quote the request id when reporting it"
        if status == 504:
            message = str(exc) or message
    else:
        message = str(exc) or HTTPStatus(status).phrase
    return error_response(status, code, message, retry_after_s=retry_after_s, scope=scope)


def validation_message(errors: Sequence[Any]) -> str:
    """A one-line summary of pydantic validation errors: 'quality: Input should be less than or equal to 100'."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, *, retry_after_s: int) -> None:
    """Register the mapping on ``app``: domain errors, validation errors (422) and routing errors (404, 405...)."""

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        return exception_response(exc, retry_after_s=retry_after_s, scope=request.scope)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return error_response(422, "invalid_options", validation_message(errors), scope=request.scope)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        detail = getattr(exc, "detail", None)
        response = error_response(status, code, str(detail or phrase), scope=request.scope)
        for name, value in (getattr(exc, "headers", None) or {}).items():
            response.headers[name] = value
        return response

    for cls in _STATUS:
        app.add_exception_handler(cls, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "error_body",
    "error_response",
    "exception_response",
    "install_error_handlers",
    "record_error",
    "status_for",
    "validation_message",
]
