"""A whole run: every server, the raw model and the client started, measured one at a time, reported.

The servers take turns at each concurrency (every server at 1 client, then every server at the
next), so a drift in this machine's speed hits them alike; the report lists them by server.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.load.clients import client_main, make_photo
from benchmarks.load.config import LoadConfig, WorkerCall, parse_args
from benchmarks.load.raw_model import SERVICE_PATH, raw_main
from benchmarks.load.report import mib, plot, report, workers_ratio
from benchmarks.load.servers import Server, server_env, start_server, wait_ready
from benchmarks.load.soak import Soak, soak
from benchmarks.load.sweep import Point, measure_point, raw_batch_sizes
from benchmarks.load.system import load_average, process_memory, say
from benchmarks.load.workers import Worker


def run(config: LoadConfig) -> int:
    out_dir: Path = config.out_dir
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = server_env(config)
    context: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": platform.processor() or platform.machine(),
        "load_before": load_average(),
    }
    began = time.monotonic()
    servers: list[Server] = []
    workers: list[Worker] = []
    with tempfile.TemporaryDirectory() as tmp:
        upload_path = Path(tmp) / f"upload.{config.upload_format}"
        upload_path.write_bytes(make_photo(*config.image_size, fmt=config.upload_format))
        context["upload_bytes"] = upload_path.stat().st_size
        try:
            # Everything starts at once (start-up is import-bound); measurements run one at a time.
            servers = [start_server(mode, env, config, logs) for mode in config.modes]
            raw_worker = Worker(
                "raw-worker", "--upload", str(upload_path), "--output-format", config.output_format, env=env
            )
            client = Worker("client-worker", "--upload", str(upload_path))
            workers = [raw_worker, client]
            for worker in workers:
                worker.wait_ready()
            wait_ready(servers)
            say(f"servers {', '.join(config.modes)} ready after {time.monotonic() - began:.1f} s")
            info = raw_worker.request(what="info")
            sizes = raw_batch_sizes(config)
            say(f"raw model ({info['ceiling']}), batch sizes {sizes} ...")
            first = raw_worker.request(what="throughput", batch_sizes=sizes, budget_s=config.raw_budget)
            raw, raw_cpu = {"before": first["img_per_s"]}, {"before": first["cpu_ms_per_img"]}
            raw_service: dict[str, dict[str, float]] | None = None
            if info["ceiling"] != SERVICE_PATH:
                say(f"raw model ({SERVICE_PATH}), batch sizes {sizes} ...")
                raw_service = raw_worker.request(
                    what="throughput", batch_sizes=sizes, budget_s=config.raw_budget, path=SERVICE_PATH
                )
            stages = raw_worker.request(what="stages", repeats=3 if config.quick else 10)
            points: list[Point] = []
            peaks: dict[str, int | None] = {}
            soaked: Soak | None = None
            for server in servers:
                if server.mode == "batched" and config.soak_requests > 0:
                    say(f"{server.mode}: soak, {config.soak_requests} requests ...")
                    soaked = soak(client, server, config)
                    say(f"  RSS {mib(soaked.rss_start)} -> {mib(soaked.rss_end)} MiB ({soaked.growth:+.1%})")
            for concurrency in config.concurrency:
                for server in servers:
                    # The CPU's speed drifts within minutes here: each point gets its own raw figure.
                    now = raw_worker.request(what="throughput", batch_sizes=sizes, budget_s=config.raw_now_budget)
                    point = measure_point(client, server, config, concurrency)
                    best = max(now["img_per_s"], key=now["img_per_s"].get)
                    point.raw_now, point.raw_now_cpu_ms = now["img_per_s"][best], now["cpu_ms_per_img"][best]
                    points.append(point)
                    say(
                        f"{server.mode:>10} clients={concurrency:<3} {point.throughput:7.2f} img/s  p50 {point.p50:6.0f} ms"
                        f"  p99 {point.p99:6.0f} ms  errors {point.errors} timeouts {point.timeouts}"
                        f"  raw now {point.raw_now:.2f} img/s  server CPU {_ms(point.server_cpu_ms_per_img)} ms/img"
                        f"  raw CPU {point.raw_now_cpu_ms:.1f} ms/img"
                    )
                    if server.process.poll() is not None:
                        raise server.fail(f"exited with status {server.process.returncode}")
            for server in servers:
                peaks[server.mode] = process_memory(server.process.pid)[1]
                server.stop()
            if config.raw_after:
                after = raw_worker.request(what="throughput", batch_sizes=sizes, budget_s=config.raw_budget)
                raw["after"], raw_cpu["after"] = after["img_per_s"], after["cpu_ms_per_img"]
            order = {mode: i for i, mode in enumerate(config.modes)}
            points.sort(key=lambda p: (order[p.mode], config.concurrency.index(p.concurrency)))
        finally:
            for server in servers:
                server.stop()
            for worker in workers:
                worker.close()
    context["load_after"] = load_average()
    say(f"measured in {time.monotonic() - began:.1f} s")

    text = report(points, raw, stages, info, peaks, soaked, config, context, raw_cpu=raw_cpu, raw_service=raw_service)
    (out_dir / "load.md").write_text(text)
    ceiling = max(max(run.values(), default=0.0) for run in raw.values())
    (out_dir / "load.json").write_text(
        json.dumps(
            {
                "context": context,
                "model": info,
                "args": config.as_json(),
                "raw_img_per_s": raw,
                "raw_cpu_ms_per_img": raw_cpu,
                "raw_ceiling_img_per_s": ceiling,
                "raw_service_path": raw_service,
                "stages_ms": stages,
                "points": [point_json(p) for p in points],
                "workers": workers_ratio(points),
                "peak_rss_bytes": peaks,
                "soak": dict(asdict(soaked), growth=soaked.growth) if soaked else None,
            },
            indent=1,
        )
    )
    others = [p.other_cpu_s / p.wall_s for p in points if p.other_cpu_s is not None]
    other_load = sum(others) / len(others) if others else float("nan")
    subtitle = (
        f"{info['checkpoint']} on {info['device']} ({os.cpu_count()} CPUs, torch threads {info['torch_threads']}), "
        f"{config.image_size[0]}x{config.image_size[1]} {config.upload_format.upper()}, {config.duration:g} s per point, "
        f"load average {context['load_before']} -> {context['load_after']}, other load {other_load:.2f} cores"
    )
    plotted = plot(points, ceiling, out_dir / "load.png", subtitle)
    print(text)
    print(f"written: {out_dir / 'load.md'}, {out_dir / 'load.json'}" + (f", {out_dir / 'load.png'}" if plotted else ""))
    return 0


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def point_json(p: Point) -> dict[str, Any]:
    """A point with its derived figures, for load.json."""
    derived = (
        "throughput",
        "p50",
        "p99",
        "server_cpu_ms_per_img",
        "efficiency",
        "client_cpu_ms_per_img",
        "client_cores",
    )
    return dict(asdict(p), **{name: getattr(p, name) for name in derived})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, when started as one, a helper process); the exit status."""
    parsed = parse_args(argv)
    if isinstance(parsed, WorkerCall):
        if parsed.role == "client-worker":
            return client_main(parsed.upload)
        return raw_main(parsed.upload, parsed.output_format)
    return run(parsed)
