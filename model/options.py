"""The settings users may ask of the model, without torch: the CLIs' ``--help`` and argument checks import this.

One source for the choices of ``--precision`` / ``SCGAN_PRECISION`` and the range of ``chroma_gain``.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: What a user may ask for: a precision, or ``auto`` (see :func:`model.device.resolve_precision`).
PrecisionSetting = Literal["auto", "fp32", "fp16", "bf16"]
PRECISION_SETTINGS: tuple[PrecisionSetting, ...] = get_args(PrecisionSetting)

#: The range of ``chroma_gain``: 0 gives the gray image, 1 the model's colours, 2 twice their saturation.
CHROMA_GAIN_MIN, CHROMA_GAIN_MAX = 0.0, 2.0


def check_chroma_gain(chroma_gain: float) -> float:
    """A vividness factor for the predicted chroma, in [0, 2]."""
    if (
        isinstance(chroma_gain, bool)
        or not isinstance(chroma_gain, int | float)
        or not (CHROMA_GAIN_MIN <= chroma_gain <= CHROMA_GAIN_MAX)
    ):
        raise ValueError(
            f"chroma_gain must be a number in [{CHROMA_GAIN_MIN:g}, {CHROMA_GAIN_MAX:g}], got {chroma_gain!r}"
        )
    return float(chroma_gain)


__all__ = [
    "CHROMA_GAIN_MAX",
    "CHROMA_GAIN_MIN",
    "PRECISIONS",
    "PRECISION_SETTINGS",
    "Precision",
    "PrecisionSetting",
    "check_chroma_gain",
]
