"""Quantized chroma: the classes of a colour-classification head, and the annealed mean that decodes them.

Zhang et al. (ECCV 2016) classify each pixel's ab colour into 313 in-gamut bins of a 10-unit grid and
decode with the annealed mean of the softmax at temperature 0.38. We do the same in the BT.601 CbCr plane
of :mod:`model.color`: a square grid of step :data:`BIN_STEP` over Cb, Cr in [-0.5, 0.5], keeping the
cells whose centre some gray level can carry inside the RGB cube (the others can never be displayed).
"""

from __future__ import annotations

import functools

import torch

from model.color import chroma_offsets

#: Grid step in CbCr units (the plane spans about [-0.5, 0.5] on both axes).
BIN_STEP = 0.0625
#: Zhang et al.'s decoding temperature: 1 is the mean (sepia hedge), -> 0 the mode (noisy, vivid).
ANNEALED_TEMPERATURE = 0.38


@functools.cache
def _bin_centres_cpu() -> torch.Tensor:
    steps = round(1.0 / BIN_STEP)
    axis = (torch.arange(steps + 1, dtype=torch.float64) - steps / 2) * BIN_STEP
    cb, cr = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack((cb.flatten(), cr.flatten()), dim=-1)  # N x 2
    offsets = chroma_offsets(grid.T.reshape(2, -1, 1)).reshape(3, -1)  # (R-Y, G-Y, B-Y) per centre
    # Displayable for some luma y: y + every offset within [0, 1], i.e. max - min offset <= 1.
    keep = (offsets.amax(0) - offsets.amin(0)) <= 1.0
    return grid[keep].float().contiguous()


def bin_centres() -> torch.Tensor:
    """Q x 2 (Cb, Cr) centres of the in-gamut bins, float32 on the CPU (a fresh copy)."""
    return _bin_centres_cpu().clone()


def num_bins() -> int:
    """Q, the number of classes of a ``chroma_head = "bins"`` generator."""
    return int(_bin_centres_cpu().shape[0])


def annealed_mean(
    logits: torch.Tensor, centres: torch.Tensor, temperature: float = ANNEALED_TEMPERATURE
) -> torch.Tensor:
    """B x Q x H x W logits -> B x 2 x H x W chroma: the mean of the bins under softmax(logits / T)."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, centres.to(probs))


#: The candidate table's cells per unit of Cb and Cr, and the bins it keeps per cell: the nearest
#: ``_CANDIDATES`` to the cell's centre, a superset of the ``neighbours`` nearest to any point in the cell.
_TABLE_STEPS = 256
_CANDIDATES = 16


@functools.cache
def _candidate_table(centres_bytes: bytes, device: torch.device) -> torch.Tensor:
    centres = torch.frombuffer(bytearray(centres_bytes), dtype=torch.float32).reshape(-1, 2)
    axis = torch.arange(_TABLE_STEPS + 1, dtype=torch.float32) / _TABLE_STEPS - 0.5
    cb, cr = torch.meshgrid(axis, axis, indexing="ij")
    cells = torch.stack((cb.flatten(), cr.flatten()), dim=-1)
    k = min(_CANDIDATES, centres.shape[0])
    return torch.cdist(cells, centres).topk(k, dim=1, largest=False).indices.to(device)


def soft_encode_sparse(
    chroma: torch.Tensor, centres: torch.Tensor, neighbours: int = 5, sigma: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """B x 2 x H x W chroma -> (B x K x H x W bin indices, B x K x H x W weights), K = ``neighbours``.

    Gaussian weights (``sigma`` in grid steps) on the ``neighbours`` nearest bins, nearest first, summing to 1
    (Zhang et al.'s soft encoding: 5 neighbours, sigma 5 ab units on a 10-unit grid). Each pixel's neighbours
    are searched among its table cell's candidates, not among all Q bins: the dense search's top-k over Q
    was most of a bins-loss step on a CPU. The table spans the plane, |Cb| and |Cr| up to 0.5, where every
    RGB colour lies; a point beyond it is searched from the nearest edge cell, so its farthest neighbours
    may be approximate.
    """
    b, _, h, w = chroma.shape
    flat = chroma.permute(0, 2, 3, 1).reshape(-1, 2).float()
    centres = centres.to(flat)
    table = _candidate_table(centres.detach().cpu().contiguous().numpy().tobytes(), flat.device)
    cell = ((flat.clamp(-0.5, 0.5) + 0.5) * _TABLE_STEPS).round().long()
    candidates = table[cell[:, 0] * (_TABLE_STEPS + 1) + cell[:, 1]]  # N x C
    dist2 = (flat[:, None, :] - centres[candidates]).square().sum(-1)
    near, pick = dist2.topk(neighbours, dim=1, largest=False)
    weights = torch.exp(-near / (2.0 * (sigma * BIN_STEP) ** 2))
    weights = weights / weights.sum(1, keepdim=True)
    index = candidates.gather(1, pick)

    def planes(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, h, w, neighbours).permute(0, 3, 1, 2)

    return planes(index), planes(weights)


def soft_encode(chroma: torch.Tensor, centres: torch.Tensor, neighbours: int = 5, sigma: float = 0.5) -> torch.Tensor:
    """B x 2 x H x W chroma -> B x Q x H x W soft targets: :func:`soft_encode_sparse` written out densely."""
    index, weights = soft_encode_sparse(chroma, centres, neighbours, sigma)
    b, _, h, w = chroma.shape
    target = torch.zeros(b, centres.shape[0], h, w, device=weights.device, dtype=weights.dtype)
    return target.scatter_(1, index, weights)


def nearest_bin(chroma: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """B x 2 x H x W chroma -> B x H x W index of the nearest bin."""
    b, _, h, w = chroma.shape
    flat = chroma.permute(0, 2, 3, 1).reshape(-1, 2).float()
    return torch.cdist(flat, centres.to(flat)).argmin(1).reshape(b, h, w)


__all__ = [
    "ANNEALED_TEMPERATURE",
    "BIN_STEP",
    "annealed_mean",
    "bin_centres",
    "nearest_bin",
    "num_bins",
    "soft_encode",
    "soft_encode_sparse",
]
