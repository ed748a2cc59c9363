"""The application: :func:`create_app` assembles it, its lifespan loads, warms and drains the model.

Start-up: load the checkpoint once (a broken checkpoint stops start-up with
its error), build the batcher and the CPU pool, then warm up in the background
-- /healthz answers at once, /readyz only after warm-up, so orchestrators see
"alive but not ready" rather than a hung process. Shutdown: see
:meth:`service.state.ServiceState.shutdown`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import torch
from fastapi import APIRouter, Depends, FastAPI
from fastapi.params import Depends as DependsParam
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route

from model.wording import count
from service.auth import ApiKeys, require_api_key
from service.http_errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, DocsPolicyMiddleware, RequestContextMiddleware
from service.redoc_bundle import serve_redoc_bundle
from service.routes import colorize_router, health_router, metrics_router, model_info_router
from service.runtime import ModelRuntime, PredictFn
from service.settings import Settings
from service.state import ServiceState
from service.version import __version__
from service.web import router as web_router

_log = logging.getLogger(__name__)

#: Room for multipart framing and option fields on top of the file itself.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024

#: Response headers a browser app on another origin may read (SCGAN_CORS_ORIGINS): the timings, the request id,
#: Retry-After and the file name. tests/service/test_service_access.py checks that every X-* header is here.
CORS_EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Batch-Size",
    "X-Render-Size",
    "X-Preprocess-Ms",
    "X-Queue-Wait-Ms",
    "X-Inference-Ms",
    "X-Postprocess-Ms",
    "X-Total-Ms",
    "X-Alpha-Flattened",
    "Server-Timing",
    "Retry-After",
    "Content-Disposition",
)
#: Where the Swagger UI and ReDoc bundles (from the fastapi-offline package) are served; nothing comes from a CDN.
DOCS_ASSETS_URL = "/docs-assets"
SWAGGER_UI_URL = "/docs"
REDOC_URL = "/redoc"


def _lifespan(
    settings: Settings, metrics: ServiceMetrics, predict: PredictFn | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)  # process-wide, see Settings.torch_threads
        if settings.api_keys_file is None:
            _log.warning("no SCGAN_API_KEYS_FILE: the API is open to anyone who can reach this port")
        else:
            protected = "/colorize, /saliency, /v1/model" + (", /metrics" if settings.metrics_auth else "")
            _log.info(
                "API keys required for %s (%s from %s)",
                protected,
                count(len(app.state.api_keys), "key"),
                settings.api_keys_file,
            )
        try:
            runtime = await asyncio.to_thread(ModelRuntime.load, settings, predict=predict)
        except Exception as exc:
            _log.critical("start-up failed, cannot load the model: %s", exc)
            raise
        metrics.set_model(
            checkpoint=runtime.identity.name,
            sha256=runtime.identity.sha256,
            task=runtime.colorizer.task.value,
            device=str(runtime.colorizer.device),
            precision=runtime.colorizer.precision,
        )
        state = ServiceState(settings, metrics, runtime)
        metrics.bind_queue(lambda: state.batcher.depth, state.batcher.capacity)
        metrics.bind_ready(lambda: state.ready)
        metrics.bind_pixels(lambda: state.pixels.in_use, state.pixels.limit)
        app.state.service = state
        warm_up = asyncio.create_task(state.warm_up_and_start(), name="scgan-warm-up")
        try:
            yield
        finally:
            await state.shutdown(settings.shutdown_timeout_s)
            if not warm_up.done():  # a warm-up forward cannot be interrupted; let it end, within the same deadline
                await asyncio.wait({warm_up}, timeout=state.drain_remaining_s())
            app.state.service = None

    return lifespan


def create_app(settings: Settings | None = None, *, predict: PredictFn | None = None) -> FastAPI:
    """Build the service. ``settings`` default to the ``SCGAN_*`` environment.

    ``predict`` replaces the generator forward (same contract as
    :meth:`model.Colorizer.predict`): a test seam for slow or failing batches;
    decoding, batching and post-processing stay real.
    """
    settings = settings or Settings()
    metrics = ServiceMetrics()
    # FastAPIOffline: FastAPI with /docs (Swagger UI) and /redoc served from the package's own copies of the
    # JS and CSS instead of a CDN, so the documentation works on a network without internet.
    app = FastAPIOffline(
        docs_url=SWAGGER_UI_URL,
        redoc_url=REDOC_URL,
        static_url=DOCS_ASSETS_URL,
        favicon_url="/web/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        title="scgan-colorize",
        version=__version__,
        summary="Saliency-guided GAN colorization with dynamic batching.",
        description='Errors are JSON: `{"error": {"code", "message", "request_id"}}`. Every answer carries '
        "`X-Request-ID` (a sane client-supplied one is echoed).",
        lifespan=_lifespan(settings, metrics, predict),
    )
    serve_redoc_bundle(app, DOCS_ASSETS_URL)  # the package's ReDoc bundle, less its logo from cdn.redoc.ly
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    app.state.api_keys = ApiKeys.from_file(settings.api_keys_file) if settings.api_keys_file else None
    install_error_handlers(app, retry_after_s=settings.retry_after_s)
    # With API keys, the image routes and /v1/model (and /metrics with SCGAN_METRICS_AUTH) check the bearer key
    # before anything else; the probes, the page and the documentation stay open. The OpenAPI schema then
    # declares the bearer scheme (Swagger UI's "Authorize" button).
    keyed = [Depends(require_api_key)] if app.state.api_keys is not None else []
    routers: tuple[tuple[APIRouter, list[DependsParam]], ...] = (
        (colorize_router, keyed),
        (model_info_router, keyed),
        (health_router, []),
        (metrics_router, keyed if settings.metrics_auth else []),
        (web_router, []),
    )
    for router, dependencies in routers:
        app.include_router(router, dependencies=dependencies)
    # Metric labels: our routers' paths, and those FastAPI adds itself (/openapi.json, /docs, /redoc) and mounts.
    own = [route for router, _ in routers for route in router.routes] + list(app.routes)
    known_paths = frozenset(route.path for route in own if isinstance(route, Route))
    mounts = frozenset(route.path for route in app.routes if isinstance(route, Mount))
    app.add_middleware(DocsPolicyMiddleware, paths=frozenset({SWAGGER_UI_URL, REDOC_URL}))
    # Added last = outermost: the request context sees (and stamps) even the body limit's early 413s.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_upload_bytes + _MULTIPART_OVERHEAD_BYTES,
        retry_after_s=settings.retry_after_s,
    )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        known_paths=known_paths,
        mounts=mounts,
        retry_after_s=settings.retry_after_s,
    )
    if settings.cors_origins:
        # Outermost, so every answer (also the 413s, 431s and 500s of the middleware above) carries the CORS
        # headers a browser needs to read it. Preflights are answered here, before any key check: a browser
        # never sends credentials with them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=600,
        )
    return app


__all__ = ["CORS_EXPOSED_HEADERS", "DOCS_ASSETS_URL", "create_app"]
