"""Helpers shared by the model tests (tests/model is on sys.path under pytest's default import mode)."""

from __future__ import annotations

import torch

from model import Generator, GeneratorConfig

#: Small enough for a 2-core CPU, same topology as the published network (c=8, l=16, g=8).
COMPACT = GeneratorConfig(start_channels=8, latent_channels=16, global_channels=8)
#: Smaller still, for tests where only shapes and plumbing matter (pipeline, CLI, shapes).
TINY = GeneratorConfig(start_channels=4, latent_channels=8, global_channels=4)
TINY_RGB_IN = GeneratorConfig(in_channels=3, start_channels=4, latent_channels=8, global_channels=4)


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
    config: GeneratorConfig = TINY, *, seed: int = 0, with_saliency: bool = True, spectral_norm: bool = True
) -> Generator:
    """A seeded generator (eval mode) whose BN layers are not the identity."""
    torch.manual_seed(seed)
    net = Generator(config, with_saliency=with_saliency, spectral_norm=spectral_norm)
    randomize_norms(net, seed)
    return net.eval()


__all__ = ["COMPACT", "TINY", "TINY_RGB_IN", "make_generator", "randomize_norms"]
