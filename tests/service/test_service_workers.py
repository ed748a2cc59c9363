"""Several model workers behind one port (SCGAN_WORKERS): the plan, readiness across workers, the real supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from live_server import free_port, service_command, service_env
from service_test_helpers import Workers, post_many, run_app, run_main

from service import Settings
from service.settings import MAX_AUTO_WORKERS
from service.workers import (
    MAX_RESTARTS,
    READY,
    RESTART_WINDOW_S,
    SERVING,
    STARTING,
    SharedReadiness,
    WorkerPlan,
    cgroup_cores,
    heartbeat_interval_s,
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
        states = [SERVING, READY, SERVING]  # this is worker 0, serving; nothing has published its readiness yet
        svc.app.state.worker_readiness = SharedReadiness(states, index=0, count=3)
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["workers_ready"] == 2 and answer.json()["workers"] == 3
        # The probe published this worker's readiness: a peer asked next agrees, publishing thread or not.
        assert states[0] == READY
        states[2] = READY
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
        assert states[0] == SERVING


@pytest.mark.anyio
async def test_a_worker_that_has_not_listened_counts_as_not_ready(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings()) as svc:
        states = [STARTING, READY]  # its own slot is the supervisor's until uvicorn has listened (started())
        svc.app.state.worker_readiness = SharedReadiness(states, index=0, count=2)
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 503 and answer.json()["workers_ready"] == 1
        assert states == [STARTING, READY]


# -- the real supervisor -------------------------------------------------------------------------------------------


@pytest.fixture()
def workers(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Workers]:
    server = Workers(tiny_checkpoint, tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


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
    # Each worker writes its pixels in flight on its publishing tick; summed, they fall to 0 once every answer is
    # out (within a tick or so: a busy host may run the other worker's tick after this scrape).
    deadline = time.monotonic() + 10
    while (samples := workers.samples())[("scgan_pixels_in_flight", ())] != 0:
        assert time.monotonic() < deadline, samples[("scgan_pixels_in_flight", ())]
        time.sleep(0.1)
    assert samples[("scgan_workers", ())] == 2
    assert samples[("scgan_ready", ())] == 1
    assert samples[("scgan_queue_capacity", ())] == 2 * Settings.model_fields["queue_capacity"].default
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


# -- faults, end to end: real processes and signals -------------------------------------------------------------------


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def startup_order(workers: Workers, index: int, pid: int) -> list[str]:
    """Which came first in process ``pid`` of worker ``index``: its listening (uvicorn's 'Application startup
    complete.') or its readiness (warm-up done)."""
    records = workers.records()
    start = [str(r["message"]) for r in records].index(f"worker {index} started (pid {pid})")
    found = [str(r["message"]) for r in records[start:] if r.get("worker") == index]
    return [
        m if m.startswith("Application") else "ready" for m in found if m.startswith(("Application startup", "ready:"))
    ][:2]


def test_crash_loop_replacements_dying_in_start_up_count_and_the_healthy_worker_drains(workers: Workers) -> None:
    """Every death of a worker that served counts toward the restart budget, also a replacement's during its
    start-up (its checkpoint is known good); the death past the budget stops the service with status 1, after the
    healthy worker drained."""
    first = workers.pids()[0]
    assert workers.spawned(0) == [first]
    kill(first)
    # The replacement, killed while it starts: a restart, not a failed start-up (status 3).
    workers.wait_for("a replacement of worker 0", lambda: len(workers.spawned(0)) == 2)
    replacement = workers.spawned(0)[1]
    kill(replacement)
    workers.wait_for("a second replacement", lambda: len(workers.spawned(0)) == 3)
    records = workers.records()
    messages = [str(r["message"]) for r in records]
    life = records[
        messages.index(f"worker 0 started (pid {replacement})") : messages.index(
            f"worker 0 started (pid {workers.spawned(0)[2]})"
        )
    ]
    assert not [r for r in life if r.get("worker") == 0 and r["message"] == "Application startup complete."], (
        "the replacement served before it was killed: not a death during start-up"
    )
    workers.wait_for("readiness after two restarts", workers.ready)
    assert post_many(workers.base, 4) == [200] * 4
    restarts = [m for m in workers.messages("ERROR") if "starting a new one" in m]
    assert [m.split("(restart ")[1] for m in restarts] == [
        f"1 of {MAX_RESTARTS} within {RESTART_WINDOW_S:g} s)",
        f"2 of {MAX_RESTARTS} within {RESTART_WINDOW_S:g} s)",
    ]
    # Keep killing worker 0's newest process: the (MAX_RESTARTS + 1)th death within the window stops the service.
    killed = {first, replacement}
    while workers.process.poll() is None:
        newest = workers.spawned(0)[-1]
        if newest not in killed:
            kill(newest)
            killed.add(newest)
        workers.wait_for(
            "the next replacement or the exit",
            lambda: workers.process.poll() is not None or workers.spawned(0)[-1] not in killed,
            exits=True,
        )
    assert workers.process.wait() == 1, workers.output()
    assert len(killed) == MAX_RESTARTS + 1
    critical = workers.messages("CRITICAL")
    assert len(critical) == 1 and f"the {MAX_RESTARTS + 1}th death within" in critical[0], workers.output()
    # Worker 1 was never touched: it drained (its 'shutdown complete'), after the verdict and before the exit.
    assert workers.shutdowns() == [1], workers.output()
    messages = workers.messages()
    assert messages.index(critical[0]) < messages.index("shutdown complete")
    assert "Traceback" not in workers.output()


def test_a_later_worker_failing_at_start_up_stops_the_service_with_3_after_worker_0_drained(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    workers = Workers(tiny_checkpoint, tmp_path / "server.log")
    try:
        workers.wait_for("worker 0 serving", lambda: workers.serving(0), timeout_s=180)
        assert len(workers.spawned(1)) == 1  # started beside worker 0, loading its checkpoint only now
        kill(workers.spawned(1)[0])  # it loads and warms for seconds before it could serve
        assert workers.process.wait(60) == 3, workers.output()
        errors = workers.messages("ERROR")
        assert errors == [f"worker 1 exited during start-up (status {-signal.SIGKILL}); stopping"], workers.output()
        assert workers.shutdowns() == [0], workers.output()  # worker 0, serving, drained
        assert "Traceback" not in workers.output()
    finally:
        workers.stop()


def test_a_port_that_cannot_be_bound_stops_start_up_with_3_in_one_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:  # no SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        workers = Workers(tiny_checkpoint, tmp_path / "server.log", port=port)
        try:
            assert workers.process.wait(60) == 3, workers.output()
        finally:
            workers.stop()
    critical = workers.messages("CRITICAL")
    assert len(critical) == 1 and f"cannot listen on 127.0.0.1:{port}" in critical[0], workers.output()
    assert workers.spawned(0) == [] and "Traceback" not in workers.output()


def test_a_hung_worker_is_replaced_by_its_heartbeat_and_one_hung_at_shutdown_is_killed_after_the_deadline(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    limit_s, shutdown_s = 3.0, 1.0
    workers = Workers(
        tiny_checkpoint,
        tmp_path / "server.log",
        SCGAN_WORKER_HEARTBEAT_TIMEOUT_S=str(limit_s),
        SCGAN_SHUTDOWN_TIMEOUT_S=str(shutdown_s),
    )
    try:
        workers.wait_ready()
        hung = workers.pids()[1]
        kill(hung, signal.SIGSTOP)  # alive to the kernel, silent to the supervisor
        stopped = time.monotonic()
        workers.wait_for("the hung worker's replacement", lambda: len(workers.spawned(1)) == 2, timeout_s=60)
        found_s = time.monotonic() - stopped
        # Its last beat came at most one interval before the stop.
        earliest_s = limit_s - heartbeat_interval_s(limit_s)
        assert found_s >= earliest_s, (
            f"killed {found_s:.1f} s after the stop, before its heartbeat was {limit_s:g} s old"
        )
        [verdict] = [m for m in workers.messages("ERROR") if "sent no heartbeat" in m]
        assert verdict.startswith(f"worker 1 (pid {hung}) sent no heartbeat for "), verdict
        assert any(
            m.startswith(f"worker 1 (pid {hung}) died with status {-signal.SIGKILL}") for m in workers.messages()
        )
        assert any("(restart 1 of" in m for m in workers.messages("ERROR"))  # counted toward the budget
        workers.wait_for("readiness with the replacement", workers.ready, timeout_s=120)
        # Worker 0, alone, listened while it warmed up (alive to an orchestrator); the replacement, with a peer
        # serving, listened only once warm (no 503 for its share of new connections).
        assert startup_order(workers, 0, workers.spawned(0)[0]) == ["Application startup complete.", "ready"]
        assert startup_order(workers, 1, workers.spawned(1)[1]) == ["ready", "Application startup complete."]
        assert post_many(workers.base, 6) == [200] * 6
        assert workers.shutdowns() == []

        # Hung when the stop comes: worker 0 drains, the hung one is killed once the deadline and the grace passed.
        kill(workers.pids()[1], signal.SIGSTOP)
        workers.process.send_signal(signal.SIGTERM)
        assert workers.process.wait(60) == 1, workers.output()
        assert any("scgan-worker-1 outlived the shutdown deadline; killing it" in m for m in workers.messages("ERROR"))
        assert workers.shutdowns() == [0], workers.output()
        assert "Traceback" not in workers.output()
    finally:
        workers.stop()
