"""Losses that do not hedge to sepia: rebalanced classification over quantized chroma, and colourfulness.

* Classification (Zhang et al., ECCV 2016): each pixel's target chroma is soft-encoded over the bins of
  :mod:`model.chroma_bins`; the cross-entropy of each pixel is weighted by how rare its colour is in the
  training photos (the prior mixed with uniform, inverted, normalised to mean 1 under the prior), so that
  the rare saturated greens and blues weigh as much as the common browns. Decoded by the annealed mean.
* Colourfulness (DDColor): one minus the Hasler-Suesstrunk colourfulness of each output, on [0, 1] RGB.
* Enhanced targets (DDColor, BigColor): the target's chroma scaled (1.2x) for perceptual and adversarial terms.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from model.chroma_bins import BIN_STEP, nearest_bin, soft_encode_sparse
from model.color import combine_luma_chroma, rgb_to_chroma, rgb_to_gray


def chroma_prior(
    images: Iterable[torch.Tensor], centres: torch.Tensor, *, stride: int = 4, sigma: float = 1.0
) -> torch.Tensor:
    """Q probabilities: how often each bin is the nearest to a pixel's chroma in ``images`` (uint8 3 x H x W),
    every ``stride``-th pixel, smoothed with a Gaussian of ``sigma`` grid steps over the bin centres."""
    counts = torch.zeros(centres.shape[0], dtype=torch.float64)
    for image in images:
        rgb = image[:, ::stride, ::stride].float().div(255.0)[None]
        index = nearest_bin(rgb_to_chroma(rgb), centres).flatten()
        counts += torch.bincount(index, minlength=centres.shape[0]).double()
    if counts.sum() == 0:
        raise ValueError("no pixels to estimate the chroma prior from")
    if sigma > 0:
        dist2 = torch.cdist(centres.double(), centres.double()).square()
        counts = torch.exp(-dist2 / (2 * (sigma * BIN_STEP) ** 2)) @ counts
    return (counts / counts.sum()).float()


def rebalancing_weights(prior: torch.Tensor, uniform_mix: float = 0.5) -> torch.Tensor:
    """Q weights ``w ∝ 1 / ((1 - λ) p + λ / Q)``, scaled so that the prior-weighted mean ``Σ p w`` is 1."""
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
    q = prior.numel()
    weights = 1.0 / ((1.0 - uniform_mix) * prior + uniform_mix / q)
    return weights / (prior * weights).sum()


def bins_loss(
    logits: torch.Tensor, target_rgb: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Rebalanced soft cross-entropy of B x Q x h x w logits against the chroma of the target at that size."""
    chroma = rgb_to_chroma(target_rgb.float())
    if chroma.shape[-2:] != logits.shape[-2:]:
        chroma = F.interpolate(chroma, size=logits.shape[-2:], mode="area")
    index, soft = soft_encode_sparse(chroma, centres)  # nearest bin first
    pixel_weight = weights.to(logits.device)[index[:, 0]]  # the rarity of each pixel's colour
    ce = -(soft * F.log_softmax(logits.float(), dim=1).gather(1, index)).sum(1)
    return (pixel_weight * ce).mean()


def colorfulness_per_image(rgb: torch.Tensor) -> torch.Tensor:
    """B Hasler-Suesstrunk colourfulness values of B x 3 x H x W RGB in [0, 1] (about 0 to 0.4 for photos)."""
    r, g, b = rgb.float().unbind(1)
    rg = (r - g).abs().flatten(1)
    yb = (0.5 * (r + g) - b).abs().flatten(1)
    std_root = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mean_root = (rg.mean(1) ** 2 + yb.mean(1) ** 2).sqrt()
    return std_root + 0.3 * mean_root


def colorfulness_loss(rgb: torch.Tensor) -> torch.Tensor:
    """DDColor's: mean over the batch of ``1 - colourfulness``."""
    return (1.0 - colorfulness_per_image(rgb)).mean()


@torch.no_grad()
def enhance_chroma(rgb: torch.Tensor, gain: float) -> torch.Tensor:
    """``rgb`` with its chroma scaled by ``gain`` at the same luma, fitted inside the RGB cube."""
    if gain == 1.0:
        return rgb
    return combine_luma_chroma(rgb_to_gray(rgb), rgb_to_chroma(rgb) * gain)


__all__ = [
    "bins_loss",
    "chroma_prior",
    "colorfulness_loss",
    "colorfulness_per_image",
    "enhance_chroma",
    "rebalancing_weights",
]
