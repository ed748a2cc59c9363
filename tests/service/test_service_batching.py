"""Dynamic batching through HTTP: shared batches, unchanged results, 503 when full, 504 on timeout,
500 for a failing batch, and clients that hang up before compute."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from service_test_helpers import (
    GatedPredict,
    RunningApp,
    decode,
    gray_image,
    image_bytes,
    max_abs_diff,
    run_app,
    wait_until,
)

from model import Colorizer
from service import Settings

pytestmark = pytest.mark.anyio


def post(svc: RunningApp, image: Image.Image, path: str = "/colorize", **kwargs: Any) -> asyncio.Task[httpx.Response]:
    files = {"file": ("in.png", image_bytes(image, "PNG"), "image/png")}
    return asyncio.create_task(svc.client.post(path, files=files, **kwargs))


async def block_worker(svc: RunningApp, gated: GatedPredict) -> asyncio.Task[httpx.Response]:
    """Send one request and hold its forward at the gate, so the next ones queue up behind it."""
    gated.close()
    first = post(svc, gray_image(32, 32, seed=99))
    await wait_until(gated.entered.is_set, what="the first forward to start")
    return first


async def test_concurrent_requests_share_batches_without_changing_results(
    make_settings: Callable[..., Settings], gated: GatedPredict, reference: Colorizer
) -> None:
    async with run_app(make_settings(max_batch_size=4, max_batch_delay_ms=20), predict=gated) as svc:
        gated.reset_calls()
        first = await block_worker(svc, gated)
        images = [gray_image(60 + 8 * i, 40 + 5 * i, seed=i) for i in range(4)]
        rest = [post(svc, image) for image in images]
        await wait_until(lambda: svc.state.batcher.depth == 4, what="4 queued requests")
        gated.open()
        responses = [await first] + [await task for task in rest]
        assert [r.status_code for r in responses] == [200] * 5
        assert [int(r.headers["x-batch-size"]) for r in responses] == [1, 4, 4, 4, 4]
        assert gated.calls == [1, 4]
        assert svc.metric("scgan_batch_size_count") == 2
        assert svc.metric("scgan_batch_size_sum") == 5
        assert svc.metric("scgan_batch_size_bucket", {"le": "1.0"}) == 1  # one batch of 1, one of more
        for image, response in zip(images, responses[1:]):
            alone = reference.colorize_one(image)  # batch of one, straight through the model API
            # Same weights, same input; only the float summation order of a batch-4 convolution differs
            # (~1e-8), which can move a rounding boundary by one 8-bit level, never more.
            assert max_abs_diff(decode(response.content), alone) <= 1


async def test_render_sizes_and_endpoints_are_batched_separately(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    async with run_app(make_settings(max_batch_size=8, max_batch_delay_ms=20), predict=gated) as svc:
        gated.reset_calls()
        first = await block_worker(svc, gated)
        tasks = [
            post(svc, gray_image(seed=1)),
            post(svc, gray_image(seed=2), params={"render_size": 512}),
            post(svc, gray_image(seed=3)),
            post(svc, gray_image(seed=4), params={"render_size": 512}),
            post(svc, gray_image(seed=5), path="/saliency"),
        ]
        await wait_until(lambda: svc.state.batcher.depth == 5, what="5 queued requests")
        gated.open()
        await first
        responses = [await task for task in tasks]
        assert [r.status_code for r in responses] == [200] * 5
        assert [int(r.headers["x-batch-size"]) for r in responses] == [2, 2, 2, 2, 1]
        assert sorted(gated.calls) == [1, 1, 2, 2]


async def test_full_queue_answers_503_at_once(make_settings: Callable[..., Settings], gated: GatedPredict) -> None:
    settings = make_settings(max_batch_size=1, queue_capacity=2, retry_after_s=7)
    async with run_app(settings, predict=gated) as svc:
        first = await block_worker(svc, gated)
        queued = [post(svc, gray_image(seed=i)) for i in range(2)]
        await wait_until(lambda: svc.state.batcher.depth == 2, what="a full queue")
        refused = await svc.client.post("/colorize", files={"file": ("x.png", image_bytes(gray_image(), "PNG"))})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["error"]["code"] == "queue_full"
        assert svc.metric("scgan_errors_total", {"kind": "queue_full"}) == 1
        gated.open()
        assert [(await t).status_code for t in [first, *queued]] == [200, 200, 200]


async def test_requests_past_their_timeout_get_504_and_are_not_computed(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    async with run_app(make_settings(max_batch_size=1, request_timeout_s=0.5), predict=gated) as svc:
        gated.reset_calls()
        first = await block_worker(svc, gated)
        waiting = post(svc, gray_image(seed=1))
        await wait_until(lambda: svc.state.batcher.depth == 1, what="a queued request")
        late = await waiting
        assert late.status_code == 504
        assert late.json()["error"]["code"] == "timeout"
        assert (await first).status_code == 504  # its forward is stuck past the deadline too
        gated.open()
        await wait_until(lambda: svc.metric("scgan_queue_dropped_total", {"reason": "cancelled"}) == 1)
        await wait_until(lambda: svc.state.ready, what="the stuck forward to end")  # stalled until then
        assert gated.calls == [1]  # only the forward that had started; the queued one never ran
        assert (
            await svc.client.post("/colorize", files={"file": ("x.png", image_bytes(gray_image(), "PNG"))})
        ).status_code == 200


async def test_a_failing_batch_fails_only_its_requests(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    async with run_app(make_settings(max_batch_size=1), predict=gated) as svc:
        gated.fail_if = lambda batch: bool((batch > 0.99).all())  # an all-white input "crashes the GPU"
        white = Image.new("L", (40, 30), 255)
        failed, ok = post(svc, white), post(svc, gray_image())
        failed_response, ok_response = await failed, await ok
        assert failed_response.status_code == 500
        error = failed_response.json()["error"]
        assert error["code"] == "inference_failed"
        assert "CUDA" not in error["message"]  # internals stay in the server log
        assert error["request_id"] == failed_response.headers["x-request-id"]
        assert ok_response.status_code == 200
        assert svc.metric("scgan_batches_failed_total") == 1
        assert (await svc.client.get("/readyz")).status_code == 200  # the worker survived
        assert (await post(svc, gray_image(seed=5))).status_code == 200


async def _post_then_hang_up(app: FastAPI, body: bytes, hang_up: asyncio.Event) -> list[dict[str, Any]]:
    """Drive the ASGI app directly: send the body, then report a disconnect when told to."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/colorize",
        "raw_path": b"/colorize",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    body_sent = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages


async def test_a_client_that_hangs_up_is_dropped_before_compute(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    async with run_app(make_settings(max_batch_size=1), predict=gated) as svc:
        gated.reset_calls()
        first = await block_worker(svc, gated)
        hang_up = asyncio.Event()
        gone = asyncio.create_task(_post_then_hang_up(svc.app, image_bytes(gray_image(), "PNG"), hang_up))
        await wait_until(lambda: svc.state.batcher.depth == 1, what="the request to be queued")
        hang_up.set()
        messages = await asyncio.wait_for(gone, 10)
        assert messages[0]["status"] == 499
        gated.open()
        assert (await first).status_code == 200
        await wait_until(lambda: svc.metric("scgan_queue_dropped_total", {"reason": "cancelled"}) == 1)
        assert gated.calls == [1]
        assert svc.metric("scgan_errors_total", {"kind": "client_disconnected"}) == 1
