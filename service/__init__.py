"""The colorization REST service: FastAPI in front of a resident, dynamically batched generator.

``create_app(settings)`` builds the app; ``scgan-serve`` / ``python -m service`` run it.
Depends on :mod:`model`, never the other way round.
"""

from service.app import create_app
from service.settings import Settings
from service.version import __version__

__all__ = ["Settings", "__version__", "create_app"]
