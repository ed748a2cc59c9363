"""Run-time choice of device and numeric precision (never hard-coded CUDA)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from model.options import PRECISION_SETTINGS, PRECISIONS, Precision, PrecisionSetting

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available on this machine")
    return resolved


def check_precision(precision: str) -> Precision:
    """``precision`` as a :data:`Precision`, or a ValueError naming the choices."""
    for known in PRECISIONS:
        if precision == known:
            return known
    raise ValueError(f"precision must be one of {PRECISIONS} or 'auto', got {precision!r}")


def cpu_runs_bf16_natively() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 or AMX); emulated bf16 is slow."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """An explicit precision, or for ``"auto"`` the fastest one whose output stays within 40 dB PSNR of fp32.

    Chosen with ``benchmarks/model_forward.py`` (results in ``benchmarks/results/``): fp16
    autocast on CUDA; on CPU, bf16 autocast where the CPU runs bf16 natively, else fp32.
    """
    if precision != "auto":
        return check_precision(precision)
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_runs_bf16_natively():
        return "bf16"
    return "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed-precision autocast for fp16/bf16 on the given device; a no-op for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


__all__ = [
    "PRECISIONS",
    "PRECISION_SETTINGS",
    "Precision",
    "PrecisionSetting",
    "autocast",
    "check_precision",
    "cpu_runs_bf16_natively",
    "resolve_device",
    "resolve_precision",
]
