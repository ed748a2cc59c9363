"""The resident model: loaded once, on the configured device and precision, warmed, described.

This is the service's only contact with :mod:`model`: it builds the
:class:`~model.Colorizer` whose three stages (prepare / predict / finish) the
request pipeline runs, and turns ``predict`` into the batch function the
batcher calls. A ``predict`` override is the test seam (a slow or failing
forward); everything else stays real.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model import Colorizer, Generator, GeneratorConfig, default_checkpoint_path
from model.checkpoint import read_generator
from model.compiled import bucket_batch_sizes, resolve_compile
from model.device import resolve_device
from model.storage import weights_sha256
from service.settings import Settings

_log = logging.getLogger(__name__)

#: (batch B x C x R x R on the CPU, want saliency) -> (RGB B x 3 x R x R, saliency B x 1 x R x R or None), on the CPU.
PredictFn = Callable[[torch.Tensor, bool], tuple[torch.Tensor, "torch.Tensor | None"]]

#: The compact generator used when the bundled starter checkpoint is missing (a stripped install).
FALLBACK_CONFIG = GeneratorConfig(start_channels=16, latent_channels=32, global_channels=16)


@dataclass(frozen=True)
class WorkItem:
    """One request's model input as it waits in the batch queue."""

    tensor: torch.Tensor  # C_in x R x R, float32, CPU
    render_size: int
    saliency: bool
    request_id: str = "-"


def work_key(item: WorkItem) -> tuple[int, bool]:
    """Items with equal keys stack into one tensor and run in one forward."""
    return item.render_size, item.saliency


@dataclass(frozen=True)
class ModelIdentity:
    """Where the weights came from, for /v1/model, metrics and logs."""

    name: str
    sha256: str
    source_format: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _json_safe(metadata: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint metadata as plain JSON values (tensors or other objects become strings)."""
    safe: dict[str, Any] = json.loads(json.dumps(metadata, default=str))
    return safe


def _fallback_generator(seed: int) -> tuple[Generator, ModelIdentity]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Generator(FALLBACK_CONFIG, with_saliency=True, spectral_norm=False).eval()
    identity = ModelIdentity(
        name=f"random-init-compact-seed{seed}",
        sha256=weights_sha256(net.state_dict().items()),
        source_format="random-init",
        metadata={"warning": "no checkpoint: randomly initialised weights, colours are meaningless"},
    )
    return net, identity


class ModelRuntime:
    """A :class:`~model.Colorizer` plus what the service needs around it."""

    def __init__(
        self,
        colorizer: Colorizer,
        identity: ModelIdentity,
        *,
        predict: PredictFn | None = None,
        compile_forwards: bool = False,
        compile_cache_dir: Path | None = None,
    ) -> None:
        self.colorizer = colorizer
        self.identity = identity
        self.compile_forwards = compile_forwards  # warm-up compiles the forward (ModelRuntime.warm_up)
        self.compile_cache_dir = compile_cache_dir
        self._predict: PredictFn = predict or self._model_predict

    @classmethod
    def load(cls, settings: Settings, *, predict: PredictFn | None = None) -> ModelRuntime:
        """Load the configured checkpoint (or the bundled one, or a loudly logged random fallback)."""
        device = resolve_device(settings.device)
        path = settings.checkpoint or default_checkpoint_path()
        if path is not None:
            net, info = read_generator(path)  # CheckpointError names the file and the problem
            identity = ModelIdentity(info.name, info.sha256, info.source_format, _json_safe(info.metadata))
        else:
            _log.warning(
                "no checkpoint configured (SCGAN_CHECKPOINT) and no bundled starter checkpoint: serving a RANDOMLY "
                "INITIALISED compact generator (seed %d); its colours are meaningless",
                settings.fallback_seed,
            )
            net, identity = _fallback_generator(settings.fallback_seed)
        if device.type == "cuda":
            # Shapes are few and fixed (warm-up visits each batch size), so cuDNN's autotuner pays off.
            torch.backends.cudnn.benchmark = True
        colorizer = Colorizer(
            net,
            device=device,
            precision=settings.precision,
            render_size=settings.render_size,
            batch_size=settings.max_batch_size,
        )
        compile_forwards, why_not = resolve_compile(
            settings.compile, colorizer.device
        )  # 'on' without a compiler raises
        if not compile_forwards and settings.compile != "off":
            _log.info("forwards stay eager: %s", why_not)
        _log.info(
            "loaded %s (sha256 %s, %s, saliency=%s) on %s at %s, render size %d",
            identity.name,
            identity.sha256[:12],
            colorizer.task.value,
            colorizer.has_saliency,
            colorizer.device,
            colorizer.precision,
            colorizer.render_size,
        )
        return cls(
            colorizer,
            identity,
            predict=predict,
            compile_forwards=compile_forwards,
            compile_cache_dir=settings.compile_cache_dir,
        )

    @property
    def compiled_batch_sizes(self) -> list[int]:
        """Batch sizes at the default render size that run a compiled graph (empty: all eager)."""
        return [s.batch_size for s in self.colorizer.compiled_shapes if s.render_size == self.colorizer.render_size]

    # -- inference ---------------------------------------------------------------------
    def _model_predict(self, batch: torch.Tensor, saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.colorizer.predict(batch, saliency=saliency)

    def predict_batch(self, items: list[WorkItem]) -> list[torch.Tensor]:
        """The batcher's predict function: stack same-key items, one forward, one output tensor per item."""
        saliency = items[0].saliency
        batch = torch.stack([item.tensor for item in items])  # B x C x R x R
        try:
            rgb, sal = self._predict(batch, saliency)
        except Exception:
            _log.error("forward of %s failed for requests %s", tuple(batch.shape), [i.request_id for i in items])
            raise
        out = sal if saliency else rgb
        if out is None:
            raise RuntimeError("the forward returned no saliency map")
        return list(out.unbind(0))

    def warm_up(self, max_batch_size: int) -> float:
        """Compile or load (when enabled), then one forward per batch size the batcher can form and one saliency forward.

        Returns the seconds spent. Compiling builds one graph per batch size in
        :func:`~model.compiled.bucket_batch_sizes`, or loads it from the compile cache; a shape that fails
        to compile is logged and runs eagerly.
        """
        start = time.perf_counter()
        size = self.colorizer.render_size
        channels = self.colorizer.input_channels
        if self.compile_forwards:
            sizes = bucket_batch_sizes(max_batch_size)
            _log.info(
                "compiled forwards: %d batch sizes %s at %dx%d, cache %s",
                len(sizes),
                sizes,
                size,
                size,
                self.compile_cache_dir or "off (SCGAN_COMPILE_CACHE_DIR is empty)",
            )
            report = self.colorizer.compile(sizes, size, cache_dir=self.compile_cache_dir)
            _log.info(
                "compiled forwards ready for batch sizes %s at %dx%d in %.1f s (%d loaded from the cache)%s",
                [s.batch_size for s in report.compiled],
                size,
                size,
                report.seconds,
                len(report.loaded),
                f"; eager for {[s.batch_size for s in report.failed]}" if report.failed else "",
            )
        for batch_size in range(1, max_batch_size + 1):
            self._predict(torch.zeros(batch_size, channels, size, size), False)
        if self.colorizer.has_saliency:
            self._predict(torch.zeros(1, channels, size, size), True)
        if self.colorizer.device.type == "cuda":
            torch.cuda.synchronize(self.colorizer.device)
        elapsed = time.perf_counter() - start
        _log.info("warm-up done: batch sizes 1..%d at %dx%d in %.2f s", max_batch_size, size, size, elapsed)
        return elapsed


__all__ = [
    "FALLBACK_CONFIG",
    "ModelIdentity",
    "ModelRuntime",
    "PredictFn",
    "WorkItem",
    "work_key",
]
