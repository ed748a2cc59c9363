"""Test helpers: official-style state dicts built from the published manifest, and an
independent functional re-implementation of the reference SCGAN forward.

Nothing here imports ``model``: the reference forward is written from
``SCGAN.md`` alone and walks a state dict by the authors' tensor names, so it
can check our modules without sharing any of their code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

MANIFEST_PATH = Path(__file__).with_name("data") / "scgan_official_state_dict.json"
NETWORKS = ("SCGAN", "SCGAN_val", "PatchDiscriminator70", "PerceptualNet")

#: Channel counts that are not widths (gray input, RGB output, gray+RGB, saliency): never scaled.
_FIXED_CHANNELS = {1, 3, 4}


def manifest() -> dict[str, dict[str, tuple[int, ...]]]:
    """Every tensor name and shape of the authors' networks at their published sizes."""
    raw = json.loads(MANIFEST_PATH.read_text())
    return {net: {name: tuple(shape) for name, shape in tensors.items()} for net, tensors in raw.items()}


def _scale(dim: int, divisor: int) -> int:
    if dim in _FIXED_CHANNELS:
        return dim
    if dim % divisor:
        raise ValueError(f"width {dim} is not divisible by {divisor}")
    return dim // divisor


def scaled_shapes(network: str, divisor: int = 1) -> dict[str, tuple[int, ...]]:
    """The manifest's names with every width divided by ``divisor``.

    ``divisor=8`` gives c=8, g=8, l=16: the published names at a size a CPU test can run.
    Kernel sizes are kept; ``weight_v`` follows its ``weight_bar`` (in_ch * k * k).
    """
    shapes = manifest()[network]
    if divisor == 1:
        return dict(shapes)
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in shapes.items():
        if name.endswith("weight_v"):
            continue  # filled in below, from its weight_bar
        if len(shape) == 4:
            out[name] = (_scale(shape[0], divisor), _scale(shape[1], divisor), *shape[2:])
        elif len(shape) == 1:
            out[name] = (_scale(shape[0], divisor),)
        else:
            out[name] = shape
    for name in shapes:
        if name.endswith("weight_v"):
            bar = out[name[: -len("weight_v")] + "weight_bar"]
            out[name] = (math.prod(bar[1:]),)
    return {name: out[name] for name in shapes}


def official_state_dict(network: str, divisor: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the manifest's names and (scaled) shapes.

    BN statistics are non-trivial (running_var positive), ``num_batches_tracked``
    is a long scalar, and ``weight_u``/``weight_v`` are unit vectors as the
    reference stores them after training.
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in scaled_shapes(network, divisor).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            state[name] = torch.tensor(1000 + len(state), dtype=torch.long)
        elif leaf == "running_var":
            state[name] = torch.rand(shape, generator=gen) * 1.5 + 0.5
        elif leaf == "running_mean":
            state[name] = torch.randn(shape, generator=gen) * 0.2
        elif leaf == "weight" and len(shape) == 1:  # BN gamma
            state[name] = 1.0 + torch.randn(shape, generator=gen) * 0.2
        elif leaf == "bias":
            state[name] = torch.randn(shape, generator=gen) * 0.1
        elif leaf in ("weight_u", "weight_v"):
            vec = torch.randn(shape, generator=gen)
            state[name] = vec / vec.norm()
        else:  # weight_bar, VGG conv weights
            state[name] = torch.randn(shape, generator=gen) * 0.05
    return state


# --------------------------------------------------------------------------------------
# Reference forward, from SCGAN.md: functional, float64, driven by tensor names.
# --------------------------------------------------------------------------------------

_EPS = 1e-12


def _sn_weight(sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """One power iteration from the stored u, exactly as the reference's SpectralNorm does."""
    w_bar = sd[f"{prefix}.weight_bar"].double()
    u = sd[f"{prefix}.weight_u"].double()
    w = w_bar.reshape(w_bar.shape[0], -1)
    v = w.t() @ u
    v = v / (v.norm() + _EPS)
    u = w @ v
    u = u / (u.norm() + _EPS)
    sigma = torch.dot(u, w @ v)
    return w_bar / sigma


def _conv_block(
    sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, stride: int = 1, *, bn: bool = True, act: str = "lrelu"
) -> torch.Tensor:
    """reflect pad (k-1)/2 -> bias-free SN conv -> eval BN (eps 1e-5) -> activation."""
    weight = _sn_weight(sd, f"{prefix}.conv2d.module")
    pad = (weight.shape[-1] - 1) // 2
    x = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, stride=stride)
    has_norm = f"{prefix}.norm.weight" in sd
    if has_norm != bn:
        raise AssertionError(f"{prefix}: BN expected={bn}, present in state dict={has_norm}")
    if bn:
        x = F.batch_norm(
            x,
            sd[f"{prefix}.norm.running_mean"].double(),
            sd[f"{prefix}.norm.running_var"].double(),
            sd[f"{prefix}.norm.weight"].double(),
            sd[f"{prefix}.norm.bias"].double(),
            training=False,
            eps=1e-5,
        )
    if act == "lrelu":
        return F.leaky_relu(x, 0.2)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    return x


def _up_block(sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling, then a conv block stored under ``<prefix>.conv2d``."""
    return _conv_block(sd, f"{prefix}.conv2d", F.interpolate(x, scale_factor=2, mode="nearest"))


_GLOBAL_LAYOUT = (
    ("conv1_1", 1),
    ("conv1_2", 2),
    ("conv2_1", 1),
    ("conv2_2", 2),
    ("conv3_1", 1),
    ("conv3_2", 1),
    ("conv3_3", 2),
    ("conv4_1", 1),
    ("conv4_2", 1),
    ("conv4_3", 2),
    ("conv5_1", 1),
    ("conv5_2", 1),
    ("conv5_3", 1),
    ("pool5", 2),
)


def reference_forward(sd: dict[str, torch.Tensor], gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SCGAN forward in float64: (rgb after tanh, saliency or None when the dict has no attention branch)."""
    x = gray.double()
    g = x
    for name, stride in _GLOBAL_LAYOUT:
        g = _conv_block(sd, f"global_feature_network.{name}", g, stride, bn=name != "conv1_1")

    d1 = _conv_block(sd, "down1", x, 1, bn=False)
    d2 = _conv_block(sd, "down2", d1, 2)
    d3 = _conv_block(sd, "down3", d2, 2)
    d4 = _conv_block(sd, "down4", d3, 2)
    d5 = _conv_block(sd, "down5", d4, 2)
    d6 = _conv_block(sd, "down6", d5, 2)
    d7 = _conv_block(sd, "down7", torch.cat((d6, g), 1), 2)
    d8 = _conv_block(sd, "down8", d7, 2)
    d9 = _conv_block(sd, "down9", d8, 2, bn=False)

    u1 = _up_block(sd, "up1", d9)
    u2 = _up_block(sd, "up2", torch.cat((d8, u1), 1))
    u3 = _up_block(sd, "up3", torch.cat((d7, u2), 1))
    u4 = _up_block(sd, "up4", torch.cat((d6, u3), 1))
    u5 = _up_block(sd, "up5", torch.cat((d5, u4), 1))
    u6 = _up_block(sd, "up6", torch.cat((d4, u5), 1))
    u7 = _up_block(sd, "up7", torch.cat((d3, u6), 1))
    u8 = _up_block(sd, "up8", torch.cat((d2, u7), 1))
    rgb = _conv_block(sd, "up9", torch.cat((d1, u8), 1), 1, bn=False, act="tanh")

    if "attention_prediction_network.final.conv2d.module.weight_bar" not in sd:
        return rgb, None
    a = "attention_prediction_network"
    s1 = _up_block(sd, f"{a}.conv12", _up_block(sd, f"{a}.conv11", u5))
    s2 = _up_block(sd, f"{a}.conv2", u6)
    s3 = _conv_block(sd, f"{a}.conv3", u7)
    s = _up_block(sd, f"{a}.conv4", torch.cat((s1, s2, s3), 1))
    saliency = _conv_block(sd, f"{a}.final", s, 1, bn=False, act="sigmoid")
    return rgb, saliency


__all__ = ["MANIFEST_PATH", "NETWORKS", "manifest", "official_state_dict", "reference_forward", "scaled_shapes"]
