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
#: A layer width: a positive integer (strictly an ``int``: ``True`` or ``1.5`` are rejected).
Channels = Annotated[int, Field(ge=1)]

#: The generator halves its input eight times, so sides must be multiples of this.
SIZE_MULTIPLE = 256

#: Strict types (no ``"8"`` -> 8 or ``True`` -> 1), unknown keys rejected. Shared with configs that extend this one.
STRICT_CONFIG = ConfigDict(strict=True, extra="forbid")


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class GeneratorConfig:
    """Sizes of an SCGAN generator. The defaults are the published ones.

    ``global_channels`` is the width of the global feature network's first layer
    (64 in the paper); its later layers are 2x, 4x and 8x that, and the generator fuses
    8x that many global channels. ``global_net`` chooses that network: the published one
    (the default, and what the authors' checkpoints load as) or an EfficientNet-Lite0 trunk
    (:mod:`model.lite0_global`) whose features are projected to the same width. A bad value
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
    "GLOBAL_NETS",
    "STRICT_CONFIG",
    "SIZE_MULTIPLE",
    "Channels",
    "GeneratorConfig",
    "GlobalNetKind",
    "NormKind",
    "PaddingMode",
]
