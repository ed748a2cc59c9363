"""Turn a training state into the serving checkpoint ``model.load_generator`` reads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import Task, save_checkpoint, state_has_saliency
from model.generator import build_generator
from training.config import build_config
from training.state import load_state

log = logging.getLogger("scgan.train.export")


def export_checkpoint(
    state_path: str | Path,
    out: str | Path,
    *,
    half: bool = False,
    use_ema: bool = True,
    extra_metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the generator of a training state (EMA weights when present) in our format, spectral norm folded."""
    state = load_state(state_path)
    if state["stage"] == "pretrain-global":
        raise ValueError(f"{state['path']} is a pretrain-global run: it has no generator to export")
    cfg = build_config(dict(state["config"]))
    weights = state["ema"] if use_ema and state.get("ema") else state["main"]
    has_saliency = state_has_saliency(weights)
    generator = build_generator(cfg.model.generator_config(), with_saliency=has_saliency, spectral_norm=True)
    generator.load_state_dict(weights, strict=True)
    generator.eval()
    metrics = {
        "best_validation": state.get("best") or {},
        "last_validation": state.get("last_validation") or {},
        **(extra_metrics or {}),
    }
    path = save_checkpoint(
        out,
        generator,
        task=Task(state["task"]) if state.get("task") else None,
        working_resolution=cfg.render_size,
        training_data=state.get("data") or {},
        metrics=metrics,
        extra={
            "stage": state["stage"],
            "step": state["step"],
            "weights": "ema" if use_ema and state.get("ema") else "raw",
            "perceptual_loss": state.get("perceptual"),
            "source_state": Path(state["path"]).name,
        },
        dtype=torch.float16 if half else torch.float32,
    )
    log.info("exported %s (step %s) to %s", state["path"], state["step"], path)
    return path


__all__ = ["export_checkpoint"]
