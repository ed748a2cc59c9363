"""Helpers for the service tests: a gated predict seam, test images, a running app in-process, supervised workers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import live_server
import numpy as np
import torch
from fastapi import FastAPI
from live_server import free_port, service_command, service_env
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service import Settings, create_app
from service.runtime import PredictFn
from service.state import ServiceState

READY_TIMEOUT_S = 30.0


@dataclass
class GatedPredict:
    """A predict seam around a real forward: can block (gate), fail on demand, and records batch sizes.

    ``inner`` is a real ``Colorizer.predict`` built from the same checkpoint, so
    outputs stay the model's; only timing and failures are under the test's control.
    """

    inner: PredictFn
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[int] = field(default_factory=list)
    fail_if: Callable[[torch.Tensor], bool] | None = None
    fatal_if: Callable[[torch.Tensor], bool] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.set()

    def __call__(self, batch: torch.Tensor, saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self.lock:
            self.calls.append(batch.shape[0])
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("test gate never opened")
        if self.fatal_if is not None and self.fatal_if(batch):
            raise FatalError("simulated fatal error")
        if self.fail_if is not None and self.fail_if(batch):
            raise RuntimeError("simulated CUDA error: out of memory")
        return self.inner(batch, saliency)

    def close(self) -> None:
        """Block the next forward until :meth:`open` (the worker is 'busy')."""
        self.entered.clear()
        self.gate.clear()

    def open(self) -> None:
        self.gate.set()

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()


class FatalError(BaseException):
    """Something no ``except Exception`` catches: it kills the inference worker."""


def image_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height``, with a tiny (truncated) IDAT: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def gray_image(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A deterministic textured gray image (gradients plus noise, so chroma is not flat)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx * 3 + yy * 2) % 256
    noise = rng.integers(0, 60, (height, width))
    return Image.fromarray(((base + noise) % 256).astype(np.uint8), "L")


def rgb_image(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def max_abs_diff(a: Image.Image, b: Image.Image) -> int:
    x = np.asarray(a, dtype=np.int16)
    y = np.asarray(b, dtype=np.int16)
    assert x.shape == y.shape, (x.shape, y.shape)
    return int(np.abs(x - y).max()) if x.size else 0


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/readyz")
        if response.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"service not ready after {timeout_s} s: {response.text}")
        await asyncio.sleep(0.05)


def run_main(argv: list[str]) -> int:
    """``scgan-serve``'s ``main(argv)`` in-process, with the root logger's handlers and level given back after."""
    from service.__main__ import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@dataclass
class RunningApp:
    """An app with its lifespan entered and an httpx client bound to it."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def state(self) -> ServiceState:
        state = self.app.state.service
        assert state is not None, "the app is not running"
        return state

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of one sample in the app's own registry (0 when absent)."""
        value = self.app.state.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else float(value)


@asynccontextmanager
async def run_app(
    settings: Settings, *, predict: PredictFn | None = None, ready: bool = True
) -> AsyncIterator[RunningApp]:
    """Enter the real lifespan and talk to the app through httpx's ASGI transport."""
    app = create_app(settings, predict=predict)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client,
    ):
        running = RunningApp(app, client)
        if ready:
            await wait_ready(client)
        yield running


# -- the service under its supervisor (SCGAN_WORKERS > 1) ------------------------------------------------------------


class Workers:
    """``python -m service`` with SCGAN_WORKERS=2 on a free port, its JSON log in a file."""

    def __init__(self, checkpoint: Path, log: Path, *, port: int | None = None, **settings: str) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = service_env(
            SCGAN_WORKERS="2",
            SCGAN_CPU_THREADS="1",
            SCGAN_LOG_FORMAT="json",
            SCGAN_MAX_BATCH_SIZE="2",
            OMP_NUM_THREADS="1",
            **settings,
        )
        with log.open("wb") as sink:
            command = service_command(checkpoint, self.port)
            self.process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)

    def records(self) -> list[dict[str, object]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[int, int]:
        """Worker index -> pid of its latest process (uvicorn's 'Started server process [PID]')."""
        found: dict[int, int] = {}
        for record in self.records():
            message = str(record["message"])
            if message.startswith("Started server process [") and "worker" in record:
                found[int(str(record["worker"]))] = int(message.split("[")[1].rstrip("]"))
        return found

    def spawned(self, index: int) -> list[int]:
        """Pids of worker ``index``'s processes, in the order the supervisor started them."""
        prefix = f"worker {index} started (pid "
        messages = [str(r["message"]) for r in self.records()]
        return [int(m.removeprefix(prefix).rstrip(")")) for m in messages if m.startswith(prefix)]

    def serving(self, index: int) -> bool:
        """Whether worker ``index`` has listened (uvicorn's 'Application startup complete.')."""
        return any(r.get("worker") == index and r["message"] == "Application startup complete." for r in self.records())

    def messages(self, level: str | None = None) -> list[str]:
        return [str(r["message"]) for r in self.records() if level is None or r["level"] == level]

    def shutdowns(self) -> list[object]:
        """The ``worker`` field of each 'shutdown complete' line: the workers that drained."""
        return [r.get("worker") for r in self.records() if r["message"] == "shutdown complete"]

    def wait_for(self, what: str, done: Callable[[], bool], timeout_s: float = 120.0, exits: bool = False) -> None:
        """Poll ``done()`` until true; fail naming ``what`` (with the log) on timeout, or if the supervisor exits
        first (unless ``exits``: then its exit is what we wait for)."""
        deadline = time.monotonic() + timeout_s
        while not done():
            assert exits or self.process.poll() is None, f"the supervisor exited waiting for {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s:\n{self.output()}"
            time.sleep(0.02)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def served(self) -> dict[int, int]:
        """Worker index -> POST /colorize answers in the access log."""
        counts: dict[int, int] = {}
        for record in self.records():
            if record["logger"] == "service.access" and str(record["message"]).startswith("POST /colorize"):
                index = int(str(record["worker"]))
                counts[index] = counts.get(index, 0) + 1
        return counts

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def colorized(self) -> float:
        key = ("scgan_http_requests_total", (("method", "POST"), ("route", "/colorize"), ("status", "200")))
        return self.samples().get(key, 0.0)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        live_server.wait_ready(
            f"{self.base}/readyz",
            exited=lambda: None if self.process.poll() is None else self.output(),
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        # The workers are the supervisor's children; a killed supervisor leaves them to notice it is gone.
        for pid in self.pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def post_many(base: str, count: int) -> list[int]:
    statuses: list[int] = []
    data = image_bytes(gray_image(48, 40), "PNG")

    def one() -> None:
        response = httpx.post(f"{base}/colorize", files={"file": ("in.png", data, "image/png")}, timeout=30)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses
