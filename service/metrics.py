"""Prometheus metrics of one app, in its own registry (so several apps in one process never collide).

With several worker processes (:mod:`service.workers`) every worker writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode, chosen by that variable before the first metric exists) and
a scrape of any worker answers for all of them. Each gauge declares how the
workers' values combine: requests in flight, queue depth, queue capacity and
workers are summed or maximised over the live workers, readiness is the
minimum (the host is ready only when every worker is). Values that a single
process reads at scrape time (queue depth, readiness) are written by each
worker as they change instead (:meth:`ServiceMetrics.refresh`).

Names follow the Prometheus conventions: a ``scgan_`` namespace, base units
(seconds, bytes), ``_total`` for counters. Route labels are route *templates*
(``/colorize``), never raw paths, so cardinality stays bounded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
#: Set (by :mod:`service.workers`) before prometheus-client is imported: values live in files there, one per process.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


#: prometheus-client's process_* samples (Linux, from /proc) -> our per-worker gauge and its help.
_WORKER_PROCESS_GAUGES = {
    "process_resident_memory_bytes": ("scgan_worker_resident_memory_bytes", "Resident memory of each worker process."),
    "process_virtual_memory_bytes": ("scgan_worker_virtual_memory_bytes", "Virtual memory of each worker process."),
    "process_cpu_seconds_total": (
        "scgan_worker_cpu_seconds",
        "CPU time (user + system) each worker process has used since it started; take its rate().",
    ),
    "process_open_fds": ("scgan_worker_open_fds", "Open file descriptors of each worker process."),
    "process_max_fds": ("scgan_worker_max_fds", "File descriptor limit of each worker process."),
    "process_start_time_seconds": (
        "scgan_worker_start_time_seconds",
        "Start time of each worker process (Unix time): a change means the worker was replaced.",
    ),
}
#: The per-worker process gauges are read from /proc at most this often (the publishing loop ticks faster).
_PROCESS_REFRESH_S = 1.0


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, or None in a single process."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


class ServiceMetrics:
    """All of the service's metrics; also the batcher's :class:`~service.batcher.BatchObserver`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        #: Several workers share the exposition: see the module's docstring.
        self.multiprocess_dir = multiprocess_dir()
        self._depth: Callable[[], int] | None = None
        self._is_ready: Callable[[], bool] | None = None
        self._pixels: Callable[[], int] | None = None
        r = self.registry
        self.requests = Counter(
            "scgan_http_requests",
            "HTTP requests answered, by route, method and status.",
            ("route", "method", "status"),
            registry=r,
        )
        self.request_duration = Histogram(
            "scgan_http_request_duration_seconds",
            "Time from request arrival to the last byte of the answer.",
            ("route", "method"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "scgan_http_requests_in_flight", "HTTP requests being handled now.", registry=r, multiprocess_mode="livesum"
        )
        self.queue_wait = Histogram(
            "scgan_queue_wait_seconds",
            "Time a request waited in the batch queue before its forward started.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "scgan_queue_depth", "Requests waiting in the batch queue.", registry=r, multiprocess_mode="livesum"
        )
        # Summed like the depth, so depth / capacity stays the fill of the host's queues.
        self.queue_capacity = Gauge(
            "scgan_queue_capacity", "Capacity of the batch queue.", registry=r, multiprocess_mode="livesum"
        )
        self.batch_size = Histogram(
            "scgan_batch_size", "Images per generator forward.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_duration = Histogram(
            "scgan_batch_inference_duration_seconds",
            "Duration of one batched generator forward.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batches_failed = Counter("scgan_batches_failed", "Generator forwards that raised.", registry=r)
        self.stage_duration = Histogram(
            "scgan_stage_duration_seconds",
            "CPU stage durations per request (decode+prepare, finish+encode).",
            ("stage",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "scgan_images_processed", "Images answered successfully, by endpoint.", ("endpoint",), registry=r
        )
        self.pixels = Counter("scgan_input_pixels", "Input pixels of images answered successfully.", registry=r)
        self.auth_rejected = Counter(
            "scgan_auth_rejected",
            "Requests refused with 401 (API keys enabled), by route and reason (missing, invalid).",
            ("route", "reason"),
            registry=r,
        )
        self.errors = Counter("scgan_errors", "Requests that failed, by error code.", ("kind",), registry=r)
        self.dropped = Counter(
            "scgan_queue_dropped",
            "Queued requests dropped before compute (expired, cancelled).",
            ("reason",),
            registry=r,
        )
        self.pixel_budget_rejected = Counter(
            "scgan_pixel_budget_rejected",
            "Images refused with 503 because the pixels in progress were at max_pixels_in_flight.",
            registry=r,
        )
        self.pixels_in_flight = Gauge(
            "scgan_pixels_in_flight",
            "Image pixels reserved now (decoding, waiting or encoding).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pixels_in_flight_limit = Gauge(
            "scgan_pixels_in_flight_limit",
            "The pixel budget (max_pixels_in_flight; with several workers, summed over them).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "scgan_model_info",
            "The loaded model (value is always 1).",
            ("checkpoint", "sha256", "task", "device", "precision"),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "scgan_ready",
            "1 when the service accepts work (warm, worker running; with several workers: all of them).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.workers = Gauge(
            "scgan_workers",
            "Model worker processes serving this port (SCGAN_WORKERS).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.workers.set(1)
        # process_* (RSS, CPU, fds) per worker: prometheus-client's multiprocess mode has no process collector,
        # and one scrape answers for every worker, so each worker writes its own (labelled worker=<index>; in
        # multiprocess mode also pid=<pid>). "liveall": a dead worker's samples leave with it.
        self._process = ProcessCollector(registry=None)
        self._worker_label = "0"
        self._process_read_at = -_PROCESS_REFRESH_S
        self.worker_process = {
            source: Gauge(name, doc, ("worker",), registry=r, multiprocess_mode="liveall")
            for source, (name, doc) in _WORKER_PROCESS_GAUGES.items()
        }

    # -- wiring ------------------------------------------------------------------
    def bind_queue(self, depth: Callable[[], int], capacity: int) -> None:
        """Read the queue depth at scrape time (always current, no bookkeeping)."""
        self.queue_capacity.set(capacity)
        if self.multiprocess_dir is None:
            self.queue_depth.set_function(lambda: float(depth()))
        else:  # a scrape reads files, not functions: written at each change (refresh)
            self._depth = depth
            self.refresh()

    def bind_pixels(self, in_use: Callable[[], int], limit: int) -> None:
        """Read the pixels in flight at scrape time, like the queue depth."""
        self.pixels_in_flight_limit.set(limit)
        if self.multiprocess_dir is None:
            self.pixels_in_flight.set_function(lambda: float(in_use()))
        else:
            self._pixels = in_use
            self.refresh()

    def bind_ready(self, ready: Callable[[], bool]) -> None:
        if self.multiprocess_dir is None:
            self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        else:
            self._is_ready = ready
            self.refresh()

    def bind_worker(self, index: int) -> None:
        """Label this process's ``scgan_worker_*`` samples with its worker index (0 in a single process)."""
        self._worker_label = str(index)
        self._process_read_at = -_PROCESS_REFRESH_S
        self._read_process()

    def _read_process(self) -> None:
        """This process's RSS, CPU time and descriptors into the ``scgan_worker_*`` gauges, at most once a second."""
        now = time.monotonic()
        if now - self._process_read_at < _PROCESS_REFRESH_S:
            return
        self._process_read_at = now
        for family in self._process.collect():
            for sample in family.samples:
                gauge = self.worker_process.get(sample.name)
                if gauge is not None:
                    gauge.labels(self._worker_label).set(sample.value)

    def refresh(self) -> None:
        """Multiprocess mode: write the current queue depth, pixels and readiness for the other workers' scrapes."""
        self._read_process()
        if self._depth is not None:
            self.queue_depth.set(self._depth())
        if self._pixels is not None:
            self.pixels_in_flight.set(self._pixels())
        if self._is_ready is not None:
            self.ready.set(1.0 if self._is_ready() else 0.0)

    def set_model(self, *, checkpoint: str, sha256: str, task: str, device: str, precision: str) -> None:
        if self.multiprocess_dir is None:  # not implemented in multiprocess mode (and never needed there: set once)
            self.model_info.clear()
        self.model_info.labels(checkpoint, sha256, task, device, precision).set(1)

    # -- BatchObserver -------------------------------------------------------------
    def on_batch(self, size: int, inference_s: float, queue_waits_s: Sequence[float], failed: bool) -> None:
        self.batch_size.observe(size)
        self.batch_duration.observe(inference_s)
        for wait in queue_waits_s:
            self.queue_wait.observe(wait)
        if failed:
            self.batches_failed.inc()
        self.refresh()  # the batch left the queue

    def on_drop(self, reason: str) -> None:
        self.dropped.labels(reason).inc()
        self.refresh()

    # -- exposition ----------------------------------------------------------------
    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            self._read_process()
            return generate_latest(self.registry)
        self.refresh()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)


__all__ = ["MULTIPROC_DIR_ENV", "ServiceMetrics", "multiprocess_dir"]
