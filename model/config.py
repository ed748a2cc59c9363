"""Architecture configuration of the SCGAN generator: one frozen, typed record, validated by pydantic."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

PaddingMode = Literal["reflect", "replicate", "zeros"]
NormKind = Literal["bn", "in", "none"]
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
    (64 in the paper); its later layers are 2x, 4x and 8x that. A bad value
    raises :class:`pydantic.ValidationError` (a :class:`ValueError`).
    """

    in_channels: Channels = 1
    out_channels: Channels = 3
    start_channels: Channels = 64
    latent_channels: Channels = 128
    global_channels: Channels = 64
    padding: PaddingMode = "reflect"
    norm: NormKind = "bn"

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


__all__ = ["STRICT_CONFIG", "SIZE_MULTIPLE", "Channels", "GeneratorConfig", "NormKind", "PaddingMode"]
