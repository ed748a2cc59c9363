"""SCGAN networks, checkpoints and the colour pipeline.

This package depends on neither the service nor the training code.
"""

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
from model.device import Precision, resolve_device
from model.discriminator import PatchDiscriminator70, PerceptualNet
from model.generator import AttentionPredictionNetwork, Generator, GlobalFeatureNetwork
from model.layers import fold_spectral_norm, init_weights
from model.pipeline import Colorizer, PreparedImage, check_render_size
from model.weights import default_checkpoint_path

__version__ = "0.1.0"

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
