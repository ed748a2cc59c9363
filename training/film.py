"""Old-photograph inputs: a gray conversion as film and prints make it, not as BT.601 luma.

Orthochromatic and early panchromatic films weigh red, green and blue unlike BT.601 (red nearly blind:
lips and red cloth dark, blue skies pale); old prints add a contrast curve, fading, softness and grain.
:func:`film_gray` draws one such rendering per crop; the target colours stay the original's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _blur(gray: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=gray.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(gray[None], (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))[0]


def film_gray(rgb: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """3 x H x W RGB in [0, 1] -> 1 x H x W gray as an old film and print might render it."""
    u = torch.rand(8, generator=rng).tolist()
    # Channel sensitivities: red from nearly blind (orthochromatic) to BT.601's, blue often overweighted.
    weights = torch.tensor([0.05 + 0.3 * u[0], 0.4 + 0.4 * u[1], 0.1 + 0.4 * u[2]])
    gray = (rgb * (weights / weights.sum()).view(3, 1, 1)).sum(0, keepdim=True)
    gray = gray.clamp(0, 1) ** (0.7 + 0.7 * u[3])  # contrast curve
    black, white = 0.12 * u[4], 1.0 - 0.15 * u[5]  # faded print: raised blacks, dulled whites
    gray = black + (white - black) * gray
    if u[6] < 0.5:
        gray = _blur(gray, 0.4 + 1.0 * u[6] * 2)
    noise = torch.randn(gray.shape, generator=rng) * (0.04 * u[7])
    return (gray + noise).clamp(0.0, 1.0)


__all__ = ["film_gray"]
