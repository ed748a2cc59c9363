"""The memory soak: many requests to the batched service while its RSS is sampled."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from benchmarks.load.config import LoadConfig
from benchmarks.load.servers import Server
from benchmarks.load.sweep import client_command
from benchmarks.load.system import process_memory
from benchmarks.load.workers import Worker


@dataclass
class Soak:
    requests: int
    concurrency: int
    ok: int
    errors: int
    timeouts: int
    seconds: float
    rss_start: int
    rss_max: int
    rss_end: int
    rss_quarters: list[int]  # RSS at 0, 25, 50, 75 and 100% of the soak's duration: plateau or leak?

    @property
    def growth(self) -> float:
        return self.rss_end / self.rss_start - 1.0


def soak(client: Worker, server: Server, config: LoadConfig) -> Soak:
    n = config.soak_concurrency
    client.request(**client_command(server, config, n, requests=max(2 * n, config.soak_requests // 20)))  # warm
    rss_start = process_memory(server.process.pid)[0] or 0
    samples: list[int] = [rss_start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            rss = process_memory(server.process.pid)[0]
            if rss:
                samples.append(rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = client.request(**client_command(server, config, n, requests=config.soak_requests))
    finally:
        stop.set()
        sampler.join()
    rss_end = process_memory(server.process.pid)[0] or 0
    return Soak(
        requests=config.soak_requests,
        concurrency=n,
        ok=result["ok"],
        errors=result["errors"],
        timeouts=result["timeouts"],
        seconds=result["seconds"],
        rss_start=rss_start,
        rss_max=max([*samples, rss_end]),
        rss_end=rss_end,
        rss_quarters=[samples[round(i * (len(samples) - 1) / 4)] for i in range(4)] + [rss_end],
    )
