"""The batcher on its own: no HTTP, no model; plain callables and threads."""

from __future__ import annotations

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
    batcher = make(recorder, max_batch_size=4, max_wait_s=0.45)
    futures = [batcher.submit(i) for i in range(10)]  # queued before the worker starts
    time.sleep(0.5)
    start = time.monotonic()
    batcher.start()
    assert results(futures) == [i * 10 for i in range(10)]
    # The items arrived more than max_wait before the worker took them: nothing waits any longer.
    assert time.monotonic() - start < 0.4  # waiting again for [8, 9] would take >= 0.45 s
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [f.result().batch_size for f in futures] == [4, 4, 4, 4, 4, 4, 4, 4, 2, 2]
    assert batcher.stop(5)


def test_items_arriving_within_the_delay_share_a_batch(recorder: Recorder) -> None:
    batcher = make(recorder, max_batch_size=8, max_wait_s=0.3)
    batcher.start()
    futures = [batcher.submit(i) for i in range(3)]
    assert results(futures) == [0, 10, 20]
    assert recorder.batches == [[0, 1, 2]]
    assert batcher.stop(5)


def test_a_lone_item_waits_at_most_the_delay(recorder: Recorder) -> None:
    batcher = make(recorder, max_batch_size=8, max_wait_s=0.05)
    batcher.start()
    start = time.monotonic()
    assert batcher.submit(3).result(timeout=5).value == 30
    assert time.monotonic() - start < 2.0
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
    time.sleep(0.05)
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


def test_wrong_result_count_fails_the_batch() -> None:
    batcher = Batcher(lambda items: [0], max_batch_size=2, max_wait_s=10.0, capacity=10)
    futures = [batcher.submit(i) for i in range(2)]
    batcher.start()
    done, _ = wait(futures, timeout=5)
    assert len(done) == 2
    assert all(isinstance(f.exception(), BatchFailed) for f in futures)
    assert batcher.stop(5)


def test_queue_wait_and_inference_time_are_reported(recorder: Recorder) -> None:
    batcher = make(recorder, max_wait_s=0.0)
    future = batcher.submit(1)
    time.sleep(0.05)
    batcher.start()
    outcome = future.result(timeout=5)
    assert outcome.queue_wait_s >= 0.04
    assert outcome.inference_s >= 0.0
    assert batcher.stop(5)


def test_no_waiting_for_company_that_is_not_coming(recorder: Recorder) -> None:
    on_the_way = 0
    batcher = Batcher(recorder, max_batch_size=2, max_wait_s=5.0, capacity=10, incoming=lambda: on_the_way)
    batcher.start()
    start = time.monotonic()
    assert batcher.submit(1).result(timeout=10).batch_size == 1
    assert time.monotonic() - start < 2.5  # not the 5 s delay
    on_the_way = 1  # someone is being decoded: the next batch waits for it
    first = batcher.submit(2)
    time.sleep(0.2)
    second = batcher.submit(3)
    assert first.result(timeout=10).batch_size == second.result(timeout=10).batch_size == 2
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
