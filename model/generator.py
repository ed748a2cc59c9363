"""The SCGAN generator: a U-Net with a global feature branch and a saliency branch.

Shapes below are for an input of B x C_in x H x W with H, W multiples of 256;
``c`` = start_channels, ``g`` = global_channels, ``l`` = latent_channels.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from model.config import SIZE_MULTIPLE, GeneratorConfig
from model.encoder_generator import EncoderGenerator
from model.layers import ConvBlock, UpBlock
from model.lite0_global import Lite0GlobalNetwork


class GlobalFeatureNetwork(nn.Module):
    """VGG-16-BN layout with stride-2 convolutions instead of pooling: C_in x H x W -> 8g x H/32 x W/32."""

    #: (name, in multiple of g, out multiple of g, stride); conv1_1 takes the input channels.
    LAYOUT: tuple[tuple[str, int, int, int], ...] = (
        ("conv1_1", 0, 1, 1),
        ("conv1_2", 1, 1, 2),
        ("conv2_1", 1, 2, 1),
        ("conv2_2", 2, 2, 2),
        ("conv3_1", 2, 4, 1),
        ("conv3_2", 4, 4, 1),
        ("conv3_3", 4, 4, 2),
        ("conv4_1", 4, 8, 1),
        ("conv4_2", 8, 8, 1),
        ("conv4_3", 8, 8, 2),
        ("conv5_1", 8, 8, 1),
        ("conv5_2", 8, 8, 1),
        ("conv5_3", 8, 8, 1),
        ("pool5", 8, 8, 2),
    )

    def __init__(self, config: GeneratorConfig, *, spectral_norm: bool = True) -> None:
        super().__init__()
        g = config.global_channels
        self.out_channels = 8 * g
        for name, mult_in, mult_out, stride in self.LAYOUT:
            in_ch = config.in_channels if mult_in == 0 else mult_in * g
            block = ConvBlock(
                in_ch,
                mult_out * g,
                3,
                stride,
                pad_mode=config.padding,
                norm="none" if name == "conv1_1" else config.norm,
                spectral_norm=spectral_norm,
            )
            self.add_module(name, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, *_ in self.LAYOUT:
            x = getattr(self, name)(x)
        return x


def build_global_network(
    config: GeneratorConfig, *, spectral_norm: bool = True
) -> GlobalFeatureNetwork | Lite0GlobalNetwork:
    """The global feature network ``config.global_net`` names: C_in x H x W -> 8g x H/32 x W/32."""
    if config.global_net == "efficientnet-lite0":
        return Lite0GlobalNetwork(config, spectral_norm=spectral_norm)
    return GlobalFeatureNetwork(config, spectral_norm=spectral_norm)


class AttentionPredictionNetwork(nn.Module):
    """Saliency branch fed by decoder features at H/8, H/4 and H/2; outputs B x 1 x H x W in [0, 1]."""

    def __init__(self, config: GeneratorConfig, *, spectral_norm: bool = True) -> None:
        super().__init__()
        c, lat = config.start_channels, config.latent_channels
        up = partial(UpBlock, pad_mode=config.padding, norm=config.norm, spectral_norm=spectral_norm)
        self.conv11 = up(8 * c, lat)
        self.conv12 = up(lat, lat)
        self.conv2 = up(4 * c, lat)
        self.conv3 = ConvBlock(2 * c, lat, 3, 1, pad_mode=config.padding, norm=config.norm, spectral_norm=spectral_norm)
        self.conv4 = up(3 * lat, lat)
        self.final = ConvBlock(
            lat, 1, 3, 1, pad_mode=config.padding, norm="none", activation="sigmoid", spectral_norm=spectral_norm
        )

    def forward(self, f8: torch.Tensor, f4: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        a = self.conv12(self.conv11(f8))  # l x H/2
        b = self.conv2(f4)  # l x H/2
        d = self.conv3(f2)  # l x H/2
        return self.final(self.conv4(torch.cat((a, b, d), 1)))  # 1 x H


class Generator(nn.Module):
    """SCGAN generator. ``forward`` returns ``(rgb, saliency)``; saliency is ``None`` when not asked for.

    ``rgb`` is the raw tanh output (the network is trained against RGB in [0, 1];
    clipping is the pipeline's job). By default saliency is computed in training
    mode only; :meth:`predict` is the inference path that never runs that branch.
    """

    def __init__(
        self,
        config: GeneratorConfig | None = None,
        *,
        with_saliency: bool = True,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        cfg = self.config
        if cfg.encoder != "none":
            raise ValueError(f"encoder={cfg.encoder!r} describes an EncoderGenerator: use build_generator()")
        c = cfg.start_channels
        down = partial(ConvBlock, pad_mode=cfg.padding, norm=cfg.norm, spectral_norm=spectral_norm)
        down_no_norm = partial(ConvBlock, pad_mode=cfg.padding, norm="none", spectral_norm=spectral_norm)
        up = partial(UpBlock, pad_mode=cfg.padding, norm=cfg.norm, spectral_norm=spectral_norm)

        self.global_feature_network = build_global_network(cfg, spectral_norm=spectral_norm)
        g_out = self.global_feature_network.out_channels
        if with_saliency:
            self.attention_prediction_network = AttentionPredictionNetwork(cfg, spectral_norm=spectral_norm)

        self.down1 = down_no_norm(cfg.in_channels, c, 7, 1)
        self.down2 = down(c, 2 * c, 3, 2)
        self.down3 = down(2 * c, 4 * c, 3, 2)
        self.down4 = down(4 * c, 8 * c, 3, 2)
        self.down5 = down(8 * c, 8 * c, 3, 2)
        self.down6 = down(8 * c, 8 * c, 3, 2)
        self.down7 = down(8 * c + g_out, 8 * c, 3, 2)
        self.down8 = down(8 * c, 8 * c, 3, 2)
        self.down9 = down_no_norm(8 * c, 8 * c, 3, 2)

        self.up1 = up(8 * c, 8 * c)
        self.up2 = up(16 * c, 8 * c)
        self.up3 = up(16 * c, 8 * c)
        self.up4 = up(16 * c, 8 * c)
        self.up5 = up(16 * c, 8 * c)
        self.up6 = up(16 * c, 4 * c)
        self.up7 = up(8 * c, 2 * c)
        self.up8 = up(4 * c, c)
        self.up9 = ConvBlock(
            2 * c,
            cfg.out_channels,
            3,
            1,
            pad_mode=cfg.padding,
            norm="none",
            activation="tanh",
            spectral_norm=spectral_norm,
        )

    @property
    def has_saliency(self) -> bool:
        return hasattr(self, "attention_prediction_network")

    def forward(self, x: torch.Tensor, return_saliency: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if return_saliency is None:
            # Auto: saliency in training mode, when there is a branch to compute it.
            return_saliency = self.training and self.has_saliency
        if return_saliency and not self.has_saliency:
            raise ValueError("this generator was built without the saliency branch")
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input of shape B x {self.config.in_channels} x H x W, got {tuple(x.shape)}")
        if x.shape[-2] % SIZE_MULTIPLE or x.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(f"height and width must be multiples of {SIZE_MULTIPLE}, got {tuple(x.shape[-2:])}")

        global_features = self.global_feature_network(x)  # 8g x H/32 (either global network)
        d1 = self.down1(x)  # c x H
        d2 = self.down2(d1)  # 2c x H/2
        d3 = self.down3(d2)  # 4c x H/4
        d4 = self.down4(d3)  # 8c x H/8
        d5 = self.down5(d4)  # 8c x H/16
        d6 = self.down6(d5)  # 8c x H/32
        d7 = self.down7(torch.cat((d6, global_features), 1))  # 8c x H/64
        d8 = self.down8(d7)  # 8c x H/128
        d9 = self.down9(d8)  # 8c x H/256
        u1 = self.up1(d9)  # 8c x H/128
        u2 = self.up2(torch.cat((d8, u1), 1))  # 8c x H/64
        u3 = self.up3(torch.cat((d7, u2), 1))  # 8c x H/32
        u4 = self.up4(torch.cat((d6, u3), 1))  # 8c x H/16
        u5 = self.up5(torch.cat((d5, u4), 1))  # 8c x H/8
        u6 = self.up6(torch.cat((d4, u5), 1))  # 4c x H/4
        u7 = self.up7(torch.cat((d3, u6), 1))  # 2c x H/2
        u8 = self.up8(torch.cat((d2, u7), 1))  # c x H
        rgb = self.up9(torch.cat((d1, u8), 1))  # 3 x H
        saliency = self.attention_prediction_network(u5, u6, u7) if return_saliency else None
        return rgb, saliency

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference path: RGB only, the saliency branch is skipped."""
        return self.forward(x, return_saliency=False)[0]


#: Either generator: SCGAN's (the published one) or the encoder U-Net; both take ``forward(x, return_saliency)``
#: and ``predict(x)`` and carry ``config`` and ``has_saliency``.
AnyGenerator = Generator | EncoderGenerator


def build_generator(config: GeneratorConfig, *, with_saliency: bool = True, spectral_norm: bool = True) -> AnyGenerator:
    """The generator ``config`` describes: SCGAN's when ``config.encoder`` is "none", else the encoder U-Net."""
    if config.encoder == "none":
        return Generator(config, with_saliency=with_saliency, spectral_norm=spectral_norm)
    return EncoderGenerator(config, with_saliency=with_saliency, spectral_norm=spectral_norm)


__all__ = [
    "AnyGenerator",
    "AttentionPredictionNetwork",
    "Generator",
    "GlobalFeatureNetwork",
    "build_generator",
    "build_global_network",
]
