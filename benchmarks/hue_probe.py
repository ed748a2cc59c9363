"""How well do frozen ImageNet features of the gray image tell hues apart on photos the probe never saw?

Issue 20's hue-recall bar (green >= 0.45, blue >= 0.70, warm >= 0.65) asks the generator to know from a
gray image which pixels are foliage, sky or skin. This measures how much of that an ImageNet-trained
EfficientNet-Lite trunk's features carry, independent of our decoder and losses: per-pixel probes, a
linear one and a one-hidden-layer MLP, read the hue sector of each clearly coloured pixel (chroma >= 12,
the sectors of ``training/hue.py``) from the frozen trunk's features of the gray image (the generator's
skip stages and head, upsampled to stride 4 and concatenated). They are trained on the training split's
photos (``--per-photo`` random clearly coloured pixels from each, class-balanced cross-entropy, Adam,
weight decay fixed in advance at 1e-3) and scored on every clearly coloured pixel of the validation split:
recall per sector, as hue recall counts it, and the same on the training pixels (the gap is overfitting).

Beside them, how sure the checkpoint's own classification head is on the same photos (``--checkpoint``,
default the bundled starter, no hints): the entropy of its softmax over the chroma bins against a uniform
one's, its mean top probability, and the mass it puts on the green sector's bins where the original is
clearly green against elsewhere.

    python benchmarks/hue_probe.py [--variants lite0,lite1,lite2] [--checkpoint PATH] [--out benchmarks/results/hue_probe.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photo_study import emit
from model.checkpoint import load_generator
from model.color import rgb_to_gray
from model.config import HINT_PLANES
from model.efficientnet_lite import LITE_VARIANTS, EfficientNetLite, load_imagenet_weights, normalize_input
from model.encoder_generator import SKIP_STAGES, EncoderGenerator
from model.weights import default_checkpoint_path
from training.data import split_paths
from training.hue import HUE_SECTORS, HUES, ORIGINAL_MIN_CHROMA, OUTPUT_MIN_CHROMA, hue_classes, hue_sectors

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "photos" / "train"
SIZE = 256  # the generator's working size
STEPS, BATCH, LR, WEIGHT_DECAY = 300, 4096, 1e-3, 1e-3


#: With ``neutral``, the class index of the pixels that are (nearly) gray in the original.
NEUTRAL = len(HUES)


def _pixels(trunk: EfficientNetLite, path: Path, neutral: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(N x C features, N class indices, -1 where not counted) of one photo at stride 4."""
    rgb = _photo(path)
    gray = rgb_to_gray(rgb)
    blocks = (*(trunk.stage_end_blocks[i] for i in SKIP_STAGES), -1)
    with torch.no_grad():
        feats = trunk.stages(normalize_input(gray.expand(-1, 3, -1, -1)), blocks)
    size = (SIZE // 4, SIZE // 4)
    return stacked_features(feats, blocks, size)[0].flatten(1).T, _clear_sectors(rgb, size, neutral).flatten()


def stacked_features(feats: dict[int, torch.Tensor], blocks: tuple[int, ...], size: tuple[int, ...]) -> torch.Tensor:
    """The trunk's outputs at ``blocks``, bilinearly resized to ``size`` and concatenated: what the probes read."""
    return torch.cat(
        [F.interpolate(feats[b].float(), size=size, mode="bilinear", align_corners=False) for b in blocks], 1
    )


def _photo(path: Path) -> torch.Tensor:
    """1 x 3 x SIZE x SIZE RGB in [0, 1]."""
    with Image.open(path) as image:
        rgb_image = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(rgb_image)).permute(2, 0, 1).float().div(255.0)[None]


def _clear_sectors(rgb: torch.Tensor, size: tuple[int, int], neutral: bool = False) -> torch.Tensor:
    """h x w sector indices of ``rgb`` area-downsampled to ``size``, -1 where not clearly coloured; with
    ``neutral``, :data:`NEUTRAL` where its chroma is below the output's "painted" threshold."""
    small = F.interpolate(rgb, size=size, mode="area")[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255)
    pixels = small.to(torch.uint8).numpy()
    classes = hue_classes(pixels, ORIGINAL_MIN_CHROMA).astype(np.int64)
    if neutral:
        classes[hue_classes(pixels, OUTPUT_MIN_CHROMA) < 0] = NEUTRAL
    return torch.from_numpy(classes)


def head_certainty(checkpoint: Path, paths: list[Path]) -> dict[str, float]:
    """How sure a bins-head checkpoint is on ``paths`` (no hints): entropy, top probability, green mass."""
    net = load_generator(checkpoint, "cpu").eval()
    if not isinstance(net, EncoderGenerator) or net.config.chroma_head != "bins":
        raise SystemExit(f"{checkpoint} has no chroma-bins head")
    centres = net.get_buffer("bin_centres")
    sectors = torch.from_numpy(hue_sectors(centres[:, 0].numpy(), centres[:, 1].numpy()).astype(np.int64))
    green_bins = (sectors == HUES.index("green")) & (centres.norm(dim=1) > 0)
    entropy, top, on_green, off_green = [], [], [], []
    for path in paths:
        rgb = _photo(path)
        gray = rgb_to_gray(rgb)
        x = torch.cat([gray, torch.zeros(1, HINT_PLANES, SIZE, SIZE)], 1) if net.config.hints else gray
        with torch.no_grad():
            head = net(x, return_saliency=False, return_head=True)[2]
        probs = torch.softmax(head.float(), 1)[0]  # Q x h x w
        entropy.append(float(-(probs * probs.clamp_min(1e-12).log()).sum(0).mean()))
        top.append(float(probs.max(0).values.mean()))
        truth = _clear_sectors(rgb, (head.shape[-2], head.shape[-1]))
        mass = probs[green_bins].sum(0)
        green = truth == HUES.index("green")
        if green.any():
            on_green.append(mass[green])
        off_green.append(mass[~green])
    return {
        "entropy": float(np.mean(entropy)),
        "uniform": float(np.log(len(centres))),
        "top": float(np.mean(top)),
        "on_green": float(torch.cat(on_green).mean()),
        "off_green": float(torch.cat(off_green).mean()),
    }


def collect_pixels(
    trunk: EfficientNetLite, paths: list[Path], per_photo: int | None, seed: int, neutral: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and classes of the counted pixels of ``paths`` (at most ``per_photo`` random ones each)."""
    rng = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for path in paths:
        x, y = _pixels(trunk, path, neutral)
        keep = (y >= 0).nonzero().flatten()
        if per_photo is not None and len(keep) > per_photo:
            keep = keep[torch.randperm(len(keep), generator=rng)[:per_photo]]
        xs.append(x[keep])
        ys.append(y[keep])
    return torch.cat(xs), torch.cat(ys)


def class_recall(predicted: torch.Tensor, truth: torch.Tensor, names: tuple[str, ...] = HUES) -> dict[str, float]:
    """Per class: the share of the pixels of that class that are predicted as it."""
    return {
        name: float(((predicted == i) & (truth == i)).sum()) / max(1, int((truth == i).sum()))
        for i, name in enumerate(names)
    }


def fit_probe(probe: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, classes: int = len(HUES)) -> nn.Module:
    """Class-balanced cross-entropy, the schedule fixed in advance (:data:`STEPS`, :data:`BATCH`, :data:`LR`)."""
    counts = torch.bincount(y, minlength=classes).float()
    weight = counts.sum() / (classes * counts.clamp_min(1.0))
    optimizer = torch.optim.Adam(probe.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    rng = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        index = torch.randint(0, len(x), (BATCH,), generator=rng)
        loss = F.cross_entropy(probe(x[index]), y[index], weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return probe.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="lite0,lite1,lite2")
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--val-fraction", type=float, default=0.1, help="as the starter configs' data.val_fraction")
    p.add_argument("--per-photo", type=int, default=300)
    p.add_argument("--checkpoint", type=Path, default=default_checkpoint_path())
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    train_paths, val_paths = split_paths(args.photos, args.val_fraction)
    began = time.perf_counter()
    rows: list[str] = []
    shares = ""
    variants = args.variants.split(",")
    if unknown := set(variants) - set(LITE_VARIANTS):
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(LITE_VARIANTS)}")
    for variant in variants:
        trunk = EfficientNetLite(variant, with_classifier=False)
        load_imagenet_weights(trunk)
        trunk.eval()
        x_train, y_train = collect_pixels(trunk, train_paths, args.per_photo, seed=0)
        x_val, y_val = collect_pixels(trunk, val_paths, None, seed=0)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
        total = {n: int(c) for n, c in zip(HUES, torch.bincount(y_val, minlength=len(HUES)), strict=True)}
        shares = ", ".join(f"{n} {c / sum(total.values()):.0%}" for n, c in total.items())
        probes = {
            "linear": nn.Linear(x_train.shape[1], len(HUES)),
            "MLP (256 hidden)": nn.Sequential(nn.Linear(x_train.shape[1], 256), nn.ReLU(), nn.Linear(256, len(HUES))),
        }
        for kind, probe in probes.items():
            torch.manual_seed(0)
            fit_probe(probe, x_train, y_train, seed=0)
            with torch.no_grad():
                val = class_recall(probe(x_val).argmax(1), y_val)
                train = class_recall(probe(x_train).argmax(1), y_train)
            cells = " | ".join(f"{val[h]:.2f} ({train[h]:.2f})" for h in ("warm", "green", "blue", "purple"))
            rows.append(f"| {variant} ({x_train.shape[1]} features) | {kind} | {cells} |")
            print(rows[-1], flush=True)
    head = head_certainty(args.checkpoint, val_paths)
    sectors = ", ".join(f"{name} {start:.0f}-{end % 360:.0f}" for name, start, end in HUE_SECTORS)
    lines = [
        "# What frozen ImageNet features of the gray image know about hue (issue 20's hue-recall bar)",
        "",
        f"`python benchmarks/hue_probe.py --variants {args.variants}`; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}; {(time.perf_counter() - began) / 60:.1f} min. Photos resized to {SIZE} x {SIZE}; "
        f"features of the generator's skip stages and head at stride 4; {len(train_paths)} training photos "
        f"({args.per_photo} random clearly coloured pixels each), {len(val_paths)} validation photos (every clearly "
        f"coloured pixel; {shares}). Sectors (degrees in the CbCr plane): {sectors}. Class-balanced "
        f"cross-entropy, {STEPS} Adam steps of {BATCH} pixels, lr {LR:g}, weight decay {WEIGHT_DECAY:g}, fixed in advance.",
        "",
        "Recall per sector on the validation pixels, (in brackets) on the training pixels:",
        "",
        "| trunk | probe | warm | green | blue | purple |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"The checkpoint's own bins head on the same {len(val_paths)} validation photos (`{args.checkpoint.name}`, "
        f"{SIZE} x {SIZE}, no hints, fp32), over its half-resolution pixels:",
        "",
        "| softmax entropy (nats) | a uniform softmax's | mean top probability "
        "| mass on the green sector's bins: where the original is clearly green | elsewhere |",
        "|---:|---:|---:|---:|---:|",
        f"| {head['entropy']:.2f} | {head['uniform']:.2f} | {head['top']:.3f} | {head['on_green']:.3f} "
        f"| {head['off_green']:.3f} |",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
