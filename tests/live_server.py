"""Real servers for tests: a free loopback port, the service as a process or a uvicorn thread, ready.

Importable from every test folder (``tests/`` is on ``sys.path`` through ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(**variables: str) -> dict[str, str]:
    """This process's environment without its ``SCGAN_*`` variables, compiling off (tests/conftest.py), plus these.

    One worker process unless ``SCGAN_WORKERS`` is among ``variables`` (the default, 'auto', would start one per core).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCGAN_")}
    env["SCGAN_COMPILE"] = "off"
    env["SCGAN_WORKERS"] = "1"
    env.update(variables)
    return env


def process_exit(process: subprocess.Popen[str]) -> Callable[[], str | None]:
    """For :func:`wait_ready`: None while ``process`` runs, else its output (or exit status)."""

    def exited() -> str | None:
        if process.poll() is None:
            return None
        return process.stdout.read() if process.stdout else f"exit status {process.returncode}"

    return exited


def wait_ready(
    url: str,
    *,
    exited: Callable[[], str | None],
    timeout_s: float = 90.0,
    interval_s: float = 0.1,
    what: str = "the server did not become ready",
) -> None:
    """Poll ``url`` (a ``/readyz``) until it answers 200; fail with the server's output if ``exited()`` gives one."""
    deadline = time.monotonic() + timeout_s
    while True:
        output = exited()
        assert output is None, f"the server stopped during start-up:\n{output}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(interval_s)


def service_command(checkpoint: Path, port: int) -> list[str]:
    """``python -m service --checkpoint CHECKPOINT --port PORT``, with this interpreter."""
    return [sys.executable, "-m", "service", "--checkpoint", str(checkpoint), "--port", str(port)]


def start_process(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``command`` from the repository's root, stdout and stderr piped together as text."""
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_process(process: subprocess.Popen[str], timeout_s: float = 30.0) -> str:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns what the process wrote."""
    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""


class ServerProcess:
    """``command`` serving on 127.0.0.1:``port`` (started from the repository's root); stopped with SIGTERM."""

    def __init__(self, command: list[str], *, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process = start_process(command, env)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until GET /readyz answers 200; AssertionError (with the output) if the process exits or time runs out."""
        wait_ready(f"{self.base_url}/readyz", exited=process_exit(self.process), timeout_s=timeout_s, interval_s=0.2)

    def stop(self) -> None:
        stop_process(self.process)


@contextmanager
def service_process(
    checkpoint: Path, env: dict[str, str], *, timeout_s: float = 90.0, workers: int | None = None
) -> Iterator[str]:
    """The service as deployed (``python -m service``) on a free loopback port: yields its URL once ready.

    ``workers``: SCGAN_WORKERS (default: what ``env`` says, one with :func:`service_env`).
    """
    port = free_port()
    if workers is not None:
        env = {**env, "SCGAN_WORKERS": str(workers)}
    process = start_process(service_command(checkpoint, port), env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(f"{base_url}/readyz", exited=process_exit(process), timeout_s=timeout_s)
        yield base_url
    finally:
        stop_process(process)


@contextmanager
def app_in_thread(app: FastAPI, *, timeout_s: float = 60.0) -> Iterator[str]:
    """``app`` under a real uvicorn server in a thread, on a free loopback port: yields its URL once ready.

    On exit the server stops as on a signal (its lifespan drains).
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(
            f"{base_url}/readyz",
            exited=lambda: None if thread.is_alive() else "(the server thread ended)",
            timeout_s=timeout_s,
            interval_s=0.05,
        )
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
