"""PatchGAN-70 discriminator conditioned on the gray input, and the VGG-16 perceptual network."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from model.config import NormKind, PaddingMode
from model.layers import ConvBlock


class PatchDiscriminator70(nn.Module):
    """Scores 70 x 70 patches of ``cat(gray, rgb)``; 30 x 30 logits at 256 px."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        start_channels: int = 64,
        *,
        padding: PaddingMode = "reflect",
        norm: NormKind = "bn",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        c = start_channels
        block = partial(ConvBlock, pad_mode=padding, spectral_norm=spectral_norm)
        self.block1 = block(in_channels + out_channels, c, 7, 1, norm="none")
        self.block2 = block(c, 2 * c, 3, 2, norm=norm)
        self.block3 = block(2 * c, 4 * c, 3, 2, norm=norm)
        self.block4 = block(4 * c, 8 * c, 3, 2, norm=norm)
        self.final1 = block(8 * c, 8 * c, 4, 1, 1, norm=norm)
        self.final2 = block(8 * c, 1, 4, 1, 1, norm="none", activation="none")

    def forward(self, gray: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        x = torch.cat((gray, rgb), 1)
        for block in (self.block1, self.block2, self.block3, self.block4, self.final1, self.final2):
            x = block(x)
        return x


class PerceptualNet(nn.Module):
    """VGG-16 ``features.0`` .. ``features.14``: RGB -> conv3_3 before its ReLU (torchvision layout).

    Built with random weights; load torchvision's ImageNet ``vgg16`` state dict
    with :meth:`load_torchvision_vgg16` (a file the user supplies; nothing is downloaded).
    """

    def __init__(self) -> None:
        super().__init__()
        # Imported here: torchvision costs seconds at import time, and only training needs this network.
        import torchvision

        self.features = torchvision.models.vgg16(weights=None).features[:15]
        self.requires_grad_(False)

    def load_torchvision_vgg16(self, state_dict: dict[str, torch.Tensor]) -> None:
        wanted = {k: v for k, v in state_dict.items() if k.startswith("features.") and int(k.split(".")[1]) < 15}
        self.load_state_dict(wanted, strict=True)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.features(rgb)


__all__ = ["PatchDiscriminator70", "PerceptualNet"]
