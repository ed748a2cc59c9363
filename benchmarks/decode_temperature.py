"""Decoding a bins-head checkpoint at other annealed-mean temperatures: a sweep over T.

The annealed mean (Zhang et al., ECCV 2016) decodes ``softmax(logits / T)``: T = 1 is the mean of the
predicted distribution (the sepia hedge), T -> 0 its mode (vivid, noisy). Zhang et al. chose T = 0.38 for
their network on ImageNet; ours keeps about 98% of a uniform softmax's entropy on unseen photos (see
MODEL_CARD), so its best T need not be theirs. Lowering T also raises colourfulness, which is one of
issue 20's bars; dPSNR at matched colourfulness says whether the hues it commits to are right.

T is chosen on the validation split by the rule ``prior_correction.py`` uses (``decoding_sweep.choose``), fixed before any figure was
seen: among the candidates with a positive mean dPSNR, green and blue hue recall no worse than the
checkpoint's own T and warm recall at least 0.65, the highest dPSNR at matched colourfulness (ties keep
the checkpoint's T). Two-fold cross-validation shows how much that choice flatters itself. Last, the
checkpoint's T with its chroma scaled down (the service's ``chroma_gain``): is a higher T any better than
a gain at the same colourfulness?

    python benchmarks/decode_temperature.py [--checkpoint CKPT] [--out benchmarks/results/decode_temperature.md]
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.decoding_sweep import WARM_BAR, choose, cross_validation, set_decoding, sweep, table
from benchmarks.photo_study import emit, open_study
from model.chroma_bins import ANNEALED_TEMPERATURE

TEMPERATURES = (0.2, 0.25, 0.3, ANNEALED_TEMPERATURE, 0.45, 0.55, 0.7, 1.0)
#: Chroma gains at the checkpoint's T that bring its colourfulness near that of T = 0.45, 0.55 and 0.7.
GAINS = (0.85, 0.7, 0.5)


def main() -> None:
    study = open_study(__doc__.splitlines()[0])
    checkpoint, colorizer, val = study.checkpoint, study.colorizer, study.val
    began = time.perf_counter()

    def apply(temperature: float) -> None:
        set_decoding(colorizer, None, 0.0, temperature)

    full = sweep(colorizer, TEMPERATURES, apply, val)
    chosen = choose(full, base=ANNEALED_TEMPERATURE)
    folds = cross_validation(colorizer, TEMPERATURES, apply, val, base=ANNEALED_TEMPERATURE, knob="T")

    def apply_gain(gain: float) -> None:
        set_decoding(colorizer, None, 0.0, ANNEALED_TEMPERATURE, gain)

    gains = sweep(colorizer, GAINS, apply_gain, val)
    elapsed = time.perf_counter() - began
    lines = [
        "# Annealed-mean temperature of the bins head: T swept on the validation split",
        "",
        f"`python benchmarks/decode_temperature.py`; checkpoint `{checkpoint.name}`, CPU {platform.machine()}, "
        f"precision {colorizer.precision}, torch {torch.__version__}; {elapsed:.0f} s.",
        "",
        f"Decoding `softmax(logits / T)`, the checkpoint's own T = {ANNEALED_TEMPERATURE}. Validation split "
        f"({len(val)} photos, long side 512, as `scgan-eval`); the rule fixed in advance: among the T with a "
        f"positive dPSNR, green and blue hue recall no worse than T = {ANNEALED_TEMPERATURE} and warm recall >= "
        f"{WARM_BAR}, the highest dPSNR at matched colourfulness.",
        "",
        *table(full, chosen, knob="T"),
        "",
        *folds,
        "",
        f"The checkpoint's T = {ANNEALED_TEMPERATURE} with its chroma scaled by a gain (as `chroma_gain`), to "
        "compare with a higher T at about the same colourfulness:",
        "",
        *table(gains, knob="gain"),
    ]
    emit(lines, study.out)


if __name__ == "__main__":
    main()
