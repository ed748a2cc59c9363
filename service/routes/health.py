"""Probes and scrapes: GET /healthz (alive), GET /readyz (ready for traffic), GET /metrics (Prometheus).

Two routers: the probes are always open; /metrics (``metrics_router``) needs an API
key when ``SCGAN_METRICS_AUTH`` is on (see :func:`service.app.create_app`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.deps import MetricsDep, OptionalStateDep
from service.schemas import Health, Readiness

#: ``app.state.worker_readiness`` with several workers: (this worker's own readiness) -> (workers ready, all
#: workers), counted from the state each worker published, this one's just now (service.workers.SharedReadiness).
WorkerReadiness = Callable[[bool], tuple[int, int]]

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
async def readyz(request: Request, state: OptionalStateDep) -> JSONResponse:
    if state is None:
        body = Readiness(ready=False, model_loaded=False, warmed_up=False, worker_running=False, draining=False)
    else:
        body = Readiness(ready=state.ready, **state.readiness_detail())
    # Several worker processes (service.workers): ready only when every one of them is, since any may get the request.
    workers_readiness: WorkerReadiness | None = getattr(request.app.state, "worker_readiness", None)
    if workers_readiness is not None:
        ready_workers, workers = workers_readiness(body.ready)
        body = body.model_copy(
            update={"ready": ready_workers == workers, "workers_ready": ready_workers, "workers": workers}
        )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if body.ready else 503)


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)


__all__ = ["WorkerReadiness", "metrics_router", "router"]
