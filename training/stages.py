"""What each stage trains: networks, objective, data. The loop itself is stage-agnostic."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.checkpoint import Task, read_generator
from model.chroma_bins import bin_centres
from model.discriminator import PatchDiscriminator70
from model.efficientnet_lite import EfficientNetLite, load_imagenet_weights
from model.encoder_generator import EncoderGenerator
from model.generator import AnyGenerator, build_generator
from model.layers import init_weights, load_folded_weights
from model.lite0_global import Lite0GlobalNetwork
from training.classifier import GlobalClassifier
from training.colour_losses import chroma_prior, rebalancing_weights
from training.config import TrainConfig
from training.data import (
    ClassificationDataset,
    ColorPhotoDataset,
    CropSpec,
    KeyedDataset,
    PairedDataset,
    list_images,
    split_paths,
)
from training.hint_sim import HintSimulation
from training.hue import HUES, hue_balanced_weights, hue_shares
from training.losses import ClassificationObjective, ColorizationObjective, Objective, PerceptualLoss, make_adversary
from training.projected import ProjectedDiscriminator
from training.state import StateError, load_state

log = logging.getLogger("scgan.train")


@dataclass
class StageParts:
    main: nn.Module
    critic: nn.Module | None
    objective: Objective
    train_set: KeyedDataset
    val_paths: list[Path] = field(default_factory=list)
    val_set: KeyedDataset | None = None
    data_description: dict[str, Any] = field(default_factory=dict)
    perceptual_source: str | None = None
    task: Task | None = None
    #: One sampling weight per training item (``data.hue_balance``); None samples each once per epoch.
    sample_weights: list[float] | None = None


def crop_spec(cfg: TrainConfig) -> CropSpec:
    d = cfg.data
    return CropSpec(d.crop_size, (d.scale_min, d.scale_max), (d.ratio_min, d.ratio_max), d.hflip)


def _cache_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.data.saliency_cache) if cfg.data.saliency_cache else cfg.out_dir / "saliency-cache"


def _colour_data(cfg: TrainConfig) -> tuple[KeyedDataset, list[Path], dict[str, Any], list[float] | None]:
    """The training set, the validation photos, a description for the run's records, and sampling weights."""
    d = cfg.data
    crop = crop_spec(cfg)
    if d.input_dir:
        paired = PairedDataset(
            d.input_dir, d.target_dir, cfg.model.in_channels, crop, max_side=d.max_side, cache_dir=_cache_dir(cfg)
        )
        return (
            paired,
            [],
            {"mode": "paired", "input_dir": d.input_dir, "target_dir": d.target_dir, "pairs": len(paired)},
            None,
        )
    train_paths, val_paths = split_paths(d.train_dir, d.val_fraction)
    if d.val_dir:
        val_paths = list_images(d.val_dir)
    train_set = ColorPhotoDataset(
        d.train_dir,
        train_paths,
        crop,
        max_side=d.max_side,
        saliency_dir=d.saliency_dir,
        cache_dir=_cache_dir(cfg),
        min_colorfulness=d.min_colorfulness,
        hints=HintSimulation(d.hints_none_share, d.hints_stop_prob, d.hints_max_patch) if cfg.model.hints else None,
        film_share=d.film_share,
    )
    description = {
        "mode": "colour photos",
        "train_dir": d.train_dir,
        "train_images": len(train_set),
        "validation_images": len(val_paths),
        "validation": d.val_dir or f"{d.val_fraction:.0%} of train_dir, held out by path hash",
        "saliency_targets": d.saliency_dir or "spectral residual (Hou & Zhang 2007), computed and cached",
        "crop_size": d.crop_size,
        "crop_scale": [d.scale_min, d.scale_max],
        "min_colorfulness": d.min_colorfulness,
        "film_share": d.film_share,
        "hints": {"none_share": d.hints_none_share, "stop_prob": d.hints_stop_prob, "max_patch": d.hints_max_patch}
        if cfg.model.hints
        else None,
        "dropped_low_colorfulness": [p.name for p in train_set.dropped_low_colorfulness],
    }
    if d.hue_balance == 0:
        return train_set, val_paths, description, None
    shares = hue_shares(rgb.permute(1, 2, 0).numpy() for rgb in train_set.images)
    weights = hue_balanced_weights(shares, d.hue_balance)
    description["hue_balance"] = {
        "balance": d.hue_balance,
        "weight_range": [round(float(weights.min()), 3), round(float(weights.max()), 3)],
        # each hue's share of the clearly coloured pixels, over the photos as drawn
        "drawn_hue_shares": dict(zip(HUES, _drawn_shares(shares, weights), strict=True)),
        "uniform_hue_shares": dict(zip(HUES, _drawn_shares(shares, np.ones(len(weights))), strict=True)),
    }
    return train_set, val_paths, description, weights.tolist()


def _drawn_shares(shares: np.ndarray, weights: np.ndarray) -> list[float]:
    mass = weights @ shares
    return [round(float(m), 3) for m in mass / max(mass.sum(), 1e-12)]


def _load_global_features(generator: AnyGenerator, path: str) -> None:
    state = load_state(path)
    features = {k[len("features.") :]: v for k, v in state["main"].items() if k.startswith("features.")}
    if not features:
        raise ValueError(f"{path} holds no global feature network (is it a pretrain-global run?)")
    network = generator.global_feature_network  # AttributeError for an EncoderGenerator (it has none)
    assert isinstance(network, nn.Module)
    network.load_state_dict(features, strict=True)
    log.info("global feature network initialised from %s", state["path"])


def _load_stage1(generator: AnyGenerator, path: str) -> None:
    """Start from a training state (its EMA weights when present) or from a serving checkpoint."""
    try:
        state = load_state(path)
    except StateError:
        serving, info = read_generator(path)  # a serving checkpoint: fine-tune from it
        if serving.config != generator.config:
            raise ValueError(f"{path} has config {serving.config}, the run has {generator.config}") from None
        if serving.has_saliency != generator.has_saliency:
            raise ValueError(
                f"{path} saliency branch: {serving.has_saliency}; the run: {generator.has_saliency}"
            ) from None
        deviation = load_folded_weights(generator, serving.state_dict())
        log.info(
            "generator initialised from serving checkpoint %s (max relative weight change %.2e)", info.path, deviation
        )
        return
    weights = state.get("ema") or state["main"]
    generator.load_state_dict(weights, strict=True)
    log.info(
        "generator initialised from %s (step %s%s)",
        state["path"],
        state.get("step"),
        ", EMA weights" if state.get("ema") else "",
    )


def _trunk_of(main: nn.Module) -> nn.Module | None:
    """The ImageNet-trained trunk of a generator: the encoder's, or the Lite0 global network's; else None."""
    if isinstance(main, EncoderGenerator):
        return main.trunk
    net = getattr(main, "global_feature_network", None)
    return net.trunk if isinstance(net, Lite0GlobalNetwork) else None


def _init_imagenet_trunk(generator: AnyGenerator, cfg: TrainConfig) -> None:
    """ImageNet weights into the generator's EfficientNet-Lite trunk; frozen unless optim.lr_global_scale > 0.

    ``loss.encoder_weights`` (an encoder's trunk) or ``loss.lite0_weights`` (a Lite0 global network) names
    the file; by default it comes from the variant's installed weights package.
    """
    trunk = _trunk_of(generator)
    if trunk is None:
        return
    assert isinstance(trunk, EfficientNetLite)
    given = cfg.loss.encoder_weights if isinstance(generator, EncoderGenerator) else cfg.loss.lite0_weights
    name = load_imagenet_weights(trunk, given or None)
    frozen = cfg.optim.lr_global_scale == 0
    trunk.requires_grad_(not frozen)
    log.info(
        "EfficientNet-%s trunk from %s, %s",
        trunk.variant,
        name,
        "frozen" if frozen else f"fine-tuned at {cfg.optim.lr_global_scale} x lr_g",
    )


def main_param_groups(main: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer groups of the main network: an EfficientNet-Lite0 trunk at lr_g x lr_global_scale, the rest at lr_g.

    Frozen parameters are left out.
    """
    trunk = _trunk_of(main)
    trunk_ids = {id(p) for p in trunk.parameters()} if trunk is not None else set()
    rest = [p for p in main.parameters() if p.requires_grad and id(p) not in trunk_ids]
    groups: list[dict[str, Any]] = [{"params": rest, "lr": cfg.optim.lr_g}]
    tuned = [p for p in main.parameters() if p.requires_grad and id(p) in trunk_ids]
    if tuned:
        groups.append({"params": tuned, "lr": cfg.optim.lr_g * cfg.optim.lr_global_scale})
    return groups


def build_stage(cfg: TrainConfig) -> StageParts:
    """Networks (initialised as published), objective and data for ``cfg.run.stage``."""
    gen_cfg = cfg.model.generator_config()
    if cfg.run.stage == "pretrain-global":
        crop = crop_spec(cfg)
        train_paths, val_paths = (
            split_paths(cfg.data.train_dir, cfg.data.val_fraction)
            if cfg.pretrain.task == "rotation"
            else (list_images(cfg.data.train_dir), [])
        )
        train_set = ClassificationDataset(
            cfg.data.train_dir, crop, cfg.pretrain.task, max_side=cfg.data.max_side, paths=train_paths
        )
        val_set = None
        if cfg.pretrain.val_dir:
            val_set = ClassificationDataset(
                cfg.pretrain.val_dir, crop, cfg.pretrain.task, max_side=cfg.data.max_side, classes=train_set.classes
            )
        elif val_paths:
            val_set = ClassificationDataset(
                cfg.data.train_dir, crop, cfg.pretrain.task, max_side=cfg.data.max_side, paths=val_paths
            )
        main = GlobalClassifier(gen_cfg, train_set.num_classes)
        init_weights(main, cfg.model.init_gain)
        return StageParts(
            main,
            None,
            ClassificationObjective(),
            train_set,
            val_set=val_set,
            data_description={
                "mode": f"pretrain-global/{cfg.pretrain.task}",
                "train_dir": cfg.data.train_dir,
                "images": len(train_set),
                "classes": train_set.num_classes,
            },
        )

    generator = build_generator(gen_cfg, with_saliency=cfg.loss.attention > 0, spectral_norm=True)
    init_weights(generator, cfg.model.init_gain)
    _init_imagenet_trunk(generator, cfg)
    if cfg.run.init_global_from:
        _load_global_features(generator, cfg.run.init_global_from)
    if cfg.run.init_from:
        _load_stage1(generator, cfg.run.init_from)
    elif cfg.run.stage == "stage2":
        log.warning("stage2 without run.init_from: the generator starts from scratch, not from stage 1")

    adversary = make_adversary(cfg.loss)
    critic: nn.Module | None = None
    if cfg.loss.gan == "projected":
        critic = ProjectedDiscriminator(cfg.model.discriminator_channels, weights_path=cfg.loss.lite0_weights)
    elif adversary is not None:
        critic = PatchDiscriminator70(
            cfg.model.in_channels,
            cfg.model.out_channels,
            cfg.model.discriminator_channels,
            padding=cfg.model.padding,
            norm=cfg.model.norm,
        )
        init_weights(critic, cfg.model.init_gain)
    perceptual = None
    if cfg.loss.perceptual > 0:
        perceptual = PerceptualLoss(cfg.loss.vgg16_weights, cfg.loss.lite0_weights)
        if perceptual.vgg is None:
            log.warning(
                "no loss.vgg16_weights given: the perceptual loss uses EfficientNet-Lite0 (%s), "
                "not the published VGG-16",
                perceptual.source,
            )
    colour_set, val_paths, description, sample_weights = _colour_data(cfg)
    task = Task.GRAY_TO_RGB if cfg.model.in_channels == 1 and not cfg.data.input_dir else Task.NCHANNEL_TO_RGB
    rebalance = None
    if cfg.loss.bins > 0:
        assert isinstance(colour_set, ColorPhotoDataset)
        centres = bin_centres()
        prior = chroma_prior(colour_set.images, centres)
        rebalance = (centres, rebalancing_weights(prior, cfg.loss.rebalance_uniform_mix))
        description["chroma_prior_bins"] = int(centres.shape[0])
    objective = ColorizationObjective(cfg.loss, adversary, perceptual, rebalance=rebalance)
    return StageParts(
        generator,
        critic,
        objective,
        colour_set,
        val_paths=val_paths,
        data_description=description,
        perceptual_source=perceptual.source if perceptual else None,
        task=task,
        sample_weights=sample_weights,
    )


def move_perceptual(parts: StageParts, device: torch.device, memory_format: torch.memory_format) -> None:
    obj = parts.objective
    if isinstance(obj, ColorizationObjective) and obj.perceptual is not None:
        obj.perceptual.to(device).to(memory_format=memory_format)


__all__ = ["StageParts", "build_stage", "crop_spec", "main_param_groups", "move_perceptual"]
