"""``scgan-serve`` / ``python -m service``: run the service under uvicorn.

Configuration comes from ``SCGAN_*`` environment variables (see
:class:`service.settings.Settings`); the few flags here override them.

Exit status: 0 after a graceful stop (SIGTERM or SIGINT), 2 for an invalid
configuration, 3 when start-up fails (e.g. a corrupt checkpoint); either
failure is explained by one log line on stderr. Shutdown takes at most
``SCGAN_SHUTDOWN_TIMEOUT_S`` from the signal (plus a fraction of a second):
the drain clock starts at the signal and uvicorn's wait for open connections
and the service's own drain share it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from service.app import create_app
from service.logging_setup import configure_logging
from service.middleware import MAX_HEADER_BYTES
from service.settings import Settings

_log = logging.getLogger("service")


def _parse(argv: Sequence[str] | None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scgan-serve",
        description="Serve SCGAN colorization over HTTP. Every option also reads SCGAN_<NAME> from the environment.",
    )
    parser.add_argument("--checkpoint", type=Path, help="generator checkpoint (SCGAN_CHECKPOINT)")
    parser.add_argument("--host", help="bind address (SCGAN_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (SCGAN_PORT, default 8000)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (SCGAN_DEVICE)")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), help="SCGAN_PRECISION")
    parser.add_argument("--compile", choices=("auto", "on", "off"), help="SCGAN_COMPILE")
    parser.add_argument("--max-batch-size", type=int, help="SCGAN_MAX_BATCH_SIZE")
    parser.add_argument("--max-batch-delay-ms", type=float, help="SCGAN_MAX_BATCH_DELAY_MS")
    parser.add_argument("--log-level", help="SCGAN_LOG_LEVEL")
    parser.add_argument("--log-format", choices=("text", "json"), help="SCGAN_LOG_FORMAT")
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def _one_line(exc: ValidationError) -> str:
    """Validation errors as one line: 'SCGAN_CHECKPOINT: checkpoint file /x.pt does not exist; SCGAN_PORT: ...'."""
    parts = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] != "value_error":
            message += f" (got {error['input']!r})"
        parts.append(f"SCGAN_{name.upper()}: {message}" if name else message)
    return "; ".join(parts)


class _Server(uvicorn.Server):
    """uvicorn's server that starts the service's drain at the signal, so both phases of shutdown share one clock.

    uvicorn first waits for open connections, then runs the lifespan shutdown;
    without this the second phase would get a fresh ``shutdown_timeout_s``.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        state = self._app.state.service
        if state is not None:
            state.begin_drain()  # readiness drops and new requests get 503 at once


class _QuietStartupTraceback(logging.Filter):
    """Drops uvicorn's traceback of a failed start-up: the lifespan already logged the one-line reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Traceback (most recent call last)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scgan-serve``."""
    overrides = _parse(argv)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]  # command-line values, validated by Settings itself
    except ValidationError as exc:
        configure_logging()
        _log.critical("invalid configuration: %s", _one_line(exc))
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        logging.getLogger("uvicorn.error").addFilter(_QuietStartupTraceback())
    app = create_app(settings)
    _log.info("starting on http://%s:%d", settings.host, settings.port)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours, see configure_logging
        access_log=False,  # the service writes its own access log, with request ids
        # Shutdown: uvicorn stops accepting, waits at most this long for open requests, then runs our lifespan
        # drain with what is left of the same deadline (see _Server).
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]  # a float works
        lifespan="on",
        # Bounded header parsing: h11 refuses (400, connection closed) once more than this much of an
        # unfinished request head is buffered (its default: 16 KiB); uvicorn's httptools parser, its
        # choice where installed, buffers any amount. Heads that arrive whole are held to the same
        # limit by RequestContextMiddleware (431).
        http="h11",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    server = _Server(config, app)
    # uvicorn restores the handlers it found and re-raises the signal once it has stopped; with the default
    # handlers that would kill the process (status -15) after a clean shutdown. Ours make it return 0.
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
