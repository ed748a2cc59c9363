"""Hints carried to their regions: what the network left unfollowed is spread, edge-aware, around each hint.

A hint-taking generator reads the hints, but one trained on a CPU budget follows them only near the hinted
pixel (``MODEL_CARD.md``). This step makes the answer honour them: at each hint, the residual between the
hint's chroma and the predicted one is spread over the pixels that are near it *and* of similar luma, a joint
bilateral normalized convolution (Petschnigg et al. 2004; Levin et al. 2004 solve the same propagation as an
optimization), and added to the prediction:

    F(p) = sum_i k_i(p) r_i / (sum_i k_i(p) + c),    k_i(p) = exp(-|p - p_i|^2 / 2 (s L)^2 - (Y(p) - Y_i)^2 / 2 t^2)

``s`` is the spatial sigma as a share of the working side ``L``, ``t`` the luma sigma, and ``c`` the confidence
that keeps the prediction where no hint is near (the correction fades to zero there). No hints: the
prediction is returned untouched. The defaults were chosen on training photos and scored on the validation
split (``benchmarks/hint_propagation.py``, ``benchmarks/results/hint_propagation.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Kernel values computed at once (hints x pixels): bounds the working memory at a few times 8 MiB, any size.
_KERNEL_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class HintPropagation:
    """The spread of each hint's correction: spatial sigma (share of the side), luma sigma, confidence."""

    spatial_sigma: float = 0.2
    luma_sigma: float = 0.05
    confidence: float = 0.05

    def __post_init__(self) -> None:
        for name in ("spatial_sigma", "luma_sigma", "confidence"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def propagate_hints(
    chroma: torch.Tensor, luma: torch.Tensor, points: torch.Tensor, spec: HintPropagation = HintPropagation()
) -> torch.Tensor:
    """2 x H x W predicted chroma, H x W luma in [0, 1], K x 4 hints (row, column, Cb, Cr) -> corrected chroma.

    Rows and columns are working-size pixels; later hints at the same pixel count as much as earlier ones.
    """
    if chroma.dim() != 3 or chroma.shape[0] != 2 or luma.shape != chroma.shape[1:]:
        raise ValueError(f"need 2 x H x W chroma and H x W luma, got {tuple(chroma.shape)} and {tuple(luma.shape)}")
    if points.numel() == 0:
        return chroma
    height, width = luma.shape
    chroma32, luma32 = chroma.float(), luma.float()
    rows, cols = points[:, 0].long(), points[:, 1].long()
    residual = points[:, 2:4].float() - chroma32[:, rows, cols].T  # K x 2
    spread = 2.0 * (spec.spatial_sigma * max(height, width)) ** 2
    ys = torch.arange(height, dtype=torch.float32)
    xs = torch.arange(width, dtype=torch.float32)
    numerator = torch.zeros(2, height * width)
    denominator = torch.zeros(height * width)
    chunk = max(1, _KERNEL_ELEMENTS // (height * width))
    for start in range(0, len(points), chunk):
        part = slice(start, start + chunk)
        along_y = torch.exp(-((ys[None, :] - rows[part, None]) ** 2) / spread)  # k x H
        along_x = torch.exp(-((xs[None, :] - cols[part, None]) ** 2) / spread)  # k x W
        similar = torch.exp(
            -((luma32[None] - luma32[rows[part], cols[part]][:, None, None]) ** 2) / (2 * spec.luma_sigma**2)
        )
        kernel = (along_y[:, :, None] * along_x[:, None, :] * similar).flatten(1)  # k x HW
        numerator += residual[part].T @ kernel
        denominator += kernel.sum(0)
    correction = (numerator / (denominator + spec.confidence)).view(2, height, width)
    return (chroma32 + correction).to(chroma.dtype)


__all__ = ["HintPropagation", "propagate_hints"]
