"""An on-disk cache of compiled forwards (AOTInductor packages), shared by processes and by restarts.

Why AOTInductor packages: inductor's own FX-graph cache cannot hold our graphs (weight freezing
prepacks the weights as oneDNN tensors, which it cannot pickle: it logs "Bypassing FX Graph Cache
because 'mkldnn tensors unpickleable'", and every start compiled again), and even a hit there
would still trace every shape with Dynamo. A ``.pt2`` package holds the compiled kernels and the
frozen weights in one shared library that loads in well under a second
(``benchmarks/compile_cache.py``, results in ``benchmarks/results/compile_cache.md``).

Layout under the cache folder::

    <digest>/forward.pt2    the package
    <digest>/entry.json     its key (every field, not only the digest) and the package's SHA-256
    locks/<digest>.lock     held (flock) by the one process building or checking that entry

``<digest>`` is the SHA-256 of the key (:func:`cache_key`), which holds everything that can change
what the package computes. An entry is written to a temporary folder and renamed into place, so a
crash leaves no half entry under a digest; one whose ``entry.json`` is unreadable, names another
key, or whose package's checksum differs is reported by :meth:`CacheEntry.load` as invalid, and
the caller rebuilds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.storage import file_sha256

#: Bumped whenever the layout or the way a package is built changes: older entries stop matching.
CACHE_FORMAT = 1
PACKAGE_NAME = "forward.pt2"
ENTRY_NAME = "entry.json"

#: A key's fields: plain JSON values, compared field by field when an entry is loaded.
CacheKey = dict[str, Any]


class InvalidEntry(Exception):
    """A cache entry that must not be used (unreadable, for another key, or corrupt); the message says which."""


def hardware_id(device: torch.device) -> str:
    """What the compiled kernels were built for: the CPU's vector capability, or the GPU's model and CUDA version."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda:{torch.cuda.get_device_name(index)}:sm_{major}{minor}:cuda-{torch.version.cuda}"
    if device.type == "cpu":
        return f"cpu:{platform.machine()}:{torch.backends.cpu.get_cpu_capability()}"
    return device.type


def cache_key(
    *,
    weights_sha256: str,
    network: str,
    device: torch.device,
    precision: str,
    shape: tuple[int, ...],
    saliency: bool,
    options: dict[str, object],
) -> CacheKey:
    """Everything that can change a compiled forward's result: weights, network, torch, hardware, precision, shape."""
    return {
        "format": CACHE_FORMAT,
        "weights_sha256": weights_sha256,
        "network": network,
        "torch": torch.__version__,
        "hardware": hardware_id(device),
        "precision": precision,
        "shape": list(shape),
        "memory_format": "channels_last",
        "saliency": saliency,
        "options": {name: options[name] for name in sorted(options)},
    }


def key_digest(key: CacheKey) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """The cache's entry for one key: its folder, lock, and how to read and write it."""

    root: Path
    key: CacheKey

    @property
    def digest(self) -> str:
        return key_digest(self.key)

    @property
    def folder(self) -> Path:
        return self.root / self.digest

    @property
    def package(self) -> Path:
        return self.folder / PACKAGE_NAME

    def exists(self) -> bool:
        return self.folder.exists()

    @contextlib.contextmanager
    def locked(self, *, wait: bool) -> Iterator[bool]:
        """Hold this entry's lock for the block; yields False at once when another process holds it and not ``wait``.

        The lock is an advisory ``flock`` on a file beside the entries: the kernel drops it when its
        holder exits, so a process killed while compiling leaves no stale lock behind.
        """
        with _flock(self.root / "locks" / f"{self.digest}.lock", wait=wait) as held:
            yield held

    @contextlib.contextmanager
    def compiling(self, on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold the cache-wide compiler lock for the block: one process of the host compiles at a time.

        Two workers compiling different shapes at once share the cores and finish no sooner than one
        compiling both, while each holds the compiler's memory (``benchmarks/results/time_to_ready.md``).
        ``on_wait`` is called once when another process holds the lock, before waiting for it.
        """
        path = self.root / "locks" / "compiler.lock"
        with _flock(path, wait=False) as held:
            if held:
                yield
                return
        on_wait()
        with _flock(path, wait=True):
            yield

    def load(self, device: torch.device) -> Callable[..., Any]:
        """The package's runner, once its ``entry.json`` names this key and its checksum holds; else InvalidEntry."""
        try:
            recorded = json.loads((self.folder / ENTRY_NAME).read_text())
        except FileNotFoundError:
            raise InvalidEntry(f"has no {ENTRY_NAME}") from None
        except (OSError, ValueError) as exc:
            raise InvalidEntry(f"has an unreadable {ENTRY_NAME} ({type(exc).__name__})") from None
        if not isinstance(recorded, dict) or recorded.get("key") != self.key:
            theirs = recorded.get("key") if isinstance(recorded, dict) else None
            raise InvalidEntry(f"was built for another key ({_key_difference(theirs, self.key)})")
        try:
            actual = file_sha256(self.package)
        except OSError as exc:
            raise InvalidEntry(f"has no readable package ({type(exc).__name__})") from None
        if actual != recorded.get("package_sha256"):
            raise InvalidEntry(
                f"is corrupt (package SHA-256 {actual[:12]}, recorded {recorded.get('package_sha256')!s:.12})"
            )
        import torch._inductor

        try:
            # CPU only: a CUDA package may read its kernels' files from that folder after loading.
            with _extraction_dir() if device.type == "cpu" else contextlib.nullcontext():
                return torch._inductor.aoti_load_package(str(self.package), device_index=_device_index(device))
        except Exception as exc:  # noqa: BLE001 -- a package torch cannot load is an invalid entry, rebuilt
            raise InvalidEntry(f"failed to load ({type(exc).__name__}: {str(exc).strip()[:200]})") from None

    def save(self, build: Callable[[Path], None], **extra: object) -> None:
        """Run ``build(path)`` to write the package, then put it and its ``entry.json`` in place in one rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.digest[:16]}-", dir=self.root))
        try:
            build(staging / PACKAGE_NAME)
            record = {"key": self.key, "package_sha256": file_sha256(staging / PACKAGE_NAME), **extra}
            (staging / ENTRY_NAME).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            self.remove()
            os.replace(staging, self.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def _flock(path: Path, *, wait: bool) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created) for the block; False at once when taken and not ``wait``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _extraction_dir() -> Iterator[None]:
    """A private ``TMPDIR`` for the loader, removed once the package is loaded.

    torch's loader unpacks the package's shared library into ``$TMPDIR/aotinductor_*`` and removes it only
    when the model is destroyed, which a worker ending with ``os._exit`` never does; once loaded, the
    library stays mapped without its file, so nothing is left behind in ``/tmp`` however the process ends.
    """
    folder = tempfile.mkdtemp(prefix="scgan-aoti-load-")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = folder
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(folder, ignore_errors=True)


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else (torch.cuda.current_device() if device.type == "cuda" else -1)


def _key_difference(theirs: object, ours: CacheKey) -> str:
    """The first field in which a recorded key differs from ours, for a one-line log."""
    if not isinstance(theirs, dict):
        return "no key recorded"
    for name in sorted(set(ours) | set(theirs)):
        if theirs.get(name) != ours.get(name):
            return f"{name}: {str(theirs.get(name))[:40]!s} there, {str(ours.get(name))[:40]!s} here"
    return "equal keys"  # not reached: the caller compared them


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/scgan-colorize/compile``, or ``~/.cache/scgan-colorize/compile``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scgan-colorize" / "compile"


__all__ = [
    "CACHE_FORMAT",
    "CacheEntry",
    "CacheKey",
    "InvalidEntry",
    "cache_key",
    "default_cache_dir",
    "hardware_id",
    "key_digest",
]
