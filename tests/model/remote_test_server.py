"""The real service under uvicorn, behind an ASGI wrapper that misbehaves on purpose (for the remote CLI's tests).

    python tests/model/remote_test_server.py PORT RECORD [--busy N] [--die-at N] [--delay-ms MS]

Settings come from SCGAN_* variables as for ``scgan-serve``. The wrapper appends
one line per image request to RECORD ("<status> <in-flight>") and can:

- ``--busy N``: answer the first N image uploads with 503 + ``Retry-After: 1`` (the service's error body);
- ``--die-at N``: SIGKILL the whole process when upload number N arrives (a crashed pod);
- ``--delay-ms MS``: hold every upload that long first, so that concurrent ones overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import Settings, create_app

_IMAGE_ROUTES = ("/colorize", "/saliency")


class Misbehave:
    def __init__(self, app: ASGIApp, record: Path, *, busy: int, die_at: int, delay_s: float) -> None:
        self.app, self.record = app, record
        self.busy, self.die_at, self.delay_s = busy, die_at, delay_s
        self.uploads = 0
        self.in_flight = 0
        self.lock = threading.Lock()

    def _note(self, status: int, in_flight: int) -> None:
        with self.lock, self.record.open("a") as fh:
            fh.write(f"{status} {in_flight}\n")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in _IMAGE_ROUTES:
            await self.app(scope, receive, send)
            return
        self.uploads += 1
        if self.uploads == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.in_flight += 1
        peak = self.in_flight
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            peak = max(peak, self.in_flight)
            if self.uploads <= self.busy:
                body = json.dumps({"error": {"code": "queue_full", "message": "busy", "request_id": "x"}}).encode()
                headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
                self._note(503, peak)
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return

            # Noted before the response leaves, so that a client that has its answer finds it recorded.
            async def recording_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self._note(message["status"], peak)
                await send(message)

            await self.app(scope, receive, recording_send)
        finally:
            self.in_flight -= 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("record", type=Path)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--die-at", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = create_app(Settings(host="127.0.0.1", port=args.port))
    wrapped = Misbehave(app, args.record, busy=args.busy, die_at=args.die_at, delay_s=args.delay_ms / 1000)
    uvicorn.run(wrapped, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
