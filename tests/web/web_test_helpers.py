"""Helpers for the page tests: tiny checkpoints and the real service on a loopback port."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
from server_process import ServerProcess, free_port

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


class Server(ServerProcess):
    """``python -m service`` on 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, checkpoint: Path, **settings: str) -> None:
        """``settings``: extra SCGAN_* variables, e.g. ``SCGAN_API_KEYS_FILE``."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
        env["SCGAN_COMPILE"] = "off"  # see tests/conftest.py
        # One torch and one CPU thread: the machine is shared.
        env.update(SCGAN_TORCH_THREADS="1", SCGAN_CPU_THREADS="1", SCGAN_MAX_BATCH_SIZE="2", SCGAN_DEVICE="cpu")
        env.update(settings)
        command = [sys.executable, "-m", "service", "--checkpoint", str(checkpoint), "--port", str(port)]
        super().__init__(command, port=port, env=env, cwd=REPO)
