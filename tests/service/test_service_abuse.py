"""Abuse, in-process: clients that hang up, a flood of requests, forwards that fail or hang, the drain clock.

Real HTTP through the app (httpx's ASGI transport, or the ASGI callable driven
directly where a client must vanish mid-request), real images, the real model
behind a predict seam that only controls timing and failures. Every test ends
by checking that nothing leaked: no request still counted in flight, an empty
queue, no admission slot held, and the worker still serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI
from service_test_helpers import GatedPredict, RunningApp, gray_image, image_bytes, run_app, wait_until

from model import Colorizer
from service import Settings, create_app
from service.__main__ import main
from service.exceptions import ShuttingDown

pytestmark = pytest.mark.anyio

BOUNDARY = "abuse-boundary"


@pytest.fixture(autouse=True)
def _open_gate_at_the_end(gated: GatedPredict) -> Iterator[None]:
    """A failing test must not leave a forward blocked (the app's shutdown would wait for it)."""
    yield
    gated.open()


def files(seed: int = 0) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("in.png", image_bytes(gray_image(48, 40, seed=seed), "PNG"), "image/png")}


def multipart_body(data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="in.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def post(svc: RunningApp, seed: int = 0, **kwargs: Any) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(svc.client.post("/colorize", files=files(seed), **kwargs))


class VanishingClient:
    """Drives the ASGI app directly: sends ``chunks`` of a body, then hangs up when told to (or right away)."""

    def __init__(self, app: FastAPI, chunks: list[bytes], *, content_type: str, declared_length: int) -> None:
        self.app = app
        self.chunks = list(chunks)
        self.content_type = content_type
        self.declared_length = declared_length
        self.body_complete = sum(map(len, chunks)) == declared_length
        self.hang_up = asyncio.Event()
        self.messages: list[dict[str, Any]] = []

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None

    async def run(self) -> None:
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
            "headers": [
                (b"content-type", self.content_type.encode()),
                (b"content-length", str(self.declared_length).encode()),
            ],
            "client": ("127.0.0.1", 50001),
            "server": ("testserver", 80),
        }

        async def receive() -> dict[str, Any]:
            if self.chunks:
                chunk = self.chunks.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or not self.body_complete}
            await self.hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            self.messages.append(message)

        await self.app(scope, receive, send)

    @classmethod
    def complete(cls, app: FastAPI, body: bytes, content_type: str = "image/png") -> VanishingClient:
        """Sends the whole body, then disconnects when told to (the request is then queued or computing)."""
        return cls(app, [body], content_type=content_type, declared_length=len(body))

    @classmethod
    def mid_upload(cls, app: FastAPI, body: bytes, content_type: str) -> VanishingClient:
        """Sends half the body and disconnects at once."""
        client = cls(app, [body[: len(body) // 2]], content_type=content_type, declared_length=len(body))
        client.hang_up.set()
        return client


def assert_no_leaks(svc: RunningApp) -> None:
    """Nothing held after every request ended: gauges at rest, no admission slot, worker alive and ready."""
    assert svc.metric("scgan_http_requests_in_flight") == 0
    assert svc.metric("scgan_queue_depth") == 0
    assert svc.state.batcher.depth == 0
    assert svc.state._admitted == 0
    assert svc.state._active == 0
    assert svc.state.preparing == 0
    assert svc.state.ready


def colorize_count(svc: RunningApp, status: int) -> float:
    return svc.metric("scgan_http_requests_total", {"route": "/colorize", "method": "POST", "status": str(status)})


# -- 1. slow and broken clients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["raw", "multipart"])
async def test_a_client_that_disconnects_mid_upload_is_counted_as_gone_not_as_a_server_error(
    make_settings: Callable[..., Settings], gated: GatedPredict, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_app(make_settings(), predict=gated) as svc:
        gated.reset_calls()
        data = image_bytes(gray_image(200, 150), "PNG")
        if kind == "raw":
            client = VanishingClient.mid_upload(svc.app, data, "image/png")
        else:
            client = VanishingClient.mid_upload(
                svc.app, multipart_body(data), f"multipart/form-data; boundary={BOUNDARY}"
            )
        with caplog.at_level(logging.ERROR):
            await asyncio.wait_for(client.run(), 10)
        # 499 (client closed request): the client is gone, the server did nothing wrong.
        assert client.status == 499
        assert colorize_count(svc, 499) == 1
        assert colorize_count(svc, 500) == 0
        assert svc.metric("scgan_errors_total", {"kind": "client_disconnected"}) == 1
        assert svc.metric("scgan_errors_total", {"kind": "internal_error"}) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a hang-up is not a server error"
        assert gated.calls == []  # nothing reached the model
        assert_no_leaks(svc)
        start = time.monotonic()
        assert (await svc.client.post("/colorize", files=files())).status_code == 200
        assert time.monotonic() - start < 5.0


async def test_a_stalled_upload_times_out_without_holding_anything(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings(request_timeout_s=0.5)) as svc:
        data = image_bytes(gray_image(), "PNG")
        served: list[float] = []

        async def trickle() -> AsyncIterator[bytes]:
            for i in range(len(data)):  # one byte every 50 ms: ~20 bytes per second, far past the timeout
                yield data[i : i + 1]
                await asyncio.sleep(0.05)

        async def meanwhile() -> None:
            start = time.monotonic()
            response = await svc.client.post("/colorize", files=files())
            assert response.status_code == 200
            served.append(time.monotonic() - start)

        start = time.monotonic()
        slow, _ = await asyncio.gather(
            svc.client.post("/colorize", content=trickle(), headers={"content-type": "image/png"}), meanwhile()
        )
        assert slow.status_code == 408
        assert slow.json()["error"]["code"] == "upload_timeout"
        assert time.monotonic() - start < 5.0  # the timeout fired, the body was not waited for
        assert served and served[0] < 5.0  # the slow client did not hold up anyone else
        assert colorize_count(svc, 408) == 1
        assert_no_leaks(svc)


async def test_clients_that_hang_up_while_queued_free_their_queue_slots_at_once(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    """Hung-up requests must not keep occupying the queue while the worker is busy: their slots are free again
    at once (not when the worker gets round to discarding them), and none of them is ever computed."""
    async with run_app(make_settings(max_batch_size=1, queue_capacity=2), predict=gated) as svc:
        gated.reset_calls()
        gated.close()
        first = post(svc, seed=9)
        await wait_until(gated.entered.is_set, what="the first forward to start")
        body = image_bytes(gray_image(seed=3), "PNG")
        ghosts = [VanishingClient.complete(svc.app, body) for _ in range(2)]
        runs = [asyncio.create_task(ghost.run()) for ghost in ghosts]
        await wait_until(lambda: svc.state.batcher.depth == 2, what="a full queue")
        for ghost in ghosts:
            ghost.hang_up.set()
        await asyncio.wait_for(asyncio.gather(*runs), 10)
        assert [ghost.status for ghost in ghosts] == [499, 499]
        # The worker is still stuck in the first forward, yet the queue is empty again and takes new work.
        assert svc.state.batcher.depth == 0
        assert svc.metric("scgan_queue_depth") == 0
        assert svc.metric("scgan_queue_dropped_total", {"reason": "cancelled"}) == 2
        late = [post(svc, seed=10), post(svc, seed=11)]
        await wait_until(lambda: svc.state.batcher.depth == 2, what="two new requests queued")
        gated.open()
        responses = [await first] + [await task for task in late]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert gated.calls == [1, 1, 1]  # the two ghosts were never computed
        assert svc.metric("scgan_batch_size_sum") == 3
        assert colorize_count(svc, 499) == 2
        assert_no_leaks(svc)


# -- 2. overload ---------------------------------------------------------------------------------------------------


class SlowPredict:
    """The real forward, made slow on purpose (every forward takes at least ``delay_s``)."""

    def __init__(self, reference: Colorizer, delay_s: float) -> None:
        self.reference = reference
        self.delay_s = delay_s
        self.images = 0

    def __call__(self, batch: torch.Tensor, saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        time.sleep(self.delay_s)
        self.images += batch.shape[0]
        return self.reference.predict(batch, saliency=saliency)


async def test_ten_times_the_queue_capacity_at_once_is_answered_and_accounted_for(
    make_settings: Callable[..., Settings], reference: Colorizer
) -> None:
    capacity, sent = 4, 40
    settings = make_settings(max_batch_size=2, queue_capacity=capacity, request_timeout_s=4.0, warmup=False)
    slow = SlowPredict(reference, delay_s=0.15)
    async with run_app(settings, predict=slow) as svc:
        payload = image_bytes(gray_image(48, 40), "PNG")

        async def one(i: int) -> tuple[int, float, str]:
            start = time.monotonic()
            response = await svc.client.post("/colorize", files={"file": (f"{i}.png", payload, "image/png")})
            code = response.json()["error"]["code"] if response.status_code != 200 else ""
            return response.status_code, time.monotonic() - start, code

        start = time.monotonic()
        outcomes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(sent))), 30)
        elapsed = time.monotonic() - start
        statuses = [status for status, _, _ in outcomes]
        assert set(statuses) <= {200, 503, 504}, statuses  # an answer or an explicit refusal, nothing else
        assert elapsed < settings.request_timeout_s + 5.0  # nobody hung
        ok, refused, late = statuses.count(200), statuses.count(503), statuses.count(504)
        assert ok + refused + late == sent
        # The pipeline admits queue + one batch; everyone else is refused at once, and told why.
        assert ok >= capacity
        assert refused >= sent - (capacity + settings.max_batch_size)
        assert all(code == "queue_full" for status, _, code in outcomes if status == 503)
        assert max(t for status, t, _ in outcomes if status == 503) < settings.request_timeout_s

        # /metrics adds up exactly to what was sent.
        assert colorize_count(svc, 200) == ok
        assert colorize_count(svc, 503) == refused
        assert colorize_count(svc, 504) == late
        assert svc.metric("scgan_errors_total", {"kind": "queue_full"}) == refused
        assert svc.metric("scgan_errors_total", {"kind": "timeout"}) == late
        assert svc.metric("scgan_images_processed_total", {"endpoint": "colorize"}) == ok
        assert svc.metric("scgan_http_request_duration_seconds_count", {"route": "/colorize", "method": "POST"}) == sent
        computed = svc.metric("scgan_batch_size_sum")
        assert computed == slow.images  # every forward is in the batch metrics
        assert ok <= computed <= ok + late  # only a timed-out request's forward may have run for nobody
        assert svc.metric("scgan_queue_wait_seconds_count") == computed
        assert_no_leaks(svc)
        assert (await svc.client.post("/colorize", files=files())).status_code == 200


# -- 3. faults -----------------------------------------------------------------------------------------------------


async def test_a_batch_that_raises_fails_only_its_own_requests_and_is_accounted_for(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    async with run_app(make_settings(max_batch_size=3, max_batch_delay_ms=50), predict=gated) as svc:
        gated.reset_calls()
        gated.close()
        first = post(svc, seed=20)
        await wait_until(gated.entered.is_set, what="the first forward to start")
        doomed = [post(svc, seed=i) for i in range(3)]  # one batch of 3 behind the first
        await wait_until(lambda: svc.state.batcher.depth == 3, what="three queued requests")
        gated.fail_if = lambda batch: batch.shape[0] == 3
        gated.open()
        assert (await first).status_code == 200
        failed = [await task for task in doomed]
        assert [r.status_code for r in failed] == [500, 500, 500]
        assert {r.json()["error"]["code"] for r in failed} == {"inference_failed"}
        after = [await post(svc, seed=30 + i) for i in range(2)]
        assert [r.status_code for r in after] == [200, 200]
        assert gated.calls == [1, 3, 1, 1]
        assert svc.metric("scgan_batches_failed_total") == 1
        assert svc.metric("scgan_errors_total", {"kind": "inference_failed"}) == 3
        assert colorize_count(svc, 500) == 3
        assert colorize_count(svc, 200) == 3
        assert svc.metric("scgan_images_processed_total", {"endpoint": "colorize"}) == 3
        assert svc.metric("scgan_batch_size_count") == 4  # failed batches are batches too
        assert_no_leaks(svc)


async def test_a_hanging_forward_times_out_turns_readiness_false_and_recovers(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    timeout = 0.6
    async with run_app(make_settings(max_batch_size=1, request_timeout_s=timeout), predict=gated) as svc:
        gated.close()
        stuck = post(svc, seed=1)
        await wait_until(gated.entered.is_set, what="a forward to hang")
        queued = post(svc, seed=2)
        await wait_until(lambda: svc.state.batcher.depth == 1, what="a request queued behind it")
        responses = await asyncio.wait_for(asyncio.gather(stuck, queued), timeout + 5)
        assert [r.status_code for r in responses] == [504, 504]  # the deadline fired for both
        assert {r.json()["error"]["code"] for r in responses} == {"timeout"}

        # The forward has now run for longer than any request may wait: the service says it is not ready...
        ready = await svc.client.get("/readyz")
        assert ready.status_code == 503, ready.json()
        assert ready.json()["ready"] is False
        assert ready.json()["worker_stalled"] is True
        assert svc.metric("scgan_ready") == 0
        # ... and refuses new work at once instead of queueing it for a certain 504.
        start = time.monotonic()
        refused = await svc.client.post("/colorize", files=files())
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "not_ready"
        assert "retry-after" in refused.headers
        assert time.monotonic() - start < timeout

        gated.open()  # the hang ends: ready again, without a restart
        await wait_until(lambda: svc.state.ready, what="readiness to come back")
        assert (await svc.client.get("/readyz")).json()["worker_stalled"] is False
        assert svc.metric("scgan_ready") == 1
        assert (await svc.client.post("/colorize", files=files())).status_code == 200
        assert colorize_count(svc, 504) == 2
        assert svc.metric("scgan_errors_total", {"kind": "not_ready"}) == 1
        assert_no_leaks(svc)


def test_a_missing_checkpoint_is_refused_with_a_one_line_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main(["--checkpoint", str(tmp_path / "missing.pt")]) != 0
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "missing.pt" in lines[0] and "does not exist" in lines[0]
    assert "SCGAN_CHECKPOINT" in lines[0]


# -- 4. the drain clock --------------------------------------------------------------------------------------------


async def test_a_request_already_uploading_when_the_drain_begins_is_finished(
    make_settings: Callable[..., Settings],
) -> None:
    """In flight at SIGTERM = already being handled: it completes; only new requests are refused."""
    async with run_app(make_settings()) as svc:
        data = image_bytes(gray_image(), "PNG")
        release = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield data[:100]
            await release.wait()
            yield data[100:]

        uploading = asyncio.create_task(
            svc.client.post("/colorize", content=body(), headers={"content-type": "image/png"})
        )
        await wait_until(lambda: svc.state._active == 1, what="the upload to start")
        svc.state.begin_drain()
        refused = await svc.client.post("/colorize", files=files())
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        release.set()
        response = await asyncio.wait_for(uploading, 10)
        assert response.status_code == 200


async def test_what_arrived_before_the_drain_is_served_and_what_arrives_after_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_app(make_settings()) as svc:
        before = time.monotonic()  # counted in flight by the middleware, not yet at its route when SIGTERM lands
        svc.state.begin_drain()
        svc.state.ensure_accepting(arrived_at=before)  # no exception: it was in flight
        with pytest.raises(ShuttingDown):
            svc.state.ensure_accepting(arrived_at=time.monotonic())
        with pytest.raises(ShuttingDown):
            svc.state.ensure_accepting()
        assert (await svc.client.get("/readyz")).json()["draining"] is True


async def test_shutdown_counts_its_deadline_from_the_start_of_the_drain(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    """uvicorn first waits for open requests, then runs the lifespan shutdown: the two together must take at most
    shutdown_timeout_s from the signal, not shutdown_timeout_s each."""
    grace = 1.0
    app_settings = make_settings(max_batch_size=1, shutdown_timeout_s=grace)
    app = create_app(app_settings, predict=gated)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.05)
            state = app.state.service
            gated.close()
            stuck = asyncio.create_task(client.post("/colorize", files=files()))
            await wait_until(gated.entered.is_set, what="a forward to hang")
            start = time.monotonic()
            state.begin_drain()  # the signal
            await asyncio.sleep(0.7 * grace)  # uvicorn's own wait for open connections
            await asyncio.wait_for(lifespan.__aexit__(None, None, None), 10)
            assert time.monotonic() - start < grace + 0.25
            gated.open()
            assert (await stuck).status_code in (200, 503)
    finally:
        gated.open()
