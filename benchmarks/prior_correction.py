"""Decoding a bins-head checkpoint with its logits corrected by the chroma prior, chosen on training photos.

A classifier trained on an imbalanced label distribution leans toward the frequent classes; logit adjustment
(Menon et al., "Long-tail learning via logit adjustment", ICLR 2021) subtracts ``tau * log prior`` from the
logits at decoding to undo that lean. Here the classes are chroma bins and the frequent ones are the warm,
desaturated ones (the sepia hedge of issue 20), so the correction should move rare greens and blues up.

``tau`` is chosen on ``--tune`` photos of the *training* split by a rule fixed before any figure was seen
(issue 20's suggested rule): among the candidates with a positive mean dPSNR, green and blue hue recall no
worse than uncorrected decoding and warm recall at least 0.65 (the issue's bar), the highest dPSNR at matched
colourfulness. The validation split is then scored with the chosen ``tau`` and without.

    python benchmarks/prior_correction.py [--checkpoint CKPT] [--tune 48] [--out benchmarks/results/prior_correction.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.chroma_bins import annealed_mean, bin_centres
from model.encoder_generator import EncoderGenerator
from model.images import load_rgb
from model.pipeline import Colorizer
from model.weights import default_checkpoint_path
from training.colour_losses import chroma_prior
from training.data import split_paths
from training.evaluate import EvaluationResult, evaluate
from training.metrics import colorfulness

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "train"
TAUS = (0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8)
WARM_BAR = 0.65
MIN_COLORFULNESS = 15.0  # the starter's data.min_colorfulness: the prior it was trained against


def training_prior(paths: list[Path]) -> torch.Tensor:
    """The chroma prior of the colourful training photos, as training computes it (long side 256)."""
    images = []
    for path in paths:
        rgb = load_rgb(path, 256)
        if colorfulness(rgb) >= MIN_COLORFULNESS:
            images.append(torch.from_numpy(np.asarray(rgb)).permute(2, 0, 1).contiguous())
    return chroma_prior(images, bin_centres())


def set_correction(colorizer: Colorizer, log_prior: torch.Tensor, tau: float) -> None:
    """Decode ``softmax((logits - tau log prior) / T)`` in place of the checkpoint's own decoding."""
    net = colorizer.generator
    assert isinstance(net, EncoderGenerator) and net.config.chroma_head == "bins"
    bias = (tau * log_prior).view(1, -1, 1, 1)

    def chroma_of(head: torch.Tensor) -> torch.Tensor:
        return annealed_mean(head.float() - bias.to(head.device), net.get_buffer("bin_centres"))

    net.chroma_of = chroma_of  # type: ignore[method-assign]


def figures(result: EvaluationResult) -> dict[str, Any]:
    recall = result.hue_recall
    return {
        "dpsnr": result.psnr_delta,
        "matched": result.psnr_delta_matched,
        "colour": result.colorfulness_ratio,
        "below": result.share_below_gray(),
        **{hue: recall[hue] for hue in ("warm", "green", "blue", "purple")},
    }


def choose(rows: dict[float, dict[str, Any]]) -> float:
    base = rows[0.0]
    ok = [
        tau
        for tau, row in rows.items()
        if row["dpsnr"] > 0
        and row["green"] >= base["green"]
        and row["blue"] >= base["blue"]
        and row["warm"] >= WARM_BAR
    ]
    return max(ok or [0.0], key=lambda tau: (rows[tau]["matched"], -tau))


def table(rows: dict[float, dict[str, Any]], chosen: float | None) -> list[str]:
    lines = [
        "| tau | dPSNR | dPSNR matched 60% | colourfulness | >3 dB below gray | hue recall warm / green / blue / purple |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for tau, r in rows.items():
        mark = " (chosen)" if tau == chosen else ""
        lines.append(
            f"| {tau}{mark} | {r['dpsnr']:+.2f} | {r['matched']:+.2f} | {r['colour']:.0%} | {r['below']:.0%} | "
            f"{r['warm']:.2f} / {r['green']:.2f} / {r['blue']:.2f} / {r['purple']:.2f} |"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled starter")
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--tune", type=int, default=48, help="training photos to choose tau on")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    checkpoint = args.checkpoint or default_checkpoint_path()
    if checkpoint is None:
        raise SystemExit("no --checkpoint given and no bundled starter in this install")
    colorizer = Colorizer.from_checkpoint(checkpoint, device="cpu")
    train, val = split_paths(args.photos, 0.1)
    began = time.perf_counter()
    log_prior = training_prior(train).clamp_min(1e-8).log()
    step = max(1, len(train) // args.tune)
    tuning = train[::step][: args.tune]
    tuned = {}
    for tau in TAUS:
        set_correction(colorizer, log_prior, tau)
        tuned[tau] = figures(evaluate(colorizer, tuning, max_side=512))
        print(tau, tuned[tau], flush=True)
    chosen = choose(tuned)
    scored = {}
    for tau in dict.fromkeys((0.0, chosen)):
        set_correction(colorizer, log_prior, tau)
        scored[tau] = figures(evaluate(colorizer, val, max_side=512))
    elapsed = time.perf_counter() - began

    lines = [
        "# Prior-corrected decoding of the bins head: tau chosen on training photos, scored on the validation split",
        "",
        f"`python benchmarks/prior_correction.py`; checkpoint `{checkpoint.name}`, CPU {platform.machine()}, "
        f"precision {colorizer.precision}, torch {torch.__version__}; {elapsed:.0f} s.",
        "",
        f"Decoding `softmax((logits - tau * log prior) / 0.38)`, the prior from the {len(train)} training-split "
        f"photos (colourfulness >= {MIN_COLORFULNESS:g}, long side 256). Chosen on {len(tuning)} photos of the "
        f"training split (every {step}th), long side 512, by the rule fixed in advance: among the tau with a "
        f"positive dPSNR, green and blue hue recall no worse than tau = 0 and warm recall >= {WARM_BAR}, the "
        "highest dPSNR at matched colourfulness.",
        "",
        *table(tuned, chosen),
        "",
        f"Validation split ({len(val)} photos, long side 512, as `scgan-eval`):",
        "",
        *table(scored, chosen),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
