"""A projected discriminator (Sauer et al., "Projected GANs Converge Faster", NeurIPS 2021), for stage 2.

The critic looks at the image through a FROZEN ImageNet network (EfficientNet-Lite0, the same weights
as the generator's global network) at four scales, and trains only small heads on those features:
real and fake are compared in a space where "sky", "fur" and "grass" already mean something, which
is what lets it learn from a few hundred photos. Scored with the hinge loss.

Deviations from the paper, and why: no random cross-channel/cross-scale mixing layers (the heads mix
channels themselves), and no DiffAugment: its colour augmentations would teach the critic that any
colour is real, which is the opposite of what a colorization critic is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from model.efficientnet_lite import (
    LITE0_STAGES,
    STAGE_END_BLOCKS,
    EfficientNetLite0,
    load_imagenet_weights,
    normalize_input,
)

#: Feature taps: the last block of the stages at strides 4, 8, 16 and 32.
PROJECTED_BLOCKS: tuple[int, ...] = (STAGE_END_BLOCKS[1], STAGE_END_BLOCKS[2], STAGE_END_BLOCKS[4], STAGE_END_BLOCKS[6])
_TAP_CHANNELS = (
    LITE0_STAGES[1].out_channels,
    LITE0_STAGES[2].out_channels,
    LITE0_STAGES[4].out_channels,
    LITE0_STAGES[6].out_channels,
)

Logs = dict[str, float]


def _head(in_channels: int, width: int) -> nn.Sequential:
    """A small patch critic on one feature map: two spectrally normalised 3x3 convs, then a 1x1 to one logit."""
    return nn.Sequential(
        spectral_norm(nn.Conv2d(in_channels, width, 3, padding=1)),
        nn.LeakyReLU(0.2, inplace=True),
        spectral_norm(nn.Conv2d(width, width, 3, padding=1)),
        nn.LeakyReLU(0.2, inplace=True),
        spectral_norm(nn.Conv2d(width, 1, 1)),
    )


class ProjectedDiscriminator(nn.Module):
    """``critic(gray, rgb)`` -> B x N patch logits from four frozen Lite0 scales (``gray`` is not used).

    The colour is what differs between a real photo and a colorized one (the pipeline keeps the input's
    luma), so the critic judges the RGB alone. Only the heads train; the feature network stays frozen,
    in eval mode, whatever ``train()`` is told.
    """

    def __init__(self, width: int = 64, *, weights_path: str = "") -> None:
        super().__init__()
        self.features = EfficientNetLite0(with_classifier=False)
        self.weights_source = load_imagenet_weights(self.features, weights_path or None)
        self.features.requires_grad_(False).eval()
        self.heads = nn.ModuleList(_head(c, width) for c in _TAP_CHANNELS)

    def train(self, mode: bool = True) -> ProjectedDiscriminator:
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, condition: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        taps = self.features.stages(normalize_input(rgb), PROJECTED_BLOCKS)
        return torch.cat([head(taps[b]).flatten(1) for b, head in zip(PROJECTED_BLOCKS, self.heads)], 1)


@dataclass
class ProjectedHinge:
    """The hinge loss of Projected GAN: the critic pushes real above +1 and fake below -1."""

    name: str = "projected"

    def critic_loss(
        self, critic: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        d_real = critic(condition, real)
        d_fake = critic(condition, fake.detach())
        loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        return loss, {"d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}

    def generator_loss(self, critic: nn.Module, condition: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return -critic(condition, fake).mean()

    def after_critic_step(self, critic: nn.Module) -> None:
        return None


__all__ = ["PROJECTED_BLOCKS", "ProjectedDiscriminator", "ProjectedHinge"]
