"""The pixel budget against a real server process: a burst of maximum-size images stays within its memory bound.

Slow (the server is a process that imports torch); run by `make test-slow`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import ServerProcess, free_port, service_command, service_env
from prometheus_client.parser import text_string_to_metric_families
from service_test_helpers import gray_image, image_bytes

pytestmark = pytest.mark.slow

SIDE = 1024
MAX_PIXELS = SIDE * SIDE
BUDGET = 2 * MAX_PIXELS
BURST = 12
#: The bound in docs/operations.md ("Memory bound"): peak RSS grows over the idle server's by at most this many bytes per budgeted pixel.
BYTES_PER_PIXEL = 64
#: Allocator and interpreter slack on top (thread stacks, arenas, HTTP buffers of the burst's uploads).
SLACK_BYTES = 64 * 1024**2


def _status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style field of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_a_burst_of_maximum_size_images_stays_within_the_memory_bound(tiny_checkpoint: Path) -> None:
    env = service_env(
        SCGAN_DEVICE="cpu",
        SCGAN_PRECISION="fp32",
        SCGAN_MAX_PIXELS=str(MAX_PIXELS),
        SCGAN_MAX_PIXELS_IN_FLIGHT=str(BUDGET),
        SCGAN_MAX_BATCH_SIZE="2",
        SCGAN_QUEUE_CAPACITY="32",
        SCGAN_CPU_THREADS="2",
        SCGAN_TORCH_THREADS="1",
        SCGAN_REQUEST_TIMEOUT_S="60",
        SCGAN_LOG_LEVEL="WARNING",
    )
    port = free_port()
    server = ServerProcess(service_command(tiny_checkpoint, port), port=port, env=env)
    try:
        server.wait_ready()
        pid = server.process.pid
        idle_kib = _status_kib(pid, "VmRSS")
        upload = image_bytes(gray_image(SIDE, SIDE), "PNG")

        def post(i: int) -> tuple[int, str]:
            output = "png" if i % 2 else "jpeg"
            response = httpx.post(
                f"{server.base_url}/colorize?format={output}",
                files={"file": ("big.png", upload, "image/png")},
                timeout=120,
            )
            code = response.json()["error"]["code"] if response.status_code != 200 else ""
            return response.status_code, code

        with ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(post, range(BURST)))
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {200, 503, 504}, answers
        assert 200 in statuses, answers
        refused = sum(code == "pixel_budget_full" for _, code in answers)
        assert refused >= 1, answers  # 12 at once into a budget of 2: some must be refused
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        assert _metric(metrics, "scgan_pixel_budget_rejected_total") == refused
        assert _metric(metrics, "scgan_pixels_in_flight") == 0
        assert _metric(metrics, "scgan_pixels_in_flight_limit") == BUDGET
        peak_kib = _status_kib(pid, "VmHWM")
        growth = (peak_kib - idle_kib) * 1024
        bound = BUDGET * BYTES_PER_PIXEL + SLACK_BYTES
        print(
            f"idle RSS {idle_kib / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB, growth {growth / 2**20:.0f} MiB "
            f"= {growth / BUDGET:.0f} B per budgeted pixel; bound {bound / 2**20:.0f} MiB; "
            f"answers {sorted(statuses)}; cpus {os.cpu_count()}"
        )
        assert growth <= bound
    finally:
        server.stop()
