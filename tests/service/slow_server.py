"""A real ``python -m service`` process for the abuse tests, with a model that can be made slow on demand.

The server is started through a launcher that makes every forward sleep first, for a delay read from a
file at each forward (so a test can change it while the server runs); everything else -- uvicorn, signals,
the app, the model -- is the production code. Also: raw HTTP/1.1 over a socket, for clients that misbehave.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from live_server import REPO, free_port, service_env, wait_ready
from prometheus_client.parser import text_string_to_metric_families
from service_test_helpers import gray_image, image_bytes

LAUNCHER = """
import sys, time
from pathlib import Path

from service import runtime

delay_file = Path(sys.argv[1])
original = runtime.ModelRuntime._model_predict


def slow_predict(self, batch, saliency):
    time.sleep(float(delay_file.read_text() or 0))
    return original(self, batch, saliency)


runtime.ModelRuntime._model_predict = slow_predict

if __name__ == "__main__":  # worker processes import this file too (multiprocessing's spawn), patch included
    from service.__main__ import main

    sys.exit(main(sys.argv[2:]))
"""
#: SCGAN_WORKERS of the servers these tests start: the single process and the supervisor with two workers.
WORKERS = (1, 2)


def server_env(**settings: str) -> dict[str, str]:
    defaults = {
        "SCGAN_TORCH_THREADS": "1",
        "SCGAN_CPU_THREADS": "1",
        "SCGAN_LOG_FORMAT": "json",
        "SCGAN_WARMUP": "false",
        "OMP_NUM_THREADS": "1",
    }
    return service_env(**{**defaults, **{f"SCGAN_{key.upper()}": value for key, value in settings.items()}})


def png(seed: int = 0) -> bytes:
    return image_bytes(gray_image(48, 40, seed=seed), "PNG")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    delay_file: Path
    workers: int = 1

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_delay(self, seconds: float) -> None:
        self.delay_file.write_text(str(seconds))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def colorize_counts(self) -> dict[str, float]:
        """scgan_http_requests_total for POST /colorize, by status."""
        return {
            dict(labels)["status"]: value
            for (name, labels), value in self.samples().items()
            if name == "scgan_http_requests_total" and ("route", "/colorize") in labels
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.samples().get((name, tuple(sorted(labels.items()))), 0.0)

    def settle(self, timeout_s: float = 15.0) -> None:
        """Wait until no request but the scrape itself is in flight (all accounting of finished requests done)."""
        deadline = time.monotonic() + timeout_s
        while self.metric("scgan_http_requests_in_flight") != 1:
            assert time.monotonic() < deadline, "requests still in flight"
            time.sleep(0.05)
        assert self.metric("scgan_queue_depth") == 0

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        wait_ready(
            f"{self.base}/readyz",
            exited=lambda: None if self.process.poll() is None else self.output(),
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # with several workers, the supervisor stops them too
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(30)


def start_server(
    tmp_path: Path, checkpoint: Path, *, delay_s: float = 0.0, workers: int = 1, **settings: str
) -> Server:
    launcher = tmp_path / "launch_slow_server.py"
    launcher.write_text(LAUNCHER)
    delay_file = tmp_path / "predict-delay"
    delay_file.write_text(str(delay_s))
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    command = [sys.executable, str(launcher), str(delay_file), "--checkpoint", str(checkpoint), "--port", str(port)]
    with log.open("wb") as sink:
        env = server_env(workers=str(workers), **settings)
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(process, port, log, delay_file, workers)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def raw_request(port: int, body_length: int, content_type: str = "image/png") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST /colorize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Status and JSON body of one HTTP/1.1 answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return int(lines[0].split()[1]), json.loads(body[:length]) if length else {}
