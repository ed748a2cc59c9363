"""The small generators every test folder uses (``tests/`` is on ``sys.path`` through ``tests/conftest.py``)."""

from __future__ import annotations

import dataclasses

import torch

from model import Generator, GeneratorConfig

#: Small enough for a 256 x 256 forward in a few milliseconds on one core: service, page and training tests.
TINY_CONFIG = GeneratorConfig(start_channels=4, latent_channels=4, global_channels=4)
#: As small, with a latent twice as wide: random weights then give visibly coloured output (the model tests).
TINY_COLOURFUL_CONFIG = dataclasses.replace(TINY_CONFIG, latent_channels=8)
#: That with three input channels (the N-channel task).
TINY_RGB_IN_CONFIG = dataclasses.replace(TINY_COLOURFUL_CONFIG, in_channels=3)
#: Small enough for a 2-core CPU, same topology as the published network (c=8, l=16, g=8): numerics, evaluation.
COMPACT_CONFIG = GeneratorConfig(start_channels=8, latent_channels=16, global_channels=8)


@torch.no_grad()
def randomize_norms(net: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=gen))
            module.bias.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))


def make_generator(
    config: GeneratorConfig = TINY_COLOURFUL_CONFIG,
    *,
    seed: int = 0,
    with_saliency: bool = True,
    spectral_norm: bool = True,
) -> Generator:
    """A seeded generator (eval mode) whose BN layers are not the identity."""
    torch.manual_seed(seed)
    net = Generator(config, with_saliency=with_saliency, spectral_norm=spectral_norm)
    randomize_norms(net, seed)
    return net.eval()


__all__ = [
    "COMPACT_CONFIG",
    "TINY_COLOURFUL_CONFIG",
    "TINY_CONFIG",
    "TINY_RGB_IN_CONFIG",
    "make_generator",
    "randomize_norms",
]
