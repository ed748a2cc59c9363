"""The report of an evaluation: per-photo CSV, JSON summary, markdown report and the gray | colorized | original grid."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from training.evaluate import (
    COLORFULNESS_VARIANT,
    CSV_COLUMNS,
    NO_REFERENCE_METRICS,
    REFERENCE_METRICS,
    EvaluationResult,
    SampleRow,
)
from training.hue import ORIGINAL_MIN_CHROMA, OUTPUT_MIN_CHROMA

CSV_NAME, JSON_NAME, REPORT_NAME, GRID_NAME = "metrics.csv", "summary.json", "report.md", "grid.png"


def compose_grid(samples: Sequence[SampleRow], *, pad: int = 4) -> Image.Image:
    """gray | colorized | original, one photo per row, columns as wide as the widest tile."""
    if not samples:
        raise ValueError("no samples to draw")
    col = max(s.original.width for s in samples)
    header = 20
    heights = [max(s.original.height, s.gray.height, s.colorized.height) for s in samples]
    canvas = Image.new("RGB", (3 * col + 4 * pad, header + sum(heights) + (len(samples) + 1) * pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(("gray", "colorized", "original")):
        draw.text((pad + c * (col + pad) + 2, 4), label, fill="black")
    y = header + pad
    for s, h in zip(samples, heights):
        for c, tile in enumerate((s.gray, s.colorized, s.original)):
            x = pad + c * (col + pad) + (col - tile.width) // 2
            canvas.paste(tile, (x, y + (h - tile.height) // 2))
        y += h + pad
    return canvas


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _markdown(result: EvaluationResult, summary: dict[str, Any], grid: str | None) -> str:
    means, psnr, cci = summary["means"], summary["psnr"], summary["cci"]
    matched = summary["matched_colorfulness"]
    ckpt = summary["checkpoint"]
    lines = ["# Colorization evaluation", ""]
    if ckpt:
        lines.append(f"Checkpoint: `{ckpt['path']}` (sha256 `{ckpt['sha256'][:16]}…`)")
    lines += [
        f"Photos evaluated: {result.count}; skipped: {len(result.skipped)}. "
        f"Settings: {', '.join(f'{k}={v}' for k, v in result.settings.items())}.",
        "",
        "| metric | model | gray baseline | original |",
        "|---|---|---|---|",
    ]
    for key in REFERENCE_METRICS + NO_REFERENCE_METRICS:
        original = _fmt(means.get(f"{key}_original")) if key in NO_REFERENCE_METRICS else ""
        lines.append(f"| {key} | {_fmt(means[key])} | {_fmt(means[f'{key}_gray'])} | {original} |")
    lines += [
        "",
        f"PSNR vs gray: mean delta {_fmt(psnr['mean_delta_vs_gray'])} dB; worst "
        f"{_fmt(psnr['worst_delta_vs_gray'])} dB (`{psnr['worst_delta_image']}`).",
        f"Share of photos more than 3 dB below their gray: {_fmt(summary['below_gray']['share'])}.",
        f"Colourfulness ratio model/originals: {_fmt(summary['colorfulness']['ratio_model_to_original'])}.",
        f"At matched colourfulness (every output's chroma scaled by one k = {_fmt(matched['k'])} to "
        f"{_fmt(matched['target_ratio'])} of the originals' mean colourfulness): mean PSNR delta vs gray "
        f"{_fmt(matched['mean_psnr_delta_vs_gray'])} dB.",
        "Hue recall (of the pixels clearly that hue in the originals, chroma >= "
        f"{ORIGINAL_MIN_CHROMA:g}/255, the share painted that hue, chroma >= {OUTPUT_MIN_CHROMA:g}): "
        + ", ".join(f"{h} {_fmt(v, 3)}" for h, v in summary["hue_recall"]["recall"].items())
        + ".",
        f"CCI in the optimum range [{cci['optimum_range'][0]:g}, {cci['optimum_range'][1]:g}]: "
        f"model {_fmt(cci['optimum_share'])}, originals {_fmt(cci['optimum_share_original'])}.",
        "",
        "Definitions: PSNR with peak 255; MSE on the [0, 1] scale; NRMSE = ||a - b|| / ||a||; SSIM with a "
        "Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 255, averaged over RGB. "
        f"Colourfulness/CCI: {COLORFULNESS_VARIANT}. CNI: Huang, Wang & Wu 2006, in HSL as the SCGAN "
        "reference code. `cci_optimum` is the share of photos whose CCI lies in the optimum range.",
        "",
    ]
    if grid:
        lines += [f"![gray | colorized | original]({grid})", ""]
    if result.skipped:
        lines += ["## Skipped", ""] + [f"- `{n}`: {r}" for n, r in result.skipped] + [""]
    lines += [f"Per-photo scores: [{CSV_NAME}]({CSV_NAME}); summary: [{JSON_NAME}]({JSON_NAME}).", ""]
    return "\n".join(lines)


def write_report(result: EvaluationResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``metrics.csv``, ``summary.json``, ``report.md`` and (with samples) ``grid.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / CSV_NAME, "json": out / JSON_NAME, "report": out / REPORT_NAME}
    rows = [r.row() for r in result.images]
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
    summary = result.summary()
    paths["json"].write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    grid = None
    if result.samples:
        paths["grid"] = out / GRID_NAME
        compose_grid(result.samples).save(paths["grid"])
        grid = GRID_NAME
    paths["report"].write_text(_markdown(result, summary, grid), encoding="utf-8")
    return paths


__all__ = ["CSV_NAME", "GRID_NAME", "JSON_NAME", "REPORT_NAME", "compose_grid", "write_report"]
