"""The batcher's contract with its callers and observers, driven by a hand-set clock: what it reports
(sizes, waits, forward times, busy time), what its errors say, and what stop() returns."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import pytest

from service.batcher import Batched, Batcher, BatcherClosed, BatchFailed, DeadlineExceeded, QueueFull


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """An observer recording its arguments."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, float, list[float], bool]] = []
        self.drops: list[str] = []

    def on_batch(self, size: int, inference_s: float, queue_waits_s: Sequence[float], failed: bool) -> None:
        self.batches.append((size, inference_s, list(queue_waits_s), failed))

    def on_drop(self, reason: str) -> None:
        self.drops.append(reason)


def test_observer_and_results_see_sizes_waits_and_forward_time() -> None:
    clock, calls = Clock(), Calls()

    def predict(items: list[int]) -> list[int]:
        clock.now += 0.5  # the forward takes half a second
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        return [i * 10 for i in items]

    batcher = Batcher(predict, max_batch_size=2, max_wait_s=0.0, capacity=8, clock=clock, observer=calls)
    first = batcher.submit(1)  # queued at 100
    clock.now = 101.0
    second = batcher.submit(2)  # queued at 101
    clock.now = 103.0
    batcher.start()  # the forward starts at 103: waits 3 and 2
    a, b = first.result(10), second.result(10)
    assert (a.value, a.batch_size, a.queue_wait_s, a.inference_s) == (10, 2, 3.0, 0.5)
    assert (b.value, b.batch_size, b.queue_wait_s, b.inference_s) == (20, 2, 2.0, 0.5)
    failing = batcher.submit(-1)  # queued at 103.5, computed at once
    with pytest.raises(BatchFailed, match=r"^ValueError: negative input$"):
        failing.result(10)
    assert calls.batches == [(2, 0.5, [3.0, 2.0], False), (1, 0.5, [0.0], True)]
    assert batcher.stop(10) is True
    with pytest.raises(BatcherClosed, match=r"^the batcher is not accepting work$"):
        batcher.submit(3)


def test_a_failed_batch_is_logged_with_its_size_time_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()

    def predict(items: list[int]) -> list[int]:
        clock.now += 0.25
        return []  # one result short

    batcher = Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=2, clock=clock)
    with caplog.at_level(logging.ERROR, logger="service.batcher"):
        batcher.start()
        future = batcher.submit(1)
        with pytest.raises(BatchFailed, match=r"^RuntimeError: predict returned 0 results for a batch of 1$"):
            future.result(10)
        assert batcher.stop(10) is True
    (record,) = [r for r in caplog.records if r.getMessage().startswith("batch of")]
    assert record.getMessage() == "batch of 1 failed after 250.0 ms"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_an_item_at_its_deadline_is_dropped_as_expired() -> None:
    clock, calls = Clock(), Calls()
    batcher = Batcher(lambda items: items, max_batch_size=3, max_wait_s=0.0, capacity=4, clock=clock, observer=calls)
    late_first = batcher.submit(1, deadline=100.0)  # the clock reads 100.0: due now
    on_time = batcher.submit(2, deadline=100.5)
    late_second = batcher.submit(3, deadline=99.0)  # taken while the batch gathers company
    batcher.start()
    for late in (late_first, late_second):
        with pytest.raises(DeadlineExceeded, match=r"^deadline passed while waiting in the queue$"):
            late.result(10)
    assert on_time.result(10).value == 2
    assert batcher.stop(10) is True
    assert calls.drops == ["expired", "expired"] and [b[0] for b in calls.batches] == [1]


def test_a_batch_waits_for_company_until_max_wait_on_its_clock() -> None:
    clock, calls = Clock(), Calls()
    batcher = Batcher(
        lambda items: items,
        max_batch_size=2,
        max_wait_s=0.5,
        capacity=4,
        clock=clock,
        observer=calls,
        incoming=lambda: 1,
    )
    batcher.start()
    first = batcher.submit(1)
    _wait_until(lambda: batcher.depth == 0)  # the worker holds it and waits: the clock does not move
    second = batcher.submit(2)
    assert (first.result(10).batch_size, second.result(10).batch_size) == (2, 2)
    alone = batcher.submit(3)
    _wait_until(lambda: batcher.depth == 0)
    clock.now += 0.5  # max_wait_s passed: it leaves alone
    assert alone.result(10).batch_size == 1
    assert batcher.stop(10) is True
    assert [b[0] for b in calls.batches] == [2, 1]


def test_a_cancelled_item_leaves_the_queue_at_once() -> None:
    calls, seen = Calls(), []
    batcher = Batcher(
        lambda items: seen.append(items) or items, max_batch_size=4, max_wait_s=0.0, capacity=3, observer=calls
    )
    kept, dropped, other = batcher.submit(1), batcher.submit(2), batcher.submit(5)
    assert dropped.cancel()
    assert batcher.depth == 2 and calls.drops == ["cancelled"]
    batcher.submit(3)  # its slot is free again
    with pytest.raises(QueueFull, match=r"^queue is full \(3 waiting\)$"):
        batcher.submit(4)
    batcher.start()
    assert kept.result(10).value == 1 and other.result(10).value == 5
    assert batcher.stop(10) is True
    assert seen == [[1, 5, 3]]


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_an_item_cancelled_as_the_worker_takes_it_is_not_computed() -> None:
    calls, seen = Calls(), []
    victim: list[Future[Batched[int]]] = []

    def clock() -> float:
        # The worker reads the clock after taking an item from the queue, before claiming it: cancel it there.
        if threading.current_thread().name == "racer" and victim and not victim[0].done():
            victim[0].cancel()
        return 100.0

    def predict(items: list[int]) -> list[int]:
        seen.append(list(items))
        return items

    batcher = Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=4, clock=clock, observer=calls, name="racer")
    victim.append(batcher.submit(1))
    after = batcher.submit(2)
    batcher.start()
    assert after.result(10).value == 2
    assert victim[0].cancelled() and seen == [[2]] and calls.drops == ["cancelled"]
    assert batcher.stop(10) is True


@pytest.mark.parametrize("dies_at", [1, 4])  # taking the first item; taking the second, after the first's forward
def test_a_worker_that_dies_fails_every_queued_caller(dies_at: int, caplog: pytest.LogCaptureFixture) -> None:
    calls = [0]

    def clock() -> float:
        if threading.current_thread().name == "doomed":
            calls[0] += 1
            if calls[0] == dies_at:
                raise OSError("clock gone")
        return 100.0

    batcher = Batcher(lambda items: items, max_batch_size=1, max_wait_s=0.0, capacity=4, clock=clock, name="doomed")
    futures = [batcher.submit(i) for i in range(3)]
    with caplog.at_level(logging.CRITICAL, logger="service.batcher"):
        batcher.start()
        if dies_at == 4:
            assert futures[0].result(10).value == 0
        # The item in the worker's hands when it died is answered too, like those still queued.
        for future in futures[1 if dies_at == 4 else 0 :]:
            with pytest.raises(BatcherClosed, match=r"^the inference worker stopped$"):
                future.result(10)
        assert batcher.stop(10) is True
    (record,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage() == "inference worker doomed died; the service is no longer ready"
    assert record.exc_info is not None and str(record.exc_info[1]) == "clock gone"
    assert not batcher.running and batcher.depth == 0


def test_a_worker_killed_in_a_forward_fails_that_batch() -> None:
    def predict(items: list[int]) -> list[int]:
        raise SystemExit("forward killed")  # not an Exception: it takes the worker down

    batcher = Batcher(predict, max_batch_size=2, max_wait_s=0.0, capacity=4)
    first, second = batcher.submit(1), batcher.submit(2)
    batcher.start()
    for future in (first, second):
        with pytest.raises(BatcherClosed, match=r"^the inference worker stopped$"):
            future.result(10)
    with pytest.raises(BatcherClosed, match=r"^the batcher is not accepting work$"):
        batcher.submit(3)


def test_construction_checks_name_the_bad_value() -> None:
    predict = lambda items: items  # noqa: E731
    with pytest.raises(ValueError, match=r"^max_batch_size must be a positive integer, got 0$"):
        Batcher(predict, max_batch_size=0, max_wait_s=0.0, capacity=1)
    with pytest.raises(ValueError, match=r"^max_wait_s must be >= 0, got -1.0$"):
        Batcher(predict, max_batch_size=1, max_wait_s=-1.0, capacity=1)
    with pytest.raises(ValueError, match=r"^capacity must be a positive integer, got True$"):
        Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=True)
    with pytest.raises(ValueError, match=r"^capacity must be a positive integer, got 0$"):
        Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=0)


def test_the_worker_is_a_daemon_thread_named_batcher_and_stops_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, bool]] = []

    def predict(items: list[int]) -> list[int]:
        seen.append((threading.current_thread().name, threading.current_thread().daemon))
        return items

    with caplog.at_level(logging.WARNING, logger="service.batcher"):
        batcher = Batcher(predict, max_batch_size=2, max_wait_s=0.0, capacity=2)
        batcher.start()
        assert batcher.submit(1).result(10).value == 1
        assert batcher.stop(10) is True
        assert not batcher.running
    assert seen == [("batcher", True)]
    assert caplog.records == []  # a normal stop is not a death


def test_busy_for_is_the_running_forward_s_age_on_the_clock() -> None:
    clock = Clock()
    entered, release = threading.Event(), threading.Event()

    def predict(items: list[int]) -> list[int]:
        entered.set()
        assert release.wait(10)
        return items

    batcher = Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=4, clock=clock)
    assert batcher.busy_for() == 0.0
    batcher.start()
    future = batcher.submit(7)
    assert entered.wait(10)
    clock.now = 100.25
    assert batcher.busy_for() == 0.25
    clock.now = 99.0  # never negative
    assert batcher.busy_for() == 0.0
    release.set()
    assert future.result(10).value == 7
    assert batcher.busy_for() == 0.0  # no forward running
    assert batcher.stop(10) is True


def test_start_twice_is_refused() -> None:
    batcher = Batcher(lambda items: items, max_batch_size=1, max_wait_s=0.0, capacity=1)
    batcher.start()
    with pytest.raises(RuntimeError, match=r"^batcher already started$"):
        batcher.start()
    assert batcher.stop(10) is True


def test_stop_before_start_fails_the_queue_and_reports_success() -> None:
    batcher = Batcher(lambda items: items, max_batch_size=1, max_wait_s=0.0, capacity=2)
    queued = batcher.submit(1)
    assert batcher.stop(1) is True
    with pytest.raises(BatcherClosed, match=r"^batcher stopped$"):
        queued.result(1)


def test_stop_past_its_deadline_fails_what_waits_and_says_so() -> None:
    entered, release = threading.Event(), threading.Event()

    def predict(items: list[int]) -> list[int]:
        entered.set()
        assert release.wait(10)
        return items

    batcher = Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=4)
    batcher.start()
    running = batcher.submit(1)
    assert entered.wait(10)
    waiting = batcher.submit(2)
    assert batcher.stop(0.05) is False
    with pytest.raises(BatcherClosed, match=r"^shutdown deadline passed before this item was computed$"):
        waiting.result(1)
    release.set()
    assert running.result(10).value == 1  # the forward in progress is left to finish


class Raising(Calls):
    def on_batch(self, size: int, inference_s: float, queue_waits_s: Sequence[float], failed: bool) -> None:
        raise RuntimeError("metrics broke")

    def on_drop(self, reason: str) -> None:
        raise RuntimeError("metrics broke")


def test_an_observer_that_raises_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def predict(items: list[int]) -> list[int]:
        assert release.wait(10)
        return items

    batcher = Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=4, observer=Raising())
    with caplog.at_level(logging.ERROR, logger="service.batcher"):
        batcher.start()
        first = batcher.submit(1)
        cancelled = batcher.submit(2)
        assert cancelled.cancel()  # dropped from the queue: on_drop raises
        release.set()
        assert first.result(10).value == 1  # on_batch raised: the answer still came
        assert batcher.submit(3).result(10).value == 3  # and the worker lives on
        assert batcher.stop(10) is True
    failures = [r for r in caplog.records if r.getMessage() == "batch observer failed"]
    assert len(failures) >= 3 and all(r.exc_info and str(r.exc_info[1]) == "metrics broke" for r in failures)
