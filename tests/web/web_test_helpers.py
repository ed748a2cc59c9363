"""Helpers for the page's browser tests: where Chromium is, and the service as a real process."""

from __future__ import annotations

import shutil
from pathlib import Path

from live_server import ServerProcess, free_port, service_command, service_env

#: Playwright's default timeout in the page tests: a cold service on a busy 2-core machine is slow.
TIMEOUT_MS = 60_000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class Server(ServerProcess):
    """``python -m service`` on 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, checkpoint: Path, **settings: str) -> None:
        """``settings``: extra SCGAN_* variables, e.g. ``SCGAN_API_KEYS_FILE``."""
        port = free_port()
        # One torch and one CPU thread: the machine is shared.
        env = service_env(
            SCGAN_TORCH_THREADS="1", SCGAN_CPU_THREADS="1", SCGAN_MAX_BATCH_SIZE="2", SCGAN_DEVICE="cpu", **settings
        )
        super().__init__(service_command(checkpoint, port), port=port, env=env)
