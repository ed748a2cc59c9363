"""Probes and scrapes: GET /healthz (alive), GET /readyz (ready for traffic), GET /metrics (Prometheus).

Two routers: the probes are always open; /metrics (``metrics_router``) needs an API
key when ``SCGAN_METRICS_AUTH`` is on (see :func:`service.app.create_app`).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.deps import MetricsDep, OptionalStateDep
from service.schemas import Health, Readiness

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process and its event loop answer")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: model loaded and warmed up, inference worker running, not draining",
    responses={503: {"model": Readiness, "description": "Not ready (loading, warming up, worker stopped, draining)."}},
)
async def readyz(state: OptionalStateDep) -> JSONResponse:
    if state is None:
        body = Readiness(ready=False, model_loaded=False, warmed_up=False, worker_running=False, draining=False)
    else:
        body = Readiness(ready=state.ready, **state.readiness_detail())
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)


__all__ = ["metrics_router", "router"]
