"""Request dependencies, as ``Annotated`` aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.exceptions import NotReady
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.state import ServiceState


def optional_state(request: Request) -> ServiceState | None:
    """The running service, or None while the lifespan has not built it (or has torn it down)."""
    return getattr(request.app.state, "service", None)


def require_state(request: Request) -> ServiceState:
    """The running service; 503 while the model is still loading."""
    state = optional_state(request)
    if state is None:
        raise NotReady("the model is still loading")
    return state


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


StateDep = Annotated[ServiceState, Depends(require_state)]
OptionalStateDep = Annotated[ServiceState | None, Depends(optional_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]

__all__ = ["MetricsDep", "OptionalStateDep", "SettingsDep", "StateDep", "optional_state", "require_state"]
