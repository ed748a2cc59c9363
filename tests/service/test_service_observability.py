"""Metrics (Prometheus, one registry per app) and structured logs with request ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_test_helpers import gray_image, image_bytes, run_app

from service import Settings
from service.logging_setup import JsonFormatter, configure_logging

pytestmark = pytest.mark.anyio

EXPECTED_FAMILIES = {
    "scgan_http_requests",
    "scgan_http_request_duration_seconds",
    "scgan_http_requests_in_flight",
    "scgan_queue_wait_seconds",
    "scgan_queue_depth",
    "scgan_queue_capacity",
    "scgan_batch_size",
    "scgan_batch_inference_duration_seconds",
    "scgan_batches_failed",
    "scgan_stage_duration_seconds",
    "scgan_images_processed",
    "scgan_input_pixels",
    "scgan_errors",
    "scgan_queue_dropped",
    "scgan_model_info",
    "scgan_ready",
}


def files() -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("in.png", image_bytes(gray_image(64, 48), "PNG"), "image/png")}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_are_exposed_and_move(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings()) as svc:
        response = await svc.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        families = {family.name for family in text_string_to_metric_families(response.text)}
        assert EXPECTED_FAMILIES <= families
        before = samples(response.text)
        info = [k for k in before if k[0] == "scgan_model_info"]
        assert len(info) == 1
        labels = dict(info[0][1])
        assert labels["checkpoint"] == "tiny.pt" and labels["device"] == "cpu" and labels["precision"] == "fp32"
        assert before[("scgan_queue_capacity", ())] == 16
        assert before[("scgan_ready", ())] == 1
        rss = before[("scgan_worker_resident_memory_bytes", (("worker", "0"),))]
        assert rss > 10 * 2**20 and before[("scgan_worker_cpu_seconds", (("worker", "0"),))] > 0

        for _ in range(2):
            assert (await svc.client.post("/colorize", files=files())).status_code == 200
        assert (await svc.client.post("/colorize", content=b"")).status_code == 400
        after = samples((await svc.client.get("/metrics")).text)

        ok = ("scgan_http_requests_total", (("method", "POST"), ("route", "/colorize"), ("status", "200")))
        assert after[ok] - before.get(ok, 0) == 2
        assert after[("scgan_images_processed_total", (("endpoint", "colorize"),))] == 2
        assert after[("scgan_input_pixels_total", ())] == 2 * 64 * 48
        assert after[("scgan_batch_size_count", ())] == 2
        assert after[("scgan_queue_wait_seconds_count", ())] == 2
        assert after[("scgan_batch_inference_duration_seconds_count", ())] == 2
        assert after[("scgan_errors_total", (("kind", "empty_upload"),))] == 1
        assert after[("scgan_queue_depth", ())] == 0
        assert after[("scgan_http_requests_in_flight", ())] == 1  # the scrape itself
        duration = ("scgan_http_request_duration_seconds_count", (("method", "POST"), ("route", "/colorize")))
        assert after[duration] == 3
        preprocess = ("scgan_stage_duration_seconds_count", (("stage", "preprocess"),))
        assert after[preprocess] == 2


async def test_unmatched_paths_do_not_explode_label_cardinality(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings()) as svc:
        for i in range(5):
            await svc.client.get(f"/random/{i}")
        text = (await svc.client.get("/metrics")).text
        assert "/random/" not in text
        assert svc.metric("scgan_http_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}) == 5


async def test_the_schema_and_the_docs_have_their_own_route_labels(make_settings: Callable[..., Settings]) -> None:
    """/openapi.json, /docs, /redoc and their bundled assets are counted under their own routes, not 'unmatched'."""
    routes = {
        "/openapi.json": "/openapi.json",
        "/docs": "/docs",
        "/redoc": "/redoc",
        "/docs-assets/redoc.standalone.js": "/docs-assets/redoc.standalone.js",  # ours, see service.redoc_bundle
        "/docs-assets/swagger-ui.css": "/docs-assets/{path}",
    }
    async with run_app(make_settings()) as svc:
        for path in routes:
            assert (await svc.client.get(path)).status_code == 200, path
        for label in set(routes.values()):
            expected = sum(1 for value in routes.values() if value == label)
            assert (
                svc.metric("scgan_http_requests_total", {"route": label, "method": "GET", "status": "200"}) == expected
            )
        assert svc.metric("scgan_http_requests_total", {"route": "unmatched", "method": "GET", "status": "200"}) == 0


async def test_two_apps_in_one_process_keep_separate_metrics(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings()) as first, run_app(make_settings()) as second:
        assert (await first.client.post("/colorize", files=files())).status_code == 200
        assert first.metric("scgan_batch_size_count") == 1
        assert second.metric("scgan_batch_size_count") == 0


@pytest.fixture()
def json_logs() -> Iterator[Callable[[], list[dict[str, object]]]]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)

    def read() -> list[dict[str, object]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield read
    for handler in list(root.handlers):
        if handler.get_name() == "scgan-service":
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = False


async def test_json_logs_carry_the_request_id(
    make_settings: Callable[..., Settings], json_logs: Callable[[], list[dict[str, object]]]
) -> None:
    async with run_app(make_settings()) as svc:
        response = await svc.client.post("/colorize", files=files(), headers={"X-Request-ID": "trace-me-123"})
        assert response.status_code == 200
        lines = json_logs()
    access = [line for line in lines if line["logger"] == "service.access" and line["request_id"] == "trace-me-123"]
    assert len(access) == 1
    assert access[0]["status"] == 200 and access[0]["route"] == "/colorize"
    assert access[0]["level"] == "INFO" and "duration_ms" in access[0] and "ts" in access[0]
    assert any(line["logger"] == "service.runtime" and "warm-up done" in str(line["message"]) for line in lines)


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
        import sys

        record.exc_info = sys.exc_info()
    record.request_id = "rid"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed x" and line["request_id"] == "rid"
    assert "ValueError: boom" in line["exc_info"]
