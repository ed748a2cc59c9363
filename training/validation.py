"""Validation during training: colorization metrics on held-out photos, or classifier accuracy."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from torch.utils.data import DataLoader

from model.generator import EncoderGenerator, Generator
from model.images import load_rgb
from model.pipeline import Colorizer
from training.config import TrainConfig
from training.loop import Validator
from training.stages import StageParts

log = logging.getLogger("scgan.train.validation")


def _load_images(paths: list[Path], max_side: int) -> list[Image.Image]:
    images = []
    for path in paths:
        try:
            images.append(load_rgb(path, max_side))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            log.warning("skipping validation image %s: %s", path, exc)
    return images


def make_validator(cfg: TrainConfig, parts: StageParts, device: torch.device) -> Validator | None:
    """A callable scoring a network on the validation data, or None when there is none."""
    if cfg.run.stage == "pretrain-global":
        if parts.val_set is None:
            return None
        return _classifier_validator(parts, device, cfg.optim.batch_size)
    if not parts.val_paths:
        return None
    images = _load_images(parts.val_paths, cfg.data.val_max_side)
    if not images:
        return None
    from training.evaluate import evaluate_images

    def validate(generator: nn.Module) -> dict[str, float]:
        if not isinstance(generator, Generator | EncoderGenerator):
            raise TypeError(f"colour validation needs a Generator, got {type(generator).__name__}")
        colorizer = Colorizer(generator, device=device, render_size=cfg.render_size, batch_size=8)  # its own copy
        return evaluate_images(colorizer, images)

    return validate


def _classifier_validator(parts: StageParts, device: torch.device, batch_size: int) -> Validator:
    dataset = parts.val_set
    assert dataset is not None
    keys = [(i, 777 + i) for i in range(len(dataset))]

    @torch.no_grad()
    def validate(net: nn.Module) -> dict[str, float]:
        net.eval()
        top1 = top5 = 0
        loader = DataLoader(dataset, batch_size=batch_size, sampler=keys)  # keys: (index, seed) pairs
        for batch in loader:
            logits = net(batch["input"].to(device))
            labels = batch["label"].to(device)
            k = min(5, logits.shape[1])
            best = logits.topk(k, dim=1).indices
            top1 += int((best[:, 0] == labels).sum())
            top5 += int((best == labels[:, None]).any(dim=1).sum())
        n = len(keys)
        return {"top1": top1 / n, "top5": top5 / n}

    return validate


__all__ = ["make_validator"]
