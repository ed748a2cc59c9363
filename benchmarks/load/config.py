"""What a run measures: the servers (modes), the presets, and the typed configuration from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parents[1]
NAIVE_APP = PACKAGE.parent / "naive_app.py"
DEFAULT_OUT_DIR = PACKAGE.parent / "results"

MODES: dict[str, str] = {
    "batched": "service, dynamic batching",
    "batched-1w": "service, dynamic batching, 1 worker",
    "unbatched": "service, max batch 1",
    "naive": "naive FastAPI demo",
    "baseline": "service from --baseline (another checkout), dynamic batching, its default workers",
}
#: The servers of a full or quick run ('baseline' joins only when --baseline names a checkout).
DEFAULT_MODES: list[str] = [mode for mode in MODES if mode != "baseline"]
TARGET_SHARE = 0.90  # service at saturation / raw model ceiling
TARGET_GROWTH = 0.10  # RSS growth over the soak

#: SCGAN_WORKERS of each service mode; a mode not named here leaves it unset (the service's default, auto).
MODE_WORKERS: dict[str, str] = {"batched-1w": "1"}

# What each option defaults to per --preset (an option given on the command line wins). full: the
# whole table; quick: a smoke run; bar: the bar (8 clients, 1 worker against the default
# workers, CPU per image and efficiency); minute: about a minute of load (e.g. on a GPU machine).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "modes": DEFAULT_MODES,
        "concurrency": [1, 2, 4, 8, 16, 32],
        "duration": 10.0,
        "warmup": 2.0,
        "soak_requests": 2000,
        "raw_budget": 3.0,
        "raw_now_budget": 1.0,
        "raw_batch_sizes": None,  # powers of two up to --max-batch-size, and --max-batch-size
        "raw_after": True,
        "out_dir": DEFAULT_OUT_DIR,
    },
    "quick": {
        "modes": DEFAULT_MODES,
        "concurrency": [1, 4],
        "duration": 1.5,
        "warmup": 0.3,
        "soak_requests": 40,
        "raw_budget": 0.5,
        "raw_now_budget": 0.1,
        "raw_batch_sizes": "ends",  # 1 and --max-batch-size
        "raw_after": False,
        "out_dir": DEFAULT_OUT_DIR / "quick",
    },
    "bar": {
        "modes": ["batched-1w", "batched"],
        "concurrency": [8],
        "duration": 15.0,
        "warmup": 3.0,
        "soak_requests": 0,
        "raw_budget": 3.0,
        "raw_now_budget": 1.0,
        "raw_batch_sizes": None,
        "raw_after": True,
        "out_dir": DEFAULT_OUT_DIR / "bar",
    },
    "minute": {
        "modes": ["batched", "unbatched"],
        "concurrency": [1, 8, 32],
        "duration": 8.0,
        "warmup": 2.0,
        "soak_requests": 0,
        "raw_budget": 1.0,
        "raw_now_budget": 0.3,
        "raw_batch_sizes": "ends",
        "raw_after": False,
        "out_dir": DEFAULT_OUT_DIR / "minute",
    },
}


@dataclass(frozen=True)
class LoadConfig:
    """One run's settings: the command line with the preset (full or ``--quick``) filled in. Fields: ``--help``."""

    quick: bool
    preset: str
    checkpoint: Path | None
    out_dir: Path
    concurrency: list[int]
    duration: float
    warmup: float
    min_answers: int
    soak_requests: int
    soak_concurrency: int
    max_batch_size: int
    modes: list[str]
    naive_handler: str
    raw_budget: float
    raw_now_budget: float
    raw_batch_sizes: list[int] | str | None  # "ends": 1 and max_batch_size; None: powers of two up to it
    raw_after: bool
    device: str | None
    torch_threads: int | None
    workers: str | None
    baseline: Path | None
    malloc: Path | None
    compile: str
    image_size: tuple[int, int]
    upload_format: str
    output_format: str
    client_timeout: float

    def as_json(self) -> dict[str, Any]:
        """The settings as JSON values, for load.json: paths as strings, never this machine's (see :func:`portable`)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {key: portable(value) if isinstance(value, Path) else value for key, value in values.items()}


def portable(path: Path) -> str:
    """``path`` for a committed result: relative to the repository when inside it, else its name alone."""
    resolved = path.resolve()
    return resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else resolved.name


@dataclass(frozen=True)
class WorkerCall:
    """How this package was started as one of its own helper processes (see :mod:`benchmarks.load.workers`)."""

    role: str  # "client-worker" or "raw-worker"
    upload: Path
    output_format: str


def parse_args(argv: Sequence[str] | None = None) -> LoadConfig | WorkerCall:
    """The run the command line asks for, or the helper process it starts."""
    import benchmarks.load as package
    from model.compiled import COMPILE_SETTINGS  # the service's choices; imported late, as service modules are

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (the presets below in brackets)")
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="full (default), quick (= --quick), bar (the issue's bar: 8 clients, 1 worker against the default "
        "workers, CPU per image; benchmarks/results/bar), minute (about a minute; benchmarks/results/minute)",
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: what the service loads by default)")
    parser.add_argument("--out-dir", type=Path, help="where load.md/.json/.png go (benchmarks/results[/quick])")
    parser.add_argument("--concurrency", type=int, nargs="+", help="clients per point (1 2 4 8 16 32 [1 4])")
    parser.add_argument("--duration", type=float, help="seconds measured per point (10 [1.5])")
    parser.add_argument("--warmup", type=float, help="least warm-up per point, seconds (2 [0.3])")
    parser.add_argument(
        "--min-answers", type=int, default=5, help="a point's window stretches until it holds this many answers (5)"
    )
    parser.add_argument("--soak-requests", type=int, help="requests of the memory soak, 0: none (2000 [40])")
    parser.add_argument("--soak-concurrency", type=int, help="clients of the soak (default: --max-batch-size)")
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="the batched service's max batch (default: the service's)"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), help="servers to measure (all but baseline; bar: batched-1w batched)"
    )
    parser.add_argument(
        "--naive-handler",
        choices=("async", "sync"),
        default="async",
        help="the naive app's route: async def blocking the loop (default), or def on FastAPI's thread pool",
    )
    parser.add_argument("--raw-budget", type=float, help="seconds per raw batch size (3 [0.5])")
    parser.add_argument(
        "--raw-now-budget",
        type=float,
        help="seconds per raw batch size timed just before each point, its 'raw now' (1 [0.1])",
    )
    parser.add_argument("--raw-batch-sizes", type=int, nargs="+", help="(powers of 2 up to max batch [1, max])")
    parser.add_argument(
        "--raw-after",
        action=argparse.BooleanOptionalAction,
        help="time the raw model after each server's sweep too (yes [no])",
    )
    parser.add_argument("--device", help="SCGAN_DEVICE for every server and the raw model (default: auto)")
    parser.add_argument("--torch-threads", type=int, help="SCGAN_TORCH_THREADS (default: torch's own)")
    parser.add_argument(
        "--workers", help="SCGAN_WORKERS of the services: auto or N (default: the service's default, auto)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier version (e.g. `git worktree add /tmp/before <commit>`): mode 'baseline' "
        "serves the same checkpoint with that code, so a change is measured against it in the same run",
    )
    parser.add_argument(
        "--malloc",
        type=Path,
        help="an allocator every server and the raw model preload (LD_PRELOAD), e.g. jemalloc as the Docker image "
        "runs: /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (default: the C library's malloc)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_SETTINGS,
        default="auto",
        help="SCGAN_COMPILE of the services and the raw model (default: the service's default, auto); "
        "the naive server always runs eagerly, as demos do",
    )
    parser.add_argument("--image-size", type=int, nargs=2, default=[512, 384], metavar=("W", "H"))
    parser.add_argument("--upload-format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--output-format", choices=("jpeg", "png", "webp"), default="jpeg")
    parser.add_argument("--client-timeout", type=float, default=120.0, help="seconds before a client gives up")
    # the helper processes this script starts
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--upload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_worker or args.raw_worker:
        role = "client-worker" if args.client_worker else "raw-worker"
        return WorkerCall(role, Path(args.upload), args.output_format)
    if args.preset is None:
        args.preset = "quick" if args.quick else "full"
    elif args.quick and args.preset != "quick":
        parser.error("--quick is --preset quick")
    args.quick = args.preset == "quick"
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.max_batch_size is None:
        from service.settings import Settings

        args.max_batch_size = Settings.model_fields["max_batch_size"].get_default(call_default_factory=True)
    if args.soak_concurrency is None:
        args.soak_concurrency = args.max_batch_size
    if args.baseline is not None:
        if not (args.baseline / "service" / "__main__.py").is_file():
            parser.error(f"--baseline: {args.baseline} is not a checkout of this project (no service/__main__.py)")
        if "baseline" not in args.modes:
            args.modes = ["baseline", *args.modes]
    elif "baseline" in args.modes:
        parser.error("--modes baseline needs --baseline DIR")
    if args.malloc is not None and not args.malloc.is_file():
        parser.error(f"--malloc: no such file {args.malloc}")
    options = dict(vars(args), image_size=tuple(args.image_size))
    return LoadConfig(**{f.name: options[f.name] for f in fields(LoadConfig)})
