"""The EfficientNet-Lite0 global feature network: an ImageNet classifier's semantics for the SCGAN generator.

It replaces SCGAN's VGG-style global network (``GeneratorConfig.global_net = "efficientnet-lite0"``)
and keeps SCGAN's topology: its output has the global network's shape, 8g x H/32 x W/32, and the
generator concatenates it before ``down7`` exactly as published.

Shapes for a B x 1 x H x W gray input in [0, 1] (``g`` = global_channels):
gray -> 3 x H x W (replicated) -> normalised as the weights expect -> Lite0 trunk:
head features 1280 x H/32 and the stride-16 stage (112 x H/16, 2 x 2 average-pooled to H/32)
-> concatenated (1392) -> 1x1 conv block -> 8g x H/32.

The trunk's BatchNorm always runs on its ImageNet statistics (it stays in eval mode, also while
training), so a frozen trunk is exactly the classifier and a fine-tuned one keeps its statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import GeneratorConfig
from model.efficientnet_lite import HEAD_CHANNELS, LITE0_STAGES, STAGE_END_BLOCKS, EfficientNetLite0, normalize_input
from model.layers import ConvBlock

#: The trunk outputs fused: the stride-16 stage's last block and the head (-1).
FUSED_BLOCKS: tuple[int, int] = (STAGE_END_BLOCKS[4], -1)
FUSED_CHANNELS = LITE0_STAGES[4].out_channels + HEAD_CHANNELS


class Lite0GlobalNetwork(nn.Module):
    """C_in x H x W gray -> 8g x H/32 x W/32 semantic features from an EfficientNet-Lite0 trunk."""

    def __init__(self, config: GeneratorConfig, *, spectral_norm: bool = True) -> None:
        super().__init__()
        if config.in_channels not in (1, 3):
            raise ValueError(
                f"the EfficientNet-Lite0 global network takes 1 or 3 input channels, not {config.in_channels}"
            )
        self.out_channels = 8 * config.global_channels
        self.trunk = EfficientNetLite0(with_classifier=False)
        self.projection = ConvBlock(
            FUSED_CHANNELS,
            self.out_channels,
            1,
            1,
            pad_mode=config.padding,
            norm=config.norm,
            spectral_norm=spectral_norm,
        )
        self.trunk.eval()

    def train(self, mode: bool = True) -> Lite0GlobalNetwork:
        super().train(mode)
        self.trunk.eval()  # ImageNet BatchNorm statistics, frozen or fine-tuned
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        stages = self.trunk.stages(normalize_input(rgb), FUSED_BLOCKS)
        mid = F.avg_pool2d(stages[FUSED_BLOCKS[0]], 2)  # 112 x H/32
        return self.projection(torch.cat((mid, stages[-1]), 1))  # 8g x H/32


__all__ = ["FUSED_BLOCKS", "FUSED_CHANNELS", "Lite0GlobalNetwork"]
