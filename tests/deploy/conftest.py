"""Fixtures for the deployment checks: facts read from the service itself (routes, settings, metrics)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
def route_table() -> set[tuple[str, str]]:
    """(METHOD, path) of every route of the real app, from its OpenAPI schema (built, never started)."""
    from service import Settings, create_app

    app = create_app(Settings(warmup=False))
    routes = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    assert ("GET", "/healthz") in routes, routes
    return routes


@pytest.fixture(scope="session")
def shutdown_default() -> float:
    """The service's default drain deadline (SCGAN_SHUTDOWN_TIMEOUT_S), read from its settings."""
    from service.settings import Settings

    return float(Settings.model_fields["shutdown_timeout_s"].default)


@pytest.fixture(scope="session")
def exported_samples() -> set[str]:
    """Every sample name the service's /metrics can expose (counters' _total, histograms' _bucket...)."""
    from service.metrics import ServiceMetrics

    names: set[str] = set()
    for family in ServiceMetrics().registry.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
            "summary": ("", "_sum", "_count", "_created"),
            "info": ("_info",),
        }
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


@pytest.fixture(scope="session")
def settings_env_names() -> dict[str, str]:
    """SCGAN_* variable -> Settings field name."""
    from service.settings import Settings

    return {f"SCGAN_{name.upper()}": name for name in Settings.model_fields}


@pytest.fixture()
def settings_from_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], Any]:
    """Build ``Settings()`` from exactly these SCGAN_* variables, as the container would."""
    from service.settings import Settings

    def build(values: dict[str, str]) -> Any:
        for key in list(os.environ):
            if key.startswith("SCGAN_"):
                monkeypatch.delenv(key)
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        return Settings()

    return build
