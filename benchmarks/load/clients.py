"""The clients: a synthetic upload, and closed-loop async clients posting it as fast as answers come back."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load.system import process_tree, tree_cpu_s
from benchmarks.load.workers import serve_commands

Sample = tuple[float, float | None, float]  # (perf_counter, server tree CPU s or None, this process's CPU s)


def cpu_at(samples: list[Sample], when: float, column: int) -> float | None:
    """A CPU counter (column 1: server, 2: client) at ``when``, linearly between the samples around it."""
    known = [(s[0], float(v)) for s in samples if (v := s[column]) is not None]
    if not known:
        return None
    before = [k for k in known if k[0] <= when]
    after = [k for k in known if k[0] >= when]
    if not before:
        return after[0][1]
    if not after:
        return before[-1][1]
    (t0, v0), (t1, v1) = before[-1], after[0]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)


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
        img += amplitude * (
            np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.Resampling.BICUBIC)) - 0.5
        )
    img += rng.normal(0.0, 0.015, img.shape)
    pixels = (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(pixels, "L").save(buffer, "JPEG", quality=90)
    else:
        Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


async def drive(command: dict[str, Any], upload: bytes, content_type: str) -> dict[str, Any]:
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
    # The server's CPU (its process and its worker processes) and ours, sampled to cut at the window's edges.
    server_pid = command.get("server_pid")
    pids = process_tree(int(server_pid)) if server_pid else []
    samples: list[Sample] = []

    def sample() -> None:
        samples.append((time.perf_counter(), tree_cpu_s(pids) if pids else None, time.process_time()))

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(0.1)

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

        sampling = asyncio.ensure_future(sampler()) if count is None else None
        await asyncio.gather(*(worker(i) for i in range(n)))
        if sampling is not None:
            sampling.cancel()
        sample()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    server_window: float | None = None
    client_window: float | None = None
    if count is None:
        start, end = window
        counted = [r for r in records if start < r[1] <= end]
        seconds = end - start
        server_start, server_end = cpu_at(samples, start, 1), cpu_at(samples, end, 1)
        if server_start is not None and server_end is not None:
            server_window = server_end - server_start
        client_start, client_end = cpu_at(samples, start, 2), cpu_at(samples, end, 2)
        if client_start is not None and client_end is not None:
            client_window = client_end - client_start
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
        "server_cpu_window_s": server_window,  # the server's CPU over the measured window (None: not sampled)
        "client_cpu_window_s": client_window,
        "sent": len(records),
        "ok_total": sum(1 for r in records if r[2] == 200),
    }


def client_main(upload_path: Path) -> int:
    """The client helper process: drive the load each command describes (see :func:`drive`)."""
    upload = upload_path.read_bytes()
    content_type = "image/jpeg" if upload[:2] == b"\xff\xd8" else "image/png"

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        coroutine = drive(command, upload, content_type)
        try:
            import uvloop  # installed with uvicorn[standard]: less client CPU per request
        except ImportError:
            return asyncio.run(coroutine)
        return uvloop.run(coroutine)

    return serve_commands(handle)
