"""data.hue_balance: photos drawn in proportion to how much of the rare hues they hold."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.conftest import tiny_config
from training.config import ConfigError
from training.data import EpochSampler
from training.hue import hue_balanced_weights, hue_shares
from training.loop import Trainer

GREEN, WARM, GRAY = (40, 160, 40), (200, 120, 80), (120, 120, 120)


def test_hue_balanced_weights_on_a_hand_computed_case() -> None:
    all_green = np.full((2, 4, 3), GREEN, np.uint8)
    all_warm = np.full((2, 4, 3), WARM, np.uint8)
    half_warm = np.array([[WARM, WARM, GRAY, GRAY]] * 2, np.uint8)
    shares = hue_shares([all_green, all_warm, half_warm])
    # columns: purple, warm, green, blue
    assert shares.tolist() == [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0.5, 0, 0]]
    # hue means: warm 0.5, green 1/3 (purple and blue shown by no photo: left out); scores, each the mean
    # over warm and green of share / mean: (0 + 3) / 2, (2 + 0) / 2, (1 + 0) / 2.
    np.testing.assert_allclose(hue_balanced_weights(shares, 1.0), [1.5, 1.0, 0.5])
    np.testing.assert_allclose(hue_balanced_weights(shares, 0.5), [1.25, 1.0, 0.75])
    np.testing.assert_allclose(hue_balanced_weights(shares, 0.0), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="balance"):
        hue_balanced_weights(shares, 1.5)


def test_hue_balanced_weights_of_photos_without_colour_are_uniform() -> None:
    np.testing.assert_array_equal(
        hue_balanced_weights(hue_shares([np.full((2, 2, 3), GRAY, np.uint8)] * 3), 1.0), [1, 1, 1]
    )


def test_weighted_epochs_follow_the_weights_and_resume_where_they_stopped() -> None:
    weights = [0.0, 1.0, 3.0]
    sampler = EpochSampler(3, seed=7, weights=weights)
    drawn: Counter[int] = Counter()
    for epoch in range(400):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert len(keys) == 3
        drawn.update(index for index, _ in keys)
    assert drawn[0] == 0  # weight 0: never drawn
    assert 2.5 < drawn[2] / drawn[1] < 3.5  # 900 / 300 expected
    sampler.set_epoch(5)
    whole = list(sampler)
    sampler.set_epoch(5, start=1)
    assert list(sampler) == whole[1:]  # deterministic per (seed, epoch): a resume skips what was consumed
    ranks = [EpochSampler(3, seed=7, weights=weights, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(5)
    assert sorted(i for r in ranks for i, _ in r) == sorted([i for i, _ in whole] + [whole[0][0]])  # padded
    with pytest.raises(ValueError, match="weights"):
        EpochSampler(3, seed=0, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        EpochSampler(2, seed=0, weights=[0.0, 0.0])


def _drawn_names(out_dir: Path, photos: Path, balance: float) -> list[str]:
    """Train one step, then list the photos the run's own sampler draws in its first epoch."""
    cfg = tiny_config(out_dir, photos, run={"max_steps": 1}, optim={"batch_size": 4}, data={"hue_balance": balance})
    trainer = Trainer(cfg)
    trainer.run()
    assert json.loads((out_dir / "config.json").read_text())["data"]["hue_balance"] == balance
    trainer.sampler.set_epoch(0)
    return [trainer.parts.train_set.paths[index].name for index, _ in trainer.sampler]


def test_a_run_with_full_hue_balance_draws_only_the_coloured_photo(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    near_gray = np.full((72, 96, 3), (128, 122, 118), np.uint8)  # chroma ~5: kept, but clearly no hue
    for i in range(3):
        Image.fromarray(near_gray).save(photos / f"gray{i}.png")
    Image.fromarray(np.full((72, 96, 3), GREEN, np.uint8)).save(photos / "green.png")
    names = ["gray0.png", "gray1.png", "gray2.png", "green.png"]
    assert sorted(_drawn_names(tmp_path / "uniform", photos, 0.0)) == names
    assert _drawn_names(tmp_path / "balanced", photos, 1.0) == ["green.png"] * 4


def test_hue_balance_refuses_data_it_cannot_weigh(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.hue_balance"):
        tiny_config(tmp_path, tmp_path, data={"input_dir": "a", "target_dir": "b", "hue_balance": 0.5})
