"""The pixel budget (max_pixels_in_flight): reservations, the 503 when full, and release on every path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError
from service_test_helpers import GatedPredict, RunningApp, gray_image, image_bytes, run_app, wait_until

from service import Settings
from service.budget import PixelBudget, ReservationClosed
from service.exceptions import PixelBudgetFull

SIDE = 32
PIXELS = SIDE * SIDE


def test_a_reservation_is_held_once_and_released_once() -> None:
    budget = PixelBudget(3 * PIXELS)
    first, second, third = budget.reservation(), budget.reservation(), budget.reservation()
    first.hold(2 * PIXELS)
    with pytest.raises(PixelBudgetFull):
        second.hold(2 * PIXELS)
    assert (budget.in_use, second.pixels) == (2 * PIXELS, 0)
    second.hold(PIXELS)  # what fits still fits
    with pytest.raises(RuntimeError):
        second.hold(1)
    first.release()
    first.release()  # idempotent: nothing returned twice
    assert budget.in_use == PIXELS
    with pytest.raises(ReservationClosed):
        first.hold(1)  # the request gave up before its decode reserved: the decode stops
    third.release()  # never held: releases nothing
    second.release()
    assert budget.in_use == 0


def test_budget_limits_and_messages() -> None:
    with pytest.raises(ValueError, match=r"^a pixel budget must be positive, got 0$"):
        PixelBudget(0)
    one = PixelBudget(1)  # the smallest budget: one pixel
    only = one.reservation()
    only.hold(1)  # exactly the limit fits
    assert (one.in_use, only.pixels) == (1, 1)
    with pytest.raises(
        PixelBudgetFull,
        match=r"^too many image pixels in progress \(1 of 1 reserved; this image needs 2\); retry later$",
    ):
        one.reservation().hold(2)
    with pytest.raises(RuntimeError, match=r"^a reservation is held once$"):
        only.hold(1)
    only.release()
    with pytest.raises(ReservationClosed, match=r"^the request ended before its image was decoded$"):
        only.hold(1)
    assert one.in_use == 0


def test_reservations_from_many_threads_never_overshoot() -> None:
    budget = PixelBudget(10)
    peak: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(200):
            reservation = budget.reservation()
            try:
                reservation.hold(3)
                peak.append(budget.in_use)
            except PixelBudgetFull:
                pass
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
            finally:
                reservation.release()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert budget.in_use == 0
    assert max(peak) <= 9


def test_the_default_budget_is_a_batch_plus_one_image_per_cpu_thread() -> None:
    settings = Settings(max_pixels=1000, max_batch_size=4, cpu_threads=2)
    assert settings.max_pixels_in_flight is None
    assert settings.pixels_in_flight_limit == 6000
    assert Settings(max_pixels=1000, max_pixels_in_flight=1500).pixels_in_flight_limit == 1500


def test_a_budget_below_one_maximum_size_image_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCGAN_MAX_PIXELS_IN_FLIGHT", "999")
    with pytest.raises(ValidationError, match="SCGAN_MAX_PIXELS_IN_FLIGHT"):
        Settings(max_pixels=1000)
    monkeypatch.setenv("SCGAN_MAX_PIXELS_IN_FLIGHT", "1000")
    assert Settings(max_pixels=1000).pixels_in_flight_limit == 1000


def post(svc: RunningApp, image: Image.Image, **kwargs: Any) -> asyncio.Task[httpx.Response]:
    files = {"file": ("in.png", image_bytes(image, "PNG"), "image/png")}
    return asyncio.create_task(svc.client.post("/colorize", files=files, **kwargs))


@pytest.mark.anyio
async def test_a_full_budget_answers_503_and_counts_it(
    make_settings: Callable[..., Settings], gated: GatedPredict
) -> None:
    settings = make_settings(max_batch_size=1, max_pixels=PIXELS, max_pixels_in_flight=2 * PIXELS, retry_after_s=3)
    async with run_app(settings, predict=gated) as svc:
        assert svc.metric("scgan_pixels_in_flight_limit") == 2 * PIXELS
        gated.close()
        first = post(svc, gray_image(SIDE, SIDE, seed=1))
        await wait_until(gated.entered.is_set, what="the first forward")
        second = post(svc, gray_image(SIDE, SIDE, seed=2))
        await wait_until(lambda: svc.state.batcher.depth == 1, what="a queued image")
        assert svc.metric("scgan_pixels_in_flight") == 2 * PIXELS
        refused = await svc.client.post(
            "/colorize", files={"file": ("x.png", image_bytes(gray_image(SIDE, SIDE), "PNG"), "image/png")}
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "pixel_budget_full"
        small = await svc.client.post(  # a smaller image is refused too: the budget has no pixel to spare
            "/colorize", files={"file": ("x.png", image_bytes(gray_image(8, 8), "PNG"), "image/png")}
        )
        assert small.status_code == 503
        assert svc.metric("scgan_pixel_budget_rejected_total") == 2
        assert svc.metric("scgan_errors_total", {"kind": "pixel_budget_full"}) == 2
        gated.open()
        assert [(await t).status_code for t in (first, second)] == [200, 200]
        assert svc.state.pixels.in_use == 0
        assert svc.metric("scgan_pixels_in_flight") == 0


@pytest.mark.anyio
async def test_pixels_are_released_on_every_path(make_settings: Callable[..., Settings], gated: GatedPredict) -> None:
    settings = make_settings(max_batch_size=1, max_pixels=PIXELS, request_timeout_s=2.0)
    async with run_app(settings, predict=gated) as svc:
        budget = svc.state.pixels

        async def released() -> None:
            await wait_until(lambda: budget.in_use == 0, what="the pixels to be released")

        ok = await post(svc, gray_image(SIDE, SIDE))
        assert ok.status_code == 200
        await released()
        corrupt = image_bytes(gray_image(SIDE, SIDE), "PNG")[:-40]  # header fine, pixels truncated
        bad = await svc.client.post("/colorize", files={"file": ("x.png", corrupt, "image/png")})
        assert bad.status_code == 400
        await released()
        gated.fail_if = lambda batch: True
        failed = await post(svc, gray_image(SIDE, SIDE))
        assert failed.status_code == 500
        gated.fail_if = None
        await released()
        gated.close()
        cancelled = post(svc, gray_image(SIDE, SIDE))
        await wait_until(lambda: budget.in_use == PIXELS, what="a reservation")
        cancelled.cancel()  # the client gives up mid-request
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await released()
        gated.open()
        assert (await post(svc, gray_image(SIDE, SIDE))).status_code == 200
        await released()
        gated.close()
        stuck = await post(svc, gray_image(SIDE, SIDE))  # its forward is held past the request timeout
        assert stuck.status_code == 504
        await released()
        gated.open()
        assert svc.metric("scgan_pixel_budget_rejected_total") == 0
