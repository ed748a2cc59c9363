"""Checkpoint I/O: our self-describing format and the authors' released state dicts.

Our format is one ``torch.save`` file holding a plain dict::

    {"format": "scgan-colorize", "format_version": 1,
     "config": GeneratorConfig as dict, "state_dict": folded generator weights,
     "metadata": {"task", "working_resolution", "has_saliency", "training_data",
                  "metrics", "created_at", ...}}

Everything is read with ``weights_only=True``: a checkpoint from the internet
cannot run code. Every failure raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import pickle
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from model.config import GeneratorConfig
from model.device import resolve_device
from model.generator import AnyGenerator, Generator, build_generator
from model.layers import fold_spectral_norm, has_spectral_norm
from model.storage import atomic_torch_save, file_sha256

FORMAT_NAME = "scgan-colorize"
FORMAT_VERSION = 1
_OFFICIAL_PROBE = "down1.conv2d.module.weight_bar"


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, foreign or does not fit its network."""


class Task(str, Enum):
    """What a generator maps: gray -> RGB (chroma recombined with the input's luma), or N channels -> RGB."""

    GRAY_TO_RGB = "gray->rgb"
    NCHANNEL_TO_RGB = "nchannel->rgb"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint says about itself; attached to the generator as ``checkpoint_info``."""

    path: str
    sha256: str
    source_format: str  # "scgan-colorize" or "official"
    task: Task
    working_resolution: int
    config: GeneratorConfig
    has_saliency: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).name


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def default_task(config: GeneratorConfig) -> Task:
    return Task.GRAY_TO_RGB if config.in_channels == 1 else Task.NCHANNEL_TO_RGB


def save_checkpoint(
    path: str | os.PathLike[str],
    generator: AnyGenerator,
    *,
    task: Task | str | None = None,
    working_resolution: int = 256,
    training_data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``generator`` in our format (spectral norm folded), atomically.

    ``dtype=torch.float16`` halves the file; weights are cast back to float32 on load.
    """
    path = Path(path)
    net = copy.deepcopy(generator).to("cpu").eval()
    if has_spectral_norm(net):
        fold_spectral_norm(net)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    resolved_task = Task(task) if task is not None else default_task(net.config)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": net.config.to_dict(),
        "state_dict": state,
        "metadata": {
            "task": resolved_task.value,
            "working_resolution": int(working_resolution),
            "has_saliency": net.has_saliency,
            "training_data": training_data or {},
            "metrics": metrics or {},
            "created_at": _now(),
            "torch_version": str(torch.__version__),
            **(extra or {}),
        },
    }
    return atomic_torch_save(payload, path)  # readable by others (e.g. a non-root service user), as plain files are


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    detail = next((line.strip() for line in lines if "Unsupported global" in line), lines[0] if lines else "")
    return detail or type(exc).__name__


def _read(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only=True reports every unpickling failure as a refusal
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, refused for safety "
            f"({_first_line(exc)})"
        ) from exc
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({_first_line(exc)})") from exc
    except Exception as exc:  # the unpickler fails on malformed bytes in many ways (IndexError, KeyError, ...)
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc


def _strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _official_config(state: dict[str, torch.Tensor], path: Path) -> tuple[GeneratorConfig, bool]:
    """Infer sizes from the tensor shapes of a reference-implementation state dict."""
    try:
        down1 = state["down1.conv2d.module.weight_bar"]
        global1 = state["global_feature_network.conv1_1.conv2d.module.weight_bar"]
        up9 = state["up9.conv2d.module.weight_bar"]
        has_saliency = "attention_prediction_network.conv11.conv2d.conv2d.module.weight_bar" in state
        latent = (
            state["attention_prediction_network.conv11.conv2d.conv2d.module.weight_bar"].shape[0]
            if has_saliency
            else 128
        )
        config = GeneratorConfig(
            in_channels=int(down1.shape[1]),
            out_channels=int(up9.shape[0]),
            start_channels=int(down1.shape[0]),
            latent_channels=int(latent),
            global_channels=int(global1.shape[0]),
        )
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} looks like an official SCGAN state dict but is incomplete: {exc}"
        ) from exc
    return config, has_saliency


def _load_strict(net: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} has non-tensor entries in its state dict")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[:3]})")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit its network: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)


#: State-dict prefixes of a saliency branch: SCGAN's, or the encoder generator's head.
SALIENCY_PREFIXES = ("attention_prediction_network.", "saliency_head.")


def state_has_saliency(state: dict[str, Any]) -> bool:
    """Whether a generator state dict holds a saliency branch."""
    return any(k.startswith(SALIENCY_PREFIXES) for k in state)


def _build_ours(payload: dict[str, Any], path: Path) -> tuple[AnyGenerator, dict[str, Any]]:
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; this build reads {FORMAT_VERSION}")
    try:
        config = GeneratorConfig.from_dict(dict(payload["config"]))
        state = dict(payload["state_dict"])
        metadata = dict(payload.get("metadata") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has a malformed header: {exc}") from exc
    has_saliency = state_has_saliency(state)
    try:
        net = build_generator(config, with_saliency=has_saliency, spectral_norm=False)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {exc}") from exc
    _load_strict(net, state, path)
    return net, metadata


def _build_official(state: dict[str, Any], path: Path) -> tuple[Generator, dict[str, Any]]:
    config, has_saliency = _official_config(state, path)
    net = Generator(config, with_saliency=has_saliency, spectral_norm=True)
    _load_strict(net, state, path)
    net.eval()
    fold_spectral_norm(net)
    return net, {"task": default_task(config).value, "working_resolution": 256, "source": "official SCGAN release"}


def read_generator(path: str | os.PathLike[str]) -> tuple[AnyGenerator, CheckpointInfo]:
    """Build the CPU, eval-mode, spectral-norm-folded generator a checkpoint describes."""
    path = Path(path)
    payload = _read(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
    if payload.get("format") == FORMAT_NAME:
        net, metadata = _build_ours(payload, path)
        source = FORMAT_NAME
    else:
        state = payload.get("state_dict", payload) if isinstance(payload.get("state_dict"), dict) else payload
        state = _strip_prefix(state, "module.")
        if _OFFICIAL_PROBE not in state:
            raise CheckpointError(
                f"checkpoint {path} is neither a scgan-colorize checkpoint nor an official SCGAN generator state dict"
            )
        net, metadata = _build_official(state, path)
        source = "official"
    try:
        task = Task(metadata.get("task", default_task(net.config).value))
        resolution = int(metadata.get("working_resolution", 256))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has invalid metadata: {exc}") from exc
    info = CheckpointInfo(
        path=str(path),
        sha256=file_sha256(path),
        source_format=source,
        task=task,
        working_resolution=resolution,
        config=net.config,
        has_saliency=net.has_saliency,
        metadata=metadata,
    )
    net.eval()
    net.checkpoint_info = info  # type: ignore[assignment]  # nn.Module types attributes as Tensor | Module
    return net, info


def load_generator(path: str | os.PathLike[str], device: str | torch.device | None = None) -> AnyGenerator:
    """Load a checkpoint (ours or the authors') as an eval-mode generator on ``device`` (default: CUDA, else CPU).

    The result carries ``checkpoint_info`` (:class:`CheckpointInfo`).
    """
    net, _ = read_generator(path)
    return net.to(resolve_device(device))


_WRITTEN_BY_SAVE = {
    "task",
    "working_resolution",
    "training_data",
    "metrics",
    "has_saliency",
    "created_at",
    "torch_version",
}


def resave_checkpoint(
    path: str | os.PathLike[str],
    generator: AnyGenerator,
    info: CheckpointInfo,
    *,
    extra: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    drop: Collection[str] = (),
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``generator`` with the metadata ``info`` was read with (task, size, data, metrics, extras), plus ``extra``.

    For tools that derive one checkpoint from another (a float16 copy, an interpolation) and keep its record.
    ``metrics`` replaces the source's when given; ``drop`` names extras that no longer describe the result.
    """
    meta = dict(info.metadata)
    kept = {k: v for k, v in meta.items() if k not in _WRITTEN_BY_SAVE and k not in drop}
    return save_checkpoint(
        path,
        generator,
        task=info.task,
        working_resolution=info.working_resolution,
        training_data=meta.get("training_data") or {},
        metrics=meta.get("metrics") or {} if metrics is None else metrics,
        extra={**kept, **(extra or {})},
        dtype=dtype,
    )


def convert_official(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Rewrite an authors' released generator state dict in our format."""
    net, info = read_generator(src)
    if info.source_format != "official":
        raise CheckpointError(f"checkpoint {src} is not an official SCGAN state dict")
    return save_checkpoint(
        dst,
        net,
        task=info.task,
        working_resolution=info.working_resolution,
        training_data={"description": "converted from an official SCGAN release (ImageNet, per the paper)"},
        extra={"converted_from": Path(src).name, "converted_sha256": info.sha256},
    )


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointInfo",
    "Task",
    "convert_official",
    "default_task",
    "load_generator",
    "SALIENCY_PREFIXES",
    "read_generator",
    "resave_checkpoint",
    "save_checkpoint",
    "state_has_saliency",
]
