"""Building blocks shared by the SCGAN networks.

Module and attribute names follow the reference implementation, so that a state
dict released by the authors loads into these modules strictly, name for name:
a conv block is ``pad -> conv2d -> norm -> activation`` and a spectrally
normalised convolution keeps ``weight_bar``/``weight_u``/``weight_v`` on
``conv2d.module``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from model.config import NormKind, PaddingMode

Network = TypeVar("Network", bound=nn.Module)

Activation = Literal["lrelu", "tanh", "sigmoid", "none"]

_EPS = 1e-12


def _l2normalize(v: torch.Tensor) -> torch.Tensor:
    # The reference adds eps to the norm rather than clamping it; keep that exactly.
    return v / (v.norm() + _EPS)


class SpectralNorm(nn.Module):
    """Spectral normalisation of a wrapped convolution, as the reference computes it.

    In training mode every forward runs one power iteration and stores the new
    ``u``/``v``. In eval mode the weight is computed the way :func:`folded_weight`
    does (one iteration from the stored vectors, nothing stored), so an unfolded
    network in eval mode and its folded copy agree exactly.
    """

    def __init__(self, module: nn.Conv2d) -> None:
        super().__init__()
        self.module = module
        weight = module.weight.detach()
        height = weight.shape[0]
        width = weight[0].numel()
        del module._parameters["weight"]
        module.register_buffer("weight_u", _l2normalize(weight.new_empty(height).normal_(0, 1)))
        module.register_buffer("weight_v", _l2normalize(weight.new_empty(width).normal_(0, 1)))
        module.register_parameter("weight_bar", nn.Parameter(weight.clone()))

    @property
    def weight_bar(self) -> nn.Parameter:
        """The unnormalised weight (the parameter that training updates)."""
        return self.module.get_parameter("weight_bar")

    def normalized_weight(self, update: bool) -> torch.Tensor:
        """The weight divided by its estimated largest singular value."""
        w_bar = self.weight_bar
        w_mat = w_bar.reshape(w_bar.shape[0], -1)  # a copy when the weight is channels_last
        with torch.no_grad():
            v = _l2normalize(torch.mv(w_mat.t(), self.module.get_buffer("weight_u")))
            u = _l2normalize(torch.mv(w_mat, v))
            if update:
                self.module.get_buffer("weight_v").copy_(v)
                self.module.get_buffer("weight_u").copy_(u)
        sigma = torch.dot(u, torch.mv(w_mat, v))
        return w_bar / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.normalized_weight(update=self.training)
        return self.module._conv_forward(x, weight, self.module.bias)


def _make_padding(mode: PaddingMode, amount: int) -> nn.Module:
    if amount == 0:
        return nn.Identity()
    if mode == "reflect":
        return nn.ReflectionPad2d(amount)
    if mode == "replicate":
        return nn.ReplicationPad2d(amount)
    return nn.ZeroPad2d(amount)


def _make_norm(kind: NormKind, channels: int) -> nn.Module | None:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "in":
        return nn.InstanceNorm2d(channels)
    return None


def _make_activation(kind: Activation) -> nn.Module:
    if kind == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if kind == "tanh":
        return nn.Tanh()
    if kind == "sigmoid":
        return nn.Sigmoid()
    return nn.Identity()


class ConvBlock(nn.Module):
    """Padding -> bias-free convolution -> optional norm -> activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        *,
        pad_mode: PaddingMode = "reflect",
        norm: NormKind = "bn",
        activation: Activation = "lrelu",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.pad = _make_padding(pad_mode, padding)
        norm_layer = _make_norm(norm, out_channels)
        if norm_layer is not None:
            self.norm = norm_layer
        self.activation = _make_activation(activation)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=0, bias=False)
        self.conv2d: nn.Module = SpectralNorm(conv) if spectral_norm else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d(self.pad(x))
        if hasattr(self, "norm"):
            x = self.norm(x)
        return self.activation(x)


class UpBlock(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a conv block (no transposed conv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        pad_mode: PaddingMode = "reflect",
        norm: NormKind = "bn",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv2d = ConvBlock(in_channels, out_channels, pad_mode=pad_mode, norm=norm, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _plain_conv_like(src: nn.Conv2d, *, bias: bool, like: torch.Tensor) -> nn.Conv2d:
    """A new plain ``Conv2d`` with ``src``'s geometry, on ``like``'s device and in its dtype."""

    def pair(value: tuple[int, ...]) -> tuple[int, int]:
        return value[0], value[1]

    assert not isinstance(src.padding, str), "ConvBlock pads explicitly: its convolutions have numeric padding"
    return nn.Conv2d(
        src.in_channels,
        src.out_channels,
        pair(src.kernel_size),
        pair(src.stride),
        pair(src.padding),
        pair(src.dilation),
        src.groups,
        bias=bias,
        device=like.device,
        dtype=like.dtype,
    )


@torch.no_grad()
def fold_spectral_norm(network: Network) -> Network:
    """Replace every :class:`SpectralNorm` in ``network`` by a plain convolution, in place.

    The folded weight is what one power iteration from the stored vectors gives,
    so the network computes what the unfolded one computes in eval mode, with no
    power iteration per forward. Returns ``network`` for chaining.
    """
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SpectralNorm):
                src = child.module
                weight = child.normalized_weight(update=False)
                conv = _plain_conv_like(src, bias=src.bias is not None, like=weight)
                conv.weight.copy_(weight)
                if src.bias is not None and conv.bias is not None:
                    conv.bias.copy_(src.bias)
                setattr(parent, name, conv)
    return network


@torch.no_grad()
def fuse_batch_norm(network: Network) -> Network:
    """Fold each eval-mode BatchNorm of a :class:`ConvBlock` into its (plain) convolution, in place.

    Inference only: the block then computes ``act(conv'(pad(x)))`` with ``conv'`` carrying
    the normalisation's scale and shift, one pass over the activations fewer per layer.
    Blocks still under spectral norm (fold it first) or in training mode are left alone.
    Returns ``network`` for chaining.
    """
    for block in network.modules():
        norm = getattr(block, "norm", None)
        if not isinstance(block, ConvBlock) or not isinstance(norm, nn.BatchNorm2d):
            continue
        conv = block.conv2d
        if not isinstance(conv, nn.Conv2d) or norm.training or not norm.track_running_stats:
            continue
        assert norm.running_mean is not None and norm.running_var is not None
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.affine:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.affine:
            shift = shift + norm.bias
        fused = _plain_conv_like(conv, bias=True, like=conv.weight)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        assert fused.bias is not None
        fused.bias.copy_(shift if conv.bias is None else conv.bias * scale + shift)
        block.conv2d = fused
        del block.norm
    return network


@torch.no_grad()
def load_folded_weights(network: nn.Module, state: dict[str, torch.Tensor], power_iterations: int = 50) -> float:
    """Load a folded (plain-convolution) state dict into a network that has spectral norm, in place.

    Each ``conv2d.weight`` becomes ``conv2d.module.weight_bar`` and ``u``/``v`` are
    power-iterated to convergence. Spectral norm is scale-invariant, so the network then
    computes ``W / ||W||_2`` for each folded ``W``; returns the largest relative
    difference to ``W`` (about 0 for weights folded from a converged run). This is
    what lets training fine-tune from a serving checkpoint.
    """
    own = network.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = key.replace("conv2d.weight", "conv2d.module.weight_bar") if key.endswith("conv2d.weight") else key
        if target.endswith("weight_bar") and target not in own:
            target = key
        mapped[target] = value
    for key, value in own.items():
        if key.endswith(("weight_u", "weight_v")):
            mapped[key] = value
    network.load_state_dict(mapped, strict=True)
    worst = 0.0
    for module in network.modules():
        if isinstance(module, SpectralNorm):
            for _ in range(power_iterations):
                module.normalized_weight(update=True)
            w = module.weight_bar
            effective = module.normalized_weight(update=False)
            worst = max(worst, float((effective - w).norm() / w.norm().clamp_min(1e-12)))
    return worst


def has_spectral_norm(network: nn.Module) -> bool:
    return any(isinstance(m, SpectralNorm) for m in network.modules())


@torch.no_grad()
def init_weights(network: nn.Module, gain: float = 0.02) -> None:
    """The published init: xavier-normal convolutions (gain 0.02), BN weight N(1, 0.02), bias 0."""
    for module in network.modules():
        if isinstance(module, SpectralNorm):
            nn.init.xavier_normal_(module.weight_bar, gain=gain)
        elif isinstance(module, nn.Conv2d) and "weight" in module._parameters:
            nn.init.xavier_normal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


__all__ = [
    "Activation",
    "ConvBlock",
    "SpectralNorm",
    "UpBlock",
    "fold_spectral_norm",
    "fuse_batch_norm",
    "has_spectral_norm",
    "init_weights",
    "load_folded_weights",
]
