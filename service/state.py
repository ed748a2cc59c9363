"""What one running app holds between requests, and its life cycle (warm-up, readiness, drain).

Created by the lifespan in :mod:`service.app`, reached by routes through
:mod:`service.deps`. Readiness is a property computed from the facts (warmed,
worker alive and not stuck, not draining), never a flag someone must remember
to reset: a forward that hangs longer than ``request_timeout_s`` makes the
service unready, and it is ready again as soon as that forward returns.

Shutdown has one clock: :meth:`ServiceState.begin_drain` starts it (at the
signal, see :mod:`service.__main__`), and everything after -- uvicorn's wait
for open connections, then :meth:`ServiceState.shutdown` -- shares that one
``shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

from model.wording import count
from service.batcher import Batcher, QueueFull
from service.budget import PixelBudget, Reservation
from service.exceptions import NotReady, PixelBudgetFull, SaliencyUnavailable, ShuttingDown
from service.metrics import ServiceMetrics
from service.runtime import ModelRuntime, WorkItem, work_key
from service.settings import Settings

_log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class ServiceState:
    """The model, its batcher and CPU pool, request admission and the flags that make up readiness."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, runtime: ModelRuntime) -> None:
        self.settings = settings
        self.metrics = metrics
        self.runtime = runtime
        self.batcher: Batcher[WorkItem, torch.Tensor] = Batcher(
            runtime.predict_batch,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_batch_delay_s,
            capacity=settings.queue_capacity,
            key=work_key,
            observer=metrics,
            name="scgan-inference",
            # Requests still being decoded are company worth waiting for; with none, a batch leaves at once.
            incoming=lambda: self._preparing,
        )
        self.pool = ThreadPoolExecutor(max_workers=settings.cpu_threads, thread_name_prefix="scgan-cpu")
        self.warmed = False
        self.draining = False
        self._drain_started: float | None = None
        self._drain_deadline: float | None = None
        self.started_at = time.time()
        #: Largest render size a client may request (never below the model's own default).
        self.max_render_size = max(settings.max_render_size, runtime.colorizer.render_size)
        # Image requests in the pipeline (decoding, queued or computing): see Admission.pipeline_slot.
        self._admitted = 0
        self._admission_limit = settings.queue_capacity + settings.max_batch_size
        #: Pixels of the images between header and encoded answer: see Admission.pixels.
        self.pixels = PixelBudget(settings.pixels_in_flight_limit)
        # Image requests admitted and not yet answered, upload included: shutdown waits for them.
        self._active = 0
        self._preparing = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Set at the shutdown deadline: requests still waiting for the model then get a 503, not a cut connection.
        self._drain_expired = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # built by the lifespan, on the serving loop

    # -- readiness -------------------------------------------------------------------
    @property
    def stalled(self) -> bool:
        """The forward running now has taken longer than a request may wait: whatever is queued will time out."""
        return self.batcher.busy_for() > self.settings.request_timeout_s

    @property
    def ready(self) -> bool:
        """Warmed up, inference worker alive and not stuck, not draining."""
        return self.warmed and self.batcher.running and not self.stalled and not self.draining

    def readiness_detail(self) -> dict[str, bool]:
        return {
            "model_loaded": True,
            "warmed_up": self.warmed,
            "worker_running": self.batcher.running,
            "worker_stalled": self.stalled,
            "draining": self.draining,
        }

    async def warm_up_and_start(self) -> None:
        """Warm the model off the event loop, then start the inference worker; only then are we ready."""
        try:
            if self.settings.warmup:
                await asyncio.to_thread(self.runtime.warm_up, self.settings.max_batch_size)
            if self.draining:
                return
            self.batcher.start()
            self.warmed = True
            _log.info("ready: inference worker running, accepting requests")
        except Exception:  # noqa: BLE001 - logged; readiness stays false, which is the signal
            _log.critical("warm-up failed; the service stays NOT ready", exc_info=True)

    # -- admission ---------------------------------------------------------------------
    @property
    def preparing(self) -> int:
        """Admitted requests still being decoded: the company a waiting batch can expect."""
        return self._preparing

    @contextmanager
    def admission(self, *, arrived_at: float | None, saliency: bool) -> Iterator[Admission]:
        """Admit one image request for the whole of its handling, or raise the 503/501 to answer at once.

        Checks whether a request that arrived at ``arrived_at`` (monotonic) is
        accepted now (:meth:`ensure_accepting`: draining, readiness, capacity),
        then whether the model has the saliency branch a ``saliency`` request
        needs. Until the block ends the request counts as active: shutdown
        waits for it. The :class:`Admission` yielded counts its later stages.
        """
        self._active += 1
        self._idle.clear()
        try:
            self.ensure_accepting(arrived_at)
            if saliency and not self.runtime.colorizer.has_saliency:
                raise SaliencyUnavailable("the loaded checkpoint has no saliency branch; POST /colorize still works")
            yield Admission(self)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    def ensure_accepting(self, arrived_at: float | None = None) -> None:
        """Raise the 503 to give when a request that arrived at ``arrived_at`` (monotonic) cannot be accepted now.

        A request that arrived before the drain began was in flight at the
        signal: it is served, shutdown waits for it. Without ``arrived_at``,
        the request is taken to arrive now.
        """
        if self.draining and (arrived_at is None or self._drain_started is None or arrived_at >= self._drain_started):
            raise ShuttingDown("the service is shutting down")
        self._ensure_capacity()

    def _ensure_capacity(self) -> None:
        """Raise the 503 to give when the model cannot take one more image now (draining aside)."""
        if not self.warmed:
            raise NotReady("the model is not ready yet")
        if not self.batcher.running:
            if self.draining:
                raise ShuttingDown("the service shut down before this request could be computed")
            raise NotReady("the inference worker is not running")
        if self.stalled:
            raise NotReady(
                f"the inference worker has been stuck in one forward for over {self.settings.request_timeout_s:g} s"
            )
        if self._admitted >= self._admission_limit or self.batcher.depth >= self.batcher.capacity:
            raise QueueFull(f"the request queue is full ({self.settings.queue_capacity} waiting); retry later")

    # -- CPU pool ----------------------------------------------------------------------
    async def run_cpu(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the CPU pool, in a copy of the current context (so logs keep the request id)."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self.pool, lambda: ctx.run(fn, *args, **kwargs))
        except RuntimeError as exc:  # the pool was closed by a shutdown whose deadline passed
            raise ShuttingDown("the service shut down before this request finished") from exc
        return await future

    # -- shutdown ----------------------------------------------------------------------
    def begin_drain(self, timeout_s: float | None = None) -> float:
        """Refuse new requests, drop readiness and start the shutdown clock (``shutdown_timeout_s`` by default).

        Idempotent: the first call sets the deadline (returned, monotonic).
        Only assigns attributes, so it may be called from a signal handler.
        """
        if self._drain_deadline is None:
            budget = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
            self._drain_started = time.monotonic()
            self._drain_deadline = self._drain_started + budget
            self._loop.call_soon_threadsafe(self._arm_drain_timer)  # signal-safe hand-over to the loop
        self.draining = True
        return self._drain_deadline

    def _arm_drain_timer(self) -> None:
        self._loop.call_later(self.drain_remaining_s(), self._drain_expired.set)

    async def drain_expired(self) -> None:
        """Return once the shutdown deadline has passed."""
        await self._drain_expired.wait()

    def drain_remaining_s(self) -> float:
        """Seconds left until the shutdown deadline (0.0 once it passed or when no drain began)."""
        return 0.0 if self._drain_deadline is None else max(0.0, self._drain_deadline - time.monotonic())

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let running and queued requests finish by the deadline, then stop the worker.

        The deadline is ``timeout_s`` after :meth:`begin_drain` (called here if
        nobody called it earlier), so time already spent draining counts.
        Order matters: (1) refuse new work and drop readiness, (2) wait for the
        requests already admitted (their batches still run, their post-processing
        still needs the pool), (3) stop the batcher with a sentinel, failing what
        is left when the deadline passed, (4) close the CPU pool.
        """
        deadline = self.begin_drain(timeout_s)
        _log.info("shutting down: %s in progress, %d queued", count(self._active, "request"), self.batcher.depth)
        if self._active:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                _log.warning("shutdown deadline passed with %s still in progress", count(self._active, "request"))
        stopped = await asyncio.to_thread(self.batcher.stop, max(0.0, deadline - time.monotonic()))
        if not stopped:
            _log.warning("inference worker still busy at the shutdown deadline; abandoning it")
        # Off the event loop: a pool thread may still be finishing an image when the deadline passed.
        await asyncio.to_thread(self.pool.shutdown, wait=stopped, cancel_futures=True)
        _log.info("shutdown complete")


class Admission:
    """An admitted image request (:meth:`ServiceState.admission`): the counts of its pipeline stages."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state

    @contextmanager
    def pipeline_slot(self) -> Iterator[None]:
        """Hold one of the pipeline's slots (decoding, queued or computing), or refuse at once (503) when full.

        Taken once the upload has arrived; bounding these slots also bounds the
        memory that decoded uploads can take. A request that was accepted before
        the drain began (still uploading at SIGTERM) gets its slot and finishes.
        """
        state = self._state
        state._ensure_capacity()
        state._admitted += 1
        try:
            yield
        finally:
            state._admitted -= 1

    @contextmanager
    def pixels(self) -> Iterator[Reservation]:
        """The request's share of the pixel budget, released when the block ends, however it ends.

        The decoder fills it (:meth:`Reservation.hold`) once the image's header gives
        its size, before any pixel is decoded; an image that does not fit now is a
        503 (``pixel_budget_full``), counted in ``scgan_pixel_budget_rejected_total``.
        The block should last until the answer is encoded.
        """
        reservation = self._state.pixels.reservation()
        try:
            yield reservation
        except PixelBudgetFull:
            self._state.metrics.pixel_budget_rejected.inc()
            raise
        finally:
            reservation.release()

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Count the request as being decoded (:attr:`ServiceState.preparing`) for the block's duration."""
        self._state._preparing += 1
        try:
            yield
        finally:
            self._state._preparing -= 1


__all__ = ["Admission", "ServiceState"]
