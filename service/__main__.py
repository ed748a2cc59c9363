"""``scgan-serve`` / ``python -m service``: run the service under uvicorn.

Configuration comes from ``SCGAN_*`` environment variables (see
:class:`service.settings.Settings`); the few flags here override them.

Exit status: 0 after a graceful stop (SIGTERM or SIGINT), 2 for an invalid
configuration, 3 when start-up fails (e.g. a corrupt checkpoint); either
failure is explained by one log line on stderr. Shutdown takes at most
``SCGAN_SHUTDOWN_TIMEOUT_S`` from the signal (plus a fraction of a second):
the drain clock starts at the signal and uvicorn's wait for open connections
and the service's own drain share it. With several workers (SCGAN_WORKERS) a
supervisor runs them on the one port, under the same contract
(:mod:`service.workers`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from service.app import create_app
from service.logging_setup import configure_logging
from service.server import serve
from service.settings import Settings
from service.workers import Supervisor, plan_workers, usable_cores, uses_cuda

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
    parser.add_argument("--workers", help="model worker processes: auto | N (SCGAN_WORKERS)")
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
    try:
        plan = plan_workers(
            settings.workers,
            cuda=uses_cuda(settings.device),
            cores=usable_cores(),
            torch_threads=settings.torch_threads,
        )
    except ValueError as exc:
        _log.critical("invalid configuration: SCGAN_WORKERS: %s", exc)
        return 2
    if plan.workers > 1:
        return Supervisor(settings, plan).run()
    app = create_app(settings)
    _log.info("starting on http://%s:%d", settings.host, settings.port)
    server = serve(app, settings)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
