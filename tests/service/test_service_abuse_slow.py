"""Abuse against the real thing: `python -m service` under uvicorn, spoken to over loopback sockets.

Slow (each server is a process that imports torch); run by `make test-slow`.
Where a test needs the model to be slow, the server's forwards sleep first, for a
delay a test can change while it runs (tests/service/slow_server.py); everything
else -- uvicorn, signals, the app, the model -- is the production code.

Each server runs as one process and as two workers behind one port
(SCGAN_WORKERS, service/workers.py): the contracts are the same.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import REPO, free_port
from slow_server import WORKERS, Server, png, raw_request, read_response, server_env, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=WORKERS, ids=lambda workers: f"{workers}-workers")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[Server]:
    """One server for the client-abuse tests: small queue, small batches, a 3 s request timeout."""
    running = start_server(
        tmp_path_factory.mktemp("abuse-server"),
        tiny_checkpoint,
        workers=request.param,
        queue_capacity="4",
        max_batch_size="2",
        max_batch_delay_ms="20",
        request_timeout_s="3",
    )
    yield running
    running.stop()


@pytest.fixture()
def fresh(server: Server) -> Iterator[Server]:
    """The shared server, idle and with a fast model, before and after each test."""
    server.set_delay(0.0)
    server.settle()
    yield server
    server.set_delay(0.0)


def timed_post(base: str, seed: int = 0, timeout_s: float = 20.0) -> tuple[int, float, dict[str, str]]:
    start = time.monotonic()
    response = httpx.post(f"{base}/colorize", files={"file": ("in.png", png(seed), "image/png")}, timeout=timeout_s)
    return response.status_code, time.monotonic() - start, dict(response.headers)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


# -- 1. slow and broken clients ------------------------------------------------------------------------------------


def test_a_body_sent_byte_by_byte_gets_408_and_holds_up_nobody(fresh: Server) -> None:
    before = fresh.colorize_counts()
    data = png()
    sock = raw_request(fresh.port, len(data))
    outcome: dict[str, object] = {}

    def trickle() -> None:
        start = time.monotonic()
        try:
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
                time.sleep(0.05)
                if time.monotonic() - start > 10:
                    break
        except OSError as exc:  # the server answered and closed: the trickle has to stop
            outcome["send_error"] = exc

    sender = threading.Thread(target=trickle, daemon=True)
    start = time.monotonic()
    sender.start()
    time.sleep(0.5)
    # A normal client meanwhile is served promptly: the trickler holds no worker, no queue slot.
    status, took, _ = timed_post(fresh.base)
    assert status == 200 and took < 3.0
    status, body = read_response(sock)
    elapsed = time.monotonic() - start
    assert status == 408
    assert body["error"]["code"] == "upload_timeout"  # type: ignore[index]
    assert 2.5 < elapsed < 3.0 + 2.0  # the 3 s request timeout, not the ~20 s the trickle would take
    sock.close()
    sender.join(15)
    fresh.settle()
    assert delta(fresh.colorize_counts(), before) == {"200": 1, "408": 1}


def test_a_client_that_disconnects_mid_upload_is_a_499_and_leaks_nothing(fresh: Server) -> None:
    before = fresh.colorize_counts()
    internal_before = fresh.metric("scgan_errors_total", kind="internal_error")
    data = png()
    sock = raw_request(fresh.port, len(data))
    sock.sendall(data[: len(data) // 2])
    time.sleep(0.3)
    sock.close()
    deadline = time.monotonic() + 10
    while fresh.colorize_counts().get("499", 0) == before.get("499", 0):
        assert time.monotonic() < deadline, "the hang-up was never noticed"
        time.sleep(0.05)
    fresh.settle()
    assert delta(fresh.colorize_counts(), before) == {"499": 1}
    assert fresh.metric("scgan_errors_total", kind="internal_error") == internal_before
    assert "Traceback" not in fresh.output()
    status, took, _ = timed_post(fresh.base)
    assert status == 200 and took < 3.0


def test_a_client_that_disconnects_while_queued_is_never_computed(fresh: Server) -> None:
    if fresh.workers > 1:
        pytest.skip("needs the ghost queued behind the one running forward; a second worker would compute it at once")
    fresh.set_delay(1.5)
    before = fresh.colorize_counts()
    batched_before = fresh.metric("scgan_batch_size_sum")
    first: list[tuple[int, float, dict[str, str]]] = []
    busy = threading.Thread(target=lambda: first.append(timed_post(fresh.base, 1)))
    busy.start()
    deadline = time.monotonic() + 10
    while fresh.metric("scgan_http_requests_in_flight") < 2:  # the scrape is 1
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # decoded and alone in its 1.5 s forward (nobody else was coming)
    data = png(3)
    ghost = raw_request(fresh.port, len(data))
    ghost.sendall(data)
    while fresh.metric("scgan_queue_depth") < 1:
        assert time.monotonic() < deadline, "the ghost was never queued"
        time.sleep(0.01)
    ghost.close()  # hang up while queued behind the running forward
    while fresh.metric("scgan_queue_depth") != 0:  # its slot is free at once, not when the worker gets to it
        assert time.monotonic() < deadline, "the ghost kept its queue slot"
        time.sleep(0.01)
    assert busy.is_alive(), "too slow: the first forward ended before the ghost hung up"
    fresh.set_delay(0.0)
    follower = timed_post(fresh.base, 4)  # served promptly, and not batched with the ghost
    busy.join(20)
    assert first[0][0] == 200
    assert follower[0] == 200 and follower[1] < 3.0
    assert follower[2]["x-batch-size"] == "1"
    fresh.settle()
    assert delta(fresh.colorize_counts(), before) == {"200": 2, "499": 1}
    assert fresh.metric("scgan_batch_size_sum") - batched_before == 2  # the first and the follower, no ghost


# -- 2. overload -----------------------------------------------------------------------------------------------------


def test_ten_times_the_queue_capacity_at_once_is_answered_and_accounted_for(fresh: Server) -> None:
    fresh.set_delay(0.3)
    before = fresh.colorize_counts()
    errors_before = {k: fresh.metric("scgan_errors_total", kind=k) for k in ("queue_full", "timeout")}
    sent, payload = 40, png(7)

    async def flood() -> list[tuple[int, float, str]]:
        limits = httpx.Limits(max_connections=sent, max_keepalive_connections=sent)
        async with httpx.AsyncClient(base_url=fresh.base, timeout=30, limits=limits) as client:

            async def one() -> tuple[int, float, str]:
                start = time.monotonic()
                response = await client.post("/colorize", files={"file": ("in.png", payload, "image/png")})
                code = "" if response.status_code == 200 else response.json()["error"]["code"]
                return response.status_code, time.monotonic() - start, code

            return await asyncio.gather(*(one() for _ in range(sent)))

    start = time.monotonic()
    outcomes = asyncio.run(flood())
    assert time.monotonic() - start < 3.0 + 5.0  # the request timeout bounds everyone
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 503, 504}, outcomes
    ok, refused, late = statuses.count(200), statuses.count(503), statuses.count(504)
    # Per worker, queue (4) + one batch (2) admitted, the rest refused at once.
    assert ok >= 4 and refused >= sent - 6 * fresh.workers
    assert {code for status, _, code in outcomes if status == 503} == {"queue_full"}
    fresh.set_delay(0.0)
    fresh.settle()
    expected = {str(status): float(count) for status, count in ((200, ok), (503, refused), (504, late)) if count}
    assert delta(fresh.colorize_counts(), before) == expected  # every request counted once, none lost
    assert fresh.metric("scgan_errors_total", kind="queue_full") - errors_before["queue_full"] == refused
    assert fresh.metric("scgan_errors_total", kind="timeout") - errors_before["timeout"] == late
    assert timed_post(fresh.base)[0] == 200


# -- 3. a checkpoint that cannot be served ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS, ids=lambda workers: f"{workers}-workers")
@pytest.mark.parametrize("problem", ["missing", "corrupt", "truncated"])
def test_an_unusable_checkpoint_stops_start_up_with_a_one_line_reason(
    problem: str, workers: int, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    checkpoint = tmp_path / f"{problem}.pt"
    if problem == "corrupt":
        checkpoint.write_bytes(b"this is not a checkpoint\n" * 10)
    elif problem == "truncated":
        checkpoint.write_bytes(tiny_checkpoint.read_bytes()[:2000])
    port = free_port()
    command = [sys.executable, "-m", "service", "--checkpoint", str(checkpoint), "--port", str(port)]
    env = server_env(log_format="text", workers=str(workers))
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ever_ready = False
        while process.poll() is None:
            try:
                ever_ready |= httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert not ever_ready
    assert process.returncode not in (0, None)
    assert "Traceback" not in stderr, stderr
    reasons = [line for line in stderr.splitlines() if "CRITICAL" in line]
    assert len(reasons) == 1, stderr
    assert str(checkpoint) in reasons[0]
    assert stdout == ""


# -- 4. graceful shutdown under load -----------------------------------------------------------------------------


def fire(base: str, count: int) -> tuple[list[threading.Thread], list[object]]:
    """``count`` concurrent POST /colorize in threads; an outcome is 200, (status, error code) or the exception."""
    outcomes: list[object] = []

    def one(seed: int) -> None:
        try:
            response = httpx.post(f"{base}/colorize", files={"file": ("in.png", png(seed), "image/png")}, timeout=30)
        except httpx.HTTPError as exc:
            outcomes.append(exc)
            return
        ok = response.status_code == 200
        outcomes.append(200 if ok else (response.status_code, response.json()["error"]["code"]))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def wait_in_flight(server: Server, count: int) -> None:
    deadline = time.monotonic() + 15
    while server.metric("scgan_http_requests_in_flight") < count + 1:  # + the scrape
        assert time.monotonic() < deadline, "requests never got in flight"
        time.sleep(0.02)


def logged_at(output: str, message: str) -> float:
    """Wall-clock time of the first JSON log line whose message is ``message``."""
    for line in output.splitlines():
        if line.startswith("{") and json.loads(line)["message"] == message:
            return datetime.datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
    raise AssertionError(f"{message!r} was never logged:\n{output}")


def refused_within(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("workers", WORKERS, ids=lambda workers: f"{workers}-workers")
def test_sigterm_under_load_finishes_every_request_refuses_new_ones_and_exits_0(
    workers: int, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    grace, count = 10.0, 6
    server = start_server(
        tmp_path,
        tiny_checkpoint,
        delay_s=0.4,
        workers=workers,
        max_batch_size="2",
        shutdown_timeout_s=str(grace),
        request_timeout_s="30",
    )
    try:
        threads, outcomes = fire(server.base, count)
        wait_in_flight(server, count)
        signalled = time.time()
        server.process.send_signal(signal.SIGTERM)
        assert refused_within(server.port, 1.5), "new connections are still accepted after SIGTERM"
        for thread in threads:
            thread.join(grace + 5)
        assert outcomes == [200] * count  # 3 forwards of 0.4 s: all done well within the grace period
        assert server.process.wait(grace + 10) == 0
        output = server.output()
        assert logged_at(output, "shutdown complete") - signalled < grace
        assert "Traceback" not in output
    finally:
        server.stop()


@pytest.mark.parametrize("workers", WORKERS, ids=lambda workers: f"{workers}-workers")
def test_shutdown_takes_at_most_the_grace_period_even_when_a_forward_outlasts_it(
    workers: int, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """uvicorn's wait for open connections and the service's drain share one SCGAN_SHUTDOWN_TIMEOUT_S."""
    grace, count = 1.5, 3
    server = start_server(
        tmp_path,
        tiny_checkpoint,
        delay_s=0.0,
        workers=workers,
        max_batch_size="2",
        shutdown_timeout_s=str(grace),
        request_timeout_s="30",
    )
    try:
        server.set_delay(6.0)  # every forward now outlasts the grace period
        threads, outcomes = fire(server.base, count)
        wait_in_flight(server, count)
        signalled = time.time()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(grace + 10) == 0
        output = server.output()
        # The drain (uvicorn's wait + the service's) keeps the grace period; what follows is interpreter teardown.
        took = logged_at(output, "shutdown complete") - signalled
        assert took < grace + 0.5, f"the drain took {took:.1f} s with a grace period of {grace} s"
        for thread in threads:
            thread.join(10)
        # Requests still waiting for the model at the deadline are told so (503, retry elsewhere), not cut off.
        assert outcomes == [(503, "shutting_down")] * count, outcomes
        assert "Traceback" not in output
    finally:
        server.stop()
