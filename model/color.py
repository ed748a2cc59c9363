"""Colour constants and conversions: the one place that knows them.

Gray is ITU-R BT.601 luma (OpenCV's RGB2GRAY, as SCGAN trains on); chroma is the
matching YCbCr Cb/Cr pair. Tensors are float in [0, 1], channels first
(``... x 3 x H x W`` for RGB, ``... x 1 x H x W`` for luma).
"""

from __future__ import annotations

import torch

#: Y = 0.299 R + 0.587 G + 0.114 B
GRAY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
_KR, _KG, _KB = GRAY_WEIGHTS
#: Cb = (B - Y) * CB_SCALE, Cr = (R - Y) * CR_SCALE (BT.601, offsets not added)
CB_SCALE = 0.5 / (1.0 - _KB)
CR_SCALE = 0.5 / (1.0 - _KR)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """``... x 3 x H x W`` RGB -> ``... x 1 x H x W`` luma."""
    r, g, b = rgb.unbind(-3)
    return (_KR * r + _KG * g + _KB * b).unsqueeze(-3)


def rgb_to_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """``... x 3 x H x W`` RGB -> ``... x 2 x H x W`` (Cb, Cr), zero for gray."""
    y = rgb_to_gray(rgb).squeeze(-3)
    r, _, b = rgb.unbind(-3)
    return torch.stack(((b - y) * CB_SCALE, (r - y) * CR_SCALE), dim=-3)


def chroma_offsets(chroma: torch.Tensor) -> torch.Tensor:
    """(Cb, Cr) -> the (R-Y, G-Y, B-Y) offsets they imply; their luma-weighted sum is 0."""
    cb, cr = chroma.unbind(-3)
    dr = cr * (1.0 / CR_SCALE)
    db = cb * (1.0 / CB_SCALE)
    dg = dr * (-_KR / _KG) + db * (-_KB / _KG)
    return torch.stack((dr, dg, db), dim=-3)


def combine_luma_chroma(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Recombine luma with chroma into RGB in [0, 1] whose luma is exactly ``luma``.

    Where ``luma + chroma`` would leave the RGB cube, the chroma of that pixel is
    scaled towards gray just enough to fit, instead of clipping channels (which
    would change the pixel's brightness). The largest offset bounds the room above
    ``luma`` and the most negative one the room below; offsets sum to zero under the
    luma weights, so a pixel with no positive (or no negative) offset has none at all.
    Written with few full-resolution temporaries: it runs once per output pixel.
    """
    offsets = chroma_offsets(chroma)  # ... x 3 x H x W
    y = luma.clamp(0.0, 1.0)
    tiny = torch.finfo(offsets.dtype).tiny
    room_up = (1.0 - y).div_(offsets.amax(dim=-3, keepdim=True).clamp_min_(tiny))
    room_down = y.div(offsets.amin(dim=-3, keepdim=True).neg_().clamp_min_(tiny))
    scale = torch.minimum(room_up, room_down).clamp_(0.0, 1.0)
    return offsets.mul_(scale).add_(y).clamp_(0.0, 1.0)


def fit_chroma(chroma: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """Scale ``chroma`` (in place) towards gray just enough that ``luma + chroma`` fits the RGB cube.

    The rule of :func:`combine_luma_chroma`, without building the RGB: for a chroma
    plane stored at lower resolution than the luma (a 4:2:0 JPEG), pass the luma
    averaged over each chroma sample's pixels.
    """
    offsets = chroma_offsets(chroma)
    y = luma.clamp(0.0, 1.0)
    tiny = torch.finfo(offsets.dtype).tiny
    room_up = (1.0 - y).div_(offsets.amax(dim=-3, keepdim=True).clamp_min_(tiny))
    room_down = y.div(offsets.amin(dim=-3, keepdim=True).neg_().clamp_min_(tiny))
    return chroma.mul_(torch.minimum(room_up, room_down).clamp_(0.0, 1.0))


__all__ = [
    "CB_SCALE",
    "CR_SCALE",
    "GRAY_WEIGHTS",
    "chroma_offsets",
    "combine_luma_chroma",
    "fit_chroma",
    "rgb_to_chroma",
    "rgb_to_gray",
]
