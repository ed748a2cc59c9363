"""``scgan-serve`` / ``python -m service``: run the service under uvicorn.

Configuration comes from ``SCGAN_*`` environment variables (see
:class:`service.settings.Settings`); the few flags here override them.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.logging_setup import configure_logging
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
    parser.add_argument("--max-batch-size", type=int, help="SCGAN_MAX_BATCH_SIZE")
    parser.add_argument("--max-batch-delay-ms", type=float, help="SCGAN_MAX_BATCH_DELAY_MS")
    parser.add_argument("--log-level", help="SCGAN_LOG_LEVEL")
    parser.add_argument("--log-format", choices=("text", "json"), help="SCGAN_LOG_FORMAT")
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scgan-serve``."""
    overrides = _parse(argv)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        configure_logging()
        _log.critical("invalid configuration:\n%s", exc)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    _log.info("starting on http://%s:%d", settings.host, settings.port)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours, see configure_logging
        access_log=False,  # the service writes its own access log, with request ids
        # Shutdown: uvicorn stops accepting, waits this long for open requests, then runs our lifespan drain.
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_timeout_s)),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
