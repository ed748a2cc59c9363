"""The sample grid a training run writes each epoch: gray input | output | target, one row per training item."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.utils import make_grid


@torch.no_grad()
def sample_grid(net: nn.Module, items: Sequence[dict[str, torch.Tensor]], device: torch.device) -> torch.Tensor:
    """A 3-column image grid (CPU, float in [0, 1]) of ``items`` (training-set dicts) colorized by ``net``."""
    x = torch.stack([torch.cat((it["input"], it["hints"])) if "hints" in it else it["input"] for it in items])
    rgb = net(x.to(device), return_saliency=False)[0].float().clamp(0, 1).cpu()
    target = torch.stack([it["rgb"] for it in items])
    gray = torch.stack([it["input"] for it in items])
    gray = gray.expand(-1, 3, -1, -1) if gray.shape[1] == 1 else gray[:, :3]
    rows = torch.stack([gray, rgb, target], dim=1).flatten(0, 1)  # gray | output | target per row
    return make_grid(rows, nrow=3, padding=2)


__all__ = ["sample_grid"]
