"""HTTP routes, one module per resource; each stays thin and delegates to the service modules."""

from service.routes.colorize import router as colorize_router
from service.routes.health import metrics_router
from service.routes.health import router as health_router
from service.routes.model_info import router as model_info_router

__all__ = ["colorize_router", "health_router", "metrics_router", "model_info_router"]
