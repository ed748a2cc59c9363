"""The batcher on its own: no HTTP, no model; plain callables and threads.

Its timing decisions run on an injected :class:`FakeClock` the tests move by hand, so what they pin (how long a
batch waits for company, queue-wait and inference times) is exact and does not depend on how busy the machine is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, wait

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.batcher import (
    Batched,
    Batcher,
    BatcherClosed,
    BatchFailed,
    DeadlineExceeded,
    QueueFull,
)


class Recorder:
    """predict = x * 10, recording each batch; optionally blocks until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        assert self.release.wait(10)
        if any(i < 0 for i in items):
            raise ValueError("negative input")
        return [i * 10 for i in items]


class Observer:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.failed: list[bool] = []
        self.drops: list[str] = []

    def on_batch(self, size: int, inference_s: float, queue_waits_s: Sequence[float], failed: bool) -> None:
        self.sizes.append(size)
        self.failed.append(failed)

    def on_drop(self, reason: str) -> None:
        self.drops.append(reason)


class FakeClock:
    """Time that moves only when the test says so; each move makes the batcher read it again at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.batcher: Batcher[int, int] | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self.batcher is not None:
            self.batcher.recheck_time()


def clocked(predict: Recorder, clock: FakeClock, **kwargs: object) -> Batcher[int, int]:
    options: dict[str, object] = {"max_batch_size": 4, "max_wait_s": 0.05, "capacity": 100}
    options.update(kwargs)
    clock.batcher = Batcher(predict, clock=clock, **options)  # type: ignore[arg-type]
    return clock.batcher


def not_done_yet(future: Future[Batched[int]]) -> bool:
    """The future still pending after a moment's grace for the worker thread (a negative can only be waited for)."""
    return not wait([future], timeout=0.1).done


def results(futures: list[Future[Batched[int]]]) -> list[int]:
    return [f.result(timeout=10).value for f in futures]


@pytest.fixture()
def recorder() -> Recorder:
    return Recorder()


def make(recorder: Recorder, **kwargs: object) -> Batcher[int, int]:
    options: dict[str, object] = {"max_batch_size": 4, "max_wait_s": 0.05, "capacity": 100}
    options.update(kwargs)
    return Batcher(recorder, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_size": 0}, {"max_batch_size": True}, {"max_wait_s": -1.0}, {"capacity": 0}, {"max_batch_size": 2.5}],
)
def test_invalid_settings_are_rejected(recorder: Recorder, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make(recorder, **kwargs)


def test_backlog_is_batched_up_to_max_batch_size(recorder: Recorder) -> None:
    clock = FakeClock()
    batcher = clocked(recorder, clock, max_batch_size=4, max_wait_s=0.45)
    futures = [batcher.submit(i) for i in range(10)]  # queued before the worker starts
    clock.advance(0.5)
    batcher.start()  # the clock stands still from here: waiting again for [8, 9] would never end
    assert results(futures) == [i * 10 for i in range(10)]
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [f.result().batch_size for f in futures] == [4, 4, 4, 4, 4, 4, 4, 4, 2, 2]
    assert [f.result().queue_wait_s for f in futures] == [0.5] * 10
    assert batcher.stop(5)


def test_items_arriving_within_the_delay_share_a_batch(recorder: Recorder) -> None:
    clock = FakeClock()
    batcher = clocked(recorder, clock, max_batch_size=8, max_wait_s=0.3)
    batcher.start()
    futures = [batcher.submit(0)]
    clock.advance(0.1)
    futures.append(batcher.submit(1))
    clock.advance(0.1999)
    futures.append(batcher.submit(2))  # still within 0.3 s of the first
    assert not_done_yet(futures[0])
    clock.advance(0.0001)
    assert results(futures) == [0, 10, 20]
    assert recorder.batches == [[0, 1, 2]]
    assert [f.result().queue_wait_s for f in futures] == pytest.approx([0.3, 0.2, 0.0001])
    assert batcher.stop(5)


def test_a_lone_item_waits_exactly_the_delay(recorder: Recorder) -> None:
    clock = FakeClock()
    batcher = clocked(recorder, clock, max_batch_size=8, max_wait_s=0.05)
    batcher.start()
    future = batcher.submit(3)
    clock.advance(0.049)
    assert not_done_yet(future)  # company may still come
    clock.advance(0.001)
    outcome = future.result(timeout=5)
    assert outcome.value == 30 and outcome.batch_size == 1
    assert outcome.queue_wait_s == pytest.approx(0.05)
    assert batcher.stop(5)


def test_zero_delay_runs_at_once(recorder: Recorder) -> None:
    batcher = make(recorder, max_batch_size=8, max_wait_s=0.0)
    batcher.start()
    assert batcher.submit(1).result(timeout=5).batch_size == 1
    assert batcher.stop(5)


def test_groups_with_different_keys_run_separately(recorder: Recorder) -> None:
    batcher = Batcher(recorder, max_batch_size=8, max_wait_s=0.1, capacity=100, key=lambda i: i % 2)
    futures = [batcher.submit(i) for i in range(6)]
    batcher.start()
    assert results(futures) == [0, 10, 20, 30, 40, 50]
    assert sorted(recorder.batches) == [[0, 2, 4], [1, 3, 5]]
    assert batcher.stop(5)


def test_a_failing_batch_fails_only_its_items_and_the_worker_survives(recorder: Recorder) -> None:
    observer = Observer()
    batcher = Batcher(recorder, max_batch_size=2, max_wait_s=0.05, capacity=100, observer=observer)
    futures = [batcher.submit(i) for i in (1, -1, 2, 3)]
    batcher.start()
    for f in futures[:2]:
        with pytest.raises(BatchFailed) as info:
            f.result(timeout=5)
        assert isinstance(info.value.__cause__, ValueError)
    assert results(futures[2:]) == [20, 30]
    assert batcher.running
    assert batcher.submit(4).result(timeout=5).value == 40
    assert observer.failed[:2] == [True, False]
    assert batcher.stop(5)


def test_a_full_queue_refuses_at_once(recorder: Recorder) -> None:
    batcher = make(recorder, capacity=2)
    batcher.submit(1)
    batcher.submit(2)
    start = time.monotonic()
    with pytest.raises(QueueFull):
        batcher.submit(3)
    assert time.monotonic() - start < 0.1
    assert batcher.depth == 2
    batcher.start()
    assert batcher.stop(5)


def test_expired_items_are_not_computed(recorder: Recorder) -> None:
    observer = Observer()
    batcher = Batcher(recorder, max_batch_size=4, max_wait_s=0.0, capacity=10, observer=observer)
    expired = batcher.submit(1, deadline=time.monotonic() - 1.0)
    fresh = batcher.submit(2, deadline=time.monotonic() + 60.0)
    batcher.start()
    with pytest.raises(DeadlineExceeded):
        expired.result(timeout=5)
    assert fresh.result(timeout=5).value == 20
    assert recorder.batches == [[2]]
    assert observer.drops == ["expired"]
    assert batcher.stop(5)


def test_cancelled_items_are_not_computed(recorder: Recorder) -> None:
    observer = Observer()
    batcher = Batcher(recorder, max_batch_size=4, max_wait_s=0.0, capacity=10, observer=observer)
    cancelled = batcher.submit(1)
    kept = batcher.submit(2)
    assert cancelled.cancel()
    batcher.start()
    assert kept.result(timeout=5).value == 20
    assert recorder.batches == [[2]]
    assert observer.drops == ["cancelled"]
    assert batcher.depth == 0
    assert batcher.stop(5)


def test_stop_finishes_what_was_queued_then_refuses(recorder: Recorder) -> None:
    recorder.release.clear()
    batcher = make(recorder, max_batch_size=1, max_wait_s=0.0)
    batcher.start()
    futures = [batcher.submit(i) for i in range(3)]
    assert recorder.started.wait(5)
    stopper = threading.Thread(target=batcher.stop, args=(10,))
    stopper.start()
    deadline = time.monotonic() + 5
    while batcher.running:  # until stop() has closed the door (the worker itself is still busy)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert stopper.is_alive()
    with pytest.raises(BatcherClosed):
        batcher.submit(99)
    recorder.release.set()
    stopper.join(10)
    assert results(futures) == [0, 10, 20]
    assert not batcher.running


def test_stop_past_its_deadline_fails_the_rest(recorder: Recorder) -> None:
    recorder.release.clear()
    batcher = make(recorder, max_batch_size=1, max_wait_s=0.0)
    batcher.start()
    running = batcher.submit(1)
    assert recorder.started.wait(5)
    waiting = batcher.submit(2)
    assert batcher.stop(0.05) is False
    with pytest.raises(BatcherClosed):
        waiting.result(timeout=5)
    recorder.release.set()
    assert running.result(timeout=5).value == 10  # the batch in progress still completes
    batcher.stop(5)
    assert recorder.batches == [[1]]


class Fatal(BaseException):
    pass


def test_a_dead_worker_fails_pending_work_and_reports_not_running() -> None:
    def predict(items: list[int]) -> list[int]:
        raise Fatal()

    batcher = Batcher(predict, max_batch_size=1, max_wait_s=0.0, capacity=10)
    first = batcher.submit(1)
    batcher.start()
    with pytest.raises(BatcherClosed):
        first.result(timeout=5)
    deadline = time.monotonic() + 5
    while batcher.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not batcher.running
    with pytest.raises(BatcherClosed):
        batcher.submit(2)


def test_stop_while_a_batch_waits_for_company_still_computes_it(recorder: Recorder) -> None:
    clock = FakeClock()  # stands still: only the stop can end the wait for company
    batcher = clocked(recorder, clock, max_batch_size=4, max_wait_s=30.0)
    batcher.start()
    futures = [batcher.submit(1), batcher.submit(2)]
    deadline = time.monotonic() + 5
    while batcher.depth:  # the worker holds both and waits for company
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert batcher.stop(5)
    assert results(futures) == [10, 20]
    assert recorder.batches == [[1, 2]]


def test_a_worker_dying_while_it_gathers_a_batch_fails_every_item_it_holds(recorder: Recorder) -> None:
    def incoming() -> int:  # asked once the queue is empty with the batch not full
        raise Fatal()

    batcher = make(recorder, max_batch_size=4, max_wait_s=30.0, incoming=incoming)
    futures = [batcher.submit(i) for i in range(3)]  # the worker takes all three off the queue, then asks
    batcher.start()
    done, _ = wait(futures, timeout=5)
    assert len(done) == 3
    assert all(isinstance(f.exception(), BatcherClosed) for f in futures)
    assert recorder.batches == [] and not batcher.running


def test_wrong_result_count_fails_the_batch() -> None:
    batcher = Batcher(lambda items: [0], max_batch_size=2, max_wait_s=10.0, capacity=10)
    futures = [batcher.submit(i) for i in range(2)]
    batcher.start()
    done, _ = wait(futures, timeout=5)
    assert len(done) == 2
    assert all(isinstance(f.exception(), BatchFailed) for f in futures)
    assert batcher.stop(5)


def test_queue_wait_and_inference_time_are_reported() -> None:
    clock = FakeClock()

    def predict(items: list[int]) -> list[int]:
        clock.advance(0.125)  # the forward takes 0.125 s
        return items

    batcher = clocked(predict, clock, max_wait_s=0.0)  # type: ignore[arg-type]
    future = batcher.submit(1)
    clock.advance(0.25)  # it waits 0.25 s for the worker
    batcher.start()
    outcome = future.result(timeout=5)
    assert outcome.queue_wait_s == pytest.approx(0.25)
    assert outcome.inference_s == pytest.approx(0.125)
    assert batcher.stop(5)


def test_no_waiting_for_company_that_is_not_coming(recorder: Recorder) -> None:
    on_the_way = 0
    clock = FakeClock()
    batcher = clocked(recorder, clock, max_batch_size=2, max_wait_s=5.0, incoming=lambda: on_the_way)
    batcher.start()
    lone = batcher.submit(1).result(timeout=10)  # the clock stands still: waiting for company would never end
    assert lone.batch_size == 1 and lone.queue_wait_s == 0.0
    on_the_way = 1  # someone is being decoded: the next batch waits for it
    first = batcher.submit(2)
    assert not_done_yet(first)
    second = batcher.submit(3)
    assert first.result(timeout=10).batch_size == second.result(timeout=10).batch_size == 2
    assert batcher.stop(5)


def test_start_twice_is_refused(recorder: Recorder) -> None:
    batcher = make(recorder)
    batcher.start()
    with pytest.raises(RuntimeError, match="already started"):
        batcher.start()
    assert batcher.running and batcher.submit(2).result(timeout=5).value == 20
    assert batcher.stop(5)


class FailingObserver:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_batch(self, size: int, inference_s: float, queue_waits_s: Sequence[float], failed: bool) -> None:
        self.calls.append("batch")
        raise RuntimeError("metrics broke")

    def on_drop(self, reason: str) -> None:
        self.calls.append(reason)
        raise RuntimeError("metrics broke")


def test_an_observer_that_raises_does_not_take_the_worker_down(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    observer = FailingObserver()
    batcher = make(recorder, max_batch_size=1, max_wait_s=0.0, observer=observer)
    cancelled = batcher.submit(1)
    assert cancelled.cancel()
    expired = batcher.submit(2, deadline=time.monotonic() - 1.0)
    failing = batcher.submit(-1)
    kept = batcher.submit(3)
    with caplog.at_level(logging.ERROR, logger="service.batcher"):
        batcher.start()
        with pytest.raises(DeadlineExceeded):
            expired.result(timeout=5)
        with pytest.raises(BatchFailed):
            failing.result(timeout=5)
        assert kept.result(timeout=5).value == 30
        assert batcher.running and batcher.submit(4).result(timeout=5).value == 40
    assert observer.calls[:2] == ["cancelled", "expired"] and observer.calls.count("batch") >= 2
    assert [r.getMessage() for r in caplog.records].count("batch observer failed") == len(observer.calls)
    assert batcher.stop(5)


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 1000), st.sampled_from("abc")), min_size=1, max_size=40),
    max_batch_size=st.integers(1, 6),
    cancel_every=st.integers(0, 5),
)
def test_every_item_gets_its_own_result_from_a_homogeneous_batch(
    items: list[tuple[int, str]], max_batch_size: int, cancel_every: int
) -> None:
    """Whatever the arrivals, keys and cancellations: each surviving item gets f(its input), from a batch of
    at most ``max_batch_size`` items that all share its key."""
    seen: list[list[tuple[int, str]]] = []

    def predict(batch: list[tuple[int, str]]) -> list[int]:
        seen.append(list(batch))
        return [value * 10 for value, _ in batch]

    batcher: Batcher[tuple[int, str], int] = Batcher(
        predict, max_batch_size=max_batch_size, max_wait_s=0.001, capacity=100, key=lambda item: item[1]
    )
    futures = [batcher.submit(item) for item in items]
    cancelled = {i for i, future in enumerate(futures) if cancel_every and i % cancel_every == 0 and future.cancel()}
    batcher.start()
    for i, (item, future) in enumerate(zip(items, futures)):
        if i in cancelled:
            continue
        outcome = future.result(timeout=10)
        assert outcome.value == item[0] * 10
        assert 1 <= outcome.batch_size <= max_batch_size
    assert batcher.stop(5)
    assert all(len(batch) <= max_batch_size and len({key for _, key in batch}) == 1 for batch in seen)
    assert sum(len(batch) for batch in seen) == len(items) - len(cancelled)
