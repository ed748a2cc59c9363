"""SCGAN networks, checkpoints and the colour pipeline.

This package depends on neither the service nor the training code. Importing it (or a torch-free
submodule such as :mod:`model.images` or :mod:`model.options`) does not import torch: the names below
are loaded from their modules on first use, so ``scgan-colorize --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.checkpoint import (
        CheckpointError,
        CheckpointInfo,
        Task,
        convert_official,
        load_generator,
        read_generator,
        save_checkpoint,
    )
    from model.config import GeneratorConfig
    from model.device import resolve_device
    from model.discriminator import PatchDiscriminator70, PerceptualNet
    from model.generator import AttentionPredictionNetwork, Generator, GlobalFeatureNetwork
    from model.layers import fold_spectral_norm, init_weights
    from model.options import Precision
    from model.pipeline import Colorizer, PreparedImage, check_render_size
    from model.weights import default_checkpoint_path

__version__ = "0.1.0"

#: Each public name and the submodule that defines it (imported on first access, PEP 562).
_EXPORTS: dict[str, str] = {
    "AttentionPredictionNetwork": "model.generator",
    "CheckpointError": "model.checkpoint",
    "CheckpointInfo": "model.checkpoint",
    "Colorizer": "model.pipeline",
    "Generator": "model.generator",
    "GeneratorConfig": "model.config",
    "GlobalFeatureNetwork": "model.generator",
    "PatchDiscriminator70": "model.discriminator",
    "PerceptualNet": "model.discriminator",
    "Precision": "model.options",
    "PreparedImage": "model.pipeline",
    "Task": "model.checkpoint",
    "check_render_size": "model.pipeline",
    "convert_official": "model.checkpoint",
    "default_checkpoint_path": "model.weights",
    "fold_spectral_norm": "model.layers",
    "init_weights": "model.layers",
    "load_generator": "model.checkpoint",
    "read_generator": "model.checkpoint",
    "resolve_device": "model.device",
    "save_checkpoint": "model.checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "AttentionPredictionNetwork",
    "CheckpointError",
    "CheckpointInfo",
    "Colorizer",
    "Generator",
    "GeneratorConfig",
    "GlobalFeatureNetwork",
    "PatchDiscriminator70",
    "PerceptualNet",
    "Precision",
    "PreparedImage",
    "Task",
    "check_render_size",
    "convert_official",
    "default_checkpoint_path",
    "fold_spectral_norm",
    "init_weights",
    "load_generator",
    "read_generator",
    "resolve_device",
    "save_checkpoint",
]
