"""PSNR at matched colourfulness, against a case worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import colorfulness
from training.vividness import matched_colorfulness, scale_chroma


def _image(*pixels: tuple[float, float, float]) -> np.ndarray:
    return np.asarray([pixels], dtype=np.float64)  # 1 x N x 3


def _luma(p: tuple[float, float, float]) -> float:
    return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]


def test_hand_computed_case() -> None:
    # Original: rg = R - G is +20 / -20, yb = 0 -> colourfulness std(rg) = 20. The output has half its
    # chroma (rg +10 / -10 -> 10), so 60% of the originals' (12) needs k = 1.2 exactly, with no clipping.
    o1, o2 = (110.0, 90.0, 100.0), (90.0, 110.0, 100.0)
    x1, x2 = (105.0, 95.0, 100.0), (95.0, 105.0, 100.0)
    original, output = _image(o1, o2), _image(x1, x2)
    gray = _image(*[(_luma(p),) * 3 for p in (o1, o2)])
    assert colorfulness(original) == pytest.approx(20.0) and colorfulness(output) == pytest.approx(10.0)

    result = matched_colorfulness([original], [output], [gray])
    assert result.k == pytest.approx(1.2, abs=1e-3)

    # By hand: scaled pixel = Y + 1.2 (X - Y) with Y the output pixel's own luma.
    scaled = [[_luma(x) + 1.2 * (c - _luma(x)) for c in x] for x in (x1, x2)]
    mse_model = np.mean([(o - s) ** 2 for op, sp in zip((o1, o2), scaled) for o, s in zip(op, sp)])
    mse_gray = np.mean([(o - _luma(op)) ** 2 for op in (o1, o2) for o in op])
    expected = 10 * math.log10(mse_gray / mse_model)  # PSNR(model) - PSNR(gray), the peaks cancel
    assert expected == pytest.approx(8.434, abs=1e-3)
    assert result.psnr_delta == pytest.approx(expected, abs=1e-3)


def test_one_global_factor_for_all_photos_and_clipping() -> None:
    rng = np.random.default_rng(0)
    originals = [rng.uniform(0, 255, (8, 8, 3)) for _ in range(3)]
    outputs = [
        np.clip(o.mean(axis=2, keepdims=True) + 0.1 * (o - o.mean(axis=2, keepdims=True)), 0, 255) for o in originals
    ]
    grays = [np.repeat((o @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=2) for o in originals]
    result = matched_colorfulness(originals, outputs, grays)
    target = 0.6 * np.mean([colorfulness(o) for o in originals])
    assert np.mean([colorfulness(scale_chroma(x, result.k)) for x in outputs]) == pytest.approx(target, rel=1e-3)
    assert result.k > 0.6 / 0.1 * 0.9  # about 6, more once pixels clip
    assert len(result.psnr_deltas) == 3


def test_colourless_outputs_have_no_matched_score() -> None:
    original = _image((200.0, 20.0, 20.0), (20.0, 200.0, 20.0))
    gray = _image(*[(_luma(p),) * 3 for p in ((200.0, 20.0, 20.0), (20.0, 200.0, 20.0))])
    result = matched_colorfulness([original], [gray], [gray])
    assert math.isnan(result.k) and math.isnan(result.psnr_delta)
    with pytest.raises(ValueError):
        matched_colorfulness([original], [], [])
