"""Decoding a bins-head checkpoint guided by a hue probe on its own trunk: a product of two experts.

The bins head is unsure on unseen photos (about 98% of a uniform softmax's entropy, MODEL_CARD) and paints
almost every clearly green pixel warm or blue (``hue_confusion.md``), while a linear probe on the frozen
trunk's features, trained class-balanced on the training photos, finds green pixels of the validation photos
far more often (``hue_probe.md``: 0.35-0.41 against the head's 0.01). Does the probe's opinion help the head?

A linear probe reads five classes from the checkpoint's own (fine-tuned) trunk: the four hue sectors of
``training/hue.py`` for the pixels clearly coloured in the original, and *neutral* for those below the
output's "painted" chroma (steel, white cloth). It is fitted on the training split as ``hue_probe.py`` fits
its probes (class-balanced, the same schedule) and folded into a 1 x 1 convolution. At decoding, each bin's
logit gains ``alpha T log q(class of the bin)``, ``q`` the probe's softmax at that pixel (the bin at the
origin is neutral, every other one takes its sector), so the annealed mean decodes
``p(bin)^1 q(class)^alpha`` renormalised; ``alpha = 0`` is the checkpoint's own decoding.

alpha is chosen on the validation split by the rule the other decoding studies use
(``decoding_sweep.choose``), fixed before any figure was seen: among the values with a positive mean dPSNR,
green and blue hue recall no worse than alpha = 0 and warm recall at least 0.65, the highest dPSNR at
matched colourfulness (ties keep alpha = 0). Two-fold cross-validation shows how much that choice flatters
itself.

    python benchmarks/probe_guided_decoding.py [--checkpoint CKPT] [--out benchmarks/results/probe_guided_decoding.md]
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.decoding_sweep import WARM_BAR, bins_generator, choose, cross_validation, set_decoding, sweep, table
from benchmarks.hue_probe import NEUTRAL, class_recall, collect_pixels, fit_probe, stacked_features
from benchmarks.photo_study import emit, open_study
from model.chroma_bins import ANNEALED_TEMPERATURE
from model.encoder_generator import EncoderGenerator
from training.hue import HUES, hue_sectors

ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0)
PER_PHOTO = 300  # as hue_probe.py
CLASSES = (*HUES, "neutral")


def bin_classes(centres: torch.Tensor) -> torch.Tensor:
    """Q class indices: each bin's hue sector, :data:`NEUTRAL` for the bin at the origin."""
    classes = torch.from_numpy(hue_sectors(centres[:, 0].numpy(), centres[:, 1].numpy()).astype(np.int64))
    classes[centres.norm(dim=1) < 1e-6] = NEUTRAL
    return classes


class ProbeGuide:
    """Records the trunk's features on each forward and turns them into the probe's per-bin log-probabilities."""

    def __init__(self, net: EncoderGenerator, probe: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
        weight = probe.weight.detach() / std  # the standardisation folded into the 1 x 1 convolution
        self.weight = weight[:, :, None, None]
        self.bias = probe.bias.detach() - weight @ mean
        self.blocks = (*net.skip_blocks, -1)
        self.stride4 = net.skip_blocks[1]
        self.classes = bin_classes(net.get_buffer("bin_centres").cpu())
        self.features: dict[int, torch.Tensor] = {}
        stages = net.trunk.stages

        def recording(x: torch.Tensor, blocks: tuple[int, ...]) -> dict[int, torch.Tensor]:
            self.features = stages(x, blocks)
            return self.features

        net.trunk.stages = recording  # type: ignore[method-assign]

    def log_q(self, head: torch.Tensor) -> torch.Tensor:
        """B x Q x h x w: log q(class of each bin) at each of the head's pixels, from the last forward's features."""
        stacked = stacked_features(self.features, self.blocks, self.features[self.stride4].shape[-2:])
        logits = F.conv2d(stacked, self.weight.to(stacked), self.bias.to(stacked))
        log_q = F.interpolate(F.log_softmax(logits, 1), size=head.shape[-2:], mode="bilinear", align_corners=False)
        return log_q.index_select(1, self.classes.to(log_q.device))


def main() -> None:
    study = open_study(__doc__.splitlines()[0])
    checkpoint, colorizer, val = study.checkpoint, study.colorizer, study.val
    net = bins_generator(colorizer, checkpoint)
    began = time.perf_counter()
    torch.manual_seed(0)
    x_train, y_train = collect_pixels(net.trunk, study.train, PER_PHOTO, seed=0, neutral=True)
    x_val, y_val = collect_pixels(net.trunk, val, None, seed=0, neutral=True)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    probe = nn.Linear(x_train.shape[1], len(CLASSES))
    fit_probe(probe, (x_train - mean) / std, y_train, seed=0, classes=len(CLASSES))
    with torch.no_grad():
        predicted = probe((x_val - mean) / std).argmax(1)
    recall = class_recall(predicted, y_val, CLASSES)
    print("probe recall on validation pixels", {k: round(v, 3) for k, v in recall.items()}, flush=True)
    guide = ProbeGuide(net, probe, mean, std)

    def apply(alpha: float) -> None:
        term = alpha * ANNEALED_TEMPERATURE
        set_decoding(colorizer, None, 0.0, guide=None if alpha == 0 else (lambda head: term * guide.log_q(head)))

    full = sweep(colorizer, ALPHAS, apply, val)
    chosen = choose(full, base=0.0)
    folds = cross_validation(colorizer, ALPHAS, apply, val, base=0.0, knob="alpha")
    elapsed = time.perf_counter() - began
    shares = torch.bincount(y_val, minlength=len(CLASSES)).float()
    shares = shares / shares.sum()
    lines = [
        "# Decoding guided by a hue probe on the checkpoint's own trunk: alpha swept on the validation split",
        "",
        f"`python benchmarks/probe_guided_decoding.py`; checkpoint `{checkpoint.name}`, CPU {platform.machine()}, "
        f"precision {colorizer.precision}, torch {torch.__version__}; {elapsed:.0f} s.",
        "",
        f"The probe: linear on the trunk's skip stages and head at stride 4 ({x_train.shape[1]} features), fitted "
        f"on {len(study.train)} training photos ({PER_PHOTO} random counted pixels each, 256 x 256, fp32) as "
        "`hue_probe.py` fits. Its recall per class on every counted pixel of the validation photos ("
        + ", ".join(f"{n} {s:.0%}" for n, s in zip(CLASSES, shares.tolist(), strict=True))
        + "): "
        + ", ".join(f"{n} {recall[n]:.2f}" for n in CLASSES)
        + ".",
        "",
        f"Decoding `softmax(logits / T + alpha log q(class of the bin))`, T = {ANNEALED_TEMPERATURE}. Validation "
        f"split ({len(val)} photos, long side 512, as `scgan-eval`); the rule fixed in advance: among the alpha "
        f"with a positive dPSNR, green and blue hue recall no worse than alpha = 0 and warm recall >= {WARM_BAR}, "
        "the highest dPSNR at matched colourfulness.",
        "",
        *table(full, chosen, knob="alpha"),
        "",
        *folds,
    ]
    emit(lines, study.out)


if __name__ == "__main__":
    main()
