"""Several model workers behind one port (SCGAN_WORKERS): the plan, readiness across workers, the real supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from live_server import free_port, service_command, service_env, wait_ready
from prometheus_client.parser import text_string_to_metric_families
from service_test_helpers import gray_image, image_bytes, run_app, run_main

from service import Settings
from service.settings import MAX_AUTO_WORKERS
from service.workers import (
    MAX_RESTARTS,
    RESTART_WINDOW_S,
    Supervisor,
    WorkerPlan,
    cgroup_cores,
    plan_workers,
    usable_cores,
)

# -- the plan ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("max 100000", None),
        ("200000 100000", 2.0),
        ("150000 100000", 1.5),
        ("", None),
        ("x y", None),
        ("0 100000", None),
    ],
)
def test_cgroup_cpu_max_is_read_as_cores(text: str, cores: float | None) -> None:
    assert cgroup_cores(text) == cores


def test_usable_cores_are_the_affinity_lowered_to_the_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "absent") == affinity
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == affinity
    cpu_max.write_text("150000 100000\n")  # 1.5 cores: one worker's worth, rounded down
    assert usable_cores(cpu_max) == 1
    cpu_max.write_text("50000 100000\n")  # half a core still runs one
    assert usable_cores(cpu_max) == 1
    cpu_max.write_text(f"{(affinity + 4) * 100000} 100000\n")  # a quota above the affinity does not add cores
    assert usable_cores(cpu_max) == affinity


@pytest.mark.parametrize(
    ("setting", "cuda", "cores", "threads", "plan"),
    [
        ("auto", False, 1, None, WorkerPlan(1, None)),  # one worker: exactly today's process, torch's own threads
        ("auto", False, 2, None, WorkerPlan(2, 1)),
        ("auto", False, 6, None, WorkerPlan(6, 1)),
        ("auto", False, 64, None, WorkerPlan(MAX_AUTO_WORKERS, 64 // MAX_AUTO_WORKERS)),
        ("auto", False, 4, 3, WorkerPlan(4, 3)),  # SCGAN_TORCH_THREADS wins
        (3, False, 12, None, WorkerPlan(3, 4)),
        (3, False, 2, None, WorkerPlan(3, 1)),  # more workers than cores: still one thread each
        (1, False, 16, None, WorkerPlan(1, None)),
        (1, False, 16, 2, WorkerPlan(1, 2)),
        ("auto", True, 32, None, WorkerPlan(1, None)),  # CUDA: one process per GPU
        (1, True, 32, 4, WorkerPlan(1, 4)),
    ],
)
def test_plan(setting: int | str, cuda: bool, cores: int, threads: int | None, plan: WorkerPlan) -> None:
    assert plan_workers(setting, cuda=cuda, cores=cores, torch_threads=threads) == plan  # type: ignore[arg-type]


def test_several_workers_on_cuda_are_refused() -> None:
    with pytest.raises(ValueError, match="one process per GPU"):
        plan_workers(2, cuda=True, cores=8, torch_threads=None)


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (" AUTO ", "auto"), ("3", 3), ("1", 1)])
def test_workers_setting(value: str, expected: object) -> None:
    assert Settings(workers=value).workers == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0", "-1", "65", "many", "1.5", ""])
def test_a_bad_workers_value_fails_in_one_line_naming_the_key(
    value: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCGAN_WORKERS", value)
    assert run_main([]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SCGAN_WORKERS" in lines[0], lines


def test_several_workers_on_a_gpu_fail_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tiny_checkpoint: Path
) -> None:
    monkeypatch.setenv("SCGAN_DEVICE", "cuda")
    assert run_main(["--workers", "2", "--checkpoint", str(tiny_checkpoint)]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SCGAN_WORKERS" in lines[0] and "GPU" in lines[0], lines


# -- readiness across workers ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_readiness_needs_every_worker(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings()) as svc:
        peers = [(1, 3)]
        svc.app.state.peer_readiness = lambda: peers[0]
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["workers_ready"] == 2 and answer.json()["workers"] == 3
        peers[0] = (2, 3)
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 200
        assert answer.json() == {
            "ready": True,
            "model_loaded": True,
            "warmed_up": True,
            "worker_running": True,
            "worker_stalled": False,
            "draining": False,
            "workers_ready": 3,
            "workers": 3,
        }
        svc.state.begin_drain()  # this worker draining: not ready, whatever the others say
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 503 and answer.json()["workers_ready"] == 2


# -- the real supervisor -------------------------------------------------------------------------------------------


class Workers:
    """``python -m service`` with SCGAN_WORKERS=2 on a free port, its JSON log in a file."""

    def __init__(self, checkpoint: Path, log: Path, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = service_env(
            SCGAN_WORKERS="2",
            SCGAN_CPU_THREADS="1",
            SCGAN_LOG_FORMAT="json",
            SCGAN_MAX_BATCH_SIZE="2",
            OMP_NUM_THREADS="1",
            **settings,
        )
        with log.open("wb") as sink:
            command = service_command(checkpoint, self.port)
            self.process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)

    def records(self) -> list[dict[str, object]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[int, int]:
        """Worker index -> pid of its latest process (uvicorn's 'Started server process [PID]')."""
        found: dict[int, int] = {}
        for record in self.records():
            message = str(record["message"])
            if message.startswith("Started server process [") and "worker" in record:
                found[int(str(record["worker"]))] = int(message.split("[")[1].rstrip("]"))
        return found

    def served(self) -> dict[int, int]:
        """Worker index -> POST /colorize answers in the access log."""
        counts: dict[int, int] = {}
        for record in self.records():
            if record["logger"] == "service.access" and str(record["message"]).startswith("POST /colorize"):
                index = int(str(record["worker"]))
                counts[index] = counts.get(index, 0) + 1
        return counts

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def colorized(self) -> float:
        key = ("scgan_http_requests_total", (("method", "POST"), ("route", "/colorize"), ("status", "200")))
        return self.samples().get(key, 0.0)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        wait_ready(
            f"{self.base}/readyz",
            exited=lambda: None if self.process.poll() is None else self.output(),
            timeout_s=timeout_s,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        # The workers are the supervisor's children; a killed supervisor leaves them to notice it is gone.
        for pid in self.pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture()
def workers(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Workers]:
    server = Workers(tiny_checkpoint, tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def post_many(base: str, count: int) -> list[int]:
    statuses: list[int] = []
    data = image_bytes(gray_image(48, 40), "PNG")

    def one() -> None:
        response = httpx.post(f"{base}/colorize", files={"file": ("in.png", data, "image/png")}, timeout=30)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def _worker_process_samples(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[tuple[str, str], float]:
    """(worker index, pid) -> value of one ``scgan_worker_*`` gauge family."""
    return {
        (labels["worker"], labels["pid"]): value
        for (sample, label_items), value in samples.items()
        if sample == name
        for labels in [dict(label_items)]
    }


def test_two_workers_serve_one_port_share_metrics_replace_the_dead_and_drain(workers: Workers) -> None:
    ready = httpx.get(f"{workers.base}/readyz", timeout=5).json()
    assert ready["ready"] is True and ready["workers_ready"] == 2 and ready["workers"] == 2
    pids = workers.pids()
    assert sorted(pids) == [0, 1] and pids[0] != pids[1] != workers.process.pid
    # Both workers take connections from the one socket; one scrape counts every answer of both.
    sent = 0
    deadline = time.monotonic() + 60
    while len(workers.served()) < 2:
        assert time.monotonic() < deadline, f"one worker served everything: {workers.served()}"
        assert post_many(workers.base, 8) == [200] * 8
        sent += 8
        time.sleep(0.2)  # the access log line follows the answer
    assert sum(workers.served().values()) == sent
    assert workers.colorized() == sent
    samples = workers.samples()
    assert samples[("scgan_workers", ())] == 2
    assert samples[("scgan_ready", ())] == 1
    assert samples[("scgan_queue_capacity", ())] == 2 * Settings.model_fields["queue_capacity"].default
    assert samples[("scgan_pixels_in_flight", ())] == 0  # written by each worker, summed: every answer is out
    assert samples[("scgan_pixels_in_flight_limit", ())] > 0
    assert set(_worker_process_samples(samples, "scgan_worker_resident_memory_bytes")) == {
        (str(index), str(pid)) for index, pid in pids.items()
    }
    for name in ("scgan_worker_resident_memory_bytes", "scgan_worker_cpu_seconds", "scgan_worker_open_fds"):
        assert all(value > 0 for value in _worker_process_samples(samples, name).values()), name

    # A worker that dies is replaced; what it counted stays counted.
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while workers.pids().get(0) == pids[0] or httpx.get(f"{workers.base}/readyz", timeout=5).status_code != 200:
        assert workers.process.poll() is None, workers.output()
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.2)
    assert workers.pids()[1] == pids[1]
    assert any("worker 0" in str(r["message"]) and "died" in str(r["message"]) for r in workers.records())
    assert workers.colorized() == sent
    assert post_many(workers.base, 4) == [200] * 4
    assert workers.colorized() == sent + 4
    assert workers.samples()[("scgan_workers", ())] == 2
    # The dead worker's process gauges left with it; its replacement's are there (after its first tick).
    deadline = time.monotonic() + 10
    expected = {(str(index), str(pid)) for index, pid in workers.pids().items()}
    while set(_worker_process_samples(workers.samples(), "scgan_worker_cpu_seconds")) != expected:
        assert time.monotonic() < deadline, (workers.samples(), expected)
        time.sleep(0.2)

    # SIGTERM: every worker drains, the supervisor exits 0 and removes its metrics directory.
    [start] = [r for r in workers.records() if str(r["message"]).startswith("starting 2 workers")]
    metrics_dir = Path(str(start["message"]).rsplit(" ", 1)[1])
    assert metrics_dir.is_dir()
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(60) == 0, workers.output()
    assert [r.get("worker") for r in workers.records() if r["message"] == "shutdown complete"].count(1) == 1
    assert len([r for r in workers.records() if r["message"] == "shutdown complete"]) == 2
    assert not metrics_dir.exists()
    assert "Traceback" not in workers.output()


def test_a_checkpoint_that_cannot_be_loaded_stops_all_workers_with_status_3(tmp_path: Path) -> None:
    checkpoint = tmp_path / "corrupt.pt"
    checkpoint.write_bytes(b"this is not a checkpoint\n" * 10)
    env = service_env(SCGAN_WORKERS="2", SCGAN_LOG_FORMAT="text")
    process = subprocess.run(
        service_command(checkpoint, free_port()), env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert process.returncode == 3, process.stderr
    reasons = [line for line in process.stderr.splitlines() if "CRITICAL" in line]
    assert len(reasons) == 1 and str(checkpoint) in reasons[0], process.stderr
    assert "Traceback" not in process.stderr


def test_workers_that_keep_dying_stop_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = Supervisor(Settings(), WorkerPlan(2, 1))
    started: list[int] = []
    monkeypatch.setattr(supervisor, "_start", started.append)
    dead = SimpleNamespace(pid=None, exitcode=-9)
    for _ in range(MAX_RESTARTS):
        assert supervisor._replace(0, dead) is None  # type: ignore[arg-type]
    assert started == [0] * MAX_RESTARTS
    assert supervisor._replace(1, dead) == 1  # type: ignore[arg-type]  # one death too many within the window
    assert started == [0] * MAX_RESTARTS
    supervisor._restarts = deque(t - RESTART_WINDOW_S - 1 for t in supervisor._restarts)  # the window has passed
    assert supervisor._replace(1, dead) is None  # type: ignore[arg-type]
    assert started[-1] == 1
