"""Helpers for the page tests: tiny checkpoints and the real service on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from model import Generator, GeneratorConfig, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = GeneratorConfig(start_channels=4, latent_channels=4, global_channels=4)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def tiny_checkpoint(path: Path, *, with_saliency: bool) -> Path:
    torch.manual_seed(7)
    net = Generator(TINY_CONFIG, with_saliency=with_saliency, spectral_norm=False).eval()
    return save_checkpoint(path, net, working_resolution=256)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m service`` on 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, checkpoint: Path, **settings: str) -> None:
        """``settings``: extra SCGAN_* variables, e.g. ``SCGAN_API_KEYS_FILE``."""
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
        env["SCGAN_COMPILE"] = "off"  # see tests/conftest.py
        # One torch and one CPU thread: the machine is shared.
        env.update(SCGAN_TORCH_THREADS="1", SCGAN_CPU_THREADS="1", SCGAN_MAX_BATCH_SIZE="2", SCGAN_DEVICE="cpu")
        env.update(settings)
        command = [sys.executable, "-m", "service", "--checkpoint", str(checkpoint), "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"the service exited early:\n{output}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the service was not ready after {timeout_s} s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
