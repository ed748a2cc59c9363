"""The grayscale classifier whose convolutions become the generator's global feature network."""

from __future__ import annotations

import torch
from torch import nn

from model.config import GeneratorConfig
from model.generator import GlobalFeatureNetwork


class GlobalClassifier(nn.Module):
    """Global feature network (same module, same names) + global average pool + linear head.

    The reference pre-trains a VGG-16-BN with fully connected layers; a pooled
    linear head keeps this small and resolution-independent. Only ``features``
    is carried into the generator.
    """

    def __init__(self, config: GeneratorConfig, num_classes: int) -> None:
        super().__init__()
        self.features = GlobalFeatureNetwork(config, spectral_norm=True)
        self.head = nn.Linear(self.features.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))


__all__ = ["GlobalClassifier"]
