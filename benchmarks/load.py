"""Load test of the colorization service against the raw model, in one run; prints a markdown table.

For each concurrency N (default 1, 4, 16, 64) it sends ``--requests`` uploads to
``POST /colorize`` from N concurrent clients and measures throughput and latency
percentiles, the mean batch size the server formed and the share of the time its
inference thread spent in forwards ("model busy"; both from its /metrics).
Each level runs in rounds (``--rounds``): the raw model is timed in this process
right before and right after the service's share of the requests, on the same
checkpoint, device, precision and thread count; the better raw measurement of
the round is kept (a noisy neighbour cannot flatter the ratio) and the
service/raw ratio is the median of the rounds' ratios. Raw measurements:

* raw throughput: ``Colorizer.predict`` on a batch of min(N, max batch size),
  the batch the server can form at that concurrency (images per second);
* raw single: decode + prepare + one forward + finish + encode of the same
  upload, what one request costs without HTTP, queueing or batching.

Targets: at saturation the service delivers >= 90% of the raw throughput, and
at N = 1 its median latency is within 15% of the raw single latency.

By default it starts the server itself (``python -m service`` on 127.0.0.1, a
free port) on a seeded compact generator written to a temporary checkpoint;
``--url`` drives a running server instead (loopback only), ``--checkpoint``
uses a real one.

    python benchmarks/load.py                                  # a few minutes on 2 CPU cores
    python benchmarks/load.py --requests 32 --concurrency 1 4  # quicker
    python benchmarks/load.py --url http://127.0.0.1:8000 --checkpoint my.pt
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Colorizer, Generator, save_checkpoint  # noqa: E402
from service.decoding import decode_image  # noqa: E402
from service.encoding import OutputFormat, encode_image  # noqa: E402
from service.runtime import FALLBACK_CONFIG, resolve_precision  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Level:
    """One concurrency level: the service's numbers and the raw model's, measured back to back."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float
    busy: float  # share of the wall time the server's inference thread spent in forwards
    raw_batch: int
    raw_throughput: float  # median over rounds
    raw_single_ms: float  # median over rounds
    ratio: float  # median over rounds of (service throughput / raw throughput) of the same round

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


# -- the server ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"--url must point at a loopback address (127.0.0.1, ::1, localhost), got {host!r}")


def _start_server(args: argparse.Namespace, checkpoint: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
    env.update(
        SCGAN_CHECKPOINT=str(checkpoint),
        SCGAN_HOST="127.0.0.1",
        SCGAN_PORT=str(port),
        SCGAN_DEVICE=args.device,
        SCGAN_PRECISION=args.precision,
        SCGAN_MAX_BATCH_SIZE=str(args.max_batch_size),
        SCGAN_MAX_BATCH_DELAY_MS=str(args.max_batch_delay_ms),
        SCGAN_QUEUE_CAPACITY=str(max(64, 2 * max(args.concurrency))),
        SCGAN_REQUEST_TIMEOUT_S="600",
        SCGAN_TORCH_THREADS=str(args.threads),
        SCGAN_CPU_THREADS=str(args.cpu_threads),
        SCGAN_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode} during start-up")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the server did not become ready within 300 s")
        time.sleep(0.2)


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _batch_stats(client: httpx.Client) -> tuple[float, float, float]:
    """(images, batches, seconds in forwards) so far, from the server's own histograms."""
    wanted = ("scgan_batch_size_sum", "scgan_batch_size_count", "scgan_batch_inference_duration_seconds_sum")
    values = dict.fromkeys(wanted, 0.0)
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values[wanted[0]], values[wanted[1]], values[wanted[2]]


# -- the raw model --------------------------------------------------------------------------
def _median_time(fn: object, repeats: int, budget_s: float) -> float:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def raw_throughput(colorizer: Colorizer, batch_size: int, repeats: int, budget_s: float) -> float:
    """Images per second of ``Colorizer.predict`` on one batch (forward only, as the server's worker runs it)."""
    size = colorizer.render_size
    batch = torch.rand(batch_size, colorizer.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    colorizer.predict(batch)  # warm
    return batch_size / _median_time(lambda: colorizer.predict(batch), repeats, budget_s)


def raw_single_ms(
    colorizer: Colorizer, upload: bytes, repeats: int, budget_s: float, output: OutputFormat = OutputFormat.PNG
) -> float:
    """One request's work without the service: decode, prepare, forward, finish, encode (ms)."""

    def once() -> None:
        decoded = decode_image(upload, max_pixels=1 << 30)
        prepared = colorizer.prepare(decoded.image)
        rgb, _ = colorizer.predict(prepared.model_input[None])
        encode_image(colorizer.finish(prepared, rgb[0]), output)

    once()
    return 1e3 * _median_time(once, repeats, budget_s)


# -- the clients ------------------------------------------------------------------------------
async def drive(
    url: str, upload: bytes, concurrency: int, requests: int, output: OutputFormat = OutputFormat.PNG
) -> tuple[list[float], int, float]:
    """``requests`` uploads from ``concurrency`` clients; returns latencies (ms), errors, wall seconds."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                response = await client.post(
                    "/colorize", params={"format": output.value}, files={"file": ("bench.png", upload, "image/png")}
                )
                elapsed = (time.perf_counter() - t0) * 1e3
                if response.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def measure_level(
    url: str, probe: httpx.Client, colorizer: Colorizer, upload: bytes, concurrency: int, args: argparse.Namespace
) -> Level:
    """``args.rounds`` rounds of: raw model, service, raw model again; the ratio is taken within each round.

    Interleaving keeps slow drifts of the machine's load (other jobs on shared cores) out of the
    ratio; within a round the better raw measurement is kept, so a neighbour's burst during a raw
    measurement cannot flatter the service.
    """
    raw_batch = min(concurrency, args.max_batch_size)
    per_round = max(args.requests // args.rounds, 2 * concurrency)  # every client busy, ramp-up and tail small
    latencies: list[float] = []
    errors = 0
    seconds = images = batches = busy = 0.0
    raws: list[float] = []
    singles: list[float] = []
    ratios: list[float] = []
    for _ in range(args.rounds):
        raw = raw_throughput(colorizer, raw_batch, args.raw_repeats, args.raw_budget)
        single = raw_single_ms(colorizer, upload, args.raw_repeats, args.raw_budget, args.output_format)
        before = _batch_stats(probe)
        round_latencies, round_errors, round_seconds = asyncio.run(
            drive(url, upload, concurrency, per_round, args.output_format)
        )
        after = _batch_stats(probe)
        raw = max(raw, raw_throughput(colorizer, raw_batch, args.raw_repeats, args.raw_budget))
        single = min(single, raw_single_ms(colorizer, upload, args.raw_repeats, args.raw_budget, args.output_format))
        latencies += round_latencies
        errors += round_errors
        seconds += round_seconds
        images += after[0] - before[0]
        batches += after[1] - before[1]
        busy += after[2] - before[2]
        raws.append(raw)
        singles.append(single)
        ratios.append((per_round - round_errors) / round_seconds / raw)
    return Level(
        concurrency=concurrency,
        requests=per_round * args.rounds,
        errors=errors,
        seconds=seconds,
        latencies_ms=latencies,
        mean_batch=images / batches if batches else float("nan"),
        busy=busy / seconds,
        raw_batch=raw_batch,
        raw_throughput=statistics.median(raws),
        raw_single_ms=statistics.median(singles),
        ratio=statistics.median(ratios),
    )


# -- main -------------------------------------------------------------------------------------
def _make_checkpoint(directory: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = Generator(FALLBACK_CONFIG, with_saliency=True, spectral_norm=False).eval()
    return save_checkpoint(directory / "bench-compact.pt", net, working_resolution=256)


def _make_upload(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = ((xx + 2 * yy) % 256 + rng.integers(0, 40, (height, width))) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def _single_ratio(level: Level) -> str:
    """p50 / raw single latency; meaningful without queueing only, i.e. for one client."""
    return f"{level.percentile(50) / level.raw_single_ms:.2f}" if level.concurrency == 1 else "—"


def _table(levels: Sequence[Level]) -> str:
    rows = [
        (
            "| clients | requests | throughput (img/s) | p50 (ms) | p95 (ms) | p99 (ms) | mean batch | model busy "
            "| raw batch | raw throughput (img/s) | service / raw | raw single (ms) | p50 / raw single |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        rows.append(
            f"| {lv.concurrency} | {lv.requests}{f' ({lv.errors} err)' if lv.errors else ''} | {lv.throughput:.2f} "
            f"| {lv.percentile(50):.0f} | {lv.percentile(95):.0f} | {lv.percentile(99):.0f} | {lv.mean_batch:.2f} "
            f"| {lv.busy:.0%} "
            f"| {lv.raw_batch} | {lv.raw_throughput:.2f} | {lv.ratio:.0%} "
            f"| {lv.raw_single_ms:.0f} | {_single_ratio(lv)} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="drive this running server (loopback only) instead of starting one")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: a seeded compact generator)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument(
        "--requests", type=int, default=48, help="requests per concurrency level (at least 2x the clients)"
    )
    parser.add_argument("--image-size", type=int, nargs=2, default=[512, 384], metavar=("W", "H"))
    parser.add_argument("--output-format", default="png", choices=[f.value for f in OutputFormat], help="answer format")
    parser.add_argument(
        "--max-batch-size", type=int, default=4, help="server setting and largest raw batch (on CPUs, 2-4 beat 8)"
    )
    parser.add_argument("--max-batch-delay-ms", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads, server and raw (1: no OpenMP barriers on shared cores)",
    )
    parser.add_argument("--cpu-threads", type=int, default=2, help="server decode/encode threads")
    parser.add_argument("--rounds", type=int, default=3, help="raw/service/raw rounds per level (ratios per round)")
    parser.add_argument("--raw-repeats", type=int, default=3, help="timed calls per raw measurement (median)")
    parser.add_argument("--raw-budget", type=float, default=5.0, help="seconds per raw measurement at most")
    args = parser.parse_args(argv)
    args.output_format = OutputFormat(args.output_format)

    torch.set_num_threads(args.threads)
    upload = _make_upload(*args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or _make_checkpoint(Path(tmp), seed=0)
        colorizer = Colorizer.from_checkpoint(checkpoint, device=args.device)
        colorizer = Colorizer(
            colorizer.generator,
            device=colorizer.device,
            precision=resolve_precision(args.precision, colorizer.device),
        )
        process = None
        if args.url:
            _check_loopback(args.url)
            url = args.url.rstrip("/")
        else:
            process, url = _start_server(args, checkpoint)
        levels: list[Level] = []
        try:
            with httpx.Client(base_url=url, timeout=60) as probe:
                asyncio.run(drive(url, upload, 2, 4))  # connection set-up, first-call costs
                for concurrency in args.concurrency:
                    level = measure_level(url, probe, colorizer, upload, concurrency, args)
                    levels.append(level)
                    print(
                        f"clients={concurrency}: {level.throughput:.2f} img/s, p50 {level.percentile(50):.0f} ms, "
                        f"mean batch {level.mean_batch:.2f}; raw b={level.raw_batch}: {level.raw_throughput:.2f} "
                        f"img/s, single {level.raw_single_ms:.0f} ms; service/raw {level.ratio:.0%}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            if process is not None:
                _stop_server(process)

    config = colorizer.generator.config
    print(
        f"\n**Service vs raw model** — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, device {colorizer.device}, "
        f"precision {colorizer.precision}, torch threads {args.threads}; generator "
        f"start/latent/global = {config.start_channels}/{config.latent_channels}/{config.global_channels}, "
        f"render {colorizer.render_size}px; upload {args.image_size[0]}x{args.image_size[1]} gray PNG, answer {args.output_format.value}; "
        f"max batch {args.max_batch_size}, max delay {args.max_batch_delay_ms:g} ms.\n"
    )
    print(_table(levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
