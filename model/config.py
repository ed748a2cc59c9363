"""Architecture configuration of the SCGAN generator: one frozen, typed record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

PaddingMode = Literal["reflect", "replicate", "zeros"]
NormKind = Literal["bn", "in", "none"]
#: "scgan": the published VGG-style global network; "efficientnet-lite0": an ImageNet-trained Lite0 trunk.
GlobalNetKind = Literal["scgan", "efficientnet-lite0"]

_PADDINGS = ("reflect", "replicate", "zeros")
_NORMS = ("bn", "in", "none")
GLOBAL_NETS: tuple[str, ...] = ("scgan", "efficientnet-lite0")

#: The generator halves its input eight times, so sides must be multiples of this.
SIZE_MULTIPLE = 256


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    """Sizes of an SCGAN generator. The defaults are the published ones.

    ``global_channels`` is the width of the global feature network's first layer
    (64 in the paper); its later layers are 2x, 4x and 8x that, and the generator fuses
    8x that many global channels. ``global_net`` chooses that network: the published one
    (the default, and what the authors' checkpoints load as) or an EfficientNet-Lite0 trunk
    (:mod:`model.lite0_global`) whose features are projected to the same width.
    """

    in_channels: int = 1
    out_channels: int = 3
    start_channels: int = 64
    latent_channels: int = 128
    global_channels: int = 64
    padding: PaddingMode = "reflect"
    norm: NormKind = "bn"
    global_net: GlobalNetKind = "scgan"

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "start_channels", "latent_channels", "global_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GeneratorConfig.{name} must be a positive integer, got {value!r}")
        if self.padding not in _PADDINGS:
            raise ValueError(f"GeneratorConfig.padding must be one of {_PADDINGS}, got {self.padding!r}")
        if self.norm not in _NORMS:
            raise ValueError(f"GeneratorConfig.norm must be one of {_NORMS}, got {self.norm!r}")
        if self.global_net not in GLOBAL_NETS:
            raise ValueError(f"GeneratorConfig.global_net must be one of {GLOBAL_NETS}, got {self.global_net!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Build from a mapping, rejecting unknown keys so typos fail loudly."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown GeneratorConfig keys: {sorted(unknown)}")
        return cls(**data)


__all__ = ["GLOBAL_NETS", "GeneratorConfig", "GlobalNetKind", "NormKind", "PaddingMode", "SIZE_MULTIPLE"]
