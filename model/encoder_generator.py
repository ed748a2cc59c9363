"""A colour generator on a pretrained multi-scale encoder: ImageNet features at every scale of a light decoder.

``GeneratorConfig.encoder = "efficientnet-lite{0,1,2}"``. The gray input (replicated to RGB) runs through an
EfficientNet-Lite trunk whose stage outputs at strides 2, 4, 8, 16 and the head at 32 feed the skips of a
U-Net decoder (DeOldify's and DDColor's recipe for colour from little data). A shallow full-resolution branch
on the gray image keeps edges the stride-2 stem loses. The decoder predicts chroma at half resolution, as
Cb/Cr directly (``chroma_head = "direct"``) or as logits over quantized chroma decoded by the annealed mean
(``"bins"``, :mod:`model.chroma_bins`); it is upsampled and recombined with the input's luma inside the
RGB cube, so the output's luma is the input's.

With ``hints = True`` the input carries three more planes (:mod:`model.hints`): the Cb and Cr of user colour
hints where there are some, and their mask. The planes are pooled to every decoder scale, so a hint reaches
the region around it; a zero mask is a plain automatic colorization.

SCGAN's saliency branch is kept (``/saliency``): a small head on the decoder's strides 8, 4 and 2.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from model.chroma_bins import annealed_mean, bin_centres, num_bins
from model.color import chroma_offsets, combine_luma_chroma
from model.config import HINT_PLANES, GeneratorConfig
from model.efficientnet_lite import HEAD_CHANNELS, EfficientNetLite, normalize_input
from model.layers import ConvBlock

#: Trunk stages whose outputs feed the decoder (strides 2, 4, 8, 16), then the head (stride 32).
SKIP_STAGES: tuple[int, ...] = (0, 1, 2, 4)


def _up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upsampling of ``x`` to ``like``'s spatial size (odd sizes included)."""
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _pool_half(x: torch.Tensor) -> torch.Tensor:
    """2x2 mean pooling whose output side is ceil(side / 2), as the trunk's TF-"same" stride-2 convs give."""
    return F.avg_pool2d(x, 2, 2, ceil_mode=True)


def hint_pyramid(planes: torch.Tensor, levels: int) -> tuple[torch.Tensor, ...]:
    """Hint planes (Cb, Cr, mask) at strides 1, 2, 4, ...: at each scale the mean chroma of the hints under
    each cell (not diluted by the unhinted pixels around a small patch) and a mask of the cells holding one.
    """
    chroma_mass, mass = planes[:, :2], planes[:, 2:]
    out = [planes]
    for _ in range(levels - 1):
        chroma_mass, mass = _pool_half(chroma_mass), _pool_half(mass)
        held = (mass > 0).to(planes.dtype)
        out.append(torch.cat((chroma_mass / mass.clamp_min(1e-6) * held, held), 1))
    return tuple(out)


def rgb_from_chroma(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Luma + chroma -> RGB; inside the cube at inference, the unclipped sum while training (for gradients)."""
    if torch.is_grad_enabled():
        return chroma_offsets(chroma) + luma
    return combine_luma_chroma(luma, chroma)


class EncoderGenerator(nn.Module):
    """B x (1 [+3 hint planes]) x H x W gray in [0, 1] -> (B x 3 x H x W RGB, saliency or None). Any H, W >= 32."""

    def __init__(self, config: GeneratorConfig, *, with_saliency: bool = True, spectral_norm: bool = False) -> None:
        super().__init__()
        if config.encoder == "none":
            raise ValueError("EncoderGenerator needs GeneratorConfig.encoder set to an EfficientNet-Lite variant")
        self.config = config
        c = config.decoder_channels
        hp = HINT_PLANES if config.hints else 0
        conv = partial(ConvBlock, pad_mode=config.padding, norm=config.norm, spectral_norm=spectral_norm)
        variant = config.encoder.removeprefix("efficientnet-")
        self.trunk = EfficientNetLite(variant, with_classifier=False)  # type: ignore[arg-type]
        self.trunk.eval()
        skip = [self.trunk.stage_specs[i].out_channels for i in SKIP_STAGES]  # strides 2, 4, 8, 16
        self.skip_blocks = tuple(self.trunk.stage_end_blocks[i] for i in SKIP_STAGES)

        self.gray_branch = nn.Sequential(conv(1 + hp, c // 2, 3, 1, norm="none"), conv(c // 2, c // 2, 3, 2))
        self.top = conv(HEAD_CHANNELS + hp, 4 * c, 1, 1)
        self.dec16 = conv(4 * c + skip[3] + hp, 4 * c)
        self.dec8 = nn.Sequential(conv(4 * c + skip[2] + hp, 2 * c), conv(2 * c, 2 * c))
        self.dec4 = conv(2 * c + skip[1] + hp, c)
        self.dec2 = nn.Sequential(conv(c + skip[0] + c // 2 + hp, c // 2), conv(c // 2, c // 2))
        out = num_bins() if config.chroma_head == "bins" else 2
        # Never spectrally normalised: a unit-norm head bounds the logits and keeps the softmax from committing.
        self.head = ConvBlock(
            c // 2,
            out,
            1 if config.chroma_head == "bins" else 3,
            1,
            norm="none",
            activation="none",
            pad_mode=config.padding,
            spectral_norm=False,
        )
        if config.chroma_head == "bins":
            self.register_buffer("bin_centres", bin_centres(), persistent=False)
        if with_saliency:
            self.saliency_head = SaliencyHead(c, conv)

    @property
    def has_saliency(self) -> bool:
        return hasattr(self, "saliency_head")

    def train(self, mode: bool = True) -> EncoderGenerator:
        super().train(mode)
        self.trunk.eval()  # ImageNet BatchNorm statistics, frozen or fine-tuned
        return self

    def _check(self, x: torch.Tensor) -> None:
        expected = self.config.input_channels
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(f"expected input of shape B x {expected} x H x W, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"height and width must be at least 32, got {tuple(x.shape[-2:])}")

    def decode(self, x: torch.Tensor, return_saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(head output at H/2: chroma or bin logits, saliency at H or None)."""
        gray = x[:, :1]
        hints: list[torch.Tensor | None] = [None] * 6  # hint planes at strides 1, 2, 4, 8, 16, 32
        if self.config.hints:
            hints = list(hint_pyramid(x[:, 1:], 6))

        def cat(*parts: torch.Tensor | None) -> torch.Tensor:
            return torch.cat([p for p in parts if p is not None], 1)

        feats = self.trunk.stages(normalize_input(gray.expand(-1, 3, -1, -1)), (*self.skip_blocks, -1))
        s2, s4, s8, s16 = (feats[b] for b in self.skip_blocks)
        d = self.top(cat(feats[-1], hints[5]))  # 4c x H/32
        d16 = self.dec16(cat(_up_to(d, s16), s16, hints[4]))  # 4c x H/16
        d8 = self.dec8(cat(_up_to(d16, s8), s8, hints[3]))  # 2c x H/8
        d4 = self.dec4(cat(_up_to(d8, s4), s4, hints[2]))  # c x H/4
        g2 = self.gray_branch(cat(gray, hints[0]))  # c/2 x H/2
        d2 = self.dec2(cat(_up_to(d4, s2), s2, _up_to(g2, s2), hints[1]))  # c/2 x H/2
        saliency = self.saliency_head(d8, d4, d2, gray) if return_saliency else None
        return self.head(d2), saliency

    def chroma_of(self, head: torch.Tensor) -> torch.Tensor:
        """Head output at H/2 -> B x 2 x H/2 x W/2 chroma."""
        if self.config.chroma_head == "bins":
            return annealed_mean(head, self.get_buffer("bin_centres"))
        return head

    def forward(
        self, x: torch.Tensor, return_saliency: bool | None = None, *, return_head: bool = False
    ) -> tuple[torch.Tensor | None, ...]:
        """``(rgb, saliency or None)``, plus the half-resolution head output when ``return_head`` (training)."""
        if return_saliency is None:
            return_saliency = self.training and self.has_saliency
        if return_saliency and not self.has_saliency:
            raise ValueError("this generator was built without the saliency branch")
        self._check(x)
        head, saliency = self.decode(x, return_saliency)
        chroma = F.interpolate(self.chroma_of(head).float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        rgb = rgb_from_chroma(x[:, :1].float(), chroma)
        return (rgb, saliency, head) if return_head else (rgb, saliency)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference path: RGB only, the saliency branch is skipped."""
        rgb = self.forward(x, return_saliency=False)[0]
        assert rgb is not None
        return rgb


class SaliencyHead(nn.Module):
    """SCGAN's saliency branch, sized for this decoder: strides 8, 4, 2 -> B x 1 x H x W in [0, 1]."""

    def __init__(self, c: int, conv: partial[ConvBlock]) -> None:
        super().__init__()
        self.from8 = conv(2 * c, c // 4, 1, 1)
        self.from4 = conv(c, c // 4, 1, 1)
        self.from2 = conv(c // 2, c // 4, 1, 1)
        self.final = conv(3 * (c // 4), 1, 3, 1, norm="none", activation="sigmoid")

    def forward(self, d8: torch.Tensor, d4: torch.Tensor, d2: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        parts = (_up_to(self.from8(d8), d2), _up_to(self.from4(d4), d2), self.from2(d2))
        low = self.final(torch.cat(parts, 1))
        return F.interpolate(low, size=like.shape[-2:], mode="bilinear", align_corners=False)


__all__ = ["SKIP_STAGES", "EncoderGenerator", "SaliencyHead", "hint_pyramid", "rgb_from_chroma"]
