"""Helper processes of the benchmark (the client and the raw model) that answer JSON commands, one per line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.load.config import REPO


def serve_commands(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
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
    """A helper process of this package (``python -m benchmarks.load --ROLE``) that answers JSON commands (see :func:`serve_commands`)."""

    def __init__(self, role: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load", f"--{role}", *extra],
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
