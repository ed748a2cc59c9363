"""What the generator is shown at inference: the input's geometry, a mirror, and averages over working sizes.

The pipeline squashes every photo to one 256 x 256 square and runs one forward. Training crops are squashed
too (aspect ratios 0.5 to 2), but cover 20 to 100% of a photo, so at inference objects look smaller than in
most crops. Can a view of the photo closer to the crops, or the average of several views (test-time
augmentation, as segmentation networks use), paint better colours from the same checkpoint?

Each view is scored by ``scgan-eval``'s evaluation on the validation split and put to the rule the decoding
studies use (``decoding_sweep.choose``, fixed before any figure was seen; the pipeline's own view is the
reference), checked by two-fold cross-validation. Since a view that costs more CPU per image can only be an
option, the table gives each view's measured cost (pixels through the network per photo, against one
256 x 256 forward) and, photo by photo against the pipeline's view, how sure its gain is (mean change in
dPSNR, photos improved, a seeded bootstrap 95% interval, each half of the split).

    python benchmarks/inference_views.py [--checkpoint CKPT] [--out benchmarks/results/inference_views.md]
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.decoding_sweep import choose, cross_validation, sweep, table
from benchmarks.photo_study import emit, open_study
from model.config import ENCODER_SIZE_MULTIPLE
from model.pipeline import Colorizer, PreparedImage

BASE_SIDE = 256  # the pipeline's working size


@dataclass(frozen=True)
class View:
    """How a photo is shown to the network: one geometry, or the average over mirrors and square sizes."""

    label: str
    geometry: str = "square"  # square, or aspect kept: "area" (as many pixels as the square), "long", "short" side
    sides: tuple[int, ...] = (BASE_SIDE,)  # square sizes whose predictions are averaged
    mirror: bool = False  # average with the mirror image's prediction, mirrored back


VIEWS = (
    View("square 256 (the pipeline)"),
    View("aspect kept, as many pixels", "area"),
    View("aspect kept, long side 256", "long"),
    View("aspect kept, short side 256", "short"),
    View("256 and its mirror", mirror=True),
    View("average of 128 and 256", sides=(128, 256)),
    View("average of 192 and 256", sides=(192, 256)),
    View("average of 256 and 512", sides=(256, 512)),
)


def working_size(geometry: str, height: int, width: int, side: int = BASE_SIDE) -> tuple[int, int]:
    """(height, width) the network sees for a photo of that size: ``side`` squared, or its aspect kept, each side a
    multiple of the encoder's stride."""
    if geometry == "square":
        return side, side
    scale = {
        "area": side / math.sqrt(height * width),
        "long": side / max(height, width),
        "short": side / min(height, width),
    }[geometry]

    def multiple(n: int) -> int:
        return max(ENCODER_SIZE_MULTIPLE, round(n * scale / ENCODER_SIZE_MULTIPLE) * ENCODER_SIZE_MULTIPLE)

    return multiple(height), multiple(width)


class ViewedColorizer:
    """Shows a colorizer's network the photos as ``view`` says, counting the pixels every forward takes, per view."""

    def __init__(self, colorizer: Colorizer) -> None:
        self.colorizer = colorizer
        self.prepare, self.predict = colorizer.prepare, colorizer.predict  # the pipeline's own stages
        self.label = ""
        self._counts: dict[str, list[int]] = {}  # view label -> [pixels through the network, photos]

    def set(self, view: View) -> None:
        c = self.colorizer
        largest = max(view.sides)
        self.label = view.label
        counts = self._counts.setdefault(view.label, [0, 0])

        def prepare(image: Any, render_size: int | None = None, hints: Any = None) -> PreparedImage:
            prepared = self.prepare(image, render_size, hints)
            height, width = prepared.luma.shape[-2:]
            size = working_size(view.geometry, height, width, largest)
            if size == tuple(prepared.model_input.shape[-2:]):
                return prepared
            extra = prepared.model_input[1:, :1, :1].expand(-1, *size)  # hint planes: constant without hints
            luma = F.interpolate(prepared.luma[None], size=size, mode="bilinear", antialias=True, align_corners=False)[
                0
            ]
            return dataclasses.replace(prepared, model_input=torch.cat((luma, extra)).contiguous())

        def forward(batch: torch.Tensor) -> torch.Tensor:
            counts[0] += batch.shape[0] * batch.shape[-2] * batch.shape[-1]
            return self.predict(batch)[0]

        def predict(batch: torch.Tensor, *, saliency: bool = False) -> tuple[torch.Tensor, None]:
            counts[1] += batch.shape[0]
            out = torch.zeros(batch.shape[0], 3, *batch.shape[-2:])
            for side in view.sides:
                x = batch
                if view.geometry == "square" and side != batch.shape[-1]:
                    x = F.interpolate(batch, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
                rgb = forward(x)
                if view.mirror:
                    rgb = (rgb + forward(x.flip(-1)).flip(-1)) / 2
                out += F.interpolate(rgb, size=batch.shape[-2:], mode="bilinear", align_corners=False) / len(view.sides)
            return out, None

        c.prepare, c.predict = prepare, predict  # type: ignore[method-assign]
        # Photos of one batch may differ in shape when the aspect is kept.
        c.batch_size = 1

    @property
    def costs(self) -> dict[str, float]:
        """Per view label: pixels through the network per photo, against one 256 x 256 forward."""
        return {label: pixels / max(photos, 1) / BASE_SIDE**2 for label, (pixels, photos) in self._counts.items()}

    @property
    def cost(self) -> float:
        """:attr:`costs` of the view set last."""
        return self.costs[self.label]


def paired(base: list[float], other: list[float], seed: int = 0, rounds: int = 5000) -> dict[str, float]:
    """Photo by photo, ``other`` minus ``base`` dPSNR: mean, photos improved, bootstrap 95% interval, each half."""
    diff = np.asarray(other) - np.asarray(base)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(diff.mean()),
        "improved": int((diff > 0).sum()),
        "low": float(low),
        "high": float(high),
        "even": float(diff[0::2].mean()),
        "odd": float(diff[1::2].mean()),
    }


def main() -> None:
    study = open_study(__doc__.splitlines()[0])
    viewed = ViewedColorizer(study.colorizer)
    labels = {float(i): view.label for i, view in enumerate(VIEWS)}
    began = time.perf_counter()

    def apply(value: float) -> None:
        viewed.set(VIEWS[int(value)])

    rows = sweep(study.colorizer, tuple(labels), apply, study.val)
    chosen = choose(rows, base=0.0)
    folds = cross_validation(study.colorizer, tuple(labels), apply, study.val, base=0.0, knob="view", labels=labels)
    elapsed = time.perf_counter() - began
    lines = [
        "# What the network is shown at inference: geometry, mirror, averages over working sizes",
        "",
        f"`python benchmarks/inference_views.py`; checkpoint `{study.checkpoint.name}`, CPU {platform.machine()}, "
        f"precision {study.colorizer.precision}, torch {torch.__version__}; {elapsed:.0f} s.",
        "",
        f"Validation split ({len(study.val)} photos, long side 512, as `scgan-eval`). The rule fixed in advance (the "
        "decoding studies'): among the views with a positive dPSNR, green and blue hue recall no worse than the "
        "pipeline's view and warm recall >= 0.65, the highest dPSNR at matched colourfulness.",
        "",
        *table(rows, chosen, knob="view", labels=labels),
        "",
        "Cost and certainty, photo by photo against the pipeline's view (dPSNR change; interval: bootstrap of the "
        "photos, 5000 rounds, seed 0):",
        "",
        "| view | CPU per photo (x one 256 px forward) | dPSNR change | photos improved | 95% interval | even / odd half |",
        "|---|---:|---:|---:|---|---|",
    ]
    for value, label in labels.items():
        p = paired(rows[0.0]["deltas"], rows[value]["deltas"])
        lines.append(
            f"| {label} | {viewed.costs[label]:.2f} | {p['mean']:+.2f} | {p['improved']} of {len(study.val)} | "
            f"[{p['low']:+.2f}, {p['high']:+.2f}] | {p['even']:+.2f} / {p['odd']:+.2f} |"
        )
    lines += ["", *folds]
    emit(lines, study.out)


if __name__ == "__main__":
    main()
