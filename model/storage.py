"""Files written atomically, and the digests that identify weights: shared by the CLIs, model, service and training.

torch is imported only by the functions that need it: the CLIs' ``--server`` mode writes its outputs with
:func:`atomic_write` without loading it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _new_file_beside(path: Path) -> Path:
    """Create an empty, uniquely named file beside ``path`` with the mode a new file gets (``0o666 & ~umask``).

    Created with ``O_EXCL`` and mode ``0o666``, so the kernel applies the umask (and a folder's default ACL)
    itself: no ``os.umask`` round trip, which would briefly set the umask of every thread in the process.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(name, flags, 0o666))
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"no free temporary name beside {path}")


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, it replaces ``path`` in one rename.

    Readers see the old file or the new one, never half of one, and concurrent
    writers (several ranks filling one cache, the CLI's upload threads) each get their own temporary file.
    The result has the mode of a plainly created file (``0o644`` under umask 022, not ``mkstemp``'s
    ``0o600``), so e.g. a non-root service user can read a checkpoint and a CLI's outputs are shared as
    any other file. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`; returns ``path``."""
    import torch

    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 (hex) of named tensors in name order: each name, then the tensor's bytes on the CPU.

    Pass ``net.state_dict().items()`` for everything, ``net.named_parameters()`` for parameters only.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["atomic_torch_save", "atomic_write", "file_sha256", "weights_sha256"]
