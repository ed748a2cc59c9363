"""The colour module: BT.601 luma, chroma, and recombination that never changes luma."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.color import GRAY_WEIGHTS, combine_luma_chroma, fit_chroma, rgb_to_chroma, rgb_to_gray

_SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
_unit = st.floats(0.0, 1.0, allow_nan=False, width=32)
_any_chroma = st.floats(-3.0, 3.0, allow_nan=False, width=32)


def _column(values: list[tuple[float, ...]]) -> torch.Tensor:
    """N tuples of k values -> k x N x 1 tensor (channels first, as images are)."""
    return torch.tensor(values, dtype=torch.float32).t().unsqueeze(-1)


def test_constants_are_bt601() -> None:
    assert GRAY_WEIGHTS == (0.299, 0.587, 0.114)
    primaries = torch.eye(3).view(3, 3, 1)  # red, green, blue pixels side by side
    torch.testing.assert_close(rgb_to_gray(primaries).flatten(), torch.tensor([0.299, 0.587, 0.114]))


def test_shapes_and_batch_dimensions() -> None:
    rgb = torch.rand(2, 3, 5, 7)
    assert rgb_to_gray(rgb).shape == (2, 1, 5, 7)
    assert rgb_to_chroma(rgb).shape == (2, 2, 5, 7)
    assert combine_luma_chroma(rgb_to_gray(rgb), rgb_to_chroma(rgb)).shape == (2, 3, 5, 7)
    assert rgb_to_gray(rgb[0]).shape == (1, 5, 7)


def test_gray_has_no_chroma_and_comes_back_gray() -> None:
    levels = torch.linspace(0, 1, 11).view(1, 11, 1).expand(3, 11, 1)
    chroma = rgb_to_chroma(levels)
    assert chroma.abs().max() < 1e-6
    back = combine_luma_chroma(rgb_to_gray(levels), chroma)
    torch.testing.assert_close(back, levels, rtol=0, atol=1e-6)


@_SETTINGS
@given(st.lists(st.tuples(_unit, _unit, _unit), min_size=1, max_size=32))
def test_round_trip_in_gamut(pixels: list[tuple[float, float, float]]) -> None:
    rgb = _column(pixels)
    back = combine_luma_chroma(rgb_to_gray(rgb), rgb_to_chroma(rgb))
    torch.testing.assert_close(back, rgb, rtol=0, atol=1e-5)


@_SETTINGS
@given(st.lists(st.tuples(_unit, _any_chroma, _any_chroma), min_size=1, max_size=32))
def test_combine_keeps_luma_and_stays_in_range(values: list[tuple[float, float, float]]) -> None:
    data = _column(values)
    luma, chroma = data[:1], data[1:]
    rgb = combine_luma_chroma(luma, chroma)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    torch.testing.assert_close(rgb_to_gray(rgb), luma, rtol=0, atol=2e-6)
    # Out-of-gamut chroma is scaled towards gray, never rotated: same hue, saturation at most as asked.
    got = rgb_to_chroma(rgb)
    norm2 = (chroma * chroma).sum(0)
    scale = (got * chroma).sum(0) / norm2.clamp_min(1e-12)
    # The ratio is ill-conditioned for near-gray chroma (float32 error over a tiny norm): bound it elsewhere.
    defined = norm2 > 1e-6
    assert (scale[defined] >= -1e-4).all() and (scale[defined] <= 1 + 1e-4).all()
    torch.testing.assert_close(got, scale.unsqueeze(0) * chroma, rtol=0, atol=1e-4)


def test_chroma_is_kept_where_it_fits() -> None:
    rgb = torch.tensor([0.8, 0.4, 0.2]).view(3, 1, 1)
    luma, chroma = rgb_to_gray(rgb), rgb_to_chroma(rgb)
    torch.testing.assert_close(combine_luma_chroma(luma, chroma), rgb, rtol=0, atol=1e-6)
    # Ten times the saturation cannot fit: luma survives, the colour is desaturated towards it.
    strong = combine_luma_chroma(luma, 10 * chroma)
    torch.testing.assert_close(rgb_to_gray(strong), luma, rtol=0, atol=1e-6)
    assert strong.min() >= 0 and strong.max() <= 1
    assert (strong.max() - strong.min()) > (rgb.max() - rgb.min())  # more saturated than the original


def test_chroma_keeps_the_batch_dimension_first() -> None:
    rgb = torch.rand(3, 3, 2, 4)
    chroma = rgb_to_chroma(rgb)
    assert chroma.shape == (3, 2, 2, 4)
    torch.testing.assert_close(chroma[1], rgb_to_chroma(rgb[1]))


@_SETTINGS
@given(st.lists(st.tuples(_unit, _any_chroma, _any_chroma), min_size=1, max_size=32))
def test_fit_chroma_is_the_chroma_that_combine_keeps(values: list[tuple[float, float, float]]) -> None:
    data = _column(values)
    luma, chroma = data[:1], data[1:].clone()
    expected = rgb_to_chroma(combine_luma_chroma(luma, chroma.clone()))
    fitted = fit_chroma(chroma, luma)
    assert fitted.data_ptr() == chroma.data_ptr()  # in place: the JPEG path reuses the plane
    torch.testing.assert_close(fitted, expected, rtol=0, atol=1e-4)


def test_fit_chroma_scales_only_what_does_not_fit() -> None:
    luma = torch.tensor([0.5, 0.5, 0.0, 1.0, 1.5, -0.5]).view(1, 6, 1)
    chroma = torch.tensor([[0.1, 2.0, 0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]).unsqueeze(-1)
    fitted = fit_chroma(chroma.clone(), luma)
    # Cb 0.1 at mid-gray fits (B = Y + 0.1 / CB_SCALE); Cb 2.0 is scaled so that B reaches exactly 1;
    # at black, white, and a luma outside [0, 1] (clamped first) there is no room at all.
    cb_scale = 0.5 / (1.0 - 0.114)
    torch.testing.assert_close(fitted[0].flatten()[:2], torch.tensor([0.1, 0.5 * cb_scale]), rtol=0, atol=1e-6)
    assert fitted[0].flatten()[2:].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert fitted[1].abs().max() == 0.0


def test_fit_chroma_works_on_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    luma, chroma = torch.rand(3, 1, 4, 5, generator=gen), 2 * torch.randn(3, 2, 4, 5, generator=gen)
    each = torch.stack([fit_chroma(chroma[i].clone(), luma[i]) for i in range(3)])
    torch.testing.assert_close(fit_chroma(chroma.clone(), luma), each, rtol=0, atol=0)
    torch.testing.assert_close(
        combine_luma_chroma(luma, chroma.clone()),
        torch.stack([combine_luma_chroma(luma[i], chroma[i].clone()) for i in range(3)]),
        rtol=0,
        atol=0,
    )
