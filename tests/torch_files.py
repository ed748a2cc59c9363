"""Weight files as other machines and other people write them: saved on a GPU, or carrying code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import torch


def save_as_on_a_gpu(obj: Any, path: Path) -> Path:
    """``torch.save`` with every storage tagged ``cuda:0``, as on a CUDA machine; readable on a CPU-only one
    only through ``map_location``."""
    with mock.patch.object(torch.serialization, "location_tag", lambda storage: "cuda:0"):
        torch.save(obj, path)
    return path


class MakesADirectory:
    """Unpickles by calling ``os.mkdir``: what a malicious weights file could run instead."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.path,))


__all__ = ["MakesADirectory", "save_as_on_a_gpu"]
