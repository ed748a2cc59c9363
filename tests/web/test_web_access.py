"""In Chromium: the API docs with no internet, the page's API key prompt, and a browser app on another origin."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from web_test_helpers import TIMEOUT_MS, Server

API_KEY = "web-test-key-3c9e7a"


def _gray_png(path: Path, width: int = 96, height: int = 64) -> Path:
    yy, xx = np.mgrid[0:height, 0:width]
    Image.fromarray(((xx * 2 + yy) % 256).astype(np.uint8), "L").save(path)
    return path


class _AppPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another app</title><p>app</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _app_server() -> ThreadingHTTPServer:
    """A page of another app, served from another loopback port (a page a Playwright route made up would not be
    on the loopback network, and Chromium's local network checks would then refuse its calls to the service)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AppPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def app_origin() -> Iterator[str]:
    """The origin of a browser app that SCGAN_CORS_ORIGINS lets in."""
    server = _app_server()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def keyed_server(
    chromium: str, app_origin: str, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """API keys on (the file holds only the key's SHA-256), and CORS for ``app_origin``."""
    folder = tmp_path_factory.mktemp("web-keyed")
    keys = folder / "api-keys"
    keys.write_text(f"sha256:{hashlib.sha256(API_KEY.encode()).hexdigest()}\n")
    server = Server(
        tiny_checkpoint,
        SCGAN_API_KEYS_FILE=str(keys),
        SCGAN_CORS_ORIGINS=app_origin,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture()
def offline_page(browser: Any) -> Iterator[Any]:
    """A page on which every request to a host other than 127.0.0.1 is blocked (an air-gapped cluster)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    blocked: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.blocked = blocked  # type: ignore[attr-defined]
    page.requests = []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.requests.append(r))  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def test_swagger_ui_works_offline_and_try_it_out_colorizes(server: Server, offline_page: Any, tmp_path: Path) -> None:
    page = offline_page
    page.goto(server.base_url + "/docs")
    page.wait_for_selector(".opblock")
    paths = set(page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)"))
    assert {"/colorize", "/saliency", "/v1/model", "/healthz", "/readyz", "/metrics"} <= paths

    operation = page.locator(".opblock-post", has=page.locator('[data-path="/colorize"]'))
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator('input[type="file"]').set_input_files(str(_gray_png(tmp_path / "photo.png")))
    operation.locator(".execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200", operation.locator(".live-responses-table").inner_text()
    assert "x-total-ms" in operation.locator(".live-responses-table").inner_text().lower()

    assert page.blocked == [], page.blocked  # nothing was even attempted elsewhere
    hosts = {urlsplit(r.url).netloc for r in page.requests if not r.url.startswith(("blob:", "data:"))}
    assert hosts == {urlsplit(server.base_url).netloc}, hosts


def test_redoc_renders_offline(server: Server, offline_page: Any) -> None:
    page = offline_page
    page.goto(server.base_url + "/redoc")
    page.locator("h2", has_text="Colorize an image").wait_for()
    assert page.locator("h2", has_text="Predicted saliency map").is_visible()
    page.wait_for_load_state("networkidle")  # the sidebar's footer logo is asked for after the headings render
    assert page.blocked == [], page.blocked
    hosts = {urlsplit(r.url).netloc for r in page.requests if not r.url.startswith(("blob:", "data:"))}
    assert hosts == {urlsplit(server.base_url).netloc}, hosts
    shot = os.environ.get("WEB_TEST_DOCS_SCREENSHOT")  # e.g. /tmp/redoc.png, to look at it
    if shot:
        page.screenshot(path=shot)


def _request_log(page: Any) -> list[tuple[str, str, str | None]]:
    log: list[tuple[str, str, str | None]] = []
    page.on("request", lambda r: log.append((r.method, urlsplit(r.url).path, r.headers.get("authorization"))))
    return log


def test_the_page_asks_for_a_key_once_and_keeps_it_in_memory(
    keyed_server: Server, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requests = _request_log(page)
    try:
        page.goto(keyed_server.base_url + "/")
        page.wait_for_selector("#key-form:not([hidden])")  # /v1/model answered 401
        assert "needs an API key" in (page.text_content("#key-note") or "")

        # An upload without a key: its 401 is shown readably.
        page.set_input_files("#file", str(_gray_png(tmp_path / "a.png")))
        page.wait_for_selector("#error:not([hidden])")
        message = page.text_content("#error") or ""
        assert "API key" in message and "HTTP 401" in message and "unauthorized" in message
        # A wrong key: the upload runs again, is refused, and the form says so.
        page.fill("#api-key", "not-the-key")
        page.click("#key-form button[type=submit]")
        page.wait_for_function("() => (document.getElementById('key-note').textContent || '').includes('not accepted')")
        assert page.is_visible("#key-form") and "HTTP 401" in (page.text_content("#error") or "")

        # The right key: the interrupted upload runs again by itself.
        page.fill("#api-key", API_KEY)
        page.click("#key-form button[type=submit]")
        page.wait_for_function("() => !document.getElementById('result').hidden")
        assert page.eval_on_selector("#error", "e => e.hidden")
        # A second upload and the saliency map use the key without asking.
        page.set_input_files("#file", str(_gray_png(tmp_path / "b.png", 64, 64)))
        page.wait_for_function("() => (document.getElementById('status').textContent || '').includes('b.png')")
        page.wait_for_function("() => (document.getElementById('status').textContent || '').startsWith('Done')")
        page.check("#saliency")
        page.wait_for_function("() => !document.getElementById('saliency-img').hidden")
        assert page.is_hidden("#key-form")

        posts = [(path, auth) for method, path, auth in requests if method == "POST"]
        assert [auth for _, auth in posts] == [None, "Bearer not-the-key"] + [f"Bearer {API_KEY}"] * 3, posts
        stored = page.evaluate("() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
        assert API_KEY not in stored
        # Memory only: a reload forgets it.
        page.reload()
        page.wait_for_selector("#key-form:not([hidden])")
    finally:
        context.close()


def _png_base64() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)), "L").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


_CROSS_ORIGIN_CALL = """async ([url, key, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("file", new Blob([bytes], {type: "image/png"}), "x.png");
  try {
    const r = await fetch(url + "/colorize", {method: "POST", body: form, headers: key ? {Authorization: "Bearer " + key} : {}});
    return {status: r.status, total: r.headers.get("X-Total-Ms"), requestId: r.headers.get("X-Request-ID"),
            error: r.ok ? null : (await r.json()).error.code};
  } catch (err) {
    return {failed: String(err)};
  }
}"""


def test_a_browser_app_on_another_origin_calls_the_api_with_a_key(
    keyed_server: Server, browser: Any, app_origin: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    other = _app_server()
    stranger = f"http://127.0.0.1:{other.server_address[1]}"
    try:
        page.goto(app_origin + "/app.html")
        # Authorization is not a simple header: Chromium sends a real preflight (OPTIONS, no key) first.
        ok = page.evaluate(_CROSS_ORIGIN_CALL, [keyed_server.base_url, API_KEY, _png_base64()])
        assert ok["status"] == 200, ok
        assert float(ok["total"]) > 0 and ok["requestId"], ok  # exposed to the other origin's script
        refused = page.evaluate(_CROSS_ORIGIN_CALL, [keyed_server.base_url, "wrong", _png_base64()])
        assert refused == {"status": 401, "total": None, "requestId": refused["requestId"], "error": "unauthorized"}

        page.goto(stranger + "/app.html")  # not in SCGAN_CORS_ORIGINS: the preflight is refused
        blocked = page.evaluate(_CROSS_ORIGIN_CALL, [keyed_server.base_url, API_KEY, _png_base64()])
        assert "failed" in blocked and "Failed to fetch" in blocked["failed"], blocked
    finally:
        context.close()
        other.shutdown()
