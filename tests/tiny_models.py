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
from model.encoder_generator import SKIP_STAGES, EncoderGenerator

#: Small enough for a 256 x 256 forward in a few milliseconds on one core: service, page and training tests.
TINY_CONFIG = GeneratorConfig(start_channels=4, latent_channels=4, global_channels=4)
#: As small, with a latent twice as wide: random weights then give visibly coloured output (the model tests).
TINY_COLOURFUL_CONFIG = dataclasses.replace(TINY_CONFIG, latent_channels=8)
#: That with three input channels (the N-channel task).
TINY_RGB_IN_CONFIG = dataclasses.replace(TINY_COLOURFUL_CONFIG, in_channels=3)
#: The smallest hint-taking encoder generator (the trunk is a full, randomly initialised EfficientNet-Lite0).
TINY_HINT_CONFIG = GeneratorConfig(encoder="efficientnet-lite0", hints=True, decoder_channels=8, norm="none")
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


#: The hint follower's automatic colour: chroma (Cb, Cr) = this x luma, a warm tint that grows with brightness.
HINT_FOLLOWER_TINT = (-0.1, 0.1)
_LRELU_SLOPE = 0.2  # model.layers' LeakyReLU


@torch.no_grad()
def make_hint_follower() -> EncoderGenerator:
    """A hint-taking generator whose weights are set by hand, so that hints matter in a known way.

    A random network reacts to hints, but not predictably. This one ignores the trunk: its automatic output is
    the gray image with a warm tint (:data:`HINT_FOLLOWER_TINT`), and each hint paints its own chroma over the
    3 x 3 cells of 16 x 16 working pixels around it (about a fifth of the side at 256). The decoder carries
    each chroma value ``v`` as the pair of channels (``v``, ``-v``), so that the leaky ReLUs stay linear on
    their difference.
    """
    torch.manual_seed(0)
    net = EncoderGenerator(TINY_HINT_CONFIG, with_saliency=False).eval()
    c, s = TINY_HINT_CONFIG.decoder_channels, _LRELU_SLOPE
    skip = [net.trunk.stage_specs[i].out_channels for i in SKIP_STAGES]
    convs = {name: m.conv2d.weight for name, m in net.named_modules() if name and hasattr(m, "conv2d")}
    for name, weight in convs.items():
        if not name.startswith("trunk"):
            weight.zero_()

    def carry(weight: torch.Tensor, start: int = 0) -> None:
        """Channels 0-3 out = the (v, -v) pairs of input channels start..start+3, rebuilt from their difference."""
        centre = weight.shape[-1] // 2
        for pair in (0, 2):
            for sign, out in ((1.0, pair), (-1.0, pair + 1)):
                weight[out, start + pair, centre, centre] = sign / (1 + s)
                weight[out, start + pair + 1, centre, centre] = -sign / (1 + s)

    # Stride 16: the hint pyramid's chroma (after the upsampled top and the skip), spread over 3 x 3 cells.
    hint_cb = 4 * c + skip[3]
    for out, (plane, sign) in enumerate(((hint_cb, 1.0), (hint_cb, -1.0), (hint_cb + 1, 1.0), (hint_cb + 1, -1.0))):
        convs["dec16"][out, plane] = sign  # every tap: the cell's hint chroma (a mean, not diluted) spread 3 x 3
    carry(convs["dec8.0"])
    carry(convs["dec8.1"])
    carry(convs["dec4"])
    # The gray image to half resolution, through the full-resolution branch.
    convs["gray_branch.0"][0, 0, 1, 1] = 1.0
    convs["gray_branch.1"][0, 0, 1, 1] = 1.0
    carry(convs["dec2.0"])
    gray = c + skip[0]  # dec2 reads (decoder, stride-2 skip, gray branch, hints)
    tint_cb, tint_cr = HINT_FOLLOWER_TINT
    for out, amount in enumerate((tint_cb, -tint_cb, tint_cr, -tint_cr)):
        convs["dec2.0"][out, gray, 1, 1] = amount
    carry(convs["dec2.1"])
    for out, pair in enumerate((0, 2)):
        convs["head"][out, pair, 1, 1] = 1 / (1 + s)
        convs["head"][out, pair + 1, 1, 1] = -1 / (1 + s)
    return net


__all__ = [
    "ExportCompiler",
    "COMPACT_CONFIG",
    "HINT_FOLLOWER_TINT",
    "TINY_HINT_CONFIG",
    "TINY_COLOURFUL_CONFIG",
    "TINY_CONFIG",
    "TINY_RGB_IN_CONFIG",
    "make_generator",
    "make_hint_follower",
    "randomize_norms",
]
