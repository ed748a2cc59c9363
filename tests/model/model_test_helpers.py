"""Names the model tests use for the shared small generators (tests/tiny_models.py)."""

from __future__ import annotations

from tiny_models import COMPACT_CONFIG, TINY_COLOURFUL_CONFIG, TINY_RGB_IN_CONFIG, make_generator, randomize_norms

COMPACT = COMPACT_CONFIG
#: For tests where only shapes and plumbing matter (pipeline, CLI, shapes).
TINY = TINY_COLOURFUL_CONFIG
TINY_RGB_IN = TINY_RGB_IN_CONFIG

__all__ = ["COMPACT", "TINY", "TINY_RGB_IN", "make_generator", "randomize_norms"]
