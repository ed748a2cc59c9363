"""A decoding knob of a bins-head checkpoint swept on the validation photos: what the decoding studies share.

``prior_correction.py`` (tau) and ``decode_temperature.py`` (T, and the chroma gain) set the decoding with
:func:`set_decoding`, score each value with ``scgan-eval``'s evaluation (:func:`sweep`), choose by the same rule
fixed in advance (:func:`choose`) and check that choice by two-fold cross-validation (:func:`cross_validation`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from model.chroma_bins import ANNEALED_TEMPERATURE, annealed_mean
from model.encoder_generator import EncoderGenerator
from model.pipeline import Colorizer
from training.evaluate import EvaluationResult, evaluate

WARM_BAR = 0.65  # issue 20's warm hue recall bar


def bins_generator(colorizer: Colorizer, name: object = "the checkpoint") -> EncoderGenerator:
    """The colorizer's generator, which these studies need to have a chroma-bins head; exits naming ``name`` if not."""
    net = colorizer.generator
    if not isinstance(net, EncoderGenerator) or net.config.chroma_head != "bins":
        raise SystemExit(f"{name} has no chroma-bins head")
    return net


def set_decoding(
    colorizer: Colorizer,
    log_prior: torch.Tensor | None,
    tau: float,
    temperature: float = ANNEALED_TEMPERATURE,
    gain: float = 1.0,
    guide: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Decode ``gain x`` the annealed mean of ``softmax((logits - tau log prior) / temperature)`` in place of the
    checkpoint's own decoding (``gain`` scales the chroma, as the service's ``chroma_gain`` does). ``guide``, if
    given, maps the head's logits to a term added to them per pixel (B x Q x h x w) before the softmax."""
    net = bins_generator(colorizer)
    bias = None if log_prior is None or tau == 0 else (tau * log_prior).view(1, -1, 1, 1)

    def chroma_of(head: torch.Tensor) -> torch.Tensor:
        logits = head.float() if bias is None else head.float() - bias.to(head.device)
        if guide is not None:
            logits = logits + guide(head)
        return gain * annealed_mean(logits, net.get_buffer("bin_centres"), temperature)

    net.chroma_of = chroma_of  # type: ignore[method-assign]


def figures(result: EvaluationResult) -> dict[str, Any]:
    recall = result.hue_recall
    return {
        "dpsnr": result.psnr_delta,
        "matched": result.psnr_delta_matched,
        "colour": result.colorfulness_ratio,
        "below": result.share_below_gray(),
        **{hue: recall[hue] for hue in ("warm", "green", "blue", "purple")},
        "deltas": [image.psnr_delta for image in result.images],  # per photo, in the order scored
    }


def choose(rows: dict[float, dict[str, Any]], base: float = 0.0) -> float:
    """The rule fixed in advance: among the values with a positive mean dPSNR, green and blue hue recall no worse
    than ``base`` (the checkpoint's own decoding) and warm recall at least :data:`WARM_BAR`, the highest dPSNR at
    matched colourfulness; ties and no qualifying value keep ``base``."""
    ref = rows[base]
    ok = [
        value
        for value, r in rows.items()
        if r["dpsnr"] > 0 and r["green"] >= ref["green"] and r["blue"] >= ref["blue"] and r["warm"] >= WARM_BAR
    ]
    return max(ok or [base], key=lambda value: (rows[value]["matched"], value == base))


def table(
    rows: dict[float, dict[str, Any]],
    chosen: float | None = None,
    knob: str = "tau",
    labels: dict[float, str] | None = None,
) -> list[str]:
    """Markdown rows, one per knob value (shown as ``labels[value]`` where given)."""
    lines = [
        f"| {knob} | dPSNR | dPSNR matched 60% | colourfulness | >3 dB below gray | hue recall warm / green / blue / purple |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for value, r in rows.items():
        mark = " (chosen)" if value == chosen else ""
        lines.append(
            f"| {(labels or {}).get(value, value)}{mark} | {r['dpsnr']:+.2f} | {r['matched']:+.2f} | {r['colour']:.0%} | {r['below']:.0%} | "
            f"{r['warm']:.2f} / {r['green']:.2f} / {r['blue']:.2f} / {r['purple']:.2f} |"
        )
    return lines


def sweep(
    colorizer: Colorizer, values: tuple[float, ...], apply: Callable[[float], None], paths: list[Path]
) -> dict[float, dict[str, Any]]:
    """Score the photos once per knob value, ``apply(value)`` setting the decoding first."""
    rows = {}
    for value in values:
        apply(value)
        rows[value] = figures(evaluate(colorizer, paths, max_side=512))
        print(len(paths), value, {k: round(v, 3) for k, v in rows[value].items() if k != "deltas"}, flush=True)
    return rows


def cross_validation(
    colorizer: Colorizer,
    values: tuple[float, ...],
    apply: Callable[[float], None],
    paths: list[Path],
    base: float,
    knob: str = "tau",
    labels: dict[float, str] | None = None,
) -> list[str]:
    """Each half of the split (even, odd photos) chooses by the rule; the other half is scored: table lines."""
    folds = (paths[0::2], paths[1::2])
    fold_rows = [sweep(colorizer, values, apply, fold) for fold in folds]
    lines = [
        "Two-fold cross-validation (even and odd photos of the split): each half chooses by the same rule, the "
        "other half is scored.",
        "",
        f"| chosen on | {knob} | scored on | dPSNR | dPSNR matched | colourfulness | hue recall warm / green / blue |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for k, name in enumerate(("even", "odd")):
        chosen = choose(fold_rows[k], base)
        other = fold_rows[1 - k]
        for value in dict.fromkeys((base, chosen)):
            r = other[value]
            lines.append(
                f"| {name} | {(labels or {}).get(value, value)} | {('odd', 'even')[k]} | {r['dpsnr']:+.2f} | {r['matched']:+.2f} | "
                f"{r['colour']:.0%} | {r['warm']:.2f} / {r['green']:.2f} / {r['blue']:.2f} |"
            )
    return lines
