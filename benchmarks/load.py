"""Load benchmark: the service with and without batching, a naive server and the raw model, side by side.

One run measures, over a concurrency sweep (default 1, 2, 4, 8, 16, 32 closed-loop clients):

* **batched** -- the service (``python -m service``) with its default settings (dynamic
  batching, ``--max-batch-size``, default the service's: 8 with CUDA, else 4);
* **unbatched** -- the same service with ``SCGAN_MAX_BATCH_SIZE=1``;
* **naive** -- ``benchmarks/naive_app.py``: a minimal FastAPI app that decodes,
  ``colorize_one``-s and encodes inside an ``async def`` handler, one forward per request,
  as most colorization demos serve (``--naive-handler sync``: a plain ``def`` handler on
  FastAPI's thread pool instead);
* **raw model** -- ``Colorizer.predict`` in a tight loop on pre-made inputs, no HTTP and no
  pre/post-processing, at every batch size up to the largest, on a dedicated thread as the
  service's inference worker runs it, with the service's compiled graphs when it compiles
  (``--compile``); the best is the ceiling. It is measured before the sweeps and after each
  server's (full run); the best of these counts. The same process also times one
  request's stages without the service (decode, prepare, forward, finish, encode).

Every server runs in its own process on 127.0.0.1 (an ephemeral port), all started in
parallel and measured one at a time (idle servers use no CPU); all load the model the
service would load by default (``SCGAN_CHECKPOINT``, else the bundled checkpoint, else the
seeded random compact generator) or ``--checkpoint``. The clients are an ``httpx`` async
client in a separate process (multipart uploads of a synthetic photo-like 512 x 384 gray
JPEG, answers as JPEG); its CPU time is reported, and so is the CPU used by everything else
on the machine during each point ("other load"): on a small machine the client, the server
and any neighbour share the cores, so read the figures with those columns.

Each point runs for ``--duration`` seconds after a warm-up that lasts at least ``--warmup``
seconds and until every client has had an answer (so the queue has reached its steady
state); the window stretches until it holds at least ``--min-answers`` answers, so slow
configurations still get a figure. Throughput counts the successful answers that arrive
inside the window; latencies
are those answers' (p50, p99); errors are non-200 answers other than 504 and transport
failures; timeouts are 504 answers and client time-outs (``--client-timeout``). A client
pauses 100 ms after an answer that is not a 200, so fast refusals do not turn it into a busy loop.

Memory: the peak RSS (VmHWM) of every server process at the end, and a soak of the
batched service: ``--soak-requests`` (default 2,000) requests from ``--soak-concurrency``
clients after a short warm-up, with the RSS before, at its highest and after (target:
growth < 10%).

Results: a markdown report (printed, and written to ``OUT_DIR/load.md``), the raw figures
(``OUT_DIR/load.json``), a plot of throughput and p99 latency against concurrency
(``OUT_DIR/load.png``, needs matplotlib: ``pip install -e '.[bench]'``) and the servers'
logs (``OUT_DIR/logs/``). ``OUT_DIR`` is ``benchmarks/results`` (``benchmarks/results/quick``
with ``--quick``) unless ``--out-dir`` says otherwise.

    python benchmarks/load.py              # full run (~10 min on 2 cores; quiet machine) -> benchmarks/results/
    python benchmarks/load.py --quick      # smoke run, about a minute -> benchmarks/results/quick/
    python benchmarks/load.py --checkpoint my.pt --concurrency 1 8 32 --duration 20
    python benchmarks/load.py --torch-threads 1   # SCGAN_TORCH_THREADS=1 everywhere (shared cores)

Linux only (the CPU and memory figures come from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
NAIVE_APP = SCRIPT.with_name("naive_app.py")
DEFAULT_OUT_DIR = SCRIPT.parent / "results"

MODES: dict[str, str] = {
    "batched": "service, dynamic batching",
    "unbatched": "service, max batch 1",
    "naive": "naive FastAPI demo",
}
TARGET_SHARE = 0.90  # service at saturation / raw model ceiling
TARGET_GROWTH = 0.10  # RSS growth over the soak

# Full run and --quick: what each option defaults to (an option given on the command line wins).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "concurrency": [1, 2, 4, 8, 16, 32],
        "duration": 10.0,
        "warmup": 2.0,
        "soak_requests": 2000,
        "raw_budget": 3.0,
        "raw_now_budget": 1.0,
        "raw_batch_sizes": None,  # powers of two up to --max-batch-size, and --max-batch-size
        "raw_after": True,
        "out_dir": DEFAULT_OUT_DIR,
    },
    "quick": {
        "concurrency": [1, 4],
        "duration": 1.5,
        "warmup": 0.3,
        "soak_requests": 40,
        "raw_budget": 0.5,
        "raw_now_budget": 0.1,
        "raw_batch_sizes": "ends",  # 1 and --max-batch-size
        "raw_after": False,
        "out_dir": DEFAULT_OUT_DIR / "quick",
    },
}


# -- small helpers ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLK_TCK  # user..steal minus idle, iowait


def process_memory(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) of a process in bytes, from /proc."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values.get("VmRSS"), values.get("VmHWM")


def make_photo(width: int, height: int, fmt: str = "jpeg", seed: int = 0) -> bytes:
    """A synthetic photo-like grayscale image: sky gradient, horizon, shaded objects, texture, grain."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= width
    y /= height
    horizon = 0.55 + 0.06 * np.sin(2 * np.pi * (1.3 * x + 0.1)) + 0.03 * np.sin(2 * np.pi * (4.1 * x + 0.3))
    img = np.where(y < horizon, 0.8 - 0.3 * y, 0.3 + 0.25 * (y - horizon))
    for _ in range(7):  # soft-edged objects lit from one side
        cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.35, 0.9)
        rx, ry = rng.uniform(0.03, 0.15), rng.uniform(0.04, 0.2)
        dist = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        mask = 1.0 / (1.0 + np.exp(np.clip((dist - 1.0) * 12.0, -50, 50)))
        img = img * (1 - mask) + (rng.uniform(0.1, 0.9) + 0.15 * (x - cx) / rx) * mask
    for cells, amplitude in ((8, 0.06), (32, 0.04), (128, 0.025)):  # multi-octave texture
        grid = rng.random((max(2, cells * height // width), cells)).astype(np.float32)
        img += amplitude * (np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.BICUBIC)) - 0.5)
    img += rng.normal(0.0, 0.015, img.shape)
    pixels = (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(pixels, "L").save(buffer, "JPEG", quality=90)
    else:
        Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


# -- JSON-lines workers (client and raw model), each in its own process ------------------------------
def _serve_commands(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Answer one JSON command per stdin line with one JSON line; anything else printed goes to stderr."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if line.strip():
            out.write(json.dumps(handler(json.loads(line))) + "\n")
            out.flush()
    return 0


class Worker:
    """A helper process of this script that answers JSON commands (see :func:`_serve_commands`)."""

    def __init__(self, role: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), f"--{role}", *extra],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.role = role

    def wait_ready(self) -> None:
        self._read()

    def request(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.role} process exited with status {self.process.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# The client: closed-loop async clients posting the upload as fast as answers come back.
async def _drive(command: dict[str, Any], upload: bytes, content_type: str) -> dict[str, Any]:
    n = int(command["concurrency"])
    count = command.get("requests")  # fixed number of requests (soak), else a timed window
    duration = float(command.get("duration", 0.0))
    warmup = float(command.get("warmup", 0.0))
    filename = "photo.jpg" if content_type == "image/jpeg" else "photo.png"
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    records: list[tuple[float, float, int | str]] = []  # (sent, answered, status or "timeout"/"error")
    answered: set[int] = set()
    window: list[float] = []  # [start, end] once every client had an answer and the warm-up is over
    min_answers = int(command.get("min_answers", 0))  # the window stretches until it holds this many answers
    in_window = [0]
    remaining = [int(count)] if count is not None else [0]
    started = time.perf_counter()
    cpu_started = time.process_time()

    async with httpx.AsyncClient(base_url=command["url"], timeout=float(command["timeout_s"]), limits=limits) as client:

        async def worker(index: int) -> None:
            while True:
                if count is not None:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                elif window and time.perf_counter() >= window[1] and in_window[0] >= min_answers:
                    return
                sent = time.perf_counter()
                status: int | str
                try:
                    response = await client.post(
                        command["path"], params=command.get("params"), files={"file": (filename, upload, content_type)}
                    )
                    status = response.status_code
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.HTTPError:
                    status = "error"
                done = time.perf_counter()
                records.append((sent, done, status))
                answered.add(index)
                if window and (done <= window[1] or in_window[0] < min_answers):
                    in_window[0] += 1
                    window[1] = max(window[1], done)
                if count is None and not window and len(answered) == n and done - started >= warmup:
                    window.extend((done, done + duration))
                if status != 200:
                    await asyncio.sleep(0.1)  # no busy loop on fast refusals (503) or failures

        await asyncio.gather(*(worker(i) for i in range(n)))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if count is None:
        start, end = window
        counted = [r for r in records if start < r[1] <= end]
        seconds = end - start
    else:
        counted = records
        seconds = max(r[1] for r in records) - started if records else wall
    codes: dict[str, int] = {}
    for _, _, status in counted:
        if status != 200:
            codes[str(status)] = codes.get(str(status), 0) + 1
    return {
        "latencies_ms": [1e3 * (done - sent) for sent, done, status in counted if status == 200],
        "ok": sum(1 for r in counted if r[2] == 200),
        "errors": sum(v for k, v in codes.items() if k not in ("504", "timeout")),
        "timeouts": codes.get("504", 0) + codes.get("timeout", 0),
        "codes": codes,
        "seconds": seconds,
        "wall_s": wall,
        "client_cpu_s": cpu,
        "sent": len(records),
        "ok_total": sum(1 for r in records if r[2] == 200),
    }


def _client_main(args: argparse.Namespace) -> int:
    upload = Path(args.upload).read_bytes()
    content_type = "image/jpeg" if upload[:2] == b"\xff\xd8" else "image/png"

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        coroutine = _drive(command, upload, content_type)
        try:
            import uvloop  # installed with uvicorn[standard]: less client CPU per request
        except ImportError:
            return asyncio.run(coroutine)
        return uvloop.run(coroutine)

    return _serve_commands(handle)


# The raw model: the service's own loader, on the environment the servers get.
def _raw_main(args: argparse.Namespace) -> int:
    import statistics

    import torch

    sys.path.insert(0, str(REPO))
    from service.decoding import decode_image
    from service.encoding import OutputFormat, encode_image
    from service.runtime import ModelRuntime
    from service.settings import Settings

    settings = Settings()
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    runtime = ModelRuntime.load(settings)
    runtime.warm_up(settings.max_batch_size)  # compiles, as the service's warm-up does (SCGAN_COMPILE)
    colorizer = runtime.colorizer
    upload = Path(args.upload).read_bytes()
    fmt = OutputFormat(args.output_format)
    size = colorizer.render_size
    largest = max(settings.max_batch_size, 1)
    inputs = torch.rand(largest, colorizer.in_channels, size, size, generator=torch.Generator().manual_seed(0))

    def throughput(batch_sizes: list[int], budget_s: float) -> dict[str, float]:
        result: dict[str, float] = {}
        for b in batch_sizes:
            batch = inputs[:b].clone()
            colorizer.predict(batch)  # warm
            calls = 0
            start = time.perf_counter()
            while calls < 1 or time.perf_counter() - start < budget_s:
                colorizer.predict(batch)
                calls += 1
            result[str(b)] = b * calls / (time.perf_counter() - start)
        return result

    def stages(repeats: int) -> dict[str, float]:
        """Median ms per image of the work around the forward, one thread, as a request does it."""
        times: dict[str, list[float]] = {
            "decode": [],
            "prepare": [],
            "forward (batch 1)": [],
            "finish": [],
            "encode": [],
        }
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            decoded = decode_image(upload, max_pixels=1 << 30)
            t1 = time.perf_counter()
            prepared = colorizer.prepare(decoded.image)
            t2 = time.perf_counter()
            rgb, _ = colorizer.predict(prepared.model_input[None])
            t3 = time.perf_counter()
            colour = colorizer.finish(prepared, rgb[0])
            t4 = time.perf_counter()
            encode_image(colour, fmt)
            t5 = time.perf_counter()
            for key, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
                times[key].append(1e3 * (b - a))
        return {key: statistics.median(values[1:]) for key, values in times.items()}  # first call: warm-up

    def measure(command: dict[str, Any]) -> dict[str, Any]:
        if command["what"] == "info":
            config = colorizer.generator.config
            return {
                "checkpoint": runtime.identity.name,
                "source_format": runtime.identity.source_format,
                "device": str(colorizer.device),
                "precision": colorizer.precision,
                "compiled_batch_sizes": runtime.compiled_batch_sizes,
                "render_size": size,
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "generator": f"start/latent/global = {config.start_channels}/{config.latent_channels}/"
                f"{config.global_channels}, saliency branch {colorizer.has_saliency}",
            }
        if command["what"] == "throughput":
            return throughput([int(b) for b in command["batch_sizes"]], float(command["budget_s"]))
        return stages(int(command["repeats"]))

    # On a dedicated thread, as the service's inference worker runs its forwards: under CPU contention,
    # forwards on the main thread can stall far longer in OpenMP's spin-waits (seen with torch 2.14).
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-model")
    return _serve_commands(lambda command: thread.submit(measure, command).result())


# -- the servers ------------------------------------------------------------------------------------
@dataclass
class Server:
    mode: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def fail(self, why: str) -> SystemExit:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return SystemExit(f"the {self.mode} server {why}; the end of its log ({self.log}):\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start_server(mode: str, env: dict[str, str], args: argparse.Namespace, logs: Path) -> Server:
    port = _free_port()
    env = dict(env, SCGAN_PORT=str(port))
    if mode == "naive":
        command = [sys.executable, str(NAIVE_APP), "--port", str(port), "--output-format", args.output_format]
        command += ["--handler", args.naive_handler]
    else:
        command = [sys.executable, "-m", "service"]
        env["SCGAN_MAX_BATCH_SIZE"] = str(args.max_batch_size if mode == "batched" else 1)
    log = logs / f"{mode}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return Server(mode, process, f"http://127.0.0.1:{port}", log)


def _wait_ready(servers: Sequence[Server], timeout_s: float = 600.0) -> None:
    waiting = list(servers)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for server in list(waiting):
            if server.process.poll() is not None:
                raise server.fail(f"exited with status {server.process.returncode} during start-up")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                    waiting.remove(server)
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise waiting[0].fail(f"was not ready within {timeout_s:.0f} s")
        time.sleep(0.2)


def _service_stats(server: Server) -> dict[str, float]:
    """Batches formed and time spent in forwards so far, from the service's /metrics (empty for naive)."""
    if server.mode == "naive":
        return {}
    wanted = ("scgan_batch_size_sum", "scgan_batch_size_count", "scgan_batch_inference_duration_seconds_sum")
    values = dict.fromkeys(wanted, 0.0)
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return {"images": values[wanted[0]], "batches": values[wanted[1]], "forward_s": values[wanted[2]]}


# -- measurements -------------------------------------------------------------------------------------
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
    server_cpu_s: float | None
    other_cpu_s: float | None  # busy CPU of the machine minus the server's and the client's
    mean_batch: float | None
    model_busy: float | None  # share of the wall time the service's inference thread spent in forwards
    raw_now: float | None = None  # the raw model's best img/s, timed just before this point

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


def _client_command(server: Server, args: argparse.Namespace, concurrency: int, **extra: Any) -> dict[str, Any]:
    return {
        "url": server.url,
        "path": "/colorize",
        "params": {"format": args.output_format},
        "concurrency": concurrency,
        "timeout_s": args.client_timeout,
        **extra,
    }


def measure_point(client: Worker, server: Server, args: argparse.Namespace, concurrency: int) -> Point:
    before = _service_stats(server)
    server_cpu, machine = process_cpu_s(server.process.pid), machine_busy_s()
    command = _client_command(server, args, concurrency, duration=args.duration, warmup=args.warmup)
    result = client.request(**command, min_answers=args.min_answers)
    server_cpu_after, machine_after = process_cpu_s(server.process.pid), machine_busy_s()
    after = _service_stats(server)
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
    )


def soak(client: Worker, server: Server, args: argparse.Namespace) -> Soak:
    n = args.soak_concurrency
    client.request(**_client_command(server, args, n, requests=max(2 * n, args.soak_requests // 20)))  # warm
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
        result = client.request(**_client_command(server, args, n, requests=args.soak_requests))
    finally:
        stop.set()
        sampler.join()
    rss_end = process_memory(server.process.pid)[0] or 0
    return Soak(
        requests=args.soak_requests,
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


def _raw_batch_sizes(args: argparse.Namespace) -> list[int]:
    if args.raw_batch_sizes == "ends":
        return sorted({1, args.max_batch_size})
    if args.raw_batch_sizes:
        return sorted(set(args.raw_batch_sizes))
    sizes = {1, args.max_batch_size}
    b = 2
    while b < args.max_batch_size:
        sizes.add(b)
        b *= 2
    return sorted(sizes)


# -- report ------------------------------------------------------------------------------------------
def _mib(n: int | None) -> str:
    return f"{n / 2**20:.0f}" if n else "—"


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def saturation(points: Sequence[Point], mode: str) -> Point | None:
    mine = [p for p in points if p.mode == mode]
    return max(mine, key=lambda p: p.throughput) if mine else None


def report(
    points: Sequence[Point],
    raw: dict[str, dict[str, float]],
    stages: dict[str, float],
    info: dict[str, Any],
    peaks: dict[str, int | None],
    soaked: Soak | None,
    args: argparse.Namespace,
    context: dict[str, Any],
) -> str:
    best_raw = {b: max(run.get(b, 0.0) for run in raw.values()) for b in raw["before"]}
    ceiling_batch, ceiling = max(best_raw.items(), key=lambda kv: kv[1])
    lines = [
        "# Load benchmark: service vs naive server vs raw model",
        "",
        (
            f"{context['date']} — {context['cpu']}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {info['torch']}; device {info['device']}, precision {info['precision']}, compiled batch sizes "
            f"{info['compiled_batch_sizes'] or 'none (eager)'} (SCGAN_COMPILE={args.compile}), allocator "
            f"{args.malloc.name if args.malloc else 'glibc malloc'}, torch threads "
            f"{info['torch_threads']}; checkpoint `{info['checkpoint']}` ({info['source_format']}; generator "
            f"{info['generator']}), render size {info['render_size']} px. Upload: {args.image_size[0]}x"
            f"{args.image_size[1]} synthetic gray {args.upload_format.upper()} ({context['upload_bytes'] / 1024:.0f} KiB, "
            f"multipart), answers {args.output_format.upper()}. Service settings: defaults (max batch "
            f"{args.max_batch_size} / 1, max delay 5 ms, queue 64, request timeout 30 s). "
            f"{args.duration:g} s per point after a warm-up of at least {args.warmup:g} s; client timeout "
            f"{args.client_timeout:g} s. Load average {context['load_before']} before, {context['load_after']} after."
        ),
        "",
        (
            f"The naive server's route is `{'async def' if args.naive_handler == 'async' else 'def'}`. "
            "The client (one process, httpx + uvloop) and the server under test share the machine's CPUs; "
            "`client CPU` and `other load` (CPU busy in any other process, in cores) say how much of the machine "
            "was not the server's. Figures taken with other load well above 0 are contended: compare rows of "
            "one run only, and rerun on a quiet machine for absolute numbers."
        ),
        "",
        "## Summary",
        "",
        (
            "| configuration | saturation (img/s) | at clients | p50 / p99 there (ms) | raw now (img/s) "
            "| % of raw now | % of raw ceiling | errors / timeouts (whole sweep) | peak RSS (MiB) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, label in MODES.items():
        top = saturation(points, mode)
        if top is None:
            continue
        mine = [p for p in points if p.mode == mode]
        share_now = top.share_of_raw_now
        target = (
            f" ({'meets' if share_now >= TARGET_SHARE else 'below'} the {TARGET_SHARE:.0%} target)"
            if share_now is not None and mode == "batched"
            else ""
        )
        lines.append(
            f"| {label} | {top.throughput:.2f} | {top.concurrency} | {top.p50:.0f} / {top.p99:.0f} "
            f"| {_fmt(top.raw_now, '.2f')} | {_fmt(share_now, '.0%')}{target} | {top.throughput / ceiling:.0%} "
            f"| {sum(p.errors for p in mine)} / {sum(p.timeouts for p in mine)} | {_mib(peaks.get(mode))} |"
        )
    lines.append(
        f"| raw model (`Colorizer.predict`, no HTTP, no pre/post-processing) | {ceiling:.2f} | batch "
        f"{ceiling_batch} | — | — | — | 100% | — | — |"
    )
    lines += [
        "",
        "`raw now`: the raw model's best img/s over the batch sizes, timed in the seconds just before that point "
        "(this CPU's speed drifts by tens of percent within minutes, so a point is compared with the model as fast "
        "as it was then); `raw ceiling`: the best raw figure of the whole run.",
    ]
    if soaked is not None:
        verdict = "meets" if soaked.growth < TARGET_GROWTH else "above"
        lines += [
            "",
            (
                f"**Memory soak** ({MODES['batched']}): {soaked.requests} requests from {soaked.concurrency} clients in "
                f"{soaked.seconds:.0f} s ({soaked.ok} ok, {soaked.errors} errors, {soaked.timeouts} timeouts); RSS "
                f"{_mib(soaked.rss_start)} MiB after a warm-up, {_mib(soaked.rss_max)} MiB at most, "
                f"{_mib(soaked.rss_end)} MiB at the end: **{soaked.growth:+.1%}** ({verdict} the "
                f"< {TARGET_GROWTH:.0%} target). RSS at each quarter of the soak (MiB): "
                f"{' -> '.join(_mib(rss) for rss in soaked.rss_quarters)}."
            ),
        ]
    lines += [
        "",
        "## Concurrency sweep",
        "",
        (
            "| configuration | clients | img/s | p50 (ms) | p99 (ms) | answers | errors | timeouts | raw now "
            "| % of raw now | mean batch | model busy | server CPU (ms/img) | client CPU (cores) | other load (cores) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        per_image = 1e3 * p.server_cpu_s / p.ok_total if p.server_cpu_s is not None and p.ok_total else None
        codes = ", ".join(f"{k}×{v}" for k, v in sorted(p.codes.items()) if k not in ("504", "timeout"))
        lines.append(
            f"| {MODES[p.mode]} | {p.concurrency} | {p.throughput:.2f} | {p.p50:.0f} | {p.p99:.0f} | {p.ok} "
            f"| {p.errors}{f' ({codes})' if codes else ''} | {p.timeouts} | {_fmt(p.raw_now, '.2f')} "
            f"| {_fmt(p.share_of_raw_now, '.0%')} "
            f"| {_fmt(p.mean_batch, '.2f')} | {_fmt(p.model_busy, '.0%')} | {_fmt(per_image, '.0f')} "
            f"| {p.client_cpu_s / p.wall_s:.2f} "
            f"| {_fmt(p.other_cpu_s / p.wall_s if p.other_cpu_s is not None else None, '.2f')} |"
        )
    lines += [
        "",
        (
            "`answers`, `img/s` and the latencies count the measured window; `errors` are non-200 answers (by "
            "status) and transport failures, `timeouts` 504 answers and client time-outs. `server CPU` is the "
            "server's CPU time over the whole point (warm-up and tail included) per successful answer; `model "
            "busy` the share of the point the service's inference thread spent in forwards; `client CPU` and "
            "`other load` are in cores (1.00 = one core busy all the time)."
        ),
        "",
        "## Raw model",
        "",
        "| batch | " + " | ".join(f"img/s {when}" for when in raw) + " | ms per image (best) |",
        "|---:|" + "---:|" * len(raw) + "---:|",
    ]
    for b in raw["before"]:
        runs = " | ".join(_fmt(run.get(b), ".2f") for run in raw.values())
        lines.append(f"| {b} | {runs} | {1e3 / best_raw[b]:.1f} |")
    lines += [
        "",
        "The raw model is timed before the sweeps and after each server's (`--raw-after`): this shared CPU's "
        "speed drifts by tens of percent within minutes, so the best of these is the ceiling.",
        "",
        "One request's work without the service (median ms, one thread): "
        + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        + f"; everything but the forward: {sum(v for k, v in stages.items() if not k.startswith('forward')):.1f}"
        " ms per image, which the raw ceiling leaves out and the servers must also spend CPU on.",
        "",
    ]
    return "\n".join(lines)


def plot(points: Sequence[Point], ceiling: float, path: Path, subtitle: str) -> bool:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for mode, label in MODES.items():
        mine = [p for p in points if p.mode == mode]
        if not mine:
            continue
        xs = [p.concurrency for p in mine]
        ax_tp.plot(xs, [p.throughput for p in mine], marker="o", label=label)
        ax_lat.plot(xs, [p.p99 for p in mine], marker="o", label=label)
    ax_tp.axhline(ceiling, color="black", linewidth=1, label=f"raw model ceiling ({ceiling:.1f} img/s)")
    ax_tp.axhline(TARGET_SHARE * ceiling, color="black", linewidth=1, linestyle="--", label=f"{TARGET_SHARE:.0%} of it")
    ax_tp.set(xlabel="concurrent clients", ylabel="images / s", title="Throughput", ylim=(0, None))
    ax_lat.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", title="p99 latency", yscale="log")
    ax_lat.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_lat.yaxis.set_major_formatter(ScalarFormatter())
    ax_lat.yaxis.set_minor_formatter(NullFormatter())
    for ax in (ax_tp, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_xticks(
            sorted({p.concurrency for p in points}), labels=[str(c) for c in sorted({p.concurrency for p in points})]
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(subtitle, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main ----------------------------------------------------------------------------------------------
def _server_env(args: argparse.Namespace) -> dict[str, str]:
    """The servers' (and the raw model's) environment: no SCGAN_* of ours leaks in but the checkpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
    checkpoint = args.checkpoint or os.environ.get("SCGAN_CHECKPOINT")
    if checkpoint:
        env["SCGAN_CHECKPOINT"] = str(Path(checkpoint).resolve())
    env.update(SCGAN_HOST="127.0.0.1", SCGAN_LOG_LEVEL="WARNING", SCGAN_MAX_BATCH_SIZE=str(args.max_batch_size))
    if args.device:
        env["SCGAN_DEVICE"] = args.device
    if args.torch_threads:
        env["SCGAN_TORCH_THREADS"] = str(args.torch_threads)
    env["SCGAN_COMPILE"] = args.compile
    if args.malloc:
        env["LD_PRELOAD"] = str(args.malloc)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> int:
    out_dir: Path = args.out_dir
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _server_env(args)
    context: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": platform.processor() or platform.machine(),
        "load_before": _load_average(),
    }
    began = time.monotonic()
    servers: list[Server] = []
    workers: list[Worker] = []
    with tempfile.TemporaryDirectory() as tmp:
        upload_path = Path(tmp) / f"upload.{args.upload_format}"
        upload_path.write_bytes(make_photo(*args.image_size, fmt=args.upload_format))
        context["upload_bytes"] = upload_path.stat().st_size
        try:
            # Everything starts at once (start-up is import-bound); measurements run one at a time.
            servers = [_start_server(mode, env, args, logs) for mode in args.modes]
            raw_worker = Worker(
                "raw-worker", "--upload", str(upload_path), "--output-format", args.output_format, env=env
            )
            client = Worker("client-worker", "--upload", str(upload_path))
            workers = [raw_worker, client]
            for worker in workers:
                worker.wait_ready()
            _wait_ready(servers)
            _say(f"servers {', '.join(args.modes)} ready after {time.monotonic() - began:.1f} s")
            info = raw_worker.request(what="info")
            sizes = _raw_batch_sizes(args)
            _say(f"raw model, batch sizes {sizes} ...")
            raw = {"before": raw_worker.request(what="throughput", batch_sizes=sizes, budget_s=args.raw_budget)}
            stages = raw_worker.request(what="stages", repeats=3 if args.quick else 10)
            points: list[Point] = []
            peaks: dict[str, int | None] = {}
            soaked: Soak | None = None
            for server in servers:
                if server.mode == "batched" and args.soak_requests > 0:
                    _say(f"{server.mode}: soak, {args.soak_requests} requests ...")
                    soaked = soak(client, server, args)
                    _say(f"  RSS {_mib(soaked.rss_start)} -> {_mib(soaked.rss_end)} MiB ({soaked.growth:+.1%})")
                for concurrency in args.concurrency:
                    # The CPU's speed drifts within minutes here: each point gets its own raw figure.
                    now = raw_worker.request(what="throughput", batch_sizes=sizes, budget_s=args.raw_now_budget)
                    point = measure_point(client, server, args, concurrency)
                    point.raw_now = max(now.values())
                    points.append(point)
                    _say(
                        f"{server.mode:>9} clients={concurrency:<3} {point.throughput:7.2f} img/s  p50 {point.p50:6.0f} ms"
                        f"  p99 {point.p99:6.0f} ms  errors {point.errors} timeouts {point.timeouts}"
                        f"  raw now {point.raw_now:.2f} img/s"
                    )
                    if server.process.poll() is not None:
                        raise server.fail(f"exited with status {server.process.returncode}")
                peaks[server.mode] = process_memory(server.process.pid)[1]
                server.stop()
                if args.raw_after:
                    raw[f"after {server.mode}"] = raw_worker.request(
                        what="throughput", batch_sizes=sizes, budget_s=args.raw_budget
                    )
        finally:
            for server in servers:
                server.stop()
            for worker in workers:
                worker.close()
    context["load_after"] = _load_average()
    _say(f"measured in {time.monotonic() - began:.1f} s")

    text = report(points, raw, stages, info, peaks, soaked, args, context)
    (out_dir / "load.md").write_text(text)
    ceiling = max(max(run.values(), default=0.0) for run in raw.values())
    (out_dir / "load.json").write_text(
        json.dumps(
            {
                "context": context,
                "model": info,
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "raw_img_per_s": raw,
                "raw_ceiling_img_per_s": ceiling,
                "stages_ms": stages,
                "points": [dict(asdict(p), throughput=p.throughput, p50=p.p50, p99=p.p99) for p in points],
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
        f"{args.image_size[0]}x{args.image_size[1]} {args.upload_format.upper()}, {args.duration:g} s per point, "
        f"load average {context['load_before']} -> {context['load_after']}, other load {other_load:.2f} cores"
    )
    plotted = plot(points, ceiling, out_dir / "load.png", subtitle)
    print(text)
    print(f"written: {out_dir / 'load.md'}, {out_dir / 'load.json'}" + (f", {out_dir / 'load.png'}" if plotted else ""))
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from model.compiled import COMPILE_SETTINGS  # the service's choices; imported late, as service modules are

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (the presets below in brackets)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: what the service loads by default)")
    parser.add_argument("--out-dir", type=Path, help="where load.md/.json/.png go (benchmarks/results[/quick])")
    parser.add_argument("--concurrency", type=int, nargs="+", help="clients per point (1 2 4 8 16 32 [1 4])")
    parser.add_argument("--duration", type=float, help="seconds measured per point (10 [1.5])")
    parser.add_argument("--warmup", type=float, help="least warm-up per point, seconds (2 [0.3])")
    parser.add_argument(
        "--min-answers", type=int, default=5, help="a point's window stretches until it holds this many answers (5)"
    )
    parser.add_argument("--soak-requests", type=int, help="requests of the memory soak, 0: none (2000 [40])")
    parser.add_argument("--soak-concurrency", type=int, help="clients of the soak (default: --max-batch-size)")
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="the batched service's max batch (default: the service's)"
    )
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="servers to measure")
    parser.add_argument(
        "--naive-handler",
        choices=("async", "sync"),
        default="async",
        help="the naive app's route: async def blocking the loop (default), or def on FastAPI's thread pool",
    )
    parser.add_argument("--raw-budget", type=float, help="seconds per raw batch size (3 [0.5])")
    parser.add_argument(
        "--raw-now-budget",
        type=float,
        help="seconds per raw batch size timed just before each point, its 'raw now' (1 [0.1])",
    )
    parser.add_argument("--raw-batch-sizes", type=int, nargs="+", help="(powers of 2 up to max batch [1, max])")
    parser.add_argument(
        "--raw-after", action=argparse.BooleanOptionalAction, help="time the raw model after each server's sweep too (yes [no])"
    )
    parser.add_argument("--device", help="SCGAN_DEVICE for every server and the raw model (default: auto)")
    parser.add_argument("--torch-threads", type=int, help="SCGAN_TORCH_THREADS (default: torch's own)")
    parser.add_argument(
        "--malloc",
        type=Path,
        help="an allocator every server and the raw model preload (LD_PRELOAD), e.g. jemalloc as the Docker image "
        "runs: /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (default: the C library's malloc)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_SETTINGS,
        default="auto",
        help="SCGAN_COMPILE of the services and the raw model (default: the service's default, auto); "
        "the naive server always runs eagerly, as demos do",
    )
    parser.add_argument("--image-size", type=int, nargs=2, default=[512, 384], metavar=("W", "H"))
    parser.add_argument("--upload-format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--output-format", choices=("jpeg", "png", "webp"), default="jpeg")
    parser.add_argument("--client-timeout", type=float, default=120.0, help="seconds before a client gives up")
    # the helper processes this script starts
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--upload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in PRESETS["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.max_batch_size is None:
        from service.settings import Settings

        args.max_batch_size = Settings.model_fields["max_batch_size"].get_default(call_default_factory=True)
    if args.soak_concurrency is None:
        args.soak_concurrency = args.max_batch_size
    if args.malloc is not None and not args.malloc.is_file():
        parser.error(f"--malloc: no such file {args.malloc}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client_worker:
        return _client_main(args)
    if args.raw_worker:
        return _raw_main(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
