"""Service configuration: one settings object, read from ``SCGAN_*`` environment variables.

Every field has a documented default and is validated when the object is built,
so a bad deployment fails at start-up with a message naming the variable rather
than misbehaving under load. ``Settings()`` reads the environment;
``Settings(max_batch_size=4)`` overrides it (tests, the CLI).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import torch
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.compile_cache import default_cache_dir
from model.compiled import CompileSetting
from model.config import SIZE_MULTIPLE
from model.device import PrecisionSetting
from model.hints import DEFAULT_MAX_HINTS
from service.auth import ApiKeys

LogFormat = Literal["text", "json"]
#: Most workers "auto" starts on a CPU host: each worker holds its own model and compiled graphs in memory.
MAX_AUTO_WORKERS = 8
#: Most workers an operator may ask for explicitly (SCGAN_WORKERS).
MAX_WORKERS = 64
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: Most colour hints an operator may allow per request (SCGAN_MAX_HINTS): the form field grows with it.
MAX_HINTS = 4096


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Settings(BaseSettings):
    """Everything an operator can tune. Environment variable = ``SCGAN_`` + upper-case field name."""

    model_config = SettingsConfigDict(env_prefix="SCGAN_", extra="ignore", frozen=True, validate_default=True)

    # -- model -------------------------------------------------------------------
    checkpoint: Path | None = Field(
        default=None,
        description="Generator checkpoint (ours or the authors'). Unset: the bundled starter checkpoint "
        "(MODEL_CARD.md), or, in an install stripped of it, a seeded random compact generator (logged as a WARNING).",
    )
    device: str = Field(default="auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1'.")
    precision: PrecisionSetting = Field(
        default="auto",
        description="Inference precision; 'auto' is fp16 on CUDA, bf16 on CPUs with native bf16 (AVX-512 BF16, AMX), "
        "else fp32 (benchmarks/model_forward.py).",
    )
    render_size: int | None = Field(
        default=None,
        description="Default working resolution (multiple of 256). Unset: the checkpoint's own working resolution.",
    )
    max_render_size: int = Field(
        default=1024, description="Largest render_size a client may ask for (bounds per-request compute)."
    )
    compile: CompileSetting = Field(
        default="auto",
        description="torch.compile the forward at warm-up, one graph per batch size in {1, 2, 4, ..., max_batch_size} "
        "at render_size (smaller batches are zero-padded up; other shapes run eagerly). 'auto': on for CPUs with a C++ "
        "compiler (several times faster there, benchmarks/results/model_forward.md; costs tens of seconds of start-up "
        "per batch size on 2 cores), off on CUDA, where it is not yet measured; 'on' fails start-up when no compiler is found.",
    )
    compile_cache_dir: Path | None = Field(
        default_factory=default_cache_dir,
        description="Folder of compiled forwards (one AOTInductor package per batch size, model/compile_cache.py), "
        "shared by the workers and by later starts: a start that finds its shapes there loads them in seconds instead "
        "of compiling for minutes. Default: $XDG_CACHE_HOME/scgan-colorize/compile (~/.cache/...). Empty: no cache, "
        "every start compiles. Entries are keyed by weights, torch, CPU/GPU, precision and shape; delete the folder to "
        "reclaim its space.",
    )
    fallback_seed: int = Field(default=0, description="Seed of the random generator used when no checkpoint exists.")
    warmup: bool = Field(
        default=True, description="Compile (see compile), then run one forward per batch size, before reporting ready."
    )

    # -- batching ----------------------------------------------------------------
    max_batch_size: int = Field(
        default_factory=lambda: 8 if torch.cuda.is_available() else 4,
        ge=1,
        le=256,
        description="Most images in one forward. Default: 8 where CUDA is available; 4 on CPUs, whose per-image "
        "cost rises again past batch 4 (benchmarks/results/load.md).",
    )
    max_batch_delay_ms: float = Field(
        default=5.0, ge=0.0, le=1000.0, description="Longest a batch waits for company after its first request."
    )
    queue_capacity: int = Field(
        default=64, ge=1, le=100_000, description="Requests waiting for the model; beyond it: 503 + Retry-After."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="Budget from arrival to model result; beyond it: 504."
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="Retry-After sent with 503 answers.")
    shutdown_timeout_s: float = Field(
        default=30.0, ge=0.0, le=3600.0, description="How long shutdown waits for queued and running requests."
    )

    # -- limits ------------------------------------------------------------------
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, le=1024**3, description="Largest upload; beyond it: 413."
    )
    max_pixels: int = Field(
        default=4096 * 4096,
        ge=1,
        le=178_956_970,  # 2x Pillow's MAX_IMAGE_PIXELS: past it Pillow refuses to open the file at all
        description="Largest image (width x height); checked from the header before decoding; beyond it: 413. "
        "Memory per input pixel: benchmarks/results/pixel_memory.md.",
    )
    max_pixels_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Most image pixels (width x height, summed) being decoded, waiting or encoded at once; an image "
        "that does not fit now: 503 + Retry-After. Bounds memory by pixels rather than request count (README). "
        "Unset: max_pixels x (max_batch_size + cpu_threads), a full batch plus one image per CPU thread. "
        "At least max_pixels.",
    )

    max_hints: int = Field(
        default=DEFAULT_MAX_HINTS,
        ge=1,
        le=MAX_HINTS,
        description="Most colour hints one POST /colorize may carry (the form field 'hints'); more: 422.",
    )

    # -- process -----------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Bind address; set 0.0.0.0 in a container.")
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: LogLevel = "INFO"
    log_format: LogFormat = Field(default="text", description="'json' writes one JSON object per line.")
    cpu_threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        le=256,
        description="Threads that decode, pre-process, post-process and encode images.",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="torch intra-op threads (per process). Unset: torch's default with one worker; with several, "
        "the usable cores divided among them (at least 1 each).",
    )
    workers: int | Literal["auto"] = Field(
        default="auto",
        description="Model worker processes behind the one port, each with its own model (memory: one model and its "
        "compiled graphs per worker). 'auto': 1 on CUDA (one process per GPU); on CPU one per usable core (CPU "
        f"affinity and cgroup quota), at most {MAX_AUTO_WORKERS}. 1: a single process, no supervisor "
        "(service/workers.py).",
    )
    worker_heartbeat_timeout_s: float = Field(
        default=10.0,
        ge=0.5,
        le=3600.0,
        description="With several workers: a worker whose heartbeat (stamped by a thread of its own, 10 times per "
        "this limit) is older than this is hung (stopped, deadlocked); the supervisor kills and replaces it, and "
        "counts it as a restart (service/workers.py).",
    )

    # -- access ------------------------------------------------------------------
    api_keys_file: Path | None = Field(
        default=None,
        description="File of API keys, one per line: the key, or sha256:<hex digest of the key>; '#' starts a "
        "comment. Set: /colorize, /saliency and /v1/model need 'Authorization: Bearer <key>' (401 otherwise). "
        "Unset: no authentication (logged at start-up).",
    )
    metrics_auth: bool = Field(default=False, description="Also require an API key for /metrics (needs api_keys_file).")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins (scheme://host[:port], comma-separated, or '*') whose browser apps may call the API. "
        "Empty: no CORS headers (same origin only).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("workers", mode="before")
    @classmethod
    def _check_workers(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"must be 'auto' or a whole number from 1 to {MAX_WORKERS}")
        if isinstance(value, str):
            value = value.strip().lower()
            if value != "auto":
                try:
                    value = int(value)
                except ValueError:
                    raise ValueError(f"must be 'auto' or a whole number from 1 to {MAX_WORKERS}") from None
        if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_WORKERS:
            raise ValueError(f"must be 'auto' or a whole number from 1 to {MAX_WORKERS}, got {value}")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "auto":
            return value
        try:
            torch.device(value)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"not a torch device: {value!r}") from exc
        return value

    @field_validator("render_size", "max_render_size")
    @classmethod
    def _check_render_size(cls, value: int | None) -> int | None:
        if value is not None and (value < SIZE_MULTIPLE or value % SIZE_MULTIPLE):
            raise ValueError(f"must be a positive multiple of {SIZE_MULTIPLE}, got {value}")
        return value

    @field_validator("compile_cache_dir", mode="before")
    @classmethod
    def _empty_cache_dir(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("compile_cache_dir")
    @classmethod
    def _check_cache_dir(cls, value: Path | None) -> Path | None:
        if value is not None and value.expanduser().exists() and not value.expanduser().is_dir():
            raise ValueError(f"{value} exists and is not a folder")
        return value.expanduser() if value is not None else None

    @field_validator("checkpoint")
    @classmethod
    def _check_checkpoint(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"checkpoint file {value} does not exist")
        return value

    @field_validator("api_keys_file")
    @classmethod
    def _check_api_keys_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            ApiKeys.from_file(value)  # missing, unreadable, empty or malformed: one line, no key material
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            bad_path = parts.path not in ("", "/") or parts.query or parts.fragment
            if parts.scheme not in ("http", "https") or not parts.netloc or bad_path:
                raise ValueError(f"not an origin (scheme://host[:port], no path): {origin!r}")
        return tuple(origin.rstrip("/") for origin in value)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.render_size is not None and self.render_size > self.max_render_size:
            raise ValueError(f"render_size {self.render_size} exceeds max_render_size {self.max_render_size}")
        if self.max_pixels_in_flight is not None and self.max_pixels_in_flight < self.max_pixels:
            raise ValueError(
                f"SCGAN_MAX_PIXELS_IN_FLIGHT ({self.max_pixels_in_flight}) is below SCGAN_MAX_PIXELS "
                f"({self.max_pixels}): an image of the largest accepted size could never be served"
            )
        if self.compile != "off" and self.compile_cache_dir is not None:
            existing = next(p for p in (self.compile_cache_dir, *self.compile_cache_dir.parents) if p.exists())
            if not os.access(existing, os.W_OK | os.X_OK):
                raise ValueError(
                    f"SCGAN_COMPILE_CACHE_DIR {self.compile_cache_dir} cannot be created or written "
                    f"({existing} is not writable); point it at a writable folder, or set it empty for no cache"
                )
        if self.metrics_auth and self.api_keys_file is None:
            raise ValueError("SCGAN_METRICS_AUTH=true needs SCGAN_API_KEYS_FILE")
        return self

    @property
    def max_batch_delay_s(self) -> float:
        return self.max_batch_delay_ms / 1000.0

    @property
    def pixels_in_flight_limit(self) -> int:
        """``max_pixels_in_flight``, or its default: max_pixels x (max_batch_size + cpu_threads)."""
        if self.max_pixels_in_flight is not None:
            return self.max_pixels_in_flight
        return self.max_pixels * (self.max_batch_size + self.cpu_threads)


__all__ = [
    "MAX_AUTO_WORKERS",
    "MAX_HINTS",
    "MAX_WORKERS",
    "CompileSetting",
    "LogFormat",
    "LogLevel",
    "PrecisionSetting",
    "Settings",
]
