"""A server process on a loopback port, for the tests that need a real one: started, waited for, stopped."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``command`` run with ``env`` in ``cwd``, serving on 127.0.0.1:``port``; stopped with SIGTERM."""

    def __init__(self, command: Sequence[str], *, port: int, env: dict[str, str], cwd: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until GET /readyz answers 200; AssertionError (with the output) if the process exits or time runs out."""
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
        """SIGTERM, then SIGKILL after 30 s; a process that already ended is left as it is."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


__all__ = ["ServerProcess", "free_port"]
