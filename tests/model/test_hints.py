"""Colour hints at the model's working size: image coordinates to working pixels, planes, EXIF orientation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from model import Colorizer
from model.color import rgb_to_chroma
from model.hints import Hint, HintError, hint_planes, hints_to_json, parse_hints, working_position

R = 256


def _mask_box(planes: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), inclusive, of the mask plane's non-zero pixels."""
    rows, cols = torch.nonzero(planes[2], as_tuple=True)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    fx=st.floats(0, 1, exclude_max=True),
    fy=st.floats(0, 1, exclude_max=True),
    size=st.sampled_from([256, 512, 1024]),
)
def test_a_working_pixel_covers_the_image_pixels_centre(
    width: int, height: int, fx: float, fy: float, size: int
) -> None:
    x, y = int(fx * width), int(fy * height)
    column, row = working_position(x, y, width, height, size)
    assert 0 <= column < size and 0 <= row < size
    assert column / size <= (x + 0.5) / width < (column + 1) / size
    assert row / size <= (y + 0.5) / height < (row + 1) / size


@pytest.mark.parametrize(
    ("width", "height", "columns", "rows"),
    [
        (4000, 3000, (0, R - 1), (0, R - 1)),  # shrunk: corner pixels are the working corners
        (255, 257, (0, R - 1), (0, R - 1)),  # odd sides either side of the working size
        (1001, 333, (0, R - 1), (0, R - 1)),
        (7, 5, (18, 237), (25, 230)),  # enlarged: the centre of the corner pixel's 36 x 51 working area
        (1, 1, (128, 128), (128, 128)),
    ],
)
def test_corner_hints(width: int, height: int, columns: tuple[int, int], rows: tuple[int, int]) -> None:
    for x, column in zip((0, width - 1), columns):
        for y, row in zip((0, height - 1), rows):
            assert working_position(x, y, width, height, R) == (column, row)
            planes = hint_planes([Hint(x, y, "#0000ff")], width, height, R)
            top, bottom, left, right = _mask_box(planes)
            # The 3 x 3 patch around it, cut by the working image's edges.
            assert (top, bottom) == (max(0, row - 1), min(R - 1, row + 1))
            assert (left, right) == (max(0, column - 1), min(R - 1, column + 1))
            assert planes[2].sum() == (bottom - top + 1) * (right - left + 1)


def test_planes_carry_the_colours_chroma_under_the_mask() -> None:
    planes = hint_planes([Hint(150, 40, "#1f4fd0"), Hint(0, 279, "#ff8000")], 300, 280, R)
    assert planes.shape == (3, R, R) and planes.dtype == torch.float32
    assert planes[2].sum() == 9 + 4  # a whole patch, and one cut by the bottom-left corner
    column, row = working_position(150, 40, 300, 280, R)
    assert _mask_box(hint_planes([Hint(150, 40, "#1f4fd0")], 300, 280, R)) == (row - 1, row + 1, column - 1, column + 1)
    blue = rgb_to_chroma(torch.tensor([0x1F, 0x4F, 0xD0]).float().div(255).view(3, 1, 1)).view(2)
    assert torch.allclose(planes[:2, row, column], blue)
    assert planes[:2][:, planes[2] == 0].abs().max() == 0  # no chroma where there is no hint
    assert hint_planes([], 101, 100, R).abs().max() == 0


def test_later_hints_paint_over_earlier_ones() -> None:
    planes = hint_planes([Hint(5, 5, "#ff0000"), Hint(5, 5, "#0000ff")], 10, 10, R)
    column, row = working_position(5, 5, 10, 10, R)
    blue = rgb_to_chroma(torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)).view(2)
    assert torch.allclose(planes[:2, row, column], blue) and planes[2, row, column] == 1


def test_hints_outside_the_image_are_refused() -> None:
    for x, y in [(10, 0), (0, 10), (-1, 0), (0, -1)]:
        with pytest.raises(HintError, match=rf"hint 0 at \({x}, {y}\) is outside the 10 x 10 image"):
            hint_planes([Hint(x, y, "#000000")], 10, 10, R)


def test_json_round_trip_and_limit() -> None:
    hints = [Hint(1, 2, "#a0b0c0"), Hint(3, 4, "#000000")]
    assert parse_hints(hints_to_json(hints)) == hints
    assert parse_hints('[{"x": 1, "y": 2, "color": "#A0B0C0"}]') == [Hint(1, 2, "#a0b0c0")]  # lower-cased
    assert parse_hints("[]") == []
    with pytest.raises(HintError, match="3 hints is more than the limit of 2"):
        parse_hints(hints_to_json([*hints, hints[0]]), limit=2)


def test_prepare_uses_the_exif_oriented_frame(hint_colorizer: Colorizer) -> None:
    """Stored 600 x 300 with Orientation 8 (rotate 90 degrees anticlockwise to display): displayed 300 x 600."""
    stored = Image.fromarray(np.full((300, 600), 128, np.uint8), "L")
    exif = Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif.tobytes())
    hint = Hint(299, 0, "#00ff00")  # the displayed image's top-right corner
    with Image.open(buffer) as upload:
        prepared = hint_colorizer.prepare(upload, hints=[hint])
        assert prepared.size == (300, 600)
        with pytest.raises(HintError, match="outside the 300 x 600 image"):
            hint_colorizer.prepare(upload, hints=[Hint(500, 10, "#00ff00")])  # inside the stored frame only
    planes = prepared.model_input[1:]
    assert prepared.model_input.shape == (4, R, R)
    assert _mask_box(planes) == (0, 1, R - 2, R - 1)
    assert torch.equal(planes, hint_planes([hint], 300, 600, R))
