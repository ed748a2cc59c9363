"""One point of the concurrency sweep: a client load against one server, and what it cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.load.config import LoadConfig
from benchmarks.load.servers import Server, service_stats
from benchmarks.load.system import machine_busy_s, process_tree_cpu_s
from benchmarks.load.workers import Worker


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Point:
    mode: str
    concurrency: int
    ok: int
    errors: int
    timeouts: int
    codes: dict[str, int]
    seconds: float
    wall_s: float
    ok_total: int  # successful answers over the whole point, warm-up and tail included
    latencies_ms: list[float] = field(repr=False)
    client_cpu_s: float
    server_cpu_s: float | None  # the server's process tree over the whole point
    other_cpu_s: float | None  # busy CPU of the machine minus the server's and the client's
    mean_batch: float | None
    model_busy: float | None  # share of the wall time the service's inference thread spent in forwards
    raw_now: float | None = None  # the raw model's best img/s, timed just before this point
    raw_now_cpu_ms: float | None = None  # the raw helper's CPU ms per image at that best batch size
    server_cpu_window_s: float | None = None  # the server's process tree over the measured window
    client_cpu_window_s: float | None = None  # the client's own CPU over the measured window

    @property
    def server_cpu_ms_per_img(self) -> float | None:
        """The server's CPU (process and workers) per answer inside the window."""
        if self.server_cpu_window_s is None or not self.ok:
            return None
        return 1e3 * self.server_cpu_window_s / self.ok

    @property
    def efficiency(self) -> float | None:
        """Raw CPU ms per image over the server's: 1.0 means serving costs no CPU beyond the forward's."""
        server = self.server_cpu_ms_per_img
        return self.raw_now_cpu_ms / server if self.raw_now_cpu_ms and server else None

    @property
    def client_cpu_ms_per_img(self) -> float | None:
        return 1e3 * self.client_cpu_window_s / self.ok if self.client_cpu_window_s is not None and self.ok else None

    @property
    def client_cores(self) -> float | None:
        """Cores the client kept busy during the window."""
        return (
            self.client_cpu_window_s / self.seconds if self.client_cpu_window_s is not None and self.seconds else None
        )

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def share_of_raw_now(self) -> float | None:
        return self.throughput / self.raw_now if self.raw_now else None

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


def client_command(server: Server, config: LoadConfig, concurrency: int, **extra: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "path": "/colorize",
        "params": {"format": config.output_format},
        "concurrency": concurrency,
        "timeout_s": config.client_timeout,
        **extra,
    }


def measure_point(client: Worker, server: Server, config: LoadConfig, concurrency: int) -> Point:
    before = service_stats(server)
    server_cpu, machine = process_tree_cpu_s(server.process.pid), machine_busy_s()
    command = client_command(server, config, concurrency, duration=config.duration, warmup=config.warmup)
    result = client.request(**command, min_answers=config.min_answers, server_pid=server.process.pid)
    server_cpu_after, machine_after = process_tree_cpu_s(server.process.pid), machine_busy_s()
    after = service_stats(server)
    server_cpu_s = server_cpu_after - server_cpu if server_cpu is not None and server_cpu_after is not None else None
    other = None
    if machine is not None and machine_after is not None and server_cpu_s is not None:
        other = max(0.0, machine_after - machine - server_cpu_s - result["client_cpu_s"])
    batches = after.get("batches", 0.0) - before.get("batches", 0.0)
    return Point(
        mode=server.mode,
        concurrency=concurrency,
        ok=result["ok"],
        errors=result["errors"],
        timeouts=result["timeouts"],
        codes=result["codes"],
        seconds=result["seconds"],
        wall_s=result["wall_s"],
        ok_total=result["ok_total"],
        latencies_ms=result["latencies_ms"],
        client_cpu_s=result["client_cpu_s"],
        server_cpu_s=server_cpu_s,
        other_cpu_s=other,
        mean_batch=(after["images"] - before["images"]) / batches if batches > 0 else None,
        # the whole point (warm-up and tail included), as the server's counters cannot be cut at the window
        model_busy=(after["forward_s"] - before["forward_s"]) / result["wall_s"] if before and after else None,
        server_cpu_window_s=result.get("server_cpu_window_s"),
        client_cpu_window_s=result.get("client_cpu_window_s"),
    )


def raw_batch_sizes(config: LoadConfig) -> list[int]:
    if config.raw_batch_sizes == "ends":
        return sorted({1, config.max_batch_size})
    if isinstance(config.raw_batch_sizes, list):
        return sorted(set(config.raw_batch_sizes))
    sizes = {1, config.max_batch_size}
    b = 2
    while b < config.max_batch_size:
        sizes.add(b)
        b *= 2
    return sorted(sizes)
