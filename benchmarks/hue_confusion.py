"""Where each hue of the originals goes: a confusion table of hue sectors, original against output.

Hue recall (:mod:`training.hue`) says how often a clearly green pixel comes back green; this says what it
comes back as instead (another sector, or gray), on the validation split. It also prints each sector's share
of the clearly coloured pixels of the training photos, the class balance the checkpoint learned from.

    python benchmarks/hue_confusion.py [--checkpoint CKPT] [--out benchmarks/results/hue_confusion.md]
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_study import emit, open_study
from model.images import load_rgb
from training.evaluate import to_gray
from training.hue import HUES, ORIGINAL_MIN_CHROMA, OUTPUT_MIN_CHROMA, hue_classes

OUTCOMES = (*HUES, "gray")


def main() -> None:
    study = open_study(__doc__.splitlines()[0])
    checkpoint, colorizer, train, val = study.checkpoint, study.colorizer, study.train, study.val

    balance = np.zeros(len(HUES))
    for path in train:
        classes = hue_classes(np.asarray(load_rgb(path, 256)), ORIGINAL_MIN_CHROMA)
        balance += [(classes == i).sum() for i in range(len(HUES))]

    confusion = np.zeros((len(HUES), len(OUTCOMES)))
    for path in val:
        original = load_rgb(path, 512)
        output = colorizer.colorize([to_gray(original)])[0].convert("RGB")
        truth = hue_classes(np.asarray(original), ORIGINAL_MIN_CHROMA)
        painted = hue_classes(np.asarray(output), OUTPUT_MIN_CHROMA)  # -1: below a visible tint, i.e. gray
        for i in range(len(HUES)):
            got = painted[truth == i]
            confusion[i] += [(got == j).sum() for j in range(len(HUES))] + [(got == -1).sum()]

    lines = [
        "# Hue confusion: what the output paints the originals' clearly coloured pixels",
        "",
        f"`python benchmarks/hue_confusion.py`; checkpoint `{checkpoint.name}`, CPU {platform.machine()}, "
        f"precision {colorizer.precision}, torch {torch.__version__}.",
        "",
        f"Training split ({len(train)} photos, long side 256): share of the pixels with chroma >= "
        f"{ORIGINAL_MIN_CHROMA:g} in each sector: "
        + ", ".join(f"{name} {share:.1%}" for name, share in zip(HUES, balance / balance.sum())),
        "",
        f"Validation split ({len(val)} photos, long side 512): rows are the original's sector (chroma >= "
        f"{ORIGINAL_MIN_CHROMA:g}), columns what the output paints there (chroma >= {OUTPUT_MIN_CHROMA:g}, else "
        "gray); each row sums to 100%. The diagonal is hue recall.",
        "",
        "| original \\ output | pixels | " + " | ".join(OUTCOMES) + " |",
        "|---|---:|" + "---:|" * len(OUTCOMES),
    ]
    for i, name in enumerate(HUES):
        total = confusion[i].sum()
        cells = " | ".join(f"{share:.0%}" for share in confusion[i] / max(total, 1))
        lines.append(f"| {name} | {int(total)} | {cells} |")
    emit(lines, study.out)


if __name__ == "__main__":
    main()
