"""The small generators every test folder uses (``tests/`` is on ``sys.path`` through ``tests/conftest.py``)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._inductor

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


class ExportCompiler:
    """A stand-in for AOTInductor that builds in a second, not a minute: the package is the exported program itself.

    ``torch.export.save`` writes the program that :mod:`model.compiled` exported to the package path, and
    ``torch.export.load(...).module()`` runs it: real files, real checksums, the same function as the eager
    forward, without inductor's C++ build. ``builds`` counts the packages written; with ``log`` set, each build
    appends "start <pid> <name> <time>" and "end ..." lines to that file (two processes can share it).
    """

    def __init__(self, log: Path | None = None, build_seconds: float = 0.0) -> None:
        self.builds = 0
        self.log = log
        self.build_seconds = build_seconds

    def _note(self, what: str, path: str) -> None:
        if self.log is not None:
            with self.log.open("a") as fh:
                fh.write(f"{what} {os.getpid()} {Path(path).parent.name[1:17]} {time.time():.6f}\n")

    def compile_and_package(self, program: Any, package_path: str, inductor_configs: Any = None) -> str:
        self._note("start", package_path)
        time.sleep(self.build_seconds)
        torch.export.save(program, package_path)
        self.builds += 1
        self._note("end", package_path)
        return package_path

    @staticmethod
    def load_package(path: str, device_index: int = -1) -> Any:
        return torch.export.load(path).module()

    def install(self, monkeypatch: pytest.MonkeyPatch | None = None) -> ExportCompiler:
        """Replace torch's AOTInductor entry points (through ``monkeypatch``, or for good in a child process)."""
        for name, fn in (
            ("aoti_compile_and_package", self.compile_and_package),
            ("aoti_load_package", self.load_package),
        ):
            if monkeypatch is None:
                setattr(torch._inductor, name, fn)
            else:
                monkeypatch.setattr(torch._inductor, name, fn)
        return self


__all__ = [
    "ExportCompiler",
    "COMPACT_CONFIG",
    "TINY_COLOURFUL_CONFIG",
    "TINY_CONFIG",
    "TINY_RGB_IN_CONFIG",
    "make_generator",
    "randomize_norms",
]
