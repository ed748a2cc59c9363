"""Life cycle: not ready before warm-up, ready after; graceful drain on shutdown; a dead worker is not ready."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import pytest
from service_test_helpers import GatedPredict, gray_image, image_bytes, run_app, wait_ready, wait_until

from service import Settings, create_app
from service.runtime import FALLBACK_CONFIG, ModelRuntime

pytestmark = pytest.mark.anyio


def files() -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("in.png", image_bytes(gray_image(), "PNG"), "image/png")}


async def test_not_ready_until_warmed_up(make_settings: Callable[..., Settings], gated: GatedPredict) -> None:
    gated.close()  # the first warm-up forward blocks
    async with run_app(make_settings(), predict=gated, ready=False) as svc:
        await wait_until(gated.entered.is_set, what="warm-up to start")
        assert (await svc.client.get("/healthz")).status_code == 200  # alive while warming
        ready = await svc.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "model_loaded": True,
            "warmed_up": False,
            "worker_running": False,
            "worker_stalled": False,
            "draining": False,
        }
        early = await svc.client.post("/colorize", files=files())
        assert early.status_code == 503
        assert early.json()["error"]["code"] == "not_ready"
        assert "retry-after" in early.headers
        assert svc.metric("scgan_ready") == 0
        gated.open()
        await wait_ready(svc.client)
        assert svc.metric("scgan_ready") == 1
        # One forward per batch size the batcher can form, plus one saliency forward.
        assert gated.calls == [1, 2, 3, 4, 1]
        assert (await svc.client.post("/colorize", files=files())).status_code == 200


async def test_warmup_can_be_skipped(make_settings: Callable[..., Settings], gated: GatedPredict) -> None:
    async with run_app(make_settings(warmup=False), predict=gated):
        assert gated.calls == []


async def test_shutdown_finishes_queued_requests(make_settings: Callable[..., Settings], gated: GatedPredict) -> None:
    app = create_app(make_settings(max_batch_size=1), predict=gated)
    transport = httpx.ASGITransport(app=app)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            await wait_ready(client)
            state = app.state.service
            gated.close()
            tasks = [asyncio.create_task(client.post("/colorize", files=files())) for _ in range(3)]
            await wait_until(lambda: gated.entered.is_set() and state.batcher.depth == 2, what="1 running + 2 queued")
            shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await wait_until(lambda: state.draining, what="draining")
            refused = await client.post("/colorize", files=files())
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "shutting_down"
            assert (await client.get("/readyz")).json()["draining"] is True
            gated.open()
            responses = await asyncio.gather(*tasks)
            assert [r.status_code for r in responses] == [200, 200, 200]
            await asyncio.wait_for(shutdown, 10)
            assert not state.batcher.running
            assert app.state.service is None
            assert (await client.post("/colorize", files=files())).status_code == 503
    finally:
        gated.open()


async def test_shutdown_deadline_is_kept_when_a_forward_hangs(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    app = create_app(make_settings(max_batch_size=1, shutdown_timeout_s=0.3), predict=gated)
    transport = httpx.ASGITransport(app=app)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            await wait_ready(client)
            state = app.state.service
            gated.close()
            stuck = asyncio.create_task(client.post("/colorize", files=files()))
            await wait_until(gated.entered.is_set, what="a forward to hang")
            queued = asyncio.create_task(client.post("/colorize", files=files()))
            await wait_until(lambda: state.batcher.depth == 1, what="a queued request")
            start = time.monotonic()
            await lifespan.__aexit__(None, None, None)
            assert time.monotonic() - start < 5.0
            response = await queued
            assert response.status_code == 503  # not computed: shutdown deadline passed
            gated.open()
            # The request whose forward hung was answered at the drain deadline, before uvicorn would cut it.
            answer = await stuck
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "shutting_down", answer.text
    finally:
        gated.open()


async def test_a_dead_worker_turns_readiness_false(make_settings: Callable[..., Settings], gated: GatedPredict) -> None:
    async with run_app(make_settings(), predict=gated) as svc:
        gated.fatal_if = lambda batch: True
        response = await svc.client.post("/colorize", files=files())
        assert response.status_code == 503
        await wait_until(lambda: not svc.state.batcher.running, what="the worker to die")
        ready = await svc.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["worker_running"] is False
        again = await svc.client.post("/colorize", files=files())
        assert again.status_code == 503
        assert again.json()["error"]["code"] == "not_ready"


def test_without_a_checkpoint_a_random_compact_model_is_loudly_used(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.runtime

    monkeypatch.setattr(service.runtime, "default_checkpoint_path", lambda: None)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        runtime = ModelRuntime.load(make_settings(checkpoint=None, fallback_seed=3))
    assert any(r.levelno == logging.WARNING and "RANDOMLY INITIALISED" in r.getMessage() for r in caplog.records)
    assert runtime.identity.source_format == "random-init"
    assert runtime.colorizer.generator.config == FALLBACK_CONFIG
    again = ModelRuntime.load(make_settings(checkpoint=None, fallback_seed=3))
    assert again.identity.sha256 == runtime.identity.sha256  # seeded: the same weights every start


def test_a_broken_checkpoint_stops_startup(make_settings: Callable[..., Settings], tmp_path: object) -> None:
    from pathlib import Path

    from model import CheckpointError

    bad = Path(str(tmp_path)) / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        ModelRuntime.load(make_settings(checkpoint=bad))
