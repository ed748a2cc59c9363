"""Fixtures for the page tests: tiny checkpoints, the real service on a loopback port, headless Chromium.

Chromium comes from Debian (`make test` installs it where apt-get and root are at hand);
Playwright only drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_test_helpers import CHROMIUM_ARGS, Server, chromium_path


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
