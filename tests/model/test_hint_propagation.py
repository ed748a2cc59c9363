"""The hint propagation (model/hint_propagation.py): hand cases, edge awareness, and its place in the pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import TINY_HINT_CONFIG

from model import hint_propagation
from model.color import rgb_to_chroma
from model.encoder_generator import EncoderGenerator
from model.hint_propagation import HintPropagation, propagate_hints
from model.hints import Hint, hint_points
from model.pipeline import Colorizer

SIDE = 64


def _point(row: int, column: int, cb: float, cr: float) -> torch.Tensor:
    return torch.tensor([[row, column, cb, cr]], dtype=torch.float32)


def test_no_hints_leave_the_prediction_untouched() -> None:
    chroma = torch.randn(2, SIDE, SIDE)
    assert propagate_hints(chroma, torch.rand(SIDE, SIDE), torch.zeros(0, 4)) is chroma


def test_one_hint_on_flat_luma_matches_the_hand_computed_kernel() -> None:
    spec = HintPropagation(spatial_sigma=0.25, luma_sigma=0.1, confidence=0.5)
    chroma = torch.zeros(2, SIDE, SIDE)
    out = propagate_hints(chroma, torch.full((SIDE, SIDE), 0.5), _point(10, 20, 0.2, -0.1), spec)
    # At the hint: kernel 1, so the residual times 1 / (1 + confidence).
    torch.testing.assert_close(out[:, 10, 20], torch.tensor([0.2, -0.1]) / 1.5)
    # Elsewhere: k = exp(-d^2 / 2 (s L)^2), correction k r / (k + c).
    d2 = (40 - 10) ** 2 + (5 - 20) ** 2
    k = math.exp(-d2 / (2 * (0.25 * SIDE) ** 2))
    torch.testing.assert_close(out[:, 40, 5], torch.tensor([0.2, -0.1]) * k / (k + 0.5))


def test_the_residual_is_what_is_spread_so_an_honoured_hint_changes_nothing() -> None:
    chroma = torch.randn(2, SIDE, SIDE) * 0.1
    row, column = 30, 31
    points = _point(row, column, float(chroma[0, row, column]), float(chroma[1, row, column]))
    torch.testing.assert_close(propagate_hints(chroma, torch.rand(SIDE, SIDE), points), chroma)


def test_the_correction_stops_at_a_luma_edge() -> None:
    luma = torch.full((SIDE, SIDE), 0.2)
    luma[:, SIDE // 2 :] = 0.8  # a dark left half, a bright right half
    out = propagate_hints(torch.zeros(2, SIDE, SIDE), luma, _point(32, 28, 0.3, 0.0))
    same_side, across = float(out[0, 32, 24]), float(out[0, 32, 32])  # both 4 pixels from the hint
    assert same_side > 0.2
    assert across < 1e-3 * same_side


def test_far_from_every_hint_the_prediction_stays() -> None:
    chroma = torch.randn(2, 256, 256) * 0.1
    out = propagate_hints(chroma, torch.full((256, 256), 0.5), _point(0, 0, 0.4, 0.4))
    assert float((out - chroma)[:, 255, 255].abs().max()) < 1e-6
    assert float((out - chroma)[:, 0, 0].abs().max()) > 0.1


def test_many_hints_in_chunks_equal_one_at_a_time_summed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking must not change the sums: 70 hints against a loop over them, in chunks of 2 here (40 x 40 pixels)."""
    monkeypatch.setattr(hint_propagation, "_KERNEL_ELEMENTS", 2 * 40 * 40)
    torch.manual_seed(0)
    chroma, luma = torch.randn(2, 40, 40) * 0.1, torch.rand(40, 40)
    points = torch.cat((torch.randint(0, 40, (70, 2)).float(), torch.randn(70, 2) * 0.1), dim=1)
    spec = HintPropagation()
    numerator, denominator = torch.zeros(2, 40, 40), torch.zeros(40, 40)
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    for row, column, cb, cr in points.tolist():
        r, c = int(row), int(column)
        k = torch.exp(
            -((ys - r) ** 2 + (xs - c) ** 2) / (2 * (spec.spatial_sigma * 40) ** 2)
            - (luma - luma[r, c]) ** 2 / (2 * spec.luma_sigma**2)
        )
        numerator += k * (torch.tensor([cb, cr]) - chroma[:, r, c]).view(2, 1, 1)
        denominator += k
    expected = chroma + numerator / (denominator + spec.confidence)
    torch.testing.assert_close(propagate_hints(chroma, luma, points, spec), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["spatial_sigma", "luma_sigma", "confidence"])
def test_settings_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        HintPropagation(**{name: 0.0})


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="2 x H x W"):
        propagate_hints(torch.zeros(3, 8, 8), torch.zeros(8, 8), torch.zeros(1, 4))


def _hinted(colorizer: Colorizer, image: Image.Image, hint: Hint) -> np.ndarray:
    """The answer's Cb and Cr (0..255) for one hint on ``image``."""
    prepared = colorizer.prepare(image, hints=[hint])
    rgb, _ = colorizer.predict(prepared.model_input[None])
    return np.asarray(colorizer.finish(prepared, rgb[0]).convert("YCbCr"), dtype=np.float64)[..., 1:]


def test_the_pipeline_carries_a_hint_the_network_ignores() -> None:
    """A random hint-taking network barely follows a hint; with the propagation the hinted pixel takes its colour."""
    torch.manual_seed(3)
    colorizer = Colorizer(EncoderGenerator(TINY_HINT_CONFIG, with_saliency=False), device="cpu", precision="fp32")
    image = Image.new("L", (256, 256), 128)
    hint = Hint(20, 20, "#3050d0")
    target = rgb_to_chroma(torch.tensor(hint.rgb).view(3, 1, 1)).view(2).numpy() * 255 + 128
    colorizer.hint_propagation = None
    alone = _hinted(colorizer, image, hint)
    colorizer.hint_propagation = HintPropagation()
    carried = _hinted(colorizer, image, hint)
    assert np.abs(alone[20, 20] - target).max() > 20  # the network alone is far from the hint
    assert np.abs(carried[20, 20] - target).max() < 0.35 * np.abs(alone[20, 20] - target).max()
    # Far beyond the spatial sigma (51 px here), nothing changes.
    assert np.abs(carried[250, 250] - alone[250, 250]).max() <= 1


def test_prepare_keeps_the_hints_points(hint_colorizer: Colorizer) -> None:
    image = Image.new("L", (50, 30), 100)
    hints = [Hint(0, 0, "#ff0000"), Hint(49, 29, "#00ff00")]
    prepared = hint_colorizer.prepare(image, hints=hints)
    assert prepared.hint_points is not None
    torch.testing.assert_close(prepared.hint_points, hint_points(hints, 50, 30, prepared.render_size))
    assert hint_colorizer.prepare(image).hint_points is not None
    assert len(hint_colorizer.prepare(image).hint_points) == 0
