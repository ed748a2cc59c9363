"""PSNR at matched colourfulness: comparing colorizers at equal vividness.

PSNR and colourfulness pull against each other: scaling a colorizer's chroma down raises its PSNR
(a gray guess is never far off) and lowers its colourfulness. So a model's PSNR only means something
next to how colourful it is. This metric removes that freedom: every output's chroma (the output
minus its own BT.601 luma) is scaled by ONE global factor ``k``, found by bisection, so that the mean
colourfulness of the scaled outputs is ``target_ratio`` (60%) of the originals' mean; it then reports
the mean PSNR gain over the gray image at that ``k``. A model is better only if it is better at
equal vividness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.color import GRAY_WEIGHTS
from training.metrics import colorfulness, psnr

#: The share of the originals' mean colourfulness the outputs are scaled to.
MATCHED_COLORFULNESS_RATIO = 0.6
_K_TOLERANCE = 1e-4
_K_LIMIT = 64.0


def scale_chroma(rgb: np.ndarray, k: float) -> np.ndarray:
    """``Y + k (rgb - Y)`` on the 0..255 scale, clipped to it; ``Y`` is the image's own BT.601 luma."""
    arr = np.asarray(rgb, dtype=np.float64)
    luma = arr @ np.asarray(GRAY_WEIGHTS, dtype=np.float64)
    return np.clip(luma[..., None] + k * (arr - luma[..., None]), 0.0, 255.0)


@dataclass(frozen=True)
class MatchedColorfulness:
    """The global chroma factor ``k`` and the per-photo PSNR gains over gray at that ``k``."""

    k: float
    target_ratio: float
    psnr_deltas: tuple[float, ...]

    @property
    def psnr_delta(self) -> float:
        """Mean over photos of PSNR(scaled output) - PSNR(gray), dB; NaN when ``k`` could not be found."""
        return float(np.mean(self.psnr_deltas)) if self.psnr_deltas and math.isfinite(self.k) else math.nan


def _mean_colorfulness(outputs: Sequence[np.ndarray], k: float) -> float:
    return float(np.mean([colorfulness(scale_chroma(out, k)) for out in outputs]))


def matched_colorfulness(
    originals: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    grays: Sequence[np.ndarray],
    *,
    target_ratio: float = MATCHED_COLORFULNESS_RATIO,
) -> MatchedColorfulness:
    """Find ``k`` with mean colourfulness(scaled outputs) = ``target_ratio`` x mean colourfulness(originals).

    Arrays are ``H x W x 3`` on the 0..255 scale (``grays`` with R = G = B). Colourfulness grows with
    ``k`` (linearly until pixels clip), so the root is bracketed from the unclipped solution upwards and
    bisected to 1e-4. ``k`` is NaN when the outputs carry no colour at all, or need more than 64x.
    """
    if not (len(originals) == len(outputs) == len(grays)) or not originals:
        raise ValueError("need the same, non-zero number of originals, outputs and gray images")
    target = target_ratio * float(np.mean([colorfulness(o) for o in originals]))
    current = _mean_colorfulness(outputs, 1.0)
    if current <= 0.0 or target <= 0.0:
        return MatchedColorfulness(math.nan, target_ratio, ())
    lo, hi = 0.0, target / current  # without clipping, colourfulness is exactly proportional to k
    while _mean_colorfulness(outputs, hi) < target:
        lo, hi = hi, 2.0 * hi
        if hi > _K_LIMIT:
            return MatchedColorfulness(math.nan, target_ratio, ())
    while hi - lo > _K_TOLERANCE:
        mid = 0.5 * (lo + hi)
        if _mean_colorfulness(outputs, mid) < target:
            lo = mid
        else:
            hi = mid
    k = 0.5 * (lo + hi)
    deltas = tuple(psnr(o, scale_chroma(out, k)) - psnr(o, g) for o, out, g in zip(originals, outputs, grays))
    return MatchedColorfulness(k, target_ratio, deltas)


__all__ = ["MATCHED_COLORFULNESS_RATIO", "MatchedColorfulness", "matched_colorfulness", "scale_chroma"]
