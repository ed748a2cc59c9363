"""Chooses the hint propagation's settings on training photos, then scores hints on the validation split.

Issue 21's bar: 10 random hints (each the mean colour of the original's 5 x 5 patch) lift dPSNR over gray to
at least +3.0 dB, and at least +2.0 dB over the same checkpoint without hints. The propagation
(:mod:`model.hint_propagation`) has three settings; they are chosen here by a rule fixed in advance (the
highest mean dPSNR over 1, 10 and 100 hints) on ``--tune`` photos of the *training* split, so the validation
photos never steer the choice. The validation split is then scored end to end (:func:`training.evaluate.evaluate`,
what ``scgan-eval --hints N`` runs), with the network alone and with the propagation.

    python benchmarks/hint_propagation.py [--checkpoint CKPT] [--tune 48] [--out benchmarks/results/hint_propagation.md]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.hint_propagation import HintPropagation
from model.images import load_rgb
from model.pipeline import Colorizer
from model.weights import default_checkpoint_path
from training.data import split_paths
from training.evaluate import evaluate, to_gray
from training.hint_sim import sample_hints
from training.metrics import psnr

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "train"
HINT_COUNTS = (1, 10, 100)
GRID = {"spatial_sigma": (0.1, 0.2, 0.4), "luma_sigma": (0.05, 0.1, 0.2), "confidence": (0.05, 0.3, 1.0)}


def tune(colorizer: Colorizer, paths: list[Path]) -> list[tuple[HintPropagation, dict[int, float]]]:
    """Mean dPSNR over gray per hint count, for every setting of the grid, on ``paths`` (forwards run once)."""
    cases = []  # (original, gray PSNR, hint count, prepared, prediction)
    for index, path in enumerate(paths):
        original = load_rgb(path, 512)
        gray = to_gray(original)
        gray_psnr = psnr(original, gray.convert("RGB"))
        for count in HINT_COUNTS:
            prepared = colorizer.prepare(gray, hints=sample_hints(original, count, seed=10_000 + index))
            rgb, _ = colorizer.predict(prepared.model_input[None])
            cases.append((original, gray_psnr, count, prepared, rgb[0]))
    rows = []
    for values in itertools.product(*GRID.values()):
        colorizer.hint_propagation = spec = HintPropagation(**dict(zip(GRID, values)))
        deltas: dict[int, list[float]] = {count: [] for count in HINT_COUNTS}
        for original, gray_psnr, count, prepared, rgb in cases:
            colored = colorizer.finish(prepared, rgb).convert("RGB")
            deltas[count].append(psnr(original, colored) - gray_psnr)
        rows.append((spec, {count: float(np.mean(d)) for count, d in deltas.items()}))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled starter")
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--tune", type=int, default=48, help="training photos to choose the settings on")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    checkpoint = args.checkpoint or default_checkpoint_path()
    if checkpoint is None:
        raise SystemExit("no --checkpoint given and no bundled starter in this install")
    colorizer = Colorizer.from_checkpoint(checkpoint, device="cpu")
    if not colorizer.takes_hints:
        raise SystemExit(f"{checkpoint} takes no hints")
    train, val = split_paths(args.photos, 0.1)
    step = max(1, len(train) // args.tune)
    tuning = train[::step][: args.tune]
    began = time.perf_counter()
    rows = tune(colorizer, tuning)
    best, best_deltas = max(rows, key=lambda row: np.mean(list(row[1].values())))
    tuned_s = time.perf_counter() - began

    scored = {}
    for label, spec in (("network alone", None), ("with propagation", best)):
        colorizer.hint_propagation = spec
        for count in (0, *HINT_COUNTS):
            result = evaluate(colorizer, val, max_side=512, hints=count)
            scored[label, count] = (result.psnr_delta, result.colorfulness_ratio)

    lines = [
        "# Hint propagation: settings chosen on training photos, scored on the validation split",
        "",
        f"`python benchmarks/hint_propagation.py`; checkpoint `{checkpoint.name}`, CPU {platform.machine()}, "
        f"precision {colorizer.precision}, torch {torch.__version__}.",
        "",
        f"Chosen on {len(tuning)} photos of the training split (every {step}th), hints seeded apart from the "
        "evaluation's, by the highest mean dPSNR over 1, 10 and 100 hints; "
        f"{len(rows)} settings in {tuned_s:.0f} s.",
        "",
        "| spatial sigma | luma sigma | confidence | " + " | ".join(f"dPSNR {n} hints" for n in HINT_COUNTS) + " |",
        "|---:|---:|---:|" + "---:|" * len(HINT_COUNTS),
    ]
    for spec, deltas in sorted(rows, key=lambda row: -np.mean(list(row[1].values()))):
        mark = " (chosen)" if spec == best else ""
        cells = " | ".join(f"{deltas[n]:+.2f}" for n in HINT_COUNTS)
        lines.append(f"| {spec.spatial_sigma}{mark} | {spec.luma_sigma} | {spec.confidence} | {cells} |")
    lines += [
        "",
        f"Validation split ({len(val)} photos, long side 512, `training.evaluate.evaluate` as `scgan-eval --hints N`"
        "): mean dPSNR over gray (colourfulness ratio).",
        "",
        "| hints | network alone | with propagation |",
        "|---:|---:|---:|",
    ]
    for count in (0, *HINT_COUNTS):
        alone, prop = scored["network alone", count], scored["with propagation", count]
        lines.append(f"| {count} | {alone[0]:+.2f} dB ({alone[1]:.0%}) | {prop[0]:+.2f} dB ({prop[1]:.0%}) |")
    gain = scored["with propagation", 10][0] - scored["network alone", 0][0]
    lines += ["", f"10 hints with propagation over the same checkpoint without hints: {gain:+.2f} dB."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    print(f"chosen: {best} ({best_deltas})")


if __name__ == "__main__":
    main()
