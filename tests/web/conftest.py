"""Fixtures for the page tests: tiny checkpoints, the real service on a loopback port, headless Chromium.

Chromium comes from Debian (`make test` installs it where apt-get and root are at hand);
Playwright only drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_test_helpers import CHROMIUM_ARGS, TIMEOUT_MS, Server, chromium_path


def _serve(checkpoint: Path) -> Iterator[Server]:
    server = Server(checkpoint)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "Chromium is not installed (`make test` installs it as root where apt-get exists; "
            "else `apt-get install chromium`)"
        )
    return path


@pytest.fixture(scope="session")
def server(chromium: str, tiny_checkpoint: Path) -> Iterator[Server]:
    """The service with a saliency-capable tiny checkpoint (WEB_TEST_CHECKPOINT: a trained one, for screenshots)."""
    trained = os.environ.get("WEB_TEST_CHECKPOINT")
    yield from _serve(Path(trained) if trained else tiny_checkpoint)


@pytest.fixture(scope="session")
def server_no_saliency(chromium: str, tiny_checkpoint_no_saliency: Path) -> Iterator[Server]:
    yield from _serve(tiny_checkpoint_no_saliency)


@pytest.fixture(scope="session")
def server_hints(chromium: str, tiny_hint_checkpoint: Path) -> Iterator[Server]:
    """The service with the hint follower: hints paint their colour around them (tests/tiny_models.py)."""
    yield from _serve(tiny_hint_checkpoint)


@pytest.fixture()
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; every request it makes is recorded (the page must stay on its own origin)."""
    viewport = getattr(request, "param", {"width": 1200, "height": 900})
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.requests.append(r.url))  # type: ignore[attr-defined]
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


# Module scope: sync Playwright runs an event loop on this thread while it is open, which
# other tests' async code (anyio) would trip over.
@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
