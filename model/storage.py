"""Files written atomically, and the digests that identify weights: shared by model, service and training."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, it replaces ``path`` in one rename.

    Readers see the old file or the new one, never half of one, and concurrent
    writers (several ranks filling one cache) each get their own temporary file.
    The result gets the permissions of a plainly created file (``0o666 & ~umask``;
    the temporary one is ``0o600``), so e.g. a non-root service user can read a
    checkpoint. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`; returns ``path``."""
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
