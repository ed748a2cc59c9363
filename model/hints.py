"""Colour hints: "this point is blue". Parsed from the API's JSON, encoded as the planes a hint-taking generator reads.

A hint is a pixel of the image as displayed (after EXIF orientation, origin top left) and a ``#rrggbb``
colour. Only the colour's chroma is used (BT.601 Cb/Cr, :mod:`model.color`); the photo keeps its own luma.
At the model's working size each hint becomes a small square patch of that chroma in two planes, with a
third plane, the mask, set to 1 there (Zhang et al., SIGGRAPH 2017). No hint: all three planes are zero.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.config import HINT_PLANES

if TYPE_CHECKING:
    import torch

#: Side, in working-size pixels, of the patch a hint paints (training draws 1 to 9).
HINT_PATCH = 3
#: The default cap on hints per request (the service's setting defaults to it).
DEFAULT_MAX_HINTS = 256
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


class HintError(ValueError):
    """Hints that cannot be used: the message says which and why."""


@dataclass(frozen=True)
class Hint:
    """One hint: integer pixel coordinates in the displayed image and a ``#rrggbb`` colour."""

    x: int
    y: int
    color: str

    @property
    def rgb(self) -> tuple[float, float, float]:
        """The colour as RGB in [0, 1]."""
        value = int(self.color[1:], 16)
        return ((value >> 16) / 255.0, ((value >> 8) & 0xFF) / 255.0, (value & 0xFF) / 255.0)


def _one(item: object, index: int) -> Hint:
    if not isinstance(item, dict) or set(item) != {"x", "y", "color"}:
        raise HintError(f'hint {index} must be an object with exactly the keys "x", "y" and "color"')
    x, y, color = item["x"], item["y"], item["color"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (x, y)):
        raise HintError(f"hint {index}: x and y must be integer pixel coordinates, got x={x!r}, y={y!r}")
    if not isinstance(color, str) or not _COLOUR.fullmatch(color):
        raise HintError(f'hint {index}: color must be "#rrggbb" (six hex digits), got {color!r}')
    return Hint(x, y, color.lower())


def parse_hints(text: str | bytes, *, limit: int = DEFAULT_MAX_HINTS) -> list[Hint]:
    """The hints of a JSON array ``[{"x": X, "y": Y, "color": "#rrggbb"}, ...]``; raises :class:`HintError`."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HintError(f"hints are not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise HintError(f"hints must be a JSON array of objects, got a JSON {type(data).__name__}")
    if len(data) > limit:
        raise HintError(f"{len(data)} hints is more than the limit of {limit}")
    return [_one(item, i) for i, item in enumerate(data)]


def check_inside(hints: Sequence[Hint], width: int, height: int) -> None:
    """Raise :class:`HintError` for the first hint outside a ``width`` x ``height`` image."""
    for i, hint in enumerate(hints):
        if not (0 <= hint.x < width and 0 <= hint.y < height):
            raise HintError(
                f"hint {i} at ({hint.x}, {hint.y}) is outside the {width} x {height} image "
                f"(x in 0..{width - 1}, y in 0..{height - 1})"
            )


def working_position(x: int, y: int, width: int, height: int, render_size: int) -> tuple[int, int]:
    """The working-size pixel (column, row) that covers the centre of image pixel (``x``, ``y``)."""
    column = min(render_size - 1, int((x + 0.5) * render_size / width))
    row = min(render_size - 1, int((y + 0.5) * render_size / height))
    return column, row


def hint_points(hints: Sequence[Hint], width: int, height: int, render_size: int) -> torch.Tensor:
    """K x 4 float32 rows (working row, working column, Cb, Cr), one per hint on a ``width`` x ``height`` image."""
    import torch  # here, not at the top: parsing hints (scgan-colorize --hints --server) needs no torch

    from model.color import rgb_to_chroma

    check_inside(hints, width, height)
    points = torch.zeros(len(hints), 4)
    for i, hint in enumerate(hints):
        column, row = working_position(hint.x, hint.y, width, height, render_size)
        points[i, 0], points[i, 1] = row, column
        points[i, 2:] = rgb_to_chroma(torch.tensor(hint.rgb).view(3, 1, 1)).view(2)
    return points


def hint_planes(
    hints: Sequence[Hint], width: int, height: int, render_size: int, *, patch: int = HINT_PATCH
) -> torch.Tensor:
    """3 x R x R float32 planes (hint Cb, hint Cr, mask) for hints on a ``width`` x ``height`` image.

    Later hints paint over earlier ones where their patches overlap.
    """
    return points_to_planes(hint_points(hints, width, height, render_size), render_size, patch=patch)


def points_to_planes(points: torch.Tensor, render_size: int, *, patch: int = HINT_PATCH) -> torch.Tensor:
    """3 x R x R planes (hint Cb, hint Cr, mask) of :func:`hint_points`' rows, each a ``patch``-pixel square."""
    import torch

    planes = torch.zeros(HINT_PLANES, render_size, render_size)
    half = (patch - 1) // 2
    for row, column, cb, cr in points.tolist():
        top, left = max(0, int(row) - half), max(0, int(column) - half)
        bottom, right = min(render_size, int(row) - half + patch), min(render_size, int(column) - half + patch)
        planes[0, top:bottom, left:right] = cb
        planes[1, top:bottom, left:right] = cr
        planes[2, top:bottom, left:right] = 1.0
    return planes


def hints_to_json(hints: Sequence[Hint]) -> str:
    """The API's JSON for ``hints`` (what :func:`parse_hints` reads)."""
    return json.dumps([{"x": h.x, "y": h.y, "color": h.color} for h in hints])


__all__ = [
    "DEFAULT_MAX_HINTS",
    "HINT_PATCH",
    "Hint",
    "HintError",
    "check_inside",
    "hint_planes",
    "hint_points",
    "hints_to_json",
    "parse_hints",
    "points_to_planes",
    "working_position",
]
