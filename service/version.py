"""The service's version: the installed distribution's, else the model package's."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import model


def _version() -> str:
    try:
        return version("scgan-colorize")
    except PackageNotFoundError:
        return model.__version__


__version__ = _version()

__all__ = ["__version__"]
