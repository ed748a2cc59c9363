"""Simulated colour hints, as Zhang et al. (SIGGRAPH 2017) train a hint-taking colorizer.

Per training crop: with probability ``none_share`` no hint at all (the automatic case stays as good);
otherwise a geometric number of hints (after each, stop with probability ``stop_prob``), each at a random
place, a square patch of 1 to ``max_patch`` pixels carrying the mean chroma of the original there.
Evaluation (``scgan-eval --hints N``) draws N hints at random points of the original photo, each with the
mean colour of its 5 x 5 patch, sent as API hints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model.color import rgb_to_chroma
from model.config import HINT_PLANES
from model.hints import Hint

#: Side of the original's patch whose mean colour an evaluation hint carries.
EVAL_PATCH = 5


@dataclass(frozen=True)
class HintSimulation:
    """How many hints a training crop gets, and how big."""

    none_share: float = 0.6
    stop_prob: float = 0.125
    max_patch: int = 9
    max_hints: int = 64


def simulate_hint_planes(rgb: torch.Tensor, spec: HintSimulation, rng: torch.Generator) -> torch.Tensor:
    """3 x H x W RGB in [0, 1] -> 3 x H x W planes (hint Cb, hint Cr, mask) of simulated hints."""
    _, height, width = rgb.shape
    planes = torch.zeros(HINT_PLANES, height, width)
    if float(torch.rand(1, generator=rng)) < spec.none_share:
        return planes
    chroma = rgb_to_chroma(rgb)
    for _ in range(spec.max_hints):
        size = int(torch.randint(1, spec.max_patch + 1, (1,), generator=rng))
        top = int(torch.randint(0, height - size + 1, (1,), generator=rng))
        left = int(torch.randint(0, width - size + 1, (1,), generator=rng))
        patch = chroma[:, top : top + size, left : left + size]
        planes[:2, top : top + size, left : left + size] = patch.mean(dim=(1, 2), keepdim=True)
        planes[2, top : top + size, left : left + size] = 1.0
        if float(torch.rand(1, generator=rng)) < spec.stop_prob:
            break
    return planes


def sample_hints(original: Image.Image, count: int, *, seed: int) -> list[Hint]:
    """``count`` hints at seeded random pixels of ``original``, each its mean colour over a 5 x 5 patch."""
    pixels = np.asarray(original.convert("RGB"), dtype=np.float64)
    height, width = pixels.shape[:2]
    rng = np.random.default_rng(seed)
    half = EVAL_PATCH // 2
    hints = []
    for _ in range(count):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        patch = pixels[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1]
        r, g, b = (int(round(v)) for v in patch.reshape(-1, 3).mean(0))
        hints.append(Hint(x, y, f"#{r:02x}{g:02x}{b:02x}"))
    return hints


__all__ = ["EVAL_PATCH", "HintSimulation", "sample_hints", "simulate_hint_planes"]
