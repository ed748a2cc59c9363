"""How does what frozen ImageNet features tell about hue grow with the number of training photos?

``hue_probe.py`` found that a class-balanced linear probe on the frozen trunk's features of the gray image
reaches none of issue 20's hue-recall bars on unseen photos when it learns from our 315 training photos
(green 0.35-0.41 against 0.45, blue 0.60-0.62 against 0.70). Would more photos close the gap, and how many?
This measures the probe's held-out recall as a function of the number of photos it learns from, with the
probe, features and schedule of ``hue_probe.py`` unchanged.

Only the training split is used (the validation split stays unseen): it is cut into ``--folds`` folds by a
seeded shuffle; for each fold, probes learn from nested random subsets of the other folds' photos (sizes
``--sizes``, each a fraction of those photos) and are scored on the held-out fold. Each photo contributes at
most ``--per-photo`` random clearly coloured pixels to learn from and ``--eval-per-photo`` to be scored on,
weighted so that the score estimates the pooled recall over all of the fold's clearly coloured pixels.

Each probe is also decided with the training prior added to its logits (weights ``TAUS``), which trades
warm recall for green. For each weight, a straight line of each sector's recall against log2(photos),
fitted to the fold means, is extrapolated to the photo count where all three bars would be met at once:
an estimate of the trend, not a promise.

    python benchmarks/hue_probe_scaling.py [--variants lite0,lite2] [--out benchmarks/results/hue_probe_scaling.md]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hue_probe import PHOTOS, STEPS, collect_pixels, fit_probe
from benchmarks.photo_study import emit
from model.efficientnet_lite import LITE_VARIANTS, EfficientNetLite, load_imagenet_weights
from training.data import split_paths
from training.hue import HUES

#: Issue 20's hue-recall bars.
BARS = {"warm": 0.65, "green": 0.45, "blue": 0.70}
SHOWN = ("warm", "green", "blue", "purple")
#: Weights of the training prior added to the probe's logits at decision time (logit adjustment).
TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


#: One photo's sampled pixels: features, classes, and the weight that makes the sample count as all of them.
Pixels = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def per_photo_pixels(trunk: EfficientNetLite, paths: list[Path], per_photo: int, seed: int) -> list[Pixels]:
    """For each photo, at most ``per_photo`` of its clearly coloured pixels in random order (so any first n of
    them are a random sample), each weighted by the photo's clearly coloured pixels per sampled one."""
    out = []
    for i, path in enumerate(paths):
        x, y = collect_pixels(trunk, [path], None, seed=seed + i)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + i))[:per_photo]
        out.append((x[order], y[order], torch.full((len(order),), len(y) / max(1, len(order)))))
    return out


def pooled_recall(predicted: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor) -> dict[str, float]:
    """Per sector, the weighted share of its pixels predicted as it: with :func:`per_photo_pixels`' weights, an
    estimate of the recall over every clearly coloured pixel of the photos, as ``hue_probe.py`` counts it."""
    return {
        name: float(weight[(predicted == i) & (truth == i)].sum() / weight[truth == i].sum().clamp_min(1e-12))
        for i, name in enumerate(HUES)
    }


def held_out_recall(
    pixels: list[Pixels], train: list[int], test: list[int], per_photo: int, seed: int
) -> dict[float, dict[str, float]]:
    """A linear probe learns from the ``train`` photos' first ``per_photo`` pixels; its pooled recall on ``test``'s
    for each prior weight of :data:`TAUS` (the decision ``argmax(logits + tau log prior)``, the prior being the
    training pixels' sector frequencies: 0 is the class-balanced probe, 1 about the rule that minimises errors)."""
    x_train = torch.cat([pixels[i][0][:per_photo] for i in train])
    y_train = torch.cat([pixels[i][1][:per_photo] for i in train])
    x_test, y_test, w_test = (torch.cat([pixels[i][j] for i in test]) for j in range(3))
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    torch.manual_seed(seed)
    probe = fit_probe(nn.Linear(x_train.shape[1], len(HUES)), (x_train - mean) / std, y_train, seed=seed)
    log_prior = torch.bincount(y_train, minlength=len(HUES)).float().clamp_min(1.0).div(len(y_train)).log()
    with torch.no_grad():
        logits = probe((x_test - mean) / std)
    return {tau: pooled_recall((logits + tau * log_prior).argmax(1), y_test, w_test) for tau in TAUS}


def photos_at_bar(counts: list[int], recalls: list[float], bar: float) -> float:
    """The photo count where the least-squares line of recall on log2(count) reaches ``bar`` (inf if it never
    rises; the largest count when its recall already does)."""
    if recalls[-1] >= bar:
        return float(counts[-1])
    slope, intercept = np.polyfit(np.log2(counts), recalls, 1)
    return max(float(2 ** ((bar - intercept) / slope)), counts[-1] + 1.0) if slope > 0 else math.inf


def photos_for_all_bars(counts: list[int], recalls: dict[str, list[float]]) -> str:
    """As text: the photo count where every sector's line reaches its bar, and the sector that needs the most."""
    needed = {h: photos_at_bar(counts, recalls[h], BARS[h]) for h in BARS}
    limit = max(needed, key=lambda h: needed[h])
    if all(recalls[h][-1] >= BARS[h] for h in BARS):
        return "met"
    if needed[limit] > 1e6:
        return f"over a million ({limit})"
    return f"about {needed[limit]:,.0f} ({limit})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="lite0,lite2")
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--val-fraction", type=float, default=0.1, help="as the starter configs' data.val_fraction")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--sizes", default="0.125,0.25,0.5,1", help="fractions of the other folds' photos to learn from")
    p.add_argument("--per-photo", type=int, default=300, help="pixels each photo gives to learn from, as hue_probe.py")
    p.add_argument("--eval-per-photo", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(LITE_VARIANTS):
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(LITE_VARIANTS)}")
    fractions = [float(s) for s in args.sizes.split(",")]
    if len(fractions) < 2 or any(not 0 < f <= 1 for f in fractions) or fractions != sorted(set(fractions)):
        raise SystemExit(f"--sizes: two or more increasing fractions in (0, 1], not {args.sizes}")
    if args.folds < 2:
        raise SystemExit(f"--folds: at least 2, not {args.folds}")
    began = time.perf_counter()
    train_paths, _ = split_paths(args.photos, args.val_fraction)
    order = np.random.default_rng(0).permutation(len(train_paths))
    folds = [order[k :: args.folds].tolist() for k in range(args.folds)]
    rows: list[str] = []
    frontier: list[str] = []
    outlook: list[str] = []
    for variant in variants:
        trunk = EfficientNetLite(variant, with_classifier=False)
        load_imagenet_weights(trunk)
        trunk.eval()
        pixels = per_photo_pixels(trunk, train_paths, max(args.per_photo, args.eval_per_photo), seed=0)
        by_size: dict[float, list[tuple[int, dict[float, dict[str, float]]]]] = {}
        for k, test in enumerate(folds):
            rest = [i for j, fold in enumerate(folds) if j != k for i in fold]
            rest = [rest[i] for i in np.random.default_rng(1 + k).permutation(len(rest))]  # nested subsets
            for fraction in fractions:
                count = max(1, round(fraction * len(rest)))
                recall = held_out_recall(pixels, rest[:count], test, args.per_photo, seed=k)
                by_size.setdefault(fraction, []).append((count, recall))
        counts: list[int] = []
        means: dict[str, list[float]] = {h: [] for h in SHOWN}
        for fraction in fractions:
            count = round(float(np.mean([c for c, _ in by_size[fraction]])))
            counts.append(count)
            cells = []
            for h in SHOWN:
                values = [r[0.0][h] for _, r in by_size[fraction]]
                means[h].append(float(np.mean(values)))
                cells.append(f"{np.mean(values):.2f} ({np.min(values):.2f}-{np.max(values):.2f})")
            rows.append(f"| {variant} | {count} | {' | '.join(cells)} |")
            print(rows[-1], flush=True)
            trade = []
            for tau in TAUS:
                mean_recall = {h: float(np.mean([r[tau][h] for _, r in by_size[fraction]])) for h in BARS}
                cell = " / ".join(f"{mean_recall[h]:.2f}" for h in BARS)
                trade.append(f"**{cell}**" if all(mean_recall[h] >= BARS[h] for h in BARS) else cell)
            frontier.append(f"| {variant} | {count} | {' | '.join(trade)} |")
            print(frontier[-1], flush=True)
        needs = []
        for tau in TAUS:
            per_sector = {h: [float(np.mean([r[tau][h] for _, r in by_size[f]])) for f in fractions] for h in BARS}
            needs.append(photos_for_all_bars(counts, per_sector))
        outlook.append(f"| {variant} | {' | '.join(needs)} |")
    minutes = (time.perf_counter() - began) / 60
    fold_size = math.ceil(len(train_paths) / args.folds)
    lines = [
        "# How frozen ImageNet features' knowledge of hue grows with the number of photos (issue 20)",
        "",
        f"`python benchmarks/hue_probe_scaling.py --variants {args.variants}`; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; {minutes:.1f} min. The {len(train_paths)} photos of the "
        f"training split only (the validation split is not touched), in {args.folds} folds of about {fold_size}. "
        f"For each fold, a class-balanced linear probe (as `hue_probe.py`: features of the generator's skip stages "
        f"and head at stride 4, {STEPS} Adam steps, fixed in advance) learns from a nested random subset of the "
        f"other folds' photos ({args.per_photo} random clearly coloured pixels each) and is scored on the held-out "
        f"fold (pooled recall over every clearly coloured pixel, as `hue_probe.py` counts it, estimated from "
        f"{args.eval_per_photo} random ones of each photo at most, each weighted by its photo's count).",
        "",
        "Held-out recall per sector, mean over the folds (lowest-highest fold):",
        "",
        "| trunk | photos learnt from | " + " | ".join(SHOWN) + " |",
        "|---|---:|" + "---:|" * len(SHOWN),
        *rows,
        "",
        "The same probes, decided as `argmax(logits + tau log prior)` with the training pixels' sector frequencies "
        "as the prior (logit adjustment: tau 0 is the class-balanced probe above, tau 1 about the decision that "
        "makes the fewest errors), recall warm / green / blue, mean over the folds; **bold** where all three "
        "bars are met:",
        "",
        "| trunk | photos learnt from | " + " | ".join(f"tau {tau:g}" for tau in TAUS) + " |",
        "|---|---:|" + "---|" * len(TAUS),
        *frontier,
        "",
        "Photos a linear probe would need to meet all three bars at once (warm >= 0.65, green >= 0.45, blue >= "
        "0.70) at each tau, and (in brackets) the sector that needs the most: for each sector, a least-squares "
        "line of its fold means against log2(photos), extrapolated. An estimate of the trend, not a promise; a "
        "probe's recall is not the generator's.",
        "",
        "| trunk | " + " | ".join(f"tau {tau:g}" for tau in TAUS) + " |",
        "|---|" + "---|" * len(TAUS),
        *outlook,
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
