"""Architecture configuration of the SCGAN generator: one frozen, typed record, validated by pydantic."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

PaddingMode = Literal["reflect", "replicate", "zeros"]
NormKind = Literal["bn", "in", "none"]
#: "scgan": the published VGG-style global network; "efficientnet-lite0": an ImageNet-trained Lite0 trunk.
GlobalNetKind = Literal["scgan", "efficientnet-lite0"]
GLOBAL_NETS: tuple[GlobalNetKind, ...] = get_args(GlobalNetKind)
#: "none": SCGAN's own U-Net (the published generator); else the pretrained trunk of an encoder U-Net
#: (:mod:`model.encoder_generator`).
EncoderKind = Literal["none", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
ENCODERS: tuple[EncoderKind, ...] = get_args(EncoderKind)
#: How an encoder generator predicts chroma: Cb/Cr regressed, or classes over quantized chroma.
ChromaHead = Literal["direct", "bins"]
#: Planes a hint-taking generator reads after the gray one: hint Cb, hint Cr, hint mask (:mod:`model.hints`).
HINT_PLANES = 3
#: A layer width: a positive integer (strictly an ``int``: ``True`` or ``1.5`` are rejected).
Channels = Annotated[int, Field(ge=1)]

#: SCGAN's generator halves its input eight times, so sides must be multiples of this (render sizes are).
SIZE_MULTIPLE = 256
#: An encoder generator takes any side of at least 32; multiples of its trunk's stride waste nothing.
ENCODER_SIZE_MULTIPLE = 32

#: Strict types (no ``"8"`` -> 8 or ``True`` -> 1), unknown keys rejected. Shared with configs that extend this one.
STRICT_CONFIG = ConfigDict(strict=True, extra="forbid")


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class GeneratorConfig:
    """Sizes of an SCGAN generator. The defaults are the published ones.

    ``global_channels`` is the width of the global feature network's first layer
    (64 in the paper); its later layers are 2x, 4x and 8x that, and the generator fuses
    8x that many global channels. ``global_net`` chooses that network: the published one
    (the default, and what the authors' checkpoints load as) or an EfficientNet-Lite0 trunk
    (:mod:`model.lite0_global`) whose features are projected to the same width.

    ``encoder`` other than "none" builds the encoder U-Net of :mod:`model.encoder_generator` instead:
    ``decoder_channels`` wide, predicting chroma as ``chroma_head`` says, taking colour hints when
    ``hints`` (SCGAN's own generator takes none); the SCGAN-only widths are then unused. A bad value
    raises :class:`pydantic.ValidationError` (a :class:`ValueError`).
    """

    in_channels: Channels = 1
    out_channels: Channels = 3
    start_channels: Channels = 64
    latent_channels: Channels = 128
    global_channels: Channels = 64
    padding: PaddingMode = "reflect"
    norm: NormKind = "bn"
    global_net: GlobalNetKind = "scgan"
    encoder: EncoderKind = "none"
    decoder_channels: Channels = 64
    chroma_head: ChromaHead = "direct"
    hints: bool = False

    def __post_init__(self) -> None:
        if self.encoder == "none" and (self.hints or self.chroma_head != "direct"):
            raise ValueError("hints and chroma_head='bins' need an encoder generator (encoder != 'none')")
        if self.encoder != "none" and (self.in_channels != 1 or self.out_channels != 3):
            raise ValueError("an encoder generator colorizes gray: in_channels=1 and out_channels=3")
        if self.decoder_channels % 8:
            raise ValueError(f"decoder_channels must be a multiple of 8, got {self.decoder_channels}")

    @property
    def input_channels(self) -> int:
        """Planes of the network's input: the image's, plus the hint planes of a hint-taking generator."""
        return self.in_channels + (HINT_PLANES if self.hints else 0)

    @property
    def size_multiple(self) -> int:
        """What the input's sides must be multiples of."""
        return SIZE_MULTIPLE if self.encoder == "none" else ENCODER_SIZE_MULTIPLE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Build from a mapping, rejecting unknown keys so typos fail loudly."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**data)


__all__ = [
    "ENCODERS",
    "ENCODER_SIZE_MULTIPLE",
    "GLOBAL_NETS",
    "HINT_PLANES",
    "ChromaHead",
    "EncoderKind",
    "STRICT_CONFIG",
    "SIZE_MULTIPLE",
    "Channels",
    "GeneratorConfig",
    "GlobalNetKind",
    "NormKind",
    "PaddingMode",
]
