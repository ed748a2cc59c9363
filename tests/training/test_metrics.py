"""Metric functions against known values: identities, exact offsets, hand-computed colour statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays
from PIL import Image

from training import metrics


def _noise(seed: int, shape: tuple[int, ...] = (33, 41, 3), high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape, dtype=np.uint8)


def _two_colour(a: tuple[int, int, int], b: tuple[int, int, int], size: int = 16) -> np.ndarray:
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:, : size // 2] = a
    img[:, size // 2 :] = b
    return img


def _constant(rgb: tuple[int, int, int], size: int = 12) -> np.ndarray:
    return np.full((size, size, 3), rgb, dtype=np.uint8)


# -- reference-based ------------------------------------------------------------------


def test_identical_images() -> None:
    img = _noise(0)
    assert metrics.psnr(img, img) == math.inf
    assert metrics.mse(img, img) == 0.0
    assert metrics.nrmse(img, img) == 0.0
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("d", [1, 3, 10, 64])
def test_constant_offset_gives_exact_psnr(d: int) -> None:
    ref = _noise(1, high=256 - d)
    test = ref + np.uint8(d)
    assert metrics.psnr(ref, test) == 20.0 * math.log10(255.0 / d)
    assert metrics.psnr(test, ref) == 20.0 * math.log10(255.0 / d)
    assert metrics.mse(ref, test) == pytest.approx((d / 255.0) ** 2, rel=1e-12)
    rms_ref = math.sqrt(float(np.mean(ref.astype(np.float64) ** 2)))
    assert metrics.nrmse(ref, test) == pytest.approx(d / rms_ref, rel=1e-12)


def test_ssim_of_different_images_is_below_one_and_symmetric() -> None:
    a, b = _noise(2), _noise(3)
    blurred = np.asarray(Image.fromarray(a).resize((20, 16)).resize((41, 33)))
    for other in (b, blurred):
        value = metrics.ssim(a, other)
        assert -1.0 <= value < 1.0
        assert metrics.ssim(other, a) == value
    assert metrics.ssim(a, blurred) > metrics.ssim(a, b)  # a blurred copy is closer than unrelated noise


def test_ssim_of_flat_images_matches_the_luminance_term() -> None:
    # No variance anywhere: SSIM reduces to (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 255)^2.
    c1 = (0.01 * 255.0) ** 2
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert metrics.ssim(_constant((100, 100, 100)), _constant((120, 120, 120))) == pytest.approx(expected, rel=1e-6)


def test_ssim_on_images_smaller_than_the_window() -> None:
    a, b = _noise(4, (5, 8, 3)), _noise(5, (5, 8, 3))
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, b) < 1.0


def test_metrics_accept_pil_images_and_reject_mismatched_shapes() -> None:
    a, b = _noise(6), _noise(7)
    assert metrics.psnr(Image.fromarray(a), Image.fromarray(b)) == metrics.psnr(a, b)
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(a, a[:-1])


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.uint8, (12, 13, 3)),
    arrays(np.uint8, (12, 13, 3)),
)
def test_reference_metrics_are_consistent(a: np.ndarray, b: np.ndarray) -> None:
    value = metrics.ssim(a, b)
    assert -1.0 - 1e-9 <= value <= 1.0 + 1e-9
    assert metrics.ssim(b, a) == value
    mse = metrics.mse(a, b)
    if mse == 0.0:
        assert metrics.psnr(a, b) == math.inf
    else:
        assert metrics.psnr(a, b) == pytest.approx(10.0 * math.log10(1.0 / mse), rel=1e-9)


# -- colourfulness and CCI -------------------------------------------------------------------


def test_colorfulness_of_gray_is_zero() -> None:
    gray = np.repeat(_noise(8, (20, 20, 1)), 3, axis=2)
    assert metrics.colorfulness(gray) == 0.0
    assert metrics.colorfulness(gray, absolute=True) == 0.0
    assert metrics.cci(gray) == 0.0
    assert not metrics.in_cci_optimum(metrics.cci(gray))


def test_colorfulness_of_a_red_blue_image_matches_hand_computation() -> None:
    img = _two_colour((255, 0, 0), (0, 0, 255))
    # red: rg = 255, yb = 127.5; blue: rg = 0, yb = -255
    # rg: mean 127.5, std 127.5; yb: mean -63.75, std 191.25
    expected = math.sqrt(127.5**2 + 191.25**2) + 0.3 * math.sqrt(127.5**2 + 63.75**2)
    assert metrics.colorfulness(img) == pytest.approx(expected, rel=1e-12)
    # DDColor's variant: |yb| is 127.5 and 255 -> mean 191.25, std 63.75
    expected_abs = math.sqrt(127.5**2 + 63.75**2) + 0.3 * math.sqrt(127.5**2 + 191.25**2)
    assert metrics.colorfulness(img, absolute=True) == pytest.approx(expected_abs, rel=1e-12)


def test_cci_is_colorfulness_and_its_optimum_range() -> None:
    muted = _constant((130, 70, 100))  # rg = 60, yb = 0, no spread: M = 0.3 * 60 = 18
    assert metrics.cci(muted) == pytest.approx(18.0)
    assert metrics.in_cci_optimum(metrics.cci(muted))
    saturated = _constant((255, 0, 0))  # rg = 255, yb = 127.5: M = 0.3 * sqrt(255^2 + 127.5^2)
    assert metrics.cci(saturated) == pytest.approx(0.3 * math.hypot(255.0, 127.5))
    assert not metrics.in_cci_optimum(metrics.cci(saturated))
    assert metrics.in_cci_optimum(16.0) and metrics.in_cci_optimum(20.0)
    assert not metrics.in_cci_optimum(15.999) and not metrics.in_cci_optimum(20.001)


# -- CNI ---------------------------------------------------------------------------------------


def _natural(s: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((s - mu) / sigma) ** 2)


def test_cni_of_gray_is_zero() -> None:
    gray = np.repeat(_noise(9, (20, 20, 1)), 3, axis=2)
    assert metrics.cni(gray) == 0.0


def test_cni_of_one_sky_colour_matches_hand_computation() -> None:
    # (100, 150, 200): max 200, min 100 -> L = 150/255, S = (100/255) / (1 - |2L - 1|) = 100/210,
    # hue = 60 * (R - G) / (max - min) + 240 = 210 degrees: a "sky" pixel.
    expected = _natural(100 / 210, 0.43, 0.22)
    assert metrics.cni(_constant((100, 150, 200))) == pytest.approx(expected, rel=1e-12)


def test_cni_of_a_saturated_image_differs_from_gray() -> None:
    blue = _constant((0, 0, 255))  # hue 240 (sky), S = 1, L = 0.5
    assert metrics.cni(blue) == pytest.approx(_natural(1.0, 0.43, 0.22), rel=1e-12)
    assert metrics.cni(blue) > 0.0


def test_cni_weights_classes_by_pixel_count() -> None:
    img = np.empty((8, 8, 3), dtype=np.uint8)
    img[:2] = (100, 150, 200)  # 16 sky pixels
    img[2:] = (0, 255, 0)  # 48 grass pixels: hue 120, S = 1, L = 0.5
    expected = (16 * _natural(100 / 210, 0.43, 0.22) + 48 * _natural(1.0, 0.81, 0.53)) / 64
    assert metrics.cni(img) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "rgb",
    [
        (0, 255, 170),  # hue 160: between grass and sky, no class
        (40, 0, 0),  # lightness 0.078: too dark
        (255, 230, 230),  # lightness 0.95: too light
        (120, 128, 124),  # saturation 0.03: nearly gray
    ],
)
def test_cni_ignores_pixels_outside_the_classes(rgb: tuple[int, int, int]) -> None:
    assert metrics.cni(_constant(rgb)) == 0.0


def test_cni_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    img = _noise(10, (50, 30, 3))
    whole = metrics.cni(img)
    monkeypatch.setattr(metrics, "_CNI_ROWS_PER_CHUNK", 7)
    assert metrics.cni(img) == pytest.approx(whole, rel=1e-12)


def test_image_scores_has_every_metric() -> None:
    a, b = _noise(11), _noise(12)
    scores = metrics.image_scores(a, b)
    assert set(scores) == {"psnr", "ssim", "mse", "nrmse", "colorfulness", "cci_optimum", "cni"}
    assert scores["colorfulness"] == metrics.colorfulness(b)
    assert scores["cci_optimum"] in (0.0, 1.0)
