"""Losses that do not hedge: quantized chroma, rebalancing, colourfulness, hue recall, hints; tiny real runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.chroma_bins import (
    BIN_STEP,
    annealed_mean,
    bin_centres,
    nearest_bin,
    num_bins,
    soft_encode,
    soft_encode_sparse,
)
from model.color import rgb_to_chroma
from model.generator import build_generator
from training.colour_losses import (
    bins_loss,
    chroma_prior,
    colorfulness_loss,
    colorfulness_per_image,
    rebalancing_weights,
)
from training.config import build_config
from training.data import ColorPhotoDataset, CropSpec
from training.hint_sim import HintSimulation, sample_hints, simulate_hint_planes
from training.hue import hue_counts, hue_recall
from training.loop import train
from training.state import load_state


def test_bins_cover_the_displayable_plane_and_decode_a_known_colour() -> None:
    centres = bin_centres()
    assert centres.shape == (num_bins(), 2) and 100 < num_bins() < 313
    for colour in ((0.1, -0.2), (-0.25, 0.3), (0.0, 0.0)):
        chroma = torch.tensor(colour).view(1, 2, 1, 1)
        target = soft_encode(chroma, centres)
        assert torch.isclose(target.sum(), torch.tensor(1.0)) and int((target > 0).sum()) == 5
        logits = torch.log(target.clamp_min(1e-12))
        decoded = annealed_mean(logits, centres, temperature=1.0).flatten()
        assert torch.allclose(decoded, chroma.flatten(), atol=0.01), decoded
        # A lower temperature moves towards the most likely bin, never away from the colour's side.
        sharper = annealed_mean(logits, centres).flatten()
        nearest = centres[target.flatten().argmax()]
        assert torch.linalg.norm(sharper - nearest) <= torch.linalg.norm(decoded - nearest) + 1e-6


def test_bins_are_the_displayable_cells_of_a_sixteenth_grid() -> None:
    """179 classes (the shipped starter's head): centres on the 1/16 grid, symmetric, gray among them."""
    centres = bin_centres()
    assert num_bins() == 179
    steps = centres / BIN_STEP
    assert torch.equal(steps, steps.round()) and centres.abs().max() == 0.4375
    assert {tuple(c) for c in centres.tolist()} == {tuple(c) for c in (-centres).tolist()}
    assert [0.0, 0.0] in centres.tolist()


def test_soft_encoding_weights_on_a_hand_computed_case() -> None:
    """Gray sits on a bin; its four neighbours are one step away: Gaussian weights exp(-1 / (2 * 0.5^2))."""
    centres = bin_centres()
    index, weights = soft_encode_sparse(torch.zeros(1, 2, 1, 1), centres)
    assert centres[index.flatten()[0]].tolist() == [0.0, 0.0]
    assert torch.allclose(centres[index.flatten()[1:]].norm(dim=1), torch.full((4,), BIN_STEP))
    near = math.exp(-2.0)
    expected = torch.tensor([1.0, near, near, near, near]) / (1.0 + 4.0 * near)
    assert torch.allclose(weights.flatten(), expected, atol=1e-6)


def test_soft_encoding_finds_the_nearest_bins_of_every_colour() -> None:
    """The candidate table's search gives the brute-force search's nearest bins (up to ties) over all Q."""
    centres = bin_centres()
    generator = torch.Generator().manual_seed(0)
    chroma = torch.cat(
        [
            rgb_to_chroma(torch.rand(1, 3, 200, 200, generator=generator)),  # every displayable colour
            torch.rand(1, 2, 200, 200, generator=generator) - 0.5,  # the whole plane, gamut corners too
        ]
    )
    index, weights = soft_encode_sparse(chroma, centres)
    flat = chroma.permute(0, 2, 3, 1).reshape(-1, 2)
    got = index.permute(0, 2, 3, 1).reshape(-1, 5)
    dist = (flat[:, None] - centres[got]).norm(dim=-1)
    best = torch.cdist(flat, centres, compute_mode="donot_use_mm_for_euclid_dist").topk(5, dim=1, largest=False).values
    assert torch.allclose(dist, best, atol=1e-6)  # the same distances, nearest first
    assert torch.allclose(weights.sum(1), torch.ones(()))
    assert (weights[:, :-1] >= weights[:, 1:] - 1e-6).all()  # nearer bins weigh more


def test_outside_the_plane_the_search_still_finds_the_nearest_bins() -> None:
    """No RGB colour has |Cb| or |Cr| over 0.5, but the search clamps to the plane's edge rather than failing."""
    centres = bin_centres()
    chroma = (torch.rand(1, 2, 40, 40, generator=torch.Generator().manual_seed(2)) - 0.5) * 1.6
    index, _ = soft_encode_sparse(chroma, centres)
    flat = chroma.permute(0, 2, 3, 1).reshape(-1, 2)
    got = index.permute(0, 2, 3, 1).reshape(-1, 5)[:, :3]
    dist = (flat[:, None] - centres[got]).norm(dim=-1)
    best = torch.cdist(flat, centres, compute_mode="donot_use_mm_for_euclid_dist").topk(3, dim=1, largest=False).values
    assert (flat.abs() > 0.5).any(1).float().mean() > 0.5
    assert torch.allclose(dist, best, atol=1e-6)  # the three nearest; the 4th and 5th may be approximate


def test_dense_soft_encoding_is_the_sparse_one_written_out() -> None:
    centres = bin_centres()
    chroma = torch.tensor([0.1, -0.2]).view(1, 2, 1, 1)
    index, weights = soft_encode_sparse(chroma, centres, sigma=1.0)
    dense = soft_encode(chroma, centres, sigma=1.0)
    assert torch.equal(dense[0, index.flatten(), 0, 0], weights.flatten())
    assert int((dense > 0).sum()) == 5


def test_bins_work_with_the_centres_of_a_generator_cast_to_bf16() -> None:
    """A generator cast to bf16 carries its centres buffer in bf16 (multiples of 1/16: exact); the answers stay fp32."""
    centres = bin_centres()
    half = centres.to(torch.bfloat16)
    generator = torch.Generator().manual_seed(3)
    chroma = rgb_to_chroma(torch.rand(2, 3, 3, 4, generator=generator))
    logits = torch.randn(2, len(centres), 3, 4, generator=generator)
    decoded = annealed_mean(logits, half)
    assert decoded.dtype == torch.float32 and torch.equal(decoded, annealed_mean(logits, centres))
    nearest = nearest_bin(chroma, half)
    assert nearest.shape == (2, 3, 4) and torch.equal(nearest, nearest_bin(chroma, centres))
    for got, want in zip(soft_encode_sparse(chroma, half), soft_encode_sparse(chroma, centres), strict=True):
        assert torch.equal(got, want)


def test_bins_loss_is_the_rebalanced_soft_cross_entropy() -> None:
    """Against the dense formula: soft targets over all Q bins, each pixel weighted by its nearest bin's weight."""
    centres = bin_centres()
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, len(centres), 6, 5, generator=generator)
    rgb = torch.rand(2, 3, 12, 10, generator=generator)
    weights = torch.rand(len(centres), generator=generator) + 0.5
    chroma = torch.nn.functional.interpolate(rgb_to_chroma(rgb), size=(6, 5), mode="area")
    targets = soft_encode(chroma, centres)
    dense = (weights[targets.argmax(1)] * -(targets * torch.log_softmax(logits, 1)).sum(1)).mean()
    assert torch.isclose(bins_loss(logits, rgb, centres, weights), dense, rtol=1e-5)


def test_rebalancing_weights_on_a_hand_computed_case() -> None:
    prior = torch.tensor([0.5, 0.25, 0.25])
    weights = rebalancing_weights(prior, 0.5)
    # mix = 0.5 p + 0.5 / 3 = [5/12, 7/24, 7/24]; w ∝ 1/mix, scaled so that Σ p w = 1
    assert torch.allclose(weights, torch.tensor([0.823529, 1.176471, 1.176471]), atol=1e-5)
    assert torch.isclose((prior * weights).sum(), torch.tensor(1.0))
    assert torch.equal(rebalancing_weights(prior), weights)  # Zhang et al.'s 0.5 is the default
    assert torch.allclose(rebalancing_weights(prior, 1.0), torch.ones(3))  # uniform mix: no rebalancing
    assert torch.allclose(rebalancing_weights(prior, 0.0), 1.0 / (3 * prior))  # the inverse prior alone
    with pytest.raises(ValueError, match="uniform_mix"):
        rebalancing_weights(prior, 1.5)


def test_colorfulness_loss_on_hand_cases() -> None:
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    # rg = |1 - 0| = 1 and yb = |0.5 (1 + 0) - 0| = 0.5 everywhere: no spread, mean root sqrt(1.25); 0.3 of it.
    assert torch.isclose(colorfulness_loss(red), torch.tensor(1.0 - 0.3 * 1.25**0.5))
    assert torch.isclose(colorfulness_loss(torch.full((2, 3, 4, 4), 0.4)), torch.tensor(1.0))  # gray: none


def test_colourfulness_of_a_yellow_and_a_two_tone_image() -> None:
    """Yellow: rg 0, yb |0.5 (1 + 1) - 0| = 1, so 0.3. Half red, half black: rg 1 | 0 and yb 0.5 | 0, variances
    (population) 0.25 and 0.0625, means 0.5 and 0.25, so (1 + 0.3) sqrt(0.3125)."""
    yellow = torch.zeros(3, 4, 4)
    yellow[:2] = 1.0
    two_tone = torch.zeros(3, 4, 4)
    two_tone[0, :, :2] = 1.0
    values = colorfulness_per_image(torch.stack([yellow, two_tone]))
    assert torch.allclose(values, torch.tensor([0.3, 1.3 * 0.3125**0.5]))


def _uint8_image(rgb: tuple[int, int, int], size: int = 8) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, size, size).clone()


def _nearest(centres: torch.Tensor, cb: float, cr: float) -> int:
    """The bin nearest to (Cb, Cr), by brute force."""
    return int(torch.cdist(torch.tensor([[float(cb), float(cr)]]), centres).argmin())


def test_chroma_prior_on_hand_cases() -> None:
    centres = bin_centres()
    gray, side, diagonal = (
        _nearest(centres, 0, 0),
        _nearest(centres, BIN_STEP, 0),
        _nearest(centres, BIN_STEP, BIN_STEP),
    )
    # Every 4th pixel (the default stride) is gray, the rest red: the prior sees only gray, then 1 in 16.
    image = _uint8_image((255, 0, 0))
    image[:, ::4, ::4] = 128
    assert chroma_prior([image], centres, sigma=0)[gray] == 1.0
    assert chroma_prior([image], centres, stride=1, sigma=0)[gray] == pytest.approx(1 / 16)
    # Smoothing by a Gaussian of one grid step: exp(-1/2) one step away, exp(-1) on the diagonal.
    smooth = chroma_prior([_uint8_image((128, 128, 128))], centres)  # sigma 1 by default
    assert smooth[side] / smooth[gray] == pytest.approx(math.exp(-0.5), rel=1e-5)
    assert smooth[diagonal] / smooth[gray] == pytest.approx(math.exp(-1.0), rel=1e-5)
    assert smooth.sum() == pytest.approx(1.0)
    # Counted over all the images: a gray one and a red one, half and half.
    pooled = chroma_prior([_uint8_image((128, 128, 128)), _uint8_image((255, 0, 0))], centres, sigma=0)
    assert pooled[gray] == 0.5 and pooled.max() == 0.5
    # 8-bit values over 255: this blue's chroma is 0.003 from the edge between two bins, and over 256 it crosses.
    blue = torch.tensor([6.0, 0.0, 210.0]).view(1, 3, 1, 1)
    want = _nearest(centres, *rgb_to_chroma(blue / 255).flatten().tolist())
    assert _nearest(centres, *rgb_to_chroma(blue / 256).flatten().tolist()) != want
    assert chroma_prior([_uint8_image((6, 0, 210))], centres, sigma=0)[want] == 1.0
    with pytest.raises(ValueError, match="^no pixels"):
        chroma_prior([], centres)


def test_hue_recall_on_a_hand_built_image() -> None:
    green, blue, warm, gray = (40, 160, 40), (40, 90, 200), (200, 120, 80), (120, 120, 120)
    original = np.array([[green, green, green, green, blue, blue, warm, gray]], np.uint8)
    output = np.array([[green, green, green, warm, blue, gray, warm, green]], np.uint8)
    counts = hue_counts(original, output)
    assert counts == {"purple": (0, 0), "warm": (1, 1), "green": (4, 3), "blue": (2, 1)}
    recall = hue_recall([counts, counts])
    assert recall["green"] == 0.75 and recall["blue"] == 0.5 and recall["warm"] == 1.0 and np.isnan(recall["purple"])


def test_simulated_hints_follow_the_recipe() -> None:
    rgb = torch.rand(3, 64, 64)
    always = HintSimulation(none_share=0.0, stop_prob=0.5, max_patch=3)
    counts = []
    for seed in range(40):
        planes = simulate_hint_planes(rgb, always, torch.Generator().manual_seed(seed))
        assert planes[2].sum() >= 1  # at least one hint
        counts.append(int(planes[2].sum()))
    assert max(counts) > min(counts)  # a random number of them
    none = simulate_hint_planes(rgb, HintSimulation(none_share=1.0), torch.Generator().manual_seed(0))
    assert none.abs().sum() == 0
    photo = Image.fromarray(np.full((30, 40, 3), (10, 200, 30), np.uint8))
    hints = sample_hints(photo, 5, seed=3)
    assert len(hints) == 5 and all(h.color == "#0ac81e" and 0 <= h.x < 40 and 0 <= h.y < 30 for h in hints)
    assert hints == sample_hints(photo, 5, seed=3)


#: Red, green and blue of distinct lumas: a block's colour can be read off its gray level.
PALETTE = np.array([(200, 40, 40), (40, 160, 40), (40, 60, 220)], np.uint8)


def _blocks(folder: Path, count: int, *, palette: bool = False) -> Path:
    """Photos of flat colour blocks: from PALETTE (predictable from gray), or random (only hints tell them)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        a = np.zeros((64, 64, 3), np.uint8)
        for y in range(0, 64, 32):
            for x in range(0, 64, 32):
                a[y : y + 32, x : x + 32] = PALETTE[rng.integers(0, 3)] if palette else rng.integers(30, 226, 3)
        Image.fromarray(a).save(folder / f"b{i:02d}.png")
    return folder


def _run(tmp: Path, photos: Path, steps: int, **sections: dict) -> list[dict]:
    data: dict = {
        "run": {
            "out_dir": str(tmp),
            "max_steps": steps,
            "log_every": 1,
            "checkpoint_every": 1000,
            "sample_images": 0,
            "threads": 1,
            "seed": 0,
        },
        "data": {"train_dir": str(photos), "crop_size": 64, "scale_min": 0.5},
        "optim": {"batch_size": 4, "lr_g": 3e-3, "beta1": 0.9},
        "loss": {"attention": 0.0},
        "model": {"encoder": "efficientnet-lite0", "decoder_channels": 8},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    train(build_config(data))
    rows = [json.loads(line) for line in (tmp / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def _falls(rows: list[dict], key: str) -> tuple[float, float]:
    first = float(np.mean([r[key] for r in rows[:5]]))
    last = float(np.mean([r[key] for r in rows[-5:]]))
    return first, last


@pytest.mark.parametrize(
    ("key", "steps", "sections"),
    [
        ("l1", 30, {"loss": {"l1": 1.0, "chroma": 1.0}}),
        ("bins", 60, {"loss": {"l1": 0.0, "bins": 1.0}, "model": {"chroma_head": "bins"}, "optim": {"lr_g": 1e-2}}),
        ("colorfulness", 30, {"loss": {"l1": 0.0, "colorfulness": 1.0}}),
    ],
)
def test_a_tiny_run_lowers_each_loss(tmp_path: Path, key: str, steps: int, sections: dict) -> None:
    photos = _blocks(tmp_path / "photos", 6, palette=True)
    rows = _run(tmp_path / "run", photos, steps, **sections)
    first, last = _falls(rows, key)
    assert last < 0.9 * first, (key, first, last)


def test_a_tiny_run_with_simulated_hints_uses_them(tmp_path: Path) -> None:
    photos = _blocks(tmp_path / "photos", 6)
    sections = {"loss": {"l1": 1.0, "chroma": 1.0}, "model": {"hints": True}, "data": {"hints_none_share": 0.2}}
    _run(tmp_path / "run", photos, 60, **sections)
    state = load_state(tmp_path / "run" / "ckpt")
    cfg = build_config(dict(state["config"]))
    net = build_generator(cfg.model.generator_config(), with_saliency=False, spectral_norm=True)
    net.load_state_dict(state["ema"] or state["main"], strict=False)
    net.eval()
    dataset = ColorPhotoDataset(
        photos,
        sorted(photos.iterdir()),
        CropSpec(64, (0.5, 1.0), (0.75, 1.33), True),
        hints=HintSimulation(none_share=0.0),
        cache_dir=tmp_path / "sal",
    )
    items = [dataset[(i % len(dataset), 1000 + i)] for i in range(16)]
    gray = torch.stack([it["input"] for it in items])
    hints = torch.stack([it["hints"] for it in items])
    target = torch.stack([it["rgb"] for it in items])
    with torch.no_grad():
        with_hints = (net.predict(torch.cat((gray, hints), 1)) - target).abs().mean()
        without = (net.predict(torch.cat((gray, torch.zeros_like(hints)), 1)) - target).abs().mean()
    assert with_hints < without, (float(with_hints), float(without))
