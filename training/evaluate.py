"""Evaluate a colorizer on colour photos: gray in, colour out, compared with the originals.

Each photo is turned into its BT.601 gray version (:func:`model.color.rgb_to_gray`, rounded to
8 bits), colorized through :class:`model.Colorizer` exactly as the service does (batched), and
scored against the original with :mod:`training.metrics`. The gray image itself (as RGB with
R = G = B = luma) is scored the same way as the baseline a colorizer has to beat.

* :func:`evaluate` returns an :class:`EvaluationResult` and writes nothing;
* :func:`evaluate_images` is the quick in-memory hook for validation during training
  (flat ``dict[str, float]``: ``psnr``, ``psnr_delta``, ``colorfulness_ratio``, ...);
* :func:`write_report` writes ``metrics.csv``, ``summary.json``, ``report.md`` and ``grid.png``.

Photos that are already gray (every pixel R = G = B) are skipped: there is nothing to colorize
and the gray baseline would score an infinite PSNR. Metrics are computed at the photo's own
resolution (after the optional ``max_side`` downscale), not at the paper's 256 x 256, so
numbers are not directly comparable with the paper's table.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from model.checkpoint import CheckpointInfo
from model.color import rgb_to_gray
from model.images import load_rgb
from model.pipeline import Colorizer
from training.hint_sim import sample_hints
from training.hue import HUES, ORIGINAL_MIN_CHROMA, OUTPUT_MIN_CHROMA, hue_counts, hue_recall
from training.metrics import CCI_OPTIMUM, image_scores, no_reference_scores
from training.vividness import MatchedColorfulness, matched_colorfulness

log = logging.getLogger("scgan.evaluate")

ImageInput = str | os.PathLike[str] | Image.Image

#: Reference-based metrics, scored for the model and for the gray baseline.
REFERENCE_METRICS = ("psnr", "ssim", "mse", "nrmse")
#: No-reference metrics, scored for the model, the gray baseline and the original.
NO_REFERENCE_METRICS = ("colorfulness", "cci_optimum", "cni")
COLORFULNESS_VARIANT = (
    "Hasler & Süsstrunk 2003, signed rg = R - G and yb = (R + G) / 2 - B on 0..255: "
    "M = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2); "
    "CCI is this M, as in the SCGAN reference evaluation code"
)
TILE_HEIGHT = 192


def _csv_columns() -> list[str]:
    columns = ["name", "width", "height"]
    for key in REFERENCE_METRICS + NO_REFERENCE_METRICS:
        columns += [key, f"{key}_gray"]
        if key in NO_REFERENCE_METRICS:
            columns.append(f"{key}_original")
        if key == "psnr":
            columns.append("psnr_delta")
    return columns


#: metrics.csv columns: ``name, width, height, psnr, psnr_gray, psnr_delta, ssim, ssim_gray, ...``
CSV_COLUMNS: tuple[str, ...] = tuple(_csv_columns())


@dataclass(frozen=True)
class ImageResult:
    """Scores of one photo: the model's and the gray baseline's against the original, and the original's own."""

    name: str
    width: int
    height: int
    model: dict[str, float]
    gray: dict[str, float]
    original: dict[str, float]
    #: Per hue: (pixels clearly that hue in the original, those the output paints that hue) (training.hue).
    hues: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def psnr_delta(self) -> float:
        """Model PSNR minus gray-baseline PSNR, in dB (positive: the colours help)."""
        return self.model["psnr"] - self.gray["psnr"]

    def row(self) -> dict[str, Any]:
        """One CSV row: ``psnr``, ``psnr_gray``, ..., ``colorfulness_original``, ..."""
        values: dict[str, Any] = {"name": self.name, "width": self.width, "height": self.height}
        values["psnr_delta"] = self.psnr_delta
        for key in REFERENCE_METRICS + NO_REFERENCE_METRICS:
            values[key] = self.model[key]
            values[f"{key}_gray"] = self.gray[key]
            if key in NO_REFERENCE_METRICS:
                values[f"{key}_original"] = self.original[key]
        return {column: values[column] for column in CSV_COLUMNS}


@dataclass(frozen=True)
class SampleRow:
    """Thumbnails (``TILE_HEIGHT`` high) of one photo for the report's grid."""

    name: str
    gray: Image.Image
    colorized: Image.Image
    original: Image.Image


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


@dataclass(frozen=True)
class EvaluationResult:
    """Per-photo scores, skipped inputs and grid samples of one evaluation run."""

    images: tuple[ImageResult, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (name, reason)
    samples: tuple[SampleRow, ...] = ()
    checkpoint: CheckpointInfo | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    matched: MatchedColorfulness | None = None  # PSNR at matched colourfulness (training.vividness)

    @property
    def count(self) -> int:
        return len(self.images)

    def mean(self, key: str, source: str = "model") -> float:
        """Mean of one metric over the photos; ``source`` is ``model``, ``gray`` or ``original``; NaN when empty."""
        return _mean([getattr(r, source)[key] for r in self.images])

    @property
    def psnr_delta(self) -> float:
        """Mean over photos of (model PSNR - gray PSNR), dB."""
        return _mean([r.psnr_delta for r in self.images])

    @property
    def worst_psnr_delta(self) -> tuple[float, str | None]:
        """The smallest per-photo PSNR delta vs gray and the photo it belongs to."""
        if not self.images:
            return math.nan, None
        worst = min(self.images, key=lambda r: r.psnr_delta)
        return worst.psnr_delta, worst.name

    def share_below_gray(self, margin_db: float = 3.0) -> float:
        """Share of photos whose PSNR is more than ``margin_db`` below their own gray image's."""
        return _mean([float(r.psnr_delta < -margin_db) for r in self.images])

    @property
    def colorfulness_ratio(self) -> float:
        """Mean model colourfulness / mean colourfulness of the originals (NaN when the originals have none)."""
        original = self.mean("colorfulness", "original")
        return self.mean("colorfulness") / original if original > 0 else math.nan

    @property
    def hue_recall(self) -> dict[str, float]:
        """Per hue, the pooled share of clearly-that-hue original pixels the outputs paint that hue."""
        return hue_recall(r.hues for r in self.images)

    def validation_metrics(self) -> dict[str, float]:
        """Flat means for a training log (higher is better for ``psnr_delta``, ``ssim``, ``cni``)."""
        return {
            **{f"hue_recall_{name}": value for name, value in self.hue_recall.items()},
            "psnr": self.mean("psnr"),
            "psnr_gray": self.mean("psnr", "gray"),
            "psnr_delta": self.psnr_delta,
            "worst_psnr_delta": self.worst_psnr_delta[0],
            "ssim": self.mean("ssim"),
            "colorfulness": self.mean("colorfulness"),
            "colorfulness_ratio": self.colorfulness_ratio,
            "cci_optimum_share": self.mean("cci_optimum"),
            "cni": self.mean("cni"),
            "psnr_delta_matched": self.psnr_delta_matched,
            "matched_k": self.matched.k if self.matched else math.nan,
            "share_3db_below_gray": self.share_below_gray(3.0),
            "count": float(self.count),
        }

    @property
    def psnr_delta_matched(self) -> float:
        """Mean PSNR gain over gray with every output's chroma scaled to 60% of the originals' colourfulness."""
        return self.matched.psnr_delta if self.matched else math.nan

    def summary(self) -> dict[str, Any]:
        """The JSON summary: means, PSNR deltas, colourfulness, CCI optimum share, checkpoint, settings."""
        means: dict[str, float] = {}
        for key in REFERENCE_METRICS + NO_REFERENCE_METRICS:
            means[key] = self.mean(key)
            means[f"{key}_gray"] = self.mean(key, "gray")
            if key in NO_REFERENCE_METRICS:
                means[f"{key}_original"] = self.mean(key, "original")
        worst, worst_name = self.worst_psnr_delta
        info = self.checkpoint
        return _finite_or_none(
            {
                "count": self.count,
                "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
                "checkpoint": None
                if info is None
                else {
                    "path": info.path,
                    "sha256": info.sha256,
                    "source_format": info.source_format,
                    "task": info.task.value,
                    "working_resolution": info.working_resolution,
                },
                "settings": self.settings,
                "means": means,
                "psnr": {
                    "mean": self.mean("psnr"),
                    "mean_gray": self.mean("psnr", "gray"),
                    "mean_delta_vs_gray": self.psnr_delta,
                    "worst_delta_vs_gray": worst,
                    "worst_delta_image": worst_name,
                },
                "below_gray": {"margin_db": 3.0, "share": self.share_below_gray(3.0)},
                "hue_recall": {
                    "original_min_chroma": ORIGINAL_MIN_CHROMA,
                    "output_min_chroma": OUTPUT_MIN_CHROMA,
                    "recall": self.hue_recall,
                    "original_pixels": {h: sum(r.hues.get(h, (0, 0))[0] for r in self.images) for h in HUES},
                },
                "colorfulness": {
                    "variant": COLORFULNESS_VARIANT,
                    "mean": self.mean("colorfulness"),
                    "mean_original": self.mean("colorfulness", "original"),
                    "ratio_model_to_original": self.colorfulness_ratio,
                },
                "matched_colorfulness": {
                    "target_ratio": self.matched.target_ratio if self.matched else None,
                    "k": self.matched.k if self.matched else None,
                    "mean_psnr_delta_vs_gray": self.psnr_delta_matched,
                },
                "cci": {
                    "optimum_range": list(CCI_OPTIMUM),
                    "optimum_share": self.mean("cci_optimum"),
                    "optimum_share_gray": self.mean("cci_optimum", "gray"),
                    "optimum_share_original": self.mean("cci_optimum", "original"),
                },
                "cni": {
                    "mean": self.mean("cni"),
                    "mean_gray": self.mean("cni", "gray"),
                    "mean_original": self.mean("cni", "original"),
                },
            }
        )


def _finite_or_none(value: Any) -> Any:
    """Strict JSON has no inf/NaN: map them to null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


# -- evaluation -----------------------------------------------------------------------------


def to_gray(rgb: Image.Image) -> Image.Image:
    """8-bit BT.601 luma of an RGB image, as the ``L`` image a user would upload."""
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)  # 3 x H x W
    luma = rgb_to_gray(pixels)[0]  # H x W
    return Image.fromarray((luma.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy(), "L")


def _name_of(item: ImageInput, index: int) -> str:
    if isinstance(item, Image.Image):
        return Path(getattr(item, "filename", "") or "").name or f"image-{index:05d}"
    return str(item)


def _tile(image: Image.Image, height: int = TILE_HEIGHT) -> Image.Image:
    """Scale to ``height`` pixels high (width capped at twice that for panoramas)."""
    width = max(1, round(image.width * height / image.height))
    if width > 2 * height:
        width, height = 2 * height, max(1, round(image.height * 2 * height / image.width))
    return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def _sample_indices(n: int, k: int) -> set[int]:
    if k <= 0 or n == 0:
        return set()
    if k >= n:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, k)}


def evaluate(
    colorizer: Colorizer,
    inputs: Sequence[ImageInput],
    *,
    names: Sequence[str] | None = None,
    max_side: int | None = None,
    limit: int | None = None,
    sample: int = 0,
    render_size: int | None = None,
    progress: bool = False,
    hints: int = 0,
    hint_seed: int = 0,
) -> EvaluationResult:
    """Colorize the gray versions of ``inputs`` (paths or PIL images) and score them; writes no files.

    ``names`` label the inputs in the results (default: the path, or the PIL image's file name).
    ``max_side`` downscales originals first; ``limit`` keeps the first N inputs; ``sample``
    keeps thumbnails of up to N evenly spaced photos for :func:`write_report`. Unreadable and
    already-gray inputs are skipped with a warning and listed in ``EvaluationResult.skipped``.
    ``hints`` > 0 gives a hint-taking checkpoint that many seeded random colour hints per photo, each the
    mean colour of the original's 5 x 5 patch there (:func:`training.hint_sim.sample_hints`).
    """
    if hints < 0:
        raise ValueError(f"hints must be >= 0, got {hints}")
    if hints and not colorizer.takes_hints:
        raise ValueError("this checkpoint takes no colour hints")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if names is not None and len(names) != len(inputs):
        raise ValueError(f"got {len(names)} names for {len(inputs)} inputs")
    items = list(inputs)[:limit] if limit is not None else list(inputs)
    labels = [names[i] if names is not None else _name_of(item, i) for i, item in enumerate(items)]
    keep = _sample_indices(len(items), sample)
    results: list[ImageResult] = []
    skipped: list[tuple[str, str]] = []
    samples: list[SampleRow] = []
    # 8-bit (original, output, gray) per photo for the matched-colourfulness metric: 9 bytes a pixel.
    pixels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    step = colorizer.batch_size
    for start in tqdm(range(0, len(items), step), desc="evaluating", unit="batch", disable=not progress):
        batch: list[tuple[int, Image.Image, Image.Image]] = []  # (index, original, gray)
        for index in range(start, min(start + step, len(items))):
            try:
                original = load_rgb(items[index], max_side)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
                log.warning("skipping %s: %s", labels[index], exc)
                skipped.append((labels[index], f"unreadable: {exc}"))
                continue
            gray = to_gray(original)
            if np.array_equal(np.asarray(gray.convert("RGB")), np.asarray(original)):
                log.warning("skipping %s: already grayscale, nothing to colorize", labels[index])
                skipped.append((labels[index], "already grayscale"))
                continue
            batch.append((index, original, gray))
        if not batch:
            continue
        hint_lists = (
            [sample_hints(original, hints, seed=hint_seed * 1_000_003 + index) for index, original, _ in batch]
            if hints
            else None
        )
        colorized = [
            color
            for color, _ in colorizer.colorize_with_saliency([g for _, _, g in batch], render_size, hints=hint_lists)
        ]
        for (index, original, gray), colored in zip(batch, colorized):
            gray_rgb = gray.convert("RGB")
            colored = colored.convert("RGB")
            results.append(
                ImageResult(
                    name=labels[index],
                    width=original.width,
                    height=original.height,
                    model=image_scores(original, colored),
                    gray=image_scores(original, gray_rgb),
                    original=no_reference_scores(original),
                    hues=hue_counts(np.asarray(original), np.asarray(colored)),
                )
            )
            pixels.append((np.asarray(original), np.asarray(colored), np.asarray(gray_rgb)))
            if index in keep:
                samples.append(SampleRow(labels[index], _tile(gray_rgb), _tile(colored), _tile(original)))
    settings = {
        "render_size": render_size or colorizer.render_size,
        "device": str(colorizer.device),
        "precision": colorizer.precision,
        "batch_size": colorizer.batch_size,
        "max_side": max_side,
        "limit": limit,
        "hints": hints,
    }
    matched = matched_colorfulness(*zip(*pixels)) if pixels else None
    return EvaluationResult(
        images=tuple(results),
        skipped=tuple(skipped),
        samples=tuple(samples),
        checkpoint=colorizer.checkpoint_info,
        settings=settings,
        matched=matched,
    )


def evaluate_images(
    colorizer: Colorizer, images: Sequence[Image.Image], *, max_side: int | None = None
) -> dict[str, float]:
    """In-memory validation: :meth:`EvaluationResult.validation_metrics` of :func:`evaluate` on PIL images."""
    return evaluate(colorizer, images, max_side=max_side).validation_metrics()


__all__ = [
    "CSV_COLUMNS",
    "EvaluationResult",
    "ImageResult",
    "SampleRow",
    "evaluate",
    "evaluate_images",
    "to_gray",
]
