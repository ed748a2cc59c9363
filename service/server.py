"""One uvicorn server around one app: the configuration, the shared-clock drain and the run.

Used by ``scgan-serve`` directly (one worker) and by each worker process of
:mod:`service.workers` (several workers, each on its own ``SO_REUSEPORT`` socket of one port).
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.middleware import MAX_HEADER_BYTES
from service.settings import Settings


class Server(uvicorn.Server):
    """uvicorn's server that starts the service's drain at the signal, so both phases of shutdown share one clock.

    uvicorn first waits for open connections, then runs the lifespan shutdown;
    without this the second phase would get a fresh ``shutdown_timeout_s``.
    ``on_started`` runs once the lifespan start-up is done and the server accepts connections.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._app = app
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_started is not None and not self.should_exit:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        state = self._app.state.service
        if state is not None:
            state.begin_drain()  # readiness drops and new requests get 503 at once


class QuietStartupTraceback(logging.Filter):
    """Drops uvicorn's traceback of a failed start-up: the lifespan already logged the one-line reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Traceback (most recent call last)")


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """How the service runs under uvicorn: our logging, our access log, bounded headers, one shutdown clock."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours, see configure_logging
        access_log=False,  # the service writes its own access log, with request ids
        # Shutdown: uvicorn stops accepting, waits at most this long for open requests, then runs our lifespan
        # drain with what is left of the same deadline (see Server).
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]  # a float works
        lifespan="on",
        # Bounded header parsing: h11 refuses (400, connection closed) once more than this much of an
        # unfinished request head is buffered (its default: 16 KiB); uvicorn's httptools parser, its
        # choice where installed, buffers any amount. Heads that arrive whole are held to the same
        # limit by RequestContextMiddleware (431).
        http="h11",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


def serve(
    app: FastAPI,
    settings: Settings,
    *,
    sockets: list[socket.socket] | None = None,
    on_started: Callable[[], None] | None = None,
) -> Server:
    """Run ``app`` until SIGTERM or SIGINT has drained it; returns the server (``started``: start-up succeeded).

    ``sockets``: a worker's own bound socket (:mod:`service.workers`); uvicorn listens on it.
    A failed start-up raises ``SystemExit(3)`` (uvicorn's start-up failure).
    """
    if settings.log_level != "DEBUG":
        logging.getLogger("uvicorn.error").addFilter(QuietStartupTraceback())
    config = uvicorn_config(app, settings)
    server = Server(config, app, on_started)
    # uvicorn restores the handlers it found and re-raises the signal once it has stopped; with the default
    # handlers that would kill the process (status -15) after a clean shutdown. Ours make it return.
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server


__all__ = ["QuietStartupTraceback", "Server", "serve", "uvicorn_config"]
