"""Image-quality metrics for colorization, on 8-bit RGB (``H x W x 3``, values on the 0..255 scale).

Reference-based (original vs candidate), as in the SCGAN paper's evaluation:

* :func:`mse`: mean squared error on the **[0, 1] scale**, ``mean(((a - b) / 255) ** 2)``.
* :func:`psnr`: ``20 * log10(255 / RMSE)`` with RMSE on the 0..255 scale (data range 255);
  ``math.inf`` for identical images (no cap).
* :func:`nrmse`: ``||a - b||_2 / ||a||_2`` (Euclidean normalisation, the default of
  scikit-image's ``normalized_root_mse`` that the reference evaluation calls); 0 for identical images.
* :func:`ssim`: Wang, Bovik, Sheikh, Simoncelli (2004), "Image quality assessment: from error
  visibility to structural similarity": Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03,
  data range 255, population (not sample) covariances, mean over the "valid" region of every
  channel (the per-channel SSIM maps are averaged, as scikit-image does for RGB).

No-reference:

* :func:`colorfulness`: Hasler and Süsstrunk (2003), "Measuring colourfulness in natural images",
  with **signed** opponent channels ``rg = R - G``, ``yb = (R + G) / 2 - B`` on 0..255 values:
  ``M = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)``. (DDColor's "colorfulness"
  uses ``|rg|`` and ``|yb|``; pass ``absolute=True`` for that variant.)
* :func:`cci`: the paper's colour colourfulness index. The paper takes CCI and CNI from Huang, Wang
  and Wu (2006, below), who build CCI on Yendrikhovskij, Blommaert and de Ridder (1998), "Optimizing
  color reproduction of natural images" (a colourfulness index from the saturation statistics of
  the image's CIELUV colour distribution, as we read it) and its "optimum range" [16, 20]. The
  authors' evaluation code (zhaoyuzhi/Semantic-Colorization-GAN, ``evaluation/indexes_CCI.py``)
  computes Hasler and Süsstrunk's signed ``M`` instead. We follow the reference implementation, so
  ``cci == colorfulness`` and :func:`in_cci_optimum` tests ``16 <= M <= 20``.
* :func:`cni`: colour naturalness index of Huang, Wang and Wu (2006), "Natural color image
  enhancement and evaluation algorithm based on human visual system" (CVIU 103(1)). Pixels with
  saturation > 0.1 and lightness in (0.2, 0.8) are classed by hue as skin [25, 70] deg, grass
  [95, 135] deg or sky [185, 260] deg; each class's mean saturation ``S`` gives
  ``N = exp(-0.5 * ((S - mu) / sigma) ** 2)`` with (mu, sigma) = (0.76, 0.52), (0.81, 0.53),
  (0.43, 0.22); CNI is the pixel-count-weighted mean of the three, and 0 when no pixel qualifies
  (e.g. a gray image). The paper derives lightness, hue and saturation from CIELUV (lightness
  thresholds 20 and 80 on L*'s 0..100 scale); the reference implementation uses HSL instead
  (lightness and saturation in [0, 1], thresholds 0.2 and 0.8), and we follow the reference.

Luma for gray baselines comes from :mod:`model.color` (the one colour module), never re-derived here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: Pixel values are 8-bit: the peak value for PSNR and the data range for SSIM.
DATA_RANGE = 255.0
#: SSIM constants (Wang et al. 2004).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: CCI values in this closed range count as the "optimum range" (Yendrikhovskij et al. 1998, via the paper).
CCI_OPTIMUM: tuple[float, float] = (16.0, 20.0)

# CNI (Huang, Wang, Wu 2006): hue ranges in degrees (inclusive), and the (mean, std) of the
# natural saturation of each class.
_CNI_CLASSES: tuple[tuple[float, float, float, float], ...] = (
    (25.0, 70.0, 0.76, 0.52),  # skin
    (95.0, 135.0, 0.81, 0.53),  # grass
    (185.0, 260.0, 0.43, 0.22),  # sky
)
_CNI_MIN_SATURATION = 0.1
_CNI_LIGHTNESS = (0.2, 0.8)  # exclusive
_CNI_ROWS_PER_CHUNK = 512  # bounds the float64 temporaries on large photos


def _as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """PIL image or array -> ``H x W x C`` array on the 0..255 scale: uint8 kept as is, anything else float64."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB") if image.mode not in ("RGB", "L") else image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {arr.shape}")
    return arr


def _as_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """PIL image or array -> float64 ``H x W x 3`` on the 0..255 scale."""
    arr = _as_array(image).astype(np.float64, copy=False)
    if arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H x W x 3), got shape {arr.shape}")
    return arr


def _pair(reference: np.ndarray | Image.Image, test: np.ndarray | Image.Image) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_array(reference), _as_array(test)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("images are empty")
    return a, b


def _sum_squares(x: np.ndarray) -> float:
    """Sum of squares; exact (integer arithmetic) for 8-bit differences."""
    if x.dtype.kind == "i":
        return float(np.square(x.astype(np.int32)).sum(dtype=np.int64))
    return float(np.square(x, dtype=np.float64).sum())


def _mse255(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference on the 0..255 scale."""
    diff: np.ndarray
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        diff = a.astype(np.int16) - b.astype(np.int16)
    else:
        diff = a.astype(np.float64) - b.astype(np.float64)
    return _sum_squares(diff) / diff.size


# -- reference-based ------------------------------------------------------------------


def mse(reference: np.ndarray | Image.Image, test: np.ndarray | Image.Image) -> float:
    """Mean squared error on the [0, 1] scale (8-bit inputs divided by 255)."""
    a, b = _pair(reference, test)
    return _mse255(a, b) / (DATA_RANGE * DATA_RANGE)


def psnr(reference: np.ndarray | Image.Image, test: np.ndarray | Image.Image) -> float:
    """Peak signal-to-noise ratio in dB, peak 255; ``math.inf`` when the images are identical."""
    a, b = _pair(reference, test)
    err = _mse255(a, b)
    if err == 0.0:
        return math.inf
    return 20.0 * math.log10(DATA_RANGE / math.sqrt(err))


def nrmse(reference: np.ndarray | Image.Image, test: np.ndarray | Image.Image) -> float:
    """``||reference - test|| / ||reference||`` (Euclidean); ``inf`` if the reference is all zeros and they differ."""
    a, b = _pair(reference, test)
    num = math.sqrt(_mse255(a, b))
    den = math.sqrt(_sum_squares(a.astype(np.int16) if a.dtype == np.uint8 else a) / a.size)
    if num == 0.0:
        return 0.0
    return num / den if den > 0.0 else math.inf


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    w = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def ssim(
    reference: np.ndarray | Image.Image,
    test: np.ndarray | Image.Image,
    *,
    data_range: float = DATA_RANGE,
) -> float:
    """Mean SSIM (Gaussian 11 x 11, sigma 1.5, K1 0.01, K2 0.03), averaged over channels.

    Images whose short side is under 11 pixels use the largest odd window that fits. The local
    moments are filtered in float32 (several times faster than float64 on a CPU) from values
    centred on the pair's mean, which keeps the result within a few 1e-6 of a float64
    computation; identical images still score exactly 1 and ``ssim(a, b) == ssim(b, a)``.
    """
    a, b = _pair(reference, test)
    height, width = a.shape[:2]
    size = min(SSIM_WINDOW, height if height % 2 else height - 1, width if width % 2 else width - 1)
    if size < 1:
        raise ValueError(f"image of {width} x {height} pixels is too small for SSIM")
    g = _gaussian_window(size, SSIM_SIGMA).float()
    kh = g.view(1, 1, size, 1).expand(5, 1, size, 1)
    kw = g.view(1, 1, 1, size).expand(5, 1, 1, size)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    total = 0.0
    for ch in range(a.shape[2]):  # one channel at a time bounds memory on large photos
        offset = 0.5 * (float(a[..., ch].mean(dtype=np.float64)) + float(b[..., ch].mean(dtype=np.float64)))
        x = torch.from_numpy(np.asarray(a[..., ch], dtype=np.float32)) - offset  # H x W, centred
        y = torch.from_numpy(np.asarray(b[..., ch], dtype=np.float32)) - offset
        maps = torch.stack((x, y, x * x, y * y, x * y))[None]  # 1 x 5 x H x W
        maps = F.conv2d(F.conv2d(maps, kh, groups=5), kw, groups=5)  # 1 x 5 x (H - size + 1) x (W - size + 1)
        m_x, m_y, exx, eyy, exy = maps[0]
        var_x = exx - m_x * m_x
        var_y = eyy - m_y * m_y
        cov = exy - m_x * m_y
        mu_x, mu_y = m_x + offset, m_y + offset
        num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
        den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
        total += float((num / den).double().mean())
    return total / a.shape[2]


# -- no-reference ------------------------------------------------------------------------


def colorfulness(image: np.ndarray | Image.Image, *, absolute: bool = False) -> float:
    """Hasler–Süsstrunk colourfulness ``M`` on 0..255 values (signed ``rg``/``yb``; ``absolute=True``: DDColor's)."""
    rgb = _as_rgb(image)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    if absolute:
        rg, yb = np.abs(rg), np.abs(yb)
    spread = math.sqrt(float(np.std(rg)) ** 2 + float(np.std(yb)) ** 2)
    offset = math.sqrt(float(np.mean(rg)) ** 2 + float(np.mean(yb)) ** 2)
    return spread + 0.3 * offset


def cci(image: np.ndarray | Image.Image) -> float:
    """The paper's colour colourfulness index; per the reference implementation, Hasler–Süsstrunk's signed ``M``."""
    return colorfulness(image)


def in_cci_optimum(value: float) -> bool:
    """Whether a CCI value lies in the "optimum range" [16, 20]."""
    low, high = CCI_OPTIMUM
    return low <= value <= high


def _hsl(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``... x 3`` RGB on 0..255 -> hue in degrees [0, 360), saturation and lightness in [0, 1] (HSL)."""
    x = rgb / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    cmax = x.max(axis=-1)
    cmin = x.min(axis=-1)
    delta = cmax - cmin
    lightness = (cmax + cmin) / 2.0
    chromatic = delta > 0.0
    safe = np.where(chromatic, delta, 1.0)
    hue = np.where(
        cmax == r,
        (60.0 * (g - b) / safe + 360.0) % 360.0,
        np.where(cmax == g, (60.0 * (b - r) / safe + 120.0) % 360.0, (60.0 * (r - g) / safe + 240.0) % 360.0),
    )
    hue = np.where(chromatic, hue, 0.0)
    room = 1.0 - np.abs(2.0 * lightness - 1.0)
    saturation = np.where(chromatic & (room > 0.0), delta / np.where(room > 0.0, room, 1.0), 0.0)
    return hue, saturation, lightness


def cni(image: np.ndarray | Image.Image) -> float:
    """Colour naturalness index in [0, 1] (Huang, Wang, Wu 2006, in HSL as the reference implementation)."""
    rgb = _as_rgb(image)
    counts = [0] * len(_CNI_CLASSES)
    sums = [0.0] * len(_CNI_CLASSES)
    for start in range(0, rgb.shape[0], _CNI_ROWS_PER_CHUNK):
        hue, sat, light = _hsl(rgb[start : start + _CNI_ROWS_PER_CHUNK])
        usable = (sat > _CNI_MIN_SATURATION) & (light > _CNI_LIGHTNESS[0]) & (light < _CNI_LIGHTNESS[1])
        for k, (lo, hi, _, _) in enumerate(_CNI_CLASSES):
            member = usable & (hue >= lo) & (hue <= hi)
            counts[k] += int(member.sum())
            sums[k] += float(sat[member].sum())
    total = sum(counts)
    if total == 0:
        return 0.0
    weighted = 0.0
    for (_, _, mu, sigma), n, s in zip(_CNI_CLASSES, counts, sums):
        if n:
            weighted += n * math.exp(-0.5 * ((s / n - mu) / sigma) ** 2)
    return weighted / total


# -- all at once ---------------------------------------------------------------------------


def no_reference_scores(image: np.ndarray | Image.Image) -> dict[str, float]:
    """``colorfulness`` (= CCI), ``cci_optimum`` (1.0 inside [16, 20], else 0.0) and ``cni`` of one image."""
    rgb = _as_rgb(image)
    m = colorfulness(rgb)
    return {"colorfulness": m, "cci_optimum": float(in_cci_optimum(m)), "cni": cni(rgb)}


def image_scores(reference: np.ndarray | Image.Image, test: np.ndarray | Image.Image) -> dict[str, float]:
    """Every metric of ``test`` against ``reference``: psnr, ssim, mse, nrmse, colorfulness, cci_optimum, cni."""
    a, b = _pair(reference, test)
    return {
        "psnr": psnr(a, b),
        "ssim": ssim(a, b),
        "mse": mse(a, b),
        "nrmse": nrmse(a, b),
        **no_reference_scores(b),
    }


__all__ = [
    "CCI_OPTIMUM",
    "DATA_RANGE",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "cci",
    "cni",
    "colorfulness",
    "image_scores",
    "in_cci_optimum",
    "mse",
    "no_reference_scores",
    "nrmse",
    "psnr",
    "ssim",
]
