"""The browser page: ``GET /`` and its static files (``service/web/static``), no external resources."""

from service.web.router import router

__all__ = ["router"]
