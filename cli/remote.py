"""``scgan-colorize --server URL``: the same run as the local one, with the model behind a running service.

Each file is uploaded to ``POST /colorize`` (and ``/saliency``) with up to
``--concurrency`` requests in flight; the answer (always PNG, lossless) is saved
by the same code as the local path, so names, folders and bytes match it.
503 answers are retried after their ``Retry-After``, 504s and connection errors
after a capped exponential backoff with jitter, each file at most ``--retries``
times. A refused API key or a server without the saliency branch stops the run.

httpx is imported here only, and this module only in remote mode: the service
and the local path never load it.
"""

from __future__ import annotations

import io
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from model.hints import Hint, hints_to_json
from model.wording import count

log = logging.getLogger("scgan.colorize")

#: Statuses worth another try: the queue was full (503, with Retry-After) or the model was too slow (504).
_RETRY_STATUSES = frozenset({503, 504})


def _import_httpx() -> ModuleType:
    import httpx  # lazily: only --server needs an HTTP client

    return httpx


class RunAborted(Exception):
    """Nothing more can succeed (the key is refused, the server lacks what was asked): stop the whole run."""


class FileFailed(Exception):
    """This file could not be colorized; the run goes on with the others."""


@dataclass(frozen=True)
class RetryPolicy:
    """Per file: at most ``retries`` more attempts after a 503, a 504 or a connection error.

    The wait before attempt ``n`` (1-based) is a random value in [b/2, b] with
    ``b = min(cap_s, base_s * 2**(n-1))`` ("equal jitter", so that many clients
    do not retry in step), and never less than the server's ``Retry-After``
    (itself capped at ``cap_s``).
    """

    retries: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
        backoff = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        jittered = rng.uniform(backoff / 2, backoff)
        return max(jittered, min(self.cap_s, retry_after_s or 0.0))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form the service sends); None when absent or a date."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def read_api_key(path: Path) -> str:
    """The first key in ``path`` (blank lines and ``#`` comments skipped); ValueError, without the key, if none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the API key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    for line in lines:
        key = line.strip()
        if key and not key.startswith("#"):
            if key.lower().startswith("sha256:"):
                raise ValueError(f"{path} holds a key's SHA-256; the client needs the key itself")
            return key
    raise ValueError(f"the API key file {path} holds no key")


def check_server_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError unless it is http(s)://host[:port][/prefix]."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"--server must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def _error_text(response: Any) -> str:
    """'HTTP 415 unsupported_media_type: ...' from the service's JSON error body (or the status alone)."""
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


class RemoteColorizer:
    """A client of one service: uploads images and returns the decoded answers, retrying what may be retried."""

    def __init__(
        self,
        server: str,
        *,
        api_key: str | None,
        concurrency: int,
        timeout_s: float,
        policy: RetryPolicy,
        render_size: int | None = None,
        chroma_gain: float = 1.0,
        hints: Sequence[Hint] = (),
        stop: threading.Event | None = None,
    ) -> None:
        self._httpx = _import_httpx()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = self._httpx.Client(
            base_url=check_server_url(server),
            headers=headers,
            timeout=self._httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=self._httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
        )
        self._has_key = bool(api_key)
        self._params = {"render_size": str(render_size)} if render_size else {}
        self._colour_params = {**self._params, "format": "png"}  # lossless; saved by the local path's code
        if chroma_gain != 1.0:
            self._colour_params["chroma_gain"] = repr(chroma_gain)
        self._colour_fields = {"hints": hints_to_json(hints)} if hints else {}  # a multipart form field
        self._policy = policy
        self._rng = random.Random()
        self._stop = stop or threading.Event()
        self.retried = 0  # attempts repeated, over the whole run (for the summary line)

    def close(self) -> None:
        self._client.close()

    def _key_problem(self, response: Any) -> str:
        """Why a 401/403 stops the run: no key was given (say how to give one), or the one given was refused."""
        if not self._has_key:
            return f"the server needs an API key: pass --api-key-file FILE, a file holding it ({_error_text(response)})"
        return f"the server refused the API key ({_error_text(response)})"

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise RunAborted("the run was stopped")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response of the first attempt that is not retried; FileFailed once the retries are spent."""
        attempt = 0
        while True:
            if self._stop.is_set():
                raise RunAborted("the run was stopped")
            retry_after: float | None = None
            try:
                response = self._client.request(method, path, **kwargs)
            except self._httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc or 'connection failed'}"
            else:
                if response.status_code in (401, 403):
                    raise RunAborted(self._key_problem(response))
                if response.status_code not in _RETRY_STATUSES:
                    return response
                problem = _error_text(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            attempt += 1
            if attempt > self._policy.retries:
                raise FileFailed(f"{problem} (gave up after {count(self._policy.retries, 'retry', 'retries')})")
            delay = self._policy.delay_s(attempt, retry_after, self._rng)
            log.debug("%s %s: %s; retry %d in %.2f s", method, path, problem, attempt, delay)
            self.retried += 1
            self._sleep(delay)

    def model_info(self) -> dict[str, Any]:
        """GET /v1/model (checks the server and the key before any upload)."""
        response = self._request("GET", "/v1/model")
        if response.status_code != 200:
            raise RunAborted(f"GET /v1/model: {_error_text(response)}")
        info: dict[str, Any] = response.json()
        return info

    def _upload(
        self, path: str, name: str, data: bytes, params: dict[str, str], fields: dict[str, str] | None = None
    ) -> Image.Image:
        files = {"file": (name, data, "application/octet-stream")}
        response = self._request("POST", path, params=params, files=files, data=fields or {})
        if response.status_code == 501:
            raise RunAborted(f"POST {path}: {_error_text(response)}")
        if response.status_code != 200:
            raise FileFailed(_error_text(response))
        try:
            with Image.open(io.BytesIO(response.content)) as image:
                image.load()
                return image.copy()
        except (OSError, UnidentifiedImageError) as exc:
            raise FileFailed(f"the server's answer is not an image: {exc}") from exc

    def colorize(self, source: Path, *, saliency: bool) -> tuple[Image.Image, Image.Image | None]:
        """The colour image (lossless PNG from the server) and, when asked, the saliency map of one file."""
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise FileFailed(f"cannot read it: {exc.strerror or exc}") from exc
        colour = self._upload("/colorize", source.name, data, self._colour_params, self._colour_fields)
        sal = self._upload("/saliency", source.name, data, self._params) if saliency else None
        return colour, sal


@dataclass
class RemoteRun:
    """What :func:`run_remote` did: counts and the files that failed (with why)."""

    done: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    aborted: str | None = None


def run_remote(
    colorizer: RemoteColorizer,
    jobs: Sequence[tuple[Path, Path]],
    *,
    concurrency: int,
    saliency: bool,
    save: Callable[[Path, Image.Image, Image.Image | None], None],
    progress: Any,
    stop: threading.Event,
) -> RemoteRun:
    """Colorize ``jobs`` ((source, destination) pairs) with ``concurrency`` uploads in flight.

    ``save`` writes one result (the same function as the local path); ``progress``
    is a tqdm bar advanced once per file. A :class:`RunAborted` stops the
    submission of new files and lets the ones in flight finish or fail.
    """
    run = RemoteRun()

    def one(source: Path, dest: Path) -> None:
        colour, sal = colorizer.colorize(source, saliency=saliency)
        save(dest, colour, sal)

    pending: dict[Future[None], Path] = {}
    todo = iter(jobs)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scgan-upload") as pool:
        while True:
            while len(pending) < 2 * concurrency and not stop.is_set():  # bounded: 10,000 files are not 10,000 futures
                job = next(todo, None)
                if job is None:
                    break
                pending[pool.submit(one, *job)] = job[0]
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                source = pending.pop(future)
                exc = future.exception()
                if exc is None:
                    run.done += 1
                elif isinstance(exc, RunAborted):
                    if run.aborted is None:
                        run.aborted = str(exc)
                    stop.set()
                    continue
                elif isinstance(exc, (FileFailed, OSError, ValueError)):
                    log.warning("failed: %s: %s", source, exc)
                    run.failed.append((source, str(exc)))
                else:
                    stop.set()
                    raise exc
                progress.update(1)
    return run


__all__ = [
    "FileFailed",
    "RemoteColorizer",
    "RemoteRun",
    "RetryPolicy",
    "RunAborted",
    "check_server_url",
    "parse_retry_after",
    "read_api_key",
    "run_remote",
]
