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
from fastapi import FastAPI

from service.http_errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.routes import colorize_router, health_router, model_info_router
from service.runtime import ModelRuntime, PredictFn
from service.settings import Settings
from service.state import ServiceState
from service.version import __version__
from service.web import router as web_router

_log = logging.getLogger(__name__)

#: Room for multipart framing and option fields on top of the file itself.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _lifespan(
    settings: Settings, metrics: ServiceMetrics, predict: PredictFn | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)  # process-wide, see Settings.torch_threads
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
    app = FastAPI(
        title="scgan-colorize",
        version=__version__,
        summary="Saliency-guided GAN colorization with dynamic batching.",
        description='Errors are JSON: `{"error": {"code", "message", "request_id"}}`. Every answer carries '
        "`X-Request-ID` (a sane client-supplied one is echoed).",
        lifespan=_lifespan(settings, metrics, predict),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    install_error_handlers(app, retry_after_s=settings.retry_after_s)
    routers = (colorize_router, model_info_router, health_router, web_router)
    for router in routers:
        app.include_router(router)
    known_paths = frozenset(getattr(route, "path", "") for router in routers for route in router.routes)
    # Added last = outermost: the request context sees (and stamps) even the body limit's early 413s.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_upload_bytes + _MULTIPART_OVERHEAD_BYTES,
        retry_after_s=settings.retry_after_s,
    )
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, known_paths=known_paths, retry_after_s=settings.retry_after_s
    )
    return app


__all__ = ["create_app"]
