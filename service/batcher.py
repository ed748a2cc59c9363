"""Dynamic batching: many callers, one inference thread, one forward per batch.

Callers :meth:`Batcher.submit` an item and get a :class:`concurrent.futures.Future`
(``asyncio.wrap_future`` makes it awaitable). One worker thread takes the first
waiting item, keeps collecting until it holds ``max_batch_size`` items or
``max_wait_s`` has passed since that first item *arrived* (so a backlog is
batched at once, never delayed further), splits the batch into groups of equal
``key`` (e.g. the render size: only same-shape tensors can be stacked), runs
``predict`` once per group and resolves every item's future.

``incoming`` (optional) tells how many items are on their way (e.g. still being
decoded); when it says none, a batch leaves without waiting for company that is
not coming, so a lone request pays no ``max_wait_s``.

Items whose future was cancelled (the client gave up) or whose deadline passed
are dropped before compute; a cancelled item leaves the queue at once, so it
never holds a slot of ``capacity`` while the worker is busy elsewhere. An exception in ``predict`` fails only that group's
futures; the worker carries on. Shutdown appends a sentinel, so everything queued
before it is still computed. Deadlines use :func:`time.monotonic`. The module
knows nothing of HTTP, asyncio or Prometheus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from model.wording import count

T = TypeVar("T")
R = TypeVar("R")

_log = logging.getLogger(__name__)


class BatcherError(Exception):
    """Base of the batcher's own errors."""


class QueueFull(BatcherError):
    """The queue holds ``capacity`` items already; the caller should back off."""


class DeadlineExceeded(BatcherError):
    """The item's deadline passed while it waited; it was not computed."""


class BatcherClosed(BatcherError):
    """The batcher is shutting down or its worker stopped; the item was not computed."""


class BatchFailed(BatcherError):
    """``predict`` raised for the group this item was in (the original exception is ``__cause__``)."""


@dataclass(frozen=True)
class Batched(Generic[R]):
    """One item's result and how it was obtained."""

    value: R
    batch_size: int
    queue_wait_s: float  # from submit to the start of its forward
    inference_s: float  # duration of the forward it ran in


class BatchObserver(Protocol):
    """Hooks for metrics; called on the worker thread, must be cheap and must not raise."""

    def on_batch(self, size: int, inference_s: float, queue_waits_s: Sequence[float], failed: bool) -> None: ...

    def on_drop(self, reason: str) -> None: ...


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    item: T
    key: Hashable
    future: Future[Batched[R]]
    enqueued_at: float
    deadline: float | None


class _Sentinel:
    """Queued by :meth:`Batcher.stop`: the worker finishes what precedes it, then exits."""


_SENTINEL = _Sentinel()


def _no_key(_: object) -> None:
    return None


class Batcher(Generic[T, R]):
    """Collects items into batches and runs ``predict`` on a dedicated thread."""

    def __init__(
        self,
        predict: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        capacity: int,
        key: Callable[[T], Hashable] = _no_key,
        observer: BatchObserver | None = None,
        name: str = "batcher",
        clock: Callable[[], float] = time.monotonic,
        incoming: Callable[[], int] | None = None,
    ) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        if not max_wait_s >= 0.0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = float(max_wait_s)
        self.capacity = capacity
        self._key = key
        self._observer = observer
        self._clock = clock
        self._incoming = incoming
        self._queue: deque[_Pending[T, R] | _Sentinel] = deque()
        self._depth = 0
        self._cv = threading.Condition()
        self._closed = False
        self._in_progress: list[_Pending[T, R]] = []
        #: Items the worker has taken off the queue and not yet handed to a forward (failed if it dies holding them).
        self._held: list[_Pending[T, R]] = []
        self._forward_started: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    # -- control -----------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (once)."""
        with self._cv:
            if self._started:
                raise RuntimeError("batcher already started")
            self._started = True
        self._thread.start()

    def recheck_time(self) -> None:
        """Make a worker waiting for company read the clock again now: for an injected ``clock`` that jumps
        (tests); with :func:`time.monotonic` the worker wakes when its wait is over by itself."""
        with self._cv:
            self._cv.notify_all()

    @property
    def running(self) -> bool:
        """True while the worker thread is alive and accepting work."""
        return self._thread.is_alive() and not self._closed

    @property
    def depth(self) -> int:
        """Items waiting for the worker (not counting the batch being computed)."""
        return self._depth

    def busy_for(self) -> float:
        """Seconds the forward running now has taken so far (0.0 when none is running)."""
        started = self._forward_started
        return 0.0 if started is None else max(0.0, self._clock() - started)

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop accepting, let the worker finish everything queued, and wait up to ``timeout_s``.

        Returns True if the worker exited in time. Otherwise the items still
        waiting fail with :class:`BatcherClosed` (the batch being computed is
        left to finish, since a forward cannot be interrupted) and False is returned.
        """
        with self._cv:
            if not self._closed:
                self._closed = True
                self._queue.append(_SENTINEL)
                self._cv.notify_all()
        if not self._thread.is_alive():
            self._fail_queued("batcher stopped")
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._fail_queued("shutdown deadline passed before this item was computed")
            return False
        return True

    # -- callers -----------------------------------------------------------------
    def submit(self, item: T, *, deadline: float | None = None) -> Future[Batched[R]]:
        """Queue ``item``; raises :class:`QueueFull` or :class:`BatcherClosed` at once instead of blocking.

        ``deadline`` is a :func:`time.monotonic` instant after which the item is
        dropped uncomputed (its future fails with :class:`DeadlineExceeded`).
        Cancelling the future before its batch starts drops it too.
        """
        future: Future[Batched[R]] = Future()
        pending = _Pending(item, self._key(item), future, self._clock(), deadline)
        with self._cv:
            if self._closed or (self._started and not self._thread.is_alive()):
                raise BatcherClosed("the batcher is not accepting work")
            if self._depth >= self.capacity:
                raise QueueFull(f"queue is full ({self.capacity} waiting)")
            self._queue.append(pending)
            self._depth += 1
            self._cv.notify()
        future.add_done_callback(lambda _: self._forget_cancelled(pending))
        return future

    def _forget_cancelled(self, pending: _Pending[T, R]) -> None:
        """Take a cancelled item out of the queue at once (one the worker already took is its business)."""
        if not pending.future.cancelled():
            return
        with self._cv:
            try:
                self._queue.remove(pending)
            except ValueError:
                return
            self._depth -= 1
        self._notify_drop("cancelled")

    # -- worker ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch, stop = self._collect()
                if batch:
                    self._process(batch)
                if stop:
                    return
        except BaseException:  # noqa: BLE001 - a dying worker must fail its callers, not hang them
            # Not re-raised: nobody joins this thread to receive it; the log and `running` report it.
            _log.critical("inference worker %s died; the service is no longer ready", self._thread.name, exc_info=True)
        finally:
            with self._cv:
                self._closed = True
            for pending in [*self._held, *self._in_progress]:
                if not pending.future.done():
                    pending.future.set_exception(BatcherClosed("the inference worker stopped"))
            self._fail_queued("the inference worker stopped")

    def _accept(self, pending: _Pending[T, R], now: float, dropped: list[_Pending[T, R]]) -> bool:
        """Claim ``pending`` for compute unless it was cancelled or its deadline passed."""
        self._depth -= 1
        if not pending.future.set_running_or_notify_cancel():
            self._notify_drop("cancelled")
            return False
        if pending.deadline is not None and now >= pending.deadline:
            dropped.append(pending)
            return False
        return True

    def _collect(self) -> tuple[list[_Pending[T, R]], bool]:
        """Block for a first item, then gather company until the batch is full or its wait is over."""
        dropped: list[_Pending[T, R]] = []
        batch: list[_Pending[T, R]] = []
        stop = False
        with self._cv:
            while not batch:
                while not self._queue:
                    self._cv.wait()
                head = self._queue.popleft()
                if isinstance(head, _Sentinel):
                    stop = True
                    break
                self._held.append(head)
                if self._accept(head, self._clock(), dropped):
                    batch.append(head)
            if batch:
                batch_deadline = batch[0].enqueued_at + self.max_wait_s
                while len(batch) < self.max_batch_size:
                    if self._queue:
                        nxt = self._queue.popleft()
                        if isinstance(nxt, _Sentinel):
                            stop = True
                            break
                        self._held.append(nxt)
                        if self._accept(nxt, self._clock(), dropped):
                            batch.append(nxt)
                        continue
                    if self._incoming is not None and self._incoming() <= 0:
                        break  # nobody is on the way: waiting would only add latency
                    remaining = batch_deadline - self._clock()
                    if remaining <= 0.0:
                        break
                    self._cv.wait(remaining)
        for pending in dropped:
            self._notify_drop("expired")
            pending.future.set_exception(DeadlineExceeded("deadline passed while waiting in the queue"))
        self._held = []
        return batch, stop

    def _process(self, batch: list[_Pending[T, R]]) -> None:
        groups: dict[Hashable, list[_Pending[T, R]]] = {}
        for pending in batch:
            groups.setdefault(pending.key, []).append(pending)
        self._in_progress = batch
        for group in groups.values():
            self._run_group(group)
        self._in_progress = []

    def _run_group(self, group: list[_Pending[T, R]]) -> None:
        start = self._clock()
        waits = [start - p.enqueued_at for p in group]
        self._forward_started = start
        try:
            values = self._predict([p.item for p in group])
            if len(values) != len(group):
                raise RuntimeError(f"predict returned {count(len(values), 'result')} for a batch of {len(group)}")
        except Exception as exc:  # noqa: BLE001 - any failure of predict fails this group only
            self._forward_started = None
            elapsed = self._clock() - start
            _log.error("batch of %d failed after %.1f ms", len(group), elapsed * 1e3, exc_info=True)
            # Observed before anyone is answered, so a scrape after the last answer always counts this batch.
            self._notify_batch(len(group), elapsed, waits, failed=True)
            for pending in group:
                failure = BatchFailed(f"{type(exc).__name__}: {exc}")
                failure.__cause__ = exc
                pending.future.set_exception(failure)
            return
        self._forward_started = None
        elapsed = self._clock() - start
        self._notify_batch(len(group), elapsed, waits, failed=False)
        for pending, value, wait in zip(group, values, waits):
            pending.future.set_result(Batched(value, len(group), wait, elapsed))

    # -- helpers -----------------------------------------------------------------
    def _fail_queued(self, reason: str) -> None:
        with self._cv:
            leftovers = [p for p in self._queue if not isinstance(p, _Sentinel)]
            self._queue = deque(p for p in self._queue if isinstance(p, _Sentinel))
            self._depth = 0
        for pending in leftovers:
            if pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(BatcherClosed(reason))

    def _notify_batch(self, size: int, seconds: float, waits: Sequence[float], *, failed: bool) -> None:
        if self._observer is not None:
            try:
                self._observer.on_batch(size, seconds, waits, failed)
            except Exception:  # noqa: BLE001 - metrics must never take the worker down
                _log.exception("batch observer failed")

    def _notify_drop(self, reason: str) -> None:
        if self._observer is not None:
            try:
                self._observer.on_drop(reason)
            except Exception:  # noqa: BLE001 - see _notify_batch
                _log.exception("batch observer failed")


__all__ = [
    "BatchFailed",
    "BatchObserver",
    "Batched",
    "Batcher",
    "BatcherClosed",
    "BatcherError",
    "DeadlineExceeded",
    "QueueFull",
]
