"""Hue recall: of the pixels that are clearly a hue in the original, the share the output paints that hue.

Hues are sectors of the BT.601 CbCr plane by angle ``atan2(Cr, Cb)`` in degrees: warm (reds, skin, orange,
yellow, brown), green, blue (cyan to blue: sky, water) and purple (violet to magenta). A pixel of the
original counts when its chroma is at least :data:`ORIGINAL_MIN_CHROMA` (0..255 scale); the output paints
it that hue when its own angle falls in the same sector with a chroma of at least :data:`OUTPUT_MIN_CHROMA`.
A sepia hedge scores high on warm and near zero on green and blue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

#: (name, start, end) in degrees, counter-clockwise from +Cb; the sectors tile the circle.
HUE_SECTORS: tuple[tuple[str, float, float], ...] = (
    ("purple", 20.0, 80.0),
    ("warm", 80.0, 200.0),
    ("green", 200.0, 270.0),
    ("blue", 270.0, 380.0),  # through 0: cyan (~289) to blue (~351) and violet-blue up to 20
)
HUES: tuple[str, ...] = tuple(name for name, _, _ in HUE_SECTORS)
#: "Clearly that hue" in the original: chroma magnitude on the 0..255 scale.
ORIGINAL_MIN_CHROMA = 12.0
#: "Painted that hue" in the output: a visible tint.
OUTPUT_MIN_CHROMA = 6.0

#: Cb, Cr of 8-bit RGB (BT.601, :mod:`model.color`), in 0..255 units.
_CB = np.array([-0.168736, -0.331264, 0.5], dtype=np.float32)
_CR = np.array([0.5, -0.418688, -0.081312], dtype=np.float32)


def hue_sectors(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The index in :data:`HUES` of each (Cb, Cr) point's sector by angle (int8; any chroma, even none)."""
    angle = np.degrees(np.arctan2(cr, cb)) % 360.0
    out = np.full(angle.shape, -1, dtype=np.int8)
    for index, (_, start, end) in enumerate(HUE_SECTORS):
        inside = (angle >= start) & (angle < end) if end <= 360 else (angle >= start) | (angle < end - 360)
        out[inside] = index
    return out


def hue_classes(rgb: np.ndarray, min_chroma: float) -> np.ndarray:
    """H x W x 3 uint8 -> H x W int8: the index in :data:`HUES` of each pixel's sector, -1 below ``min_chroma``."""
    pixels = rgb.astype(np.float32)
    cb, cr = pixels @ _CB, pixels @ _CR
    out = hue_sectors(cb, cr)
    out[np.hypot(cb, cr) < min_chroma] = -1
    return out


def hue_counts(original: np.ndarray, output: np.ndarray) -> dict[str, tuple[int, int]]:
    """Per hue: (pixels clearly that hue in ``original``, of those the ones ``output`` paints that hue)."""
    if original.shape != output.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {output.shape}")
    truth = hue_classes(original, ORIGINAL_MIN_CHROMA)
    painted = hue_classes(output, OUTPUT_MIN_CHROMA)
    return {name: (int((truth == i).sum()), int(((truth == i) & (painted == i)).sum())) for i, name in enumerate(HUES)}


def hue_recall(counts: Iterable[Mapping[str, tuple[int, int]]]) -> dict[str, float]:
    """Pooled recall per hue over several images' :func:`hue_counts` (NaN for a hue no original shows)."""
    totals = {name: [0, 0] for name in HUES}
    for item in counts:
        for name, (n, hit) in item.items():
            totals[name][0] += n
            totals[name][1] += hit
    return {name: (hit / n if n else float("nan")) for name, (n, hit) in totals.items()}


def hue_shares(rgb_images: Iterable[np.ndarray]) -> np.ndarray:
    """N x len(HUES): the share of each H x W x 3 uint8 photo's pixels that are clearly each hue."""
    rows = []
    for rgb in rgb_images:
        classes = hue_classes(rgb, ORIGINAL_MIN_CHROMA)
        rows.append([float((classes == i).mean()) for i in range(len(HUES))])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(HUES))


def hue_balanced_weights(shares: np.ndarray, balance: float) -> np.ndarray:
    """Sampling weight per photo (mean 1) that favours the photos rich in hues that are rare overall.

    Each photo's score is, averaged over the hues some photo shows, its share of that hue divided by the
    hue's mean share over all photos (so the scores average 1, and a photo with twice the usual green counts
    twice on green); the weight mixes it with uniform: ``(1 - balance) + balance * score``. ``balance`` 0 is
    uniform sampling; 1 never draws a photo with no clearly coloured pixel.
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1], got {balance}")
    means = shares.mean(axis=0)
    shown = means > 0
    if not shown.any():
        return np.ones(shares.shape[0])
    score = (shares[:, shown] / means[shown]).mean(axis=1)
    return (1.0 - balance) + balance * score


__all__ = [
    "HUES",
    "HUE_SECTORS",
    "ORIGINAL_MIN_CHROMA",
    "OUTPUT_MIN_CHROMA",
    "hue_classes",
    "hue_counts",
    "hue_recall",
    "hue_balanced_weights",
    "hue_sectors",
    "hue_shares",
]
