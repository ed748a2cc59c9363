"""training.hue: the sectors' edges, the chroma thresholds and pooling, on hand-built pixels."""

from __future__ import annotations

import numpy as np
import pytest

from training.hue import HUES, hue_classes, hue_counts, hue_recall, hue_sectors


def _at(degrees: list[float]) -> tuple[np.ndarray, np.ndarray]:
    radians = np.radians(np.asarray(degrees, np.float64))
    return np.cos(radians) * 50.0, np.sin(radians) * 50.0


def test_sectors_meet_at_their_edges() -> None:
    """Half a degree either side of each edge, and exactly on each edge (angles atan2 returns exactly)."""
    cb, cr = _at([19.5, 20.5, 79.5, 80.5, 199.5, 200.5, 269.5, 270.5, 359.5])
    purple, warm, green, blue = (HUES.index(name) for name in ("purple", "warm", "green", "blue"))
    sectors = hue_sectors(cb, cr)
    assert sectors.dtype == np.int8
    assert sectors.tolist() == [blue, purple, purple, warm, warm, green, green, blue, blue]
    edges = np.radians([20.0, 80.0, 270.0])
    cb = np.concatenate([np.cos(edges), [1.0, -1.0]])
    cr = np.concatenate([np.sin(edges), [0.0, -np.tan(np.radians(20.0))]])
    assert (np.degrees(np.arctan2(cr, cb)) % 360.0).tolist() == [20.0, 80.0, 270.0, 0.0, 200.0]
    assert hue_sectors(cb, cr).tolist() == [purple, warm, blue, blue, green]  # each edge opens its sector


@pytest.mark.parametrize(
    ("rgb", "hue", "chroma"),
    [
        ((255, 0, 0), "warm", 134.56),  # red at 108.6 degrees
        ((0, 255, 0), "green", 136.14),  # green at 231.6
        ((0, 0, 255), "blue", 129.17),  # blue at 350.8
        ((255, 0, 255), "purple", 136.14),  # magenta at 51.6
        ((255, 255, 0), "warm", 129.17),  # yellow at 170.8
    ],
)
def test_primaries_have_their_bt601_hue_and_chroma(rgb: tuple[int, int, int], hue: str, chroma: float) -> None:
    """Chroma on the 0..255 scale, |(Cb, Cr)| of BT.601: the pixel counts just below it, not just above."""
    pixel = np.array([[rgb]], np.uint8)
    assert HUES[hue_classes(pixel, chroma - 0.05)[0, 0]] == hue
    assert hue_classes(pixel, chroma + 0.05)[0, 0] == -1


def test_clearly_coloured_and_painted_thresholds() -> None:
    """Warm pixels of chroma 12.67 and 11.61 in the original, 6.33 and 5.80 in the output (limits 12 and 6)."""
    c12_7, c11_6, c6_3, c5_8 = (144, 120, 120), (142, 120, 120), (132, 120, 120), (131, 120, 120)
    original = np.array([[c12_7, c11_6, c12_7, c12_7]], np.uint8)
    output = np.array([[c6_3, c12_7, c5_8, c12_7]], np.uint8)
    assert hue_counts(original, output)["warm"] == (3, 2)


def test_a_chroma_equal_to_the_limit_counts() -> None:
    """At least ``min_chroma``: with 0 every pixel has a class, gray ones too (at angle 0, blue)."""
    gray = np.full((1, 2, 3), 128, np.uint8)
    assert hue_classes(gray, 0.0).tolist() == [[HUES.index("blue")] * 2]
    assert hue_classes(gray, 0.001).tolist() == [[-1, -1]]


def test_recall_pools_pixels_over_images() -> None:
    """Pooled, not averaged per image: 3 of 4 and 0 of 6 green pixels is 0.3, not 0.375."""
    empty = {"purple": (0, 0), "warm": (0, 0), "blue": (0, 0)}
    recall = hue_recall([{**empty, "green": (4, 3)}, {**empty, "green": (6, 0)}])
    assert recall["green"] == pytest.approx(0.3)
    assert all(np.isnan(recall[name]) for name in ("purple", "warm", "blue"))


def test_counts_refuse_images_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        hue_counts(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 3), np.uint8))
