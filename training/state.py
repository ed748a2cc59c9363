"""Full training state on disk: networks, optimizers, schedulers, step, RNG, config.

Files are written atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.storage import atomic_torch_save

STATE_KIND = "scgan-train-state"
STATE_VERSION = 1


class StateError(Exception):
    """A training-state file is missing or not one of ours."""


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)  # the legacy MT19937 form, for np.random.set_state
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, payload: dict[str, Any]) -> Path:
    return atomic_torch_save({"kind": STATE_KIND, "version": STATE_VERSION, **payload}, path)


def resolve_state_path(path: str | Path) -> Path:
    """A state file, or a run's ``ckpt`` folder (``best.pt`` if present, else ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise StateError(f"no best.pt or last.pt in {path}")
    if not path.is_file():
        raise StateError(f"training state {path} does not exist")
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    path = resolve_state_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a broken file
        raise StateError(f"cannot read training state {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(payload, dict) or payload.get("kind") != STATE_KIND:
        raise StateError(f"{path} is not a scgan training state")
    if payload.get("version") != STATE_VERSION:
        raise StateError(f"{path} has training-state version {payload.get('version')}, expected {STATE_VERSION}")
    payload["path"] = str(path)
    return payload


__all__ = ["StateError", "load_state", "resolve_state_path", "rng_state", "save_state", "set_rng_state"]
