"""Shared fixtures for training tests: small synthetic colour photos and tiny configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tiny_models import TINY_CONFIG

from training.config import TrainConfig, build_config

#: The [model] section of tiny runs: tiny_models.TINY_CONFIG's widths, and a discriminator as narrow.
TINY_MODEL = {
    "start_channels": TINY_CONFIG.start_channels,
    "latent_channels": TINY_CONFIG.latent_channels,
    "global_channels": TINY_CONFIG.global_channels,
    "discriminator_channels": 4,
}


def make_photos(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (96, 72)) -> list[Path]:
    """Colourful gradient images with a coloured square: enough structure for a loss to fall."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    w, h = size
    for i in range(count):
        a = np.zeros((h, w, 3), np.uint8)
        a[..., 0] = np.linspace(0, 255, w, dtype=np.float32)[None].astype(np.uint8)
        a[..., 1] = int(rng.integers(0, 256))
        a[..., 2] = np.linspace(255, 0, h, dtype=np.float32)[:, None].astype(np.uint8)
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        a[y : y + h // 3, x : x + w // 3] = rng.integers(0, 256, 3)
        path = folder / f"photo{i:02d}.png"
        Image.fromarray(a).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    make_photos(folder, 6)
    return folder


def tiny_sections(out_dir: Path, train_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The config sections of a tiny run (tiny model, one thread, no samples), updated by ``sections``."""
    data: dict[str, Any] = {
        "run": {"out_dir": str(out_dir), "log_every": 1, "checkpoint_every": 1000, "sample_images": 0, "threads": 1},
        "data": {"train_dir": str(train_dir), "crop_size": 256},
        "optim": {"batch_size": 2},
        "model": dict(TINY_MODEL),
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def tiny_config(out_dir: Path, train_dir: Path, **sections: dict[str, Any]) -> TrainConfig:
    """A validated tiny config (:func:`tiny_sections`)."""
    return build_config(tiny_sections(out_dir, train_dir, **sections))


def write_tiny_config(path: Path, out_dir: Path, train_dir: Path, **sections: dict[str, Any]) -> Path:
    """:func:`tiny_sections` as a config file for ``scgan-train`` (JSON is YAML)."""
    path = path.with_suffix(".yaml")
    path.write_text(json.dumps(tiny_sections(out_dir, train_dir, **sections)))
    return path
