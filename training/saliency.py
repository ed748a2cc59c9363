"""Classical saliency targets for training when no saliency maps are given.

Spectral residual saliency (Hou & Zhang, "Saliency Detection: A Spectral Residual
Approach", CVPR 2007): the log-amplitude spectrum of a small gray copy minus its
local (3 x 3) average keeps what is unexpected in the image; transformed back with
the original phase, squared and blurred, it marks the salient regions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

#: The method works on a small copy; 64 px is the paper's choice.
WORKING_SIDE = 64
BLUR_SIGMA = 2.5


def _box3(a: np.ndarray) -> np.ndarray:
    padded = np.pad(a, 1, mode="edge")
    windows = (padded[i : i + a.shape[0], j : j + a.shape[1]] for i in range(3) for j in range(3))
    return sum(windows, np.zeros_like(a)) / 9.0


def spectral_residual(gray: torch.Tensor) -> torch.Tensor:
    """1 x H x W luma in [0, 1] -> 1 x H x W saliency in [0, 1]."""
    h, w = gray.shape[-2:]
    small = (
        F.interpolate(
            gray[None].float(), size=(WORKING_SIDE, WORKING_SIDE), mode="bilinear", align_corners=False, antialias=True
        )[0, 0]
        .numpy()
        .astype(np.float64)
    )
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amplitude - _box3(log_amplitude)
    recon = np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))
    sal = torch.from_numpy((np.abs(recon) ** 2).astype(np.float32))[None]
    sal = gaussian_blur(sal[None], kernel_size=11, sigma=BLUR_SIGMA)[0]
    sal = sal - sal.min()
    peak = sal.max()
    sal = sal / peak if peak > 0 else sal
    return F.interpolate(sal[None], size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0.0, 1.0)


__all__ = ["spectral_residual"]
