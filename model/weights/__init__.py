"""The bundled starter checkpoint (see MODEL_CARD.md)."""

from __future__ import annotations

from pathlib import Path

#: File name of the starter checkpoint shipped inside the package.
DEFAULT_CHECKPOINT_NAME = "scgan-starter.pt"


def default_checkpoint_path() -> Path | None:
    """Path of the bundled starter checkpoint, or ``None`` in an install stripped of it."""
    path = Path(__file__).with_name(DEFAULT_CHECKPOINT_NAME)
    return path if path.is_file() else None


__all__ = ["DEFAULT_CHECKPOINT_NAME", "default_checkpoint_path"]
