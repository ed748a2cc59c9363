"""Counts in messages: "1 image", "2 images", never "1 images". Shared by the CLIs, the service and training."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` agreeing in number; ``plural`` where adding an "s" is wrong ("retry" -> "retries")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


__all__ = ["count"]
