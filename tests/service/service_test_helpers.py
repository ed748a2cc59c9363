"""Helpers for the service tests: a gated predict seam, test images, a running app in-process."""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import numpy as np
import torch
from fastapi import FastAPI
from PIL import Image

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
