"""Helpers for the page tests: Chromium and the real service on a loopback port."""

from __future__ import annotations

import shutil
from pathlib import Path

from live_server import free_port, process_exit, service_command, service_env, start_process, stop_process, wait_ready

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class Server:
    """``python -m service`` on 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, checkpoint: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # One torch and one CPU thread: the machine is shared.
        env = service_env(SCGAN_TORCH_THREADS="1", SCGAN_CPU_THREADS="1", SCGAN_MAX_BATCH_SIZE="2", SCGAN_DEVICE="cpu")
        self.process = start_process(service_command(checkpoint, self.port), env)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        wait_ready(f"{self.base_url}/readyz", exited=process_exit(self.process), timeout_s=timeout_s, interval_s=0.2)

    def stop(self) -> None:
        stop_process(self.process)
