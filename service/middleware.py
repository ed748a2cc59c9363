"""Pure ASGI middleware: request context (id, timing, metrics, access log) and the upload size limit.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that request bodies stream
through untouched (no buffering) and the body limit can count bytes as they
arrive.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.exceptions import HeadersTooLarge, UploadTooLarge
from service.http_errors import exception_response
from service.logging_setup import request_id_var
from service.metrics import ServiceMetrics

_log = logging.getLogger("service.access")

#: Client-supplied request ids are echoed only when short and made of safe characters.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
#: Probes and scrapes are logged at DEBUG, so the access log shows traffic, not health checks.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Most bytes of request line and headers a request may have; larger ones get 431. ``python -m service``
#: also caps uvicorn's header buffering at this (h11), so a client cannot make it hold more in memory.
MAX_HEADER_BYTES = 32 * 1024


def header_bytes(scope: Scope) -> int:
    """Size of the request's target and headers as they came on the wire (give or take separators)."""
    target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string", b""))
    return target + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


def request_id_from(headers: Headers) -> str:
    """The client's X-Request-ID when sane, else a fresh one."""
    supplied = headers.get("x-request-id", "")
    return supplied if _SANE_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex


def route_label(scope: Scope, known_paths: frozenset[str], mounts: frozenset[str] = frozenset()) -> str:
    """The matched route's template (bounded label cardinality); 'unmatched' for 404s.

    Routes that are not FastAPI's (``/openapi.json``) and requests refused before routing (an oversized
    body) have no route in their scope; their path is used when it is one of the app's own. A file under a
    mount (the documentation's assets) is labelled ``<mount>/{path}``.
    """
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    raw = scope.get("path", "")
    if raw in known_paths:
        return str(raw)
    for mount in mounts:
        if raw.startswith(f"{mount}/"):
            return f"{mount}/{{path}}"
    return "unmatched"


class RequestContextMiddleware:
    """Assigns the request id, times the request, records metrics, writes the access log, catches the unexpected."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServiceMetrics,
        known_paths: frozenset[str],
        mounts: frozenset[str] = frozenset(),
        retry_after_s: int,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths
        self.mounts = mounts
        self.retry_after_s = retry_after_s
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        request_id = request_id_from(Headers(scope=scope))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started_at"] = started
        token = request_id_var.set(request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if header_bytes(scope) > self.max_header_bytes:
                raise HeadersTooLarge(f"the request line and headers exceed the limit of {self.max_header_bytes} bytes")
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - anything unmapped: a JSON 500, never a bare traceback
            if response_started:
                _log.error("error after the response started", exc_info=exc)
            else:
                response = exception_response(exc, retry_after_s=self.retry_after_s, scope=scope)
                await response(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.monotonic() - started
            route = route_label(scope, self.known_paths, self.mounts)
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            if "error_code" in state:
                self.metrics.errors.labels(state["error_code"]).inc()
            self.metrics.request_duration.labels(route, method).observe(elapsed)
            _log.log(
                logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                "%s %s %d %.1f ms",
                method,
                scope.get("path", ""),
                status,
                elapsed * 1e3,
                extra={"route": route, "status": status, "duration_ms": round(elapsed * 1e3, 2)},
            )
            request_id_var.reset(token)


#: The documentation pages (Swagger UI, ReDoc): everything from this origin. Their HTML has inline scripts and
#: styles, and ReDoc runs a web worker from a blob: URL. Should a bundle still ask another host for anything (the
#: ReDoc we serve no longer fetches its logo from cdn.redoc.ly, see service.redoc_bundle), it is refused here.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class DocsPolicyMiddleware:
    """Adds :data:`DOCS_CONTENT_SECURITY_POLICY` to the answers of the documentation pages (``paths``)."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_with_policy)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_body_bytes``: by Content-Length up front, else by counting while they stream in.

    Nothing is buffered here; the count is checked as each chunk passes, so an
    endless chunked upload costs at most ``max_body_bytes`` before it is refused.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, retry_after_s: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            error = UploadTooLarge(f"the request body is {declared} bytes; the limit is {self.max_body_bytes}")
            await exception_response(error, retry_after_s=self.retry_after_s, scope=scope)(scope, receive, send)
            return
        received = 0
        limit = self.max_body_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(f"the request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


__all__ = [
    "DOCS_CONTENT_SECURITY_POLICY",
    "MAX_HEADER_BYTES",
    "BodyLimitMiddleware",
    "DocsPolicyMiddleware",
    "RequestContextMiddleware",
    "header_bytes",
    "request_id_from",
    "route_label",
]
