"""Several model workers on one host behind one port (``SCGAN_WORKERS``), each with its own model and torch threads.

Why processes: one forward on a CPU does not use many cores well (each extra
intra-op thread adds less), and the GIL keeps one process's Python work on one
core; N processes with ``cores // N`` threads each keep every core busy
(benchmarks/results/workers.md). On CUDA it stays one process per GPU: the
batcher already fills the GPU, and N models would share one device's memory.

How: this supervisor reserves the port (a socket bound with ``SO_REUSEPORT``
that never listens, so ``SCGAN_PORT=0`` picks one port for all), creates a fresh
``PROMETHEUS_MULTIPROC_DIR`` (removed at exit) and spawns N worker processes.
Each binds its own ``SO_REUSEPORT`` socket to that port and runs the usual app
under the usual uvicorn server (:mod:`service.server`); the kernel spreads new
connections evenly over the listening workers by their address hash. (One
socket shared by all workers left the balancing to whichever accept() won the
race: under load one worker took every connection while the other idled.)
All workers start at once and import in parallel, but only worker 0 loads its
checkpoint at first; the others wait for it to serve, so a checkpoint that cannot
be loaded stops the service with its one-line reason and exit status 3, exactly as
one process would. Compiling is one process at a time (model/compile_cache.py): a
cold start compiles each shape once, and the other workers load it.

Why not ``uvicorn.run(..., workers=N)``: it needs an import string for the
app, and its supervisor runs its own ``uvicorn.Server``, so the service's
shared shutdown clock (:class:`service.server.Server`), start-up exit status,
readiness across workers and multiprocess metrics would all have to be
rebuilt around it. Why not one HTTP process feeding N model processes: every
image would cross a process boundary twice, and decoding and encoding would
stay on one GIL.

Contracts, as with one process: ``/readyz`` answers 200 only when every worker
is ready (any of them may get the next request); ``/metrics`` from any worker
sums all of them (:mod:`service.metrics`); SIGTERM or SIGINT is passed to every
worker as SIGTERM, each drains within ``SCGAN_SHUTDOWN_TIMEOUT_S``, and the
supervisor exits 0. Per worker: the queue and the 503 (queue full) and 504
limits (``SCGAN_QUEUE_CAPACITY`` and the rest apply to each worker).

A worker started while a peer is ready (a replacement) listens only once it is
warm, so it never answers its share of new connections with 503 while it warms.

Faults: a worker that dies after it served is replaced, and so is its
replacement if that dies while it starts (the checkpoint is known good by
then: the death is a crash, not a bad configuration). A worker that hangs
without dying (stopped, deadlocked) is found by its heartbeat: each worker
stamps a shared clock from a thread of its own, which a forward does not block
(torch releases the GIL), and one whose stamp is older than
``SCGAN_WORKER_HEARTBEAT_TIMEOUT_S`` is killed (SIGKILL) and replaced. Every
replacement counts: more than :data:`MAX_RESTARTS` within
:data:`RESTART_WINDOW_S` stops the service with status 1. A worker's first
start that fails (worker 0, or another one, which loads its checkpoint after
worker 0 served) stops the service with status 3. Whenever the supervisor stops, the healthy workers
drain (SIGTERM) before it exits; one that outlives the shutdown deadline by
:data:`_KILL_GRACE_S` is killed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import multiprocessing.util
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import multiprocess

from model.wording import count
from service.metrics import MULTIPROC_DIR_ENV
from service.settings import MAX_AUTO_WORKERS, Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

_log = logging.getLogger(__name__)

#: A worker's state in the shared array: loading its model, serving (accepting connections), ready.
STARTING, SERVING, READY = 0, 1, 2
#: Replacements of dead workers allowed within RESTART_WINDOW_S before the service gives up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
#: How often a worker publishes its readiness and queue depth, and the supervisor checks its workers.
_TICK_S = 0.05
#: A worker stamps its heartbeat this many times per SCGAN_WORKER_HEARTBEAT_TIMEOUT_S (at most once per _TICK_S).
_BEATS_PER_TIMEOUT = 10
#: Past the shutdown deadline, how long the supervisor waits for a worker before it kills it.
_KILL_GRACE_S = 5.0
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to run and the torch intra-op threads of each (None: torch's default)."""

    workers: int
    torch_threads: int | None


def cgroup_cores(cpu_max: str) -> float | None:
    """The CPU quota of a cgroup v2 ``cpu.max`` ("200000 100000" -> 2.0); None when unlimited or unreadable."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may run on: its CPU affinity, lowered to a cgroup CPU quota (rounded down) if one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota = cgroup_cores(cpu_max.read_text())
    except OSError:
        quota = None
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def plan_workers(setting: int | Literal["auto"], *, cuda: bool, cores: int, torch_threads: int | None) -> WorkerPlan:
    """Workers and threads per worker for ``SCGAN_WORKERS=setting``; ValueError for more than one on CUDA.

    'auto': one on CUDA (one process per GPU), else one per usable core, at
    most :data:`~service.settings.MAX_AUTO_WORKERS` (each holds its own model).
    One worker keeps ``torch_threads`` as configured (torch's default when
    unset); several get ``torch_threads``, or else the cores shared out (at least 1).
    """
    if cuda:
        if setting not in ("auto", 1):
            raise ValueError(f"{setting} workers on CUDA: one process per GPU (set 1 or auto)")
        return WorkerPlan(1, torch_threads)
    workers = min(max(1, cores), MAX_AUTO_WORKERS) if setting == "auto" else setting
    if workers == 1:
        return WorkerPlan(1, torch_threads)
    return WorkerPlan(workers, torch_threads or max(1, cores // workers))


def uses_cuda(device: str) -> bool:
    """Whether SCGAN_DEVICE (validated) puts the model on a GPU."""
    if device == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return device.startswith("cuda")


# -- a worker process ----------------------------------------------------------------------------------------------


class _WorkerField(logging.Filter):
    """Stamps every log record with the worker's index (a ``worker`` field in JSON logs)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def heartbeat_interval_s(timeout_s: float) -> float:
    """How often a worker stamps its heartbeat, for a supervisor that kills it after ``timeout_s`` without one."""
    return max(_TICK_S, timeout_s / _BEATS_PER_TIMEOUT)


def _beat(heartbeats: Any, index: int, interval_s: float) -> None:
    """Stamp ``heartbeats[index]`` with the (system-wide) monotonic clock forever; nothing else, so nothing blocks it."""
    while True:
        heartbeats[index] = time.monotonic()
        time.sleep(interval_s)


@dataclass(frozen=True)
class SharedReadiness:
    """One worker's slot in the supervisor's shared state array, and what it reads there of all the workers.

    ``app.state.worker_readiness`` of a worker: /readyz calls it with the worker's own readiness
    (:mod:`service.routes.health`).
    """

    states: Any
    index: int
    count: int

    def listening(self) -> None:
        """Leave STARTING: uvicorn listens on this worker's socket (the supervisor resets the slot for a replacement)."""
        self.states[self.index] = SERVING

    def publish(self, ready: bool) -> None:
        """Record this worker as READY or SERVING; not while STARTING (it has not listened yet)."""
        if self.states[self.index] != STARTING:
            self.states[self.index] = READY if ready else SERVING

    def peers_ready(self) -> int:
        """The other workers whose published state is READY."""
        return sum(1 for i in range(self.count) if i != self.index and self.states[i] == READY)

    def __call__(self, ready: bool) -> tuple[int, int]:
        """(Workers whose published state is READY, all workers), after publishing this worker's ``ready``.

        Publishing first makes a 200 stick: every worker's slot reads READY when one answers it, so the next
        /readyz agrees whichever worker the kernel hands it to (the publishing thread may not have run yet).
        """
        self.publish(ready)
        return sum(1 for i in range(self.count) if self.states[i] == READY), self.count


def _warm_before_listening(app: FastAPI) -> None:
    """Hold the app's start-up (and so uvicorn's listen()) until its warm-up is done or it drains.

    A worker listens as soon as its model is loaded, so an orchestrator sees it alive while it warms (minutes
    when it compiles). A replacement need not: its peers answer meanwhile, and a warming worker on the shared
    port would answer its share of new connections with 503. (One whose warm-up fails never listens; /readyz,
    answered by its peers, stays 503.)
    """
    lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def warm_first(app: FastAPI) -> AsyncIterator[Any]:
        async with lifespan(app) as value:
            state = app.state.service
            while state is not None and not (state.warmed or state.draining):
                await asyncio.sleep(_TICK_S)
            yield value

    app.router.lifespan_context = warm_first


def _wait_for_worker_0(states: Any) -> None:
    """Block until worker 0 serves: its checkpoint loaded, so this one's will too (the supervisor stops us otherwise)."""
    while states[0] == STARTING:
        time.sleep(_TICK_S)


def _worker_main(
    settings: Settings, index: int, count: int, port: int, states: Any, heartbeats: Any, after_worker_0: bool
) -> None:
    """One worker: the app on its own socket of the shared port, publishing its readiness; exits 3 when start-up fails.

    ``after_worker_0``: a first start beside worker 0, which imports now but loads its checkpoint once worker 0 serves.
    """
    interval = heartbeat_interval_s(settings.worker_heartbeat_timeout_s)
    threading.Thread(
        target=_beat, args=(heartbeats, index, interval), name=f"scgan-worker-{index}-beat", daemon=True
    ).start()
    from service.app import create_app
    from service.logging_setup import configure_logging
    from service.server import serve

    configure_logging(settings.log_level, settings.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(index))
    if after_worker_0:
        _wait_for_worker_0(states)
    app = create_app(settings)
    app.state.metrics.workers.set(count)
    app.state.metrics.bind_worker(index)

    readiness = SharedReadiness(states, index, count)
    app.state.worker_readiness = readiness
    # A replacement: its peers serve, so it takes connections only once it can serve too.
    if readiness.peers_ready() > 0:
        _warm_before_listening(app)
    parent = os.getppid()

    def publish() -> None:
        """Readiness for the other workers' /readyz, queue depth for their scrapes; stop if the supervisor died."""
        while True:
            state = app.state.service
            readiness.publish(state is not None and state.ready)
            app.state.metrics.refresh()
            if os.getppid() != parent:
                _log.error("the supervisor is gone; shutting down")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(_TICK_S)

    threading.Thread(target=publish, name=f"scgan-worker-{index}-publish", daemon=True).start()

    try:
        sock = bind_socket(settings.host, port)
        server = serve(app, settings, sockets=[sock], on_started=readiness.listening)
        status = 0 if server.started else 1
    except SystemExit as exc:  # uvicorn's start-up failure (3)
        status = exc.code if isinstance(exc.code, int) else 1
    # Drained and stopped: skip the interpreter's teardown of torch (seconds on a busy host), nothing is left to save.
    # multiprocessing's own exit step still runs: it releases the semaphores torch.compile's workers registered.
    multiprocessing.util._exit_function()  # type: ignore[attr-defined]
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# -- the supervisor ------------------------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to the port with ``SO_REUSEPORT`` (its owner calls listen() when it starts serving)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    """Starts, watches, replaces and stops the workers of one port; :meth:`run` returns the exit status."""

    def __init__(self, settings: Settings, plan: WorkerPlan) -> None:
        self.settings = settings.model_copy(update={"torch_threads": plan.torch_threads})
        self.count = plan.workers
        self._context = multiprocessing.get_context("spawn")
        self._states = self._context.RawArray("i", self.count)
        #: Each worker's latest time.monotonic() stamp (CLOCK_MONOTONIC: one clock for all processes); 0 before its first.
        self._heartbeats = self._context.RawArray("d", self.count)
        #: Whether the worker in each slot ever served: a slot that did has a known-good configuration.
        self._served = [False] * self.count
        self._processes: list[SpawnProcess | None] = [None] * self.count
        self._restarts: deque[float] = deque()
        self._stop_signal: int | None = None
        self._sock: socket.socket | None = None
        self._metrics_dir: str | None = None

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._stop_signal = sig

    def _start(self, index: int, *, after_worker_0: bool = False) -> SpawnProcess:
        assert self._sock is not None
        self._states[index] = STARTING
        self._heartbeats[index] = 0.0
        port = self._sock.getsockname()[1]
        process = self._context.Process(
            target=_worker_main,
            args=(self.settings, index, self.count, port, self._states, self._heartbeats, after_worker_0),
            name=f"scgan-worker-{index}",
        )
        process.start()
        self._processes[index] = process
        _log.info("worker %d started (pid %s)", index, process.pid)
        return process

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._sock = bind_socket(self.settings.host, self.settings.port)
        except OSError as exc:
            _log.critical("start-up failed, cannot listen on %s:%d: %s", self.settings.host, self.settings.port, exc)
            return 3
        # Before the first worker exists: prometheus-client picks its multiprocess mode when a worker imports it.
        self._metrics_dir = tempfile.mkdtemp(prefix="scgan-metrics-")
        os.environ[MULTIPROC_DIR_ENV] = self._metrics_dir
        _log.info(
            "starting %s (torch threads each: %s) on http://%s:%d, metrics in %s",
            count(self.count, "worker"),
            self.settings.torch_threads or "torch's default",
            self.settings.host,
            self._sock.getsockname()[1],  # the port the kernel chose for SCGAN_PORT=0
            self._metrics_dir,
        )
        try:
            return self._supervise()
        finally:
            self._stop_all()
            self._sock.close()
            os.environ.pop(MULTIPROC_DIR_ENV, None)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _supervise(self) -> int:
        self._start(0)
        for index in range(1, self.count):  # importing now; loading once worker 0 has (a bad checkpoint fails once)
            self._start(index, after_worker_0=True)
        while self._stop_signal is None:
            sentinels = [p.sentinel for p in self._processes if p is not None]
            wait(sentinels, timeout=_TICK_S * 4)
            if self._stop_signal is not None:
                break
            for index, process in enumerate(self._processes):
                if process is not None and self._states[index] != STARTING:
                    self._served[index] = True
            self._kill_hung()
            for index, process in enumerate(self._processes):
                if process is None or process.is_alive():
                    continue
                if not self._served[index]:
                    return self._failed_start(index, process)
                status = self._replace(index, process)
                if status is not None:
                    return status
        return self._stop()

    def _kill_hung(self) -> None:
        """SIGKILL every worker whose heartbeat is older than the limit; the next round replaces it as dead."""
        now = time.monotonic()
        limit = self.settings.worker_heartbeat_timeout_s
        for index, process in enumerate(self._processes):
            beat = self._heartbeats[index]
            if process is None or beat == 0.0 or now - beat <= limit or not process.is_alive():
                continue
            _log.error(
                "worker %d (pid %s) sent no heartbeat for %.1f s (SCGAN_WORKER_HEARTBEAT_TIMEOUT_S=%g); killing it",
                index,
                process.pid,
                now - beat,
                limit,
            )
            process.kill()
            process.join(_KILL_GRACE_S)

    def _failed_start(self, index: int, process: SpawnProcess) -> int:
        """A worker's first start failed: the configuration, the checkpoint or the host is at fault; stop with 3."""
        _log.error("worker %d exited during start-up (status %s); stopping", index, process.exitcode)
        self._forget(index, process)
        return 3

    def _replace(self, index: int, process: SpawnProcess) -> int | None:
        """Start a new worker in place of a dead one; the status to exit with when they keep dying."""
        self._forget(index, process)
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            _log.critical(
                "worker %d died (status %s), the %dth death within %g s; stopping",
                index,
                process.exitcode,
                len(self._restarts) + 1,
                RESTART_WINDOW_S,
            )
            return 1
        self._restarts.append(now)
        _log.error(
            "worker %d (pid %s) died with status %s; starting a new one (restart %d of %d within %g s)",
            index,
            process.pid,
            process.exitcode,
            len(self._restarts),
            MAX_RESTARTS,
            RESTART_WINDOW_S,
        )
        self._start(index)
        return None

    def _forget(self, index: int, process: SpawnProcess) -> None:
        self._states[index] = STARTING
        self._processes[index] = None
        if self._metrics_dir is not None and process.pid is not None:
            multiprocess.mark_process_dead(process.pid, self._metrics_dir)

    def _stop(self) -> int:
        """Drain every worker (SIGTERM) within the shutdown deadline; 0 when all of them stopped cleanly."""
        statuses = self._stop_all()
        return 0 if all(status == 0 for status in statuses) else 1

    def _stop_all(self) -> Sequence[int | None]:
        if self._sock is not None:
            self._sock.close()  # it never listened; the workers close theirs as they drain
        alive = [p for p in self._processes if p is not None]
        if alive:
            _log.info("stopping %s", count(len(alive), "worker"))
        for process in alive:
            if process.is_alive() and process.pid is not None:
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:  # it died just now
                    pass
        deadline = time.monotonic() + self.settings.shutdown_timeout_s + _KILL_GRACE_S
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                _log.error("worker %s outlived the shutdown deadline; killing it", process.name)
                process.kill()
                process.join()
        self._processes = [None] * self.count
        return [p.exitcode for p in alive]


__all__ = [
    "MAX_AUTO_WORKERS",
    "MAX_RESTARTS",
    "RESTART_WINDOW_S",
    "Supervisor",
    "WorkerPlan",
    "cgroup_cores",
    "plan_workers",
    "usable_cores",
    "uses_cuda",
]
