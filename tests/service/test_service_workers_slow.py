"""A worker hung under load (SIGSTOP) with the default heartbeat limit: found, replaced, and the host serves again.

Slow (about a minute of load on a real supervisor and two workers); run by `make test-slow`. The same
mechanism with a short limit runs in the normal suite (tests/service/test_service_workers.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from service_test_helpers import Workers, gray_image, image_bytes

from service import Settings

pytestmark = pytest.mark.slow

CLIENTS = 6
#: The bar: the hung worker is replaced (the host ready again) within REPLACED_S of the stop, and from
#: SERVING_S after it every request answers and /readyz answers 200, checked for WINDOW_S.
REPLACED_S, SERVING_S, WINDOW_S = 30.0, 35.0, 15.0


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic() when the request was sent
    status: int | str  # the HTTP status, or the transport error's name


def keep_asking(send: Callable[[], httpx.Response], outcomes: list[Outcome], stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            status: int | str = send().status_code
        except httpx.TransportError as exc:
            status = type(exc).__name__
        outcomes.append(Outcome(started, status))


def test_a_worker_stopped_under_load_is_replaced_and_the_host_serves_every_request_again(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    limit_s = Settings.model_fields["worker_heartbeat_timeout_s"].default
    workers = Workers(tiny_checkpoint, tmp_path / "server.log")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        workers.wait_ready()
        data = image_bytes(gray_image(48, 40), "PNG")
        requests: list[Outcome] = []
        readiness: list[Outcome] = []

        # No keep-alive: a new connection for each request, so the kernel picks a worker each time.
        client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)

        def colorize() -> httpx.Response:
            return client.post(f"{workers.base}/colorize", files={"file": ("in.png", data, "image/png")})

        def readyz() -> httpx.Response:
            response = client.get(f"{workers.base}/readyz", timeout=5)
            time.sleep(0.2)
            return response

        threads = [threading.Thread(target=keep_asking, args=(colorize, requests, stop)) for _ in range(CLIENTS)]
        threads.append(threading.Thread(target=keep_asking, args=(readyz, readiness, stop)))
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        hung = workers.pids()[1]
        os.kill(hung, signal.SIGSTOP)
        stopped = time.monotonic()
        workers.wait_for("the hung worker's replacement", lambda: len(workers.spawned(1)) == 2, timeout_s=REPLACED_S)
        killed_s = time.monotonic() - stopped
        workers.wait_for(
            "readiness", lambda: any(o.status == 200 and o.started > stopped + killed_s for o in readiness)
        )
        ready_s = min(o.started for o in readiness if o.status == 200 and o.started > stopped + killed_s) - stopped
        time.sleep(max(0.0, stopped + SERVING_S + WINDOW_S - time.monotonic()))
        stop.set()
        for thread in threads:
            thread.join(30)

        before = [o for o in requests if stopped <= o.started < stopped + SERVING_S]
        after = [o for o in requests if o.started >= stopped + SERVING_S]
        ready_after = [o for o in readiness if o.started >= stopped + SERVING_S]
        print(
            f"heartbeat limit {limit_s:g} s: killed {killed_s:.1f} s after the stop, host ready again at {ready_s:.1f} s;"
            f" in the first {SERVING_S:g} s {sum(o.status != 200 for o in before)} of {len(before)} requests failed;"
            f" after: {len(after)} requests, {len(ready_after)} readiness checks"
        )
        timeline = [
            f"{r['ts']} {r['message']}"
            for r in workers.records()
            if r.get("worker") == 1 or "worker 1" in str(r["message"])
        ]
        assert ready_s <= REPLACED_S, f"the host was ready again only {ready_s:.1f} s after the stop:\n" + "\n".join(
            timeline
        )
        assert len(after) >= 2 * CLIENTS and len(ready_after) >= 5, "too little traffic to judge"
        assert [o for o in after if o.status != 200] == []
        assert [o for o in ready_after if o.status != 200] == []
        [verdict] = [m for m in workers.messages("ERROR") if "sent no heartbeat" in m]
        assert verdict.startswith(f"worker 1 (pid {hung}) sent no heartbeat"), verdict
        workers.process.send_signal(signal.SIGTERM)
        assert workers.process.wait(60) == 0, workers.output()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        workers.stop()
