"""The servers under test, each its own process on a loopback port: start, wait for readiness, read /metrics, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.load.config import MODE_WORKERS, NAIVE_APP, REPO, LoadConfig
from benchmarks.load.system import free_port


@dataclass
class Server:
    mode: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def fail(self, why: str) -> SystemExit:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return SystemExit(f"the {self.mode} server {why}; the end of its log ({self.log}):\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(mode: str, env: dict[str, str], config: LoadConfig, logs: Path) -> Server:
    port = free_port()
    env = dict(env, SCGAN_PORT=str(port))
    if mode == "naive":
        command = [sys.executable, str(NAIVE_APP), "--port", str(port), "--output-format", config.output_format]
        command += ["--handler", config.naive_handler]
    else:
        command = [sys.executable, "-m", "service"]
        env["SCGAN_MAX_BATCH_SIZE"] = str(1 if mode == "unbatched" else config.max_batch_size)
        if mode in MODE_WORKERS:
            env["SCGAN_WORKERS"] = MODE_WORKERS[mode]
        elif config.workers:
            env["SCGAN_WORKERS"] = config.workers
    cwd = REPO
    if mode == "baseline" and config.baseline is not None:
        cwd = config.baseline.resolve()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
    log = logs / f"{mode}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return Server(mode, process, f"http://127.0.0.1:{port}", log)


def wait_ready(servers: Sequence[Server], timeout_s: float = 600.0) -> None:
    waiting = list(servers)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for server in list(waiting):
            if server.process.poll() is not None:
                raise server.fail(f"exited with status {server.process.returncode} during start-up")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                    waiting.remove(server)
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise waiting[0].fail(f"was not ready within {timeout_s:.0f} s")
        time.sleep(0.2)


def service_stats(server: Server) -> dict[str, float]:
    """Batches formed and time spent in forwards so far, from the service's /metrics (empty for naive)."""
    if server.mode == "naive":
        return {}
    wanted = ("scgan_batch_size_sum", "scgan_batch_size_count", "scgan_batch_inference_duration_seconds_sum")
    values = dict.fromkeys(wanted, 0.0)
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return {"images": values[wanted[0]], "batches": values[wanted[1]], "forward_s": values[wanted[2]]}


def server_env(config: LoadConfig) -> dict[str, str]:
    """The servers' (and the raw model's) environment: no SCGAN_* of ours leaks in but the checkpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
    checkpoint = config.checkpoint or os.environ.get("SCGAN_CHECKPOINT")
    if checkpoint:
        env["SCGAN_CHECKPOINT"] = str(Path(checkpoint).resolve())
    env.update(SCGAN_HOST="127.0.0.1", SCGAN_LOG_LEVEL="WARNING", SCGAN_MAX_BATCH_SIZE=str(config.max_batch_size))
    if config.device:
        env["SCGAN_DEVICE"] = config.device
    if config.torch_threads:
        env["SCGAN_TORCH_THREADS"] = str(config.torch_threads)
    env["SCGAN_COMPILE"] = config.compile
    if config.malloc:
        env["LD_PRELOAD"] = str(config.malloc)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env
