"""The one training loop: data, devices, DDP, mixed precision, accumulation, schedules,
checkpoints, resume, logging. What is optimised comes from the stage's objective.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torchvision.utils import save_image
from tqdm import tqdm

from model.device import autocast, cpu_runs_bf16_natively
from model.options import Precision
from model.storage import weights_sha256
from model.wording import count
from training import distributed
from training.config import TrainConfig
from training.metrics_log import MetricsLog
from training.samples import sample_grid
from training.stages import StageParts, build_stage, main_param_groups, move_perceptual
from training.state import StateError, load_state, rng_state, save_state, set_rng_state

log = logging.getLogger("scgan.train")

Validator = Callable[[nn.Module], dict[str, float]]


def _unwrap(module: nn.Module | None) -> nn.Module | None:
    return module.module if isinstance(module, DDP) else module


def training_precision(precision: Precision, device: torch.device) -> Precision:
    """The precision a run trains in: ``precision``, or fp32 where autocast to it would not pay on ``device``."""
    if device.type == "cuda" or precision == "fp32":
        return precision
    if precision == "bf16" and (device.type != "cpu" or cpu_runs_bf16_natively()):
        return precision
    return "fp32"


def _step_decay(every_steps: int, gamma: float) -> Callable[[int], float]:
    return lambda step: gamma ** (step // every_steps) if every_steps > 0 else 1.0


class Trainer:
    """Runs one stage to completion (or resumes it) and writes its checkpoints."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        resume: bool = False,
        make_validator: Callable[[TrainConfig, StageParts, torch.device], Validator | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.resume = resume
        self.make_validator = make_validator

    # -- setup -----------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        self.ctx = distributed.setup(cfg.run.device)
        # Every generator a checkpoint records is seeded, so a run and its resumed twin end bit-identical.
        random.seed(cfg.run.seed)
        np.random.seed(cfg.run.seed)
        torch.manual_seed(cfg.run.seed)
        self.device = self.ctx.device
        self.out_dir = cfg.out_dir
        self.ckpt_dir = self.out_dir / "ckpt"
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        distributed.barrier(self.ctx)
        parts = build_stage(cfg)
        self.parts = parts
        self.memory_format = cfg.run.memory_format
        main = parts.main.to(self.device).to(memory_format=self.memory_format)
        critic = parts.critic.to(self.device).to(memory_format=self.memory_format) if parts.critic is not None else None
        move_perceptual(parts, self.device, self.memory_format)
        if self.ctx.enabled and cfg.run.sync_batchnorm:
            main = nn.SyncBatchNorm.convert_sync_batchnorm(main)
            critic = nn.SyncBatchNorm.convert_sync_batchnorm(critic) if critic is not None else None
        o = cfg.optim
        if cfg.run.stage == "pretrain-global":
            self.opt_main: torch.optim.Optimizer = torch.optim.SGD(
                main.parameters(), lr=o.lr_g, momentum=o.momentum, weight_decay=o.weight_decay
            )
        else:
            self.opt_main = torch.optim.Adam(
                main_param_groups(main, cfg), lr=o.lr_g, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay
            )
        self.opt_critic = (
            torch.optim.Adam(
                [p for p in critic.parameters() if p.requires_grad],
                lr=o.lr_d,
                betas=(o.beta1, o.beta2),
                weight_decay=o.weight_decay,
            )
            if critic is not None
            else None
        )

        from training.data import EpochSampler

        self.sampler = EpochSampler(
            len(parts.train_set),
            seed=cfg.run.seed,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            weights=parts.sample_weights,
        )
        per_step = o.batch_size * o.grad_accum
        self.steps_per_epoch = self.sampler.per_rank() // per_step
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{count(self.sampler.per_rank(), 'image')} per process cannot fill one step of {per_step}"
            )
        self.total_steps = cfg.run.max_steps or cfg.run.epochs * self.steps_per_epoch
        decay_steps = int(round(o.lr_decay_every * self.steps_per_epoch))
        self.sched_main = torch.optim.lr_scheduler.LambdaLR(self.opt_main, _step_decay(decay_steps, o.lr_decay_gamma))
        self.sched_critic = (
            torch.optim.lr_scheduler.LambdaLR(self.opt_critic, _step_decay(decay_steps, o.lr_decay_gamma))
            if self.opt_critic is not None
            else None
        )
        amp_fp16 = cfg.run.precision == "fp16" and self.device.type == "cuda"
        self.scaler_main = torch.amp.GradScaler(self.device.type, enabled=amp_fp16)
        self.scaler_critic = torch.amp.GradScaler(self.device.type, enabled=amp_fp16)
        # bf16 autocast pays on CPUs with native bf16 kernels only; without them oneDNN emulates it, many
        # times slower than fp32. fp16 needs CUDA's gradient scaler.
        self.precision = training_precision(cfg.run.precision, self.device)
        if self.precision != cfg.run.precision:
            why = (
                "CUDA only" if cfg.run.precision == "fp16" else "CPUs with native bf16 kernels only (AVX-512 BF16, AMX)"
            )
            log.warning("run.precision=%s applies on %s; training in fp32 on %s", cfg.run.precision, why, self.device)
        self.ema = copy.deepcopy(main).eval().requires_grad_(False) if cfg.run.ema_decay > 0 else None
        self.step = 0
        self.best: dict[str, Any] = {}
        self.last_validation: dict[str, float] = {}
        if self.resume:
            self._restore()
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            main = DDP(main, device_ids=ids)
            critic = DDP(critic, device_ids=ids) if critic is not None else None
        self.main, self.critic = main, critic
        self.validator = (
            self.make_validator(cfg, parts, self.device)
            if self.make_validator is not None and self.ctx.is_main
            else None
        )
        self.metrics = MetricsLog(self.out_dir) if self.ctx.is_main else None
        if self.metrics is not None:  # what this call of the run trains in, which config.json may not say
            self.metrics.write("start", self.step, {"precision": self.precision, "device": str(self.device)})

    def _restore(self) -> None:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            log.info("no checkpoint at %s: starting from scratch", path)
            return
        state = load_state(path)
        if state["config"]["run"]["stage"] != self.cfg.run.stage:
            raise StateError(
                f"{path} is a {state['config']['run']['stage']} run, not {self.cfg.run.stage}: resume it with its "
                "own config, or give this run another run.out_dir"
            )
        self.parts.main.load_state_dict(state["main"])
        if self.parts.critic is not None:
            self.parts.critic.load_state_dict(state["critic"])
            self.opt_critic.load_state_dict(state["opt_critic"])  # type: ignore[union-attr]
            self.sched_critic.load_state_dict(state["sched_critic"])  # type: ignore[union-attr]
            self.scaler_critic.load_state_dict(state["scaler_critic"])
        self.opt_main.load_state_dict(state["opt_main"])
        self.sched_main.load_state_dict(state["sched_main"])
        self.scaler_main.load_state_dict(state["scaler_main"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.best = dict(state.get("best") or {})
        self.last_validation = dict(state.get("last_validation") or {})
        set_rng_state(state["rng"])
        log.info("resumed %s at step %d", path, self.step)

    # -- one optimisation step ---------------------------------------------------
    def _sync(self, module: nn.Module | None, sync: bool) -> contextlib.AbstractContextManager[Any]:
        if isinstance(module, DDP) and not sync:
            return module.no_sync()
        return contextlib.nullcontext()

    def _apply(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, module: nn.Module) -> None:
        if self.cfg.optim.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _outputs_without_graph(self, micro: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """The main network's training-mode outputs for the critic, with no graph and no side effects.

        Runs the unwrapped network (no DDP hooks, no buffer broadcast) over the micro-batches in order, then
        restores its buffers (BatchNorm statistics, spectral-norm vectors): the paired forwards that follow
        see the network, and give the outputs, exactly as these passes did.
        """
        net = _unwrap(self.main)
        assert net is not None
        saved = [b.clone() for b in net.buffers()]
        with autocast(self.device, self.precision):
            outputs = [self.parts.objective.forward(net, batch) for batch in micro]
        for buffer, value in zip(net.buffers(), saved):
            buffer.copy_(value)
        return outputs

    def _train_step(self, micro: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step over ``micro`` (``grad_accum`` micro-batches).

        Each micro-batch's backward follows its own forward, under ``no_sync`` for all but the last: DDP
        decides in a forward whether the next backward all-reduces, so the last forward must be the one
        right before the last backward (nanoGPT's pattern). Only one micro-batch's activations are held.
        With a critic, the critic is trained first on every micro-batch's output; with several micro-batches
        those outputs come from graph-free forwards (:meth:`_outputs_without_graph`), with one the forward
        is kept for the main network's update.
        """
        objective, main, critic = self.parts.objective, self.main, self.critic
        main.train()
        accum = len(micro)
        logs: dict[str, float] = {}
        kept: list[dict[str, torch.Tensor] | None] = [None] * accum
        if objective.uses_critic and critic is not None:
            fakes: Sequence[dict[str, torch.Tensor] | None]
            if accum == 1:
                with self._sync(main, True), autocast(self.device, self.precision):
                    kept[0] = objective.forward(main, micro[0])
                fakes = kept
            else:
                fakes = self._outputs_without_graph(micro)
            critic.train()
            assert self.opt_critic is not None
            n_critic = self.cfg.optim.n_critic
            for _ in range(n_critic):  # critic updates per generator update, on the same batch
                self.opt_critic.zero_grad(set_to_none=True)
                for i, (batch, out) in enumerate(zip(micro, fakes)):
                    assert out is not None
                    with self._sync(critic, i == accum - 1):
                        with autocast(self.device, self.precision):
                            loss_d, d_logs = objective.critic_loss(critic, batch, out)
                        self.scaler_critic.scale(loss_d / accum).backward()
                    for k, v in d_logs.items():
                        logs[k] = logs.get(k, 0.0) + v / (accum * n_critic)
                self._apply(self.opt_critic, self.scaler_critic, critic)
                objective.after_critic_step(_unwrap(critic))  # type: ignore[arg-type]
        self.opt_main.zero_grad(set_to_none=True)
        for i, batch in enumerate(micro):
            # The critic's gradients from this pass are discarded: skip their all-reduce.
            with self._sync(main, i == accum - 1), self._sync(critic, False):
                with autocast(self.device, self.precision):
                    out = kept[i]
                    if out is None:
                        out = objective.forward(main, batch)
                    loss, m_logs = objective.main_loss(critic, batch, out)
                self.scaler_main.scale(loss / accum).backward()
            kept[i] = out = None  # this micro-batch's graph is freed
            for k, v in m_logs.items():
                logs[k] = logs.get(k, 0.0) + v / accum
        self._apply(self.opt_main, self.scaler_main, main)
        self.sched_main.step()
        if self.sched_critic is not None:
            self.sched_critic.step()
        if self.ema is not None:
            self._update_ema()
        return logs

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch tensor on the training device, images (4-D) in the networks' memory format."""
        if tensor.dim() == 4:
            return tensor.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return tensor.to(self.device, non_blocking=True)

    def _check_finite(self, logs: dict[str, float]) -> None:
        """Stop a diverged run before it checkpoints: its last checkpoint stays the last good state.

        Given the logs averaged over ranks, so that every rank stops at the same step.
        """
        for k, v in logs.items():
            if not math.isfinite(v):
                raise FloatingPointError(f"loss {k} became {v} at step {self.step + 1}")

    @torch.no_grad()
    def _update_ema(self) -> None:
        assert self.ema is not None
        decay = self.cfg.run.ema_decay
        source = _unwrap(self.main).state_dict()  # type: ignore[union-attr]
        for name, value in self.ema.state_dict().items():
            new = source[name]
            if value.is_floating_point():
                value.mul_(decay).add_(new.detach(), alpha=1.0 - decay)
            else:
                value.copy_(new)

    # -- checkpoints, samples, validation --------------------------------------------
    def _state(self) -> dict[str, Any]:
        main = _unwrap(self.main)
        critic = _unwrap(self.critic)
        return {
            "config": self.cfg.to_dict(),
            "stage": self.cfg.run.stage,
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "main": main.state_dict(),  # type: ignore[union-attr]
            "critic": critic.state_dict() if critic is not None else None,
            "opt_main": self.opt_main.state_dict(),
            "opt_critic": self.opt_critic.state_dict() if self.opt_critic is not None else None,
            "sched_main": self.sched_main.state_dict(),
            "sched_critic": self.sched_critic.state_dict() if self.sched_critic is not None else None,
            "scaler_main": self.scaler_main.state_dict(),
            "scaler_critic": self.scaler_critic.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "best": self.best,
            "last_validation": self.last_validation,
            "data": self.parts.data_description,
            "perceptual": self.parts.perceptual_source,
            "task": self.parts.task.value if self.parts.task is not None else None,
        }

    def _checkpoint(self) -> None:
        if not self.ctx.is_main:
            return
        state = self._state()
        last = save_state(self.ckpt_dir / "last.pt", state)
        if self.cfg.run.keep_checkpoints > 0:
            shutil.copyfile(last, self.ckpt_dir / f"step-{self.step:08d}.pt")
            old = sorted(self.ckpt_dir.glob("step-*.pt"))[: -self.cfg.run.keep_checkpoints]
            for path in old:
                path.unlink(missing_ok=True)

    def _eval_network(self) -> nn.Module:
        return self.ema if self.ema is not None else _unwrap(self.main)  # type: ignore[return-value]

    def _validate(self) -> None:
        if self.validator is None:
            return
        net = self._eval_network()
        was_training = net.training
        metrics = self.validator(net)
        net.train(was_training)
        self.last_validation = metrics
        if self.metrics is not None:
            self.metrics.write("validation", self.step, metrics)
        key = self.cfg.run.select_metric
        if self.cfg.run.keep_validated:
            save_state(self.ckpt_dir / f"val-step-{self.step:08d}.pt", self._state())
        log.info("validation at step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if key in metrics and (not self.best or metrics[key] > self.best.get(key, -math.inf)):
            self.best = {"step": self.step, **metrics}
            save_state(self.ckpt_dir / "best.pt", self._state())
            log.info("new best %s=%.4g at step %d", key, metrics[key], self.step)

    @torch.no_grad()
    def _samples(self, epoch: int) -> None:
        if not self.ctx.is_main or self.cfg.run.sample_images <= 0 or self.cfg.run.stage == "pretrain-global":
            return
        net = self._eval_network()
        was_training = net.training
        net.eval()
        n = min(self.cfg.run.sample_images, len(self.parts.train_set))
        items = [self.parts.train_set[(i, 12345 + i)] for i in range(n)]
        (self.out_dir / "samples").mkdir(exist_ok=True)
        save_image(sample_grid(net, items, self.device), self.out_dir / "samples" / f"epoch-{epoch:04d}.png")
        net.train(was_training)

    def _rank_digests(self) -> list[str]:
        """SHA-256 of every rank's main-network parameters (they must agree under DDP).

        Buffers are left out: BatchNorm running statistics are rank-local between
        DDP's buffer broadcasts (use run.sync_batchnorm to share them).
        """
        import torch.distributed as dist

        digest = weights_sha256(_unwrap(self.main).named_parameters())  # type: ignore[union-attr]
        gathered: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(gathered, digest)
        return [str(g) for g in gathered]

    # -- the loop -------------------------------------------------------------------
    def _time_is_up(self, started: float) -> bool:
        """Whether ``run.max_minutes`` of wall time have passed (rank 0's clock decides for every rank)."""
        budget = self.cfg.run.max_minutes
        if budget <= 0:
            return False
        up = float(time.monotonic() - started >= 60.0 * budget)
        if self.ctx.enabled:
            up = distributed.mean_across(self.ctx, {"up": up if self.ctx.is_main else 0.0})["up"]
        if up > 0:
            log.info("run.max_minutes=%g reached at step %d", budget, self.step)
        return up > 0

    def run(self) -> dict[str, Any]:
        self._setup()
        cfg, ctx = self.cfg, self.ctx
        loader_kw: dict[str, Any] = {
            "batch_size": cfg.optim.batch_size,
            "drop_last": True,
            "num_workers": cfg.data.num_workers,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": False,
            # Our sampler seeds augmentation; a private generator keeps the loader
            # from drawing on the global RNG, so a resumed run stays identical.
            "generator": torch.Generator().manual_seed(cfg.run.seed),
        }
        start_step, started = self.step, time.monotonic()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not ctx.is_main,
            desc=cfg.run.stage,
            dynamic_ncols=True,
            mininterval=5.0,
        )
        logs: dict[str, float] = {}
        try:
            while self.step < self.total_steps:
                epoch, pos = divmod(self.step, self.steps_per_epoch)
                self.sampler.set_epoch(epoch, start=pos * cfg.optim.batch_size * cfg.optim.grad_accum)
                loader = DataLoader(self.parts.train_set, sampler=self.sampler, **loader_kw)
                micro: list[dict[str, torch.Tensor]] = []
                for batch in loader:
                    micro.append({k: self._to_device(v) for k, v in batch.items()})
                    if len(micro) < cfg.optim.grad_accum:
                        continue
                    logs = distributed.mean_across(ctx, self._train_step(micro))
                    self._check_finite(logs)
                    micro = []
                    self.step += 1
                    bar.update(1)
                    if ctx.is_main and self.step % cfg.run.log_every == 0:
                        lr = self.opt_main.param_groups[0]["lr"]
                        bar.set_postfix(
                            {k: f"{v:.4f}" for k, v in logs.items() if k in ("loss_g", "loss_d", "l1", "loss", "top1")}
                        )
                        assert self.metrics is not None
                        self.metrics.write("train", self.step, {"epoch": epoch, "lr": lr, **logs})
                    if cfg.run.validate_every and self.step % cfg.run.validate_every == 0:
                        self._validate()
                    if self.step % cfg.run.checkpoint_every == 0:
                        self._checkpoint()
                    end_of_epoch = self.step % self.steps_per_epoch == 0
                    if end_of_epoch:
                        self._samples(epoch)
                        if not cfg.run.validate_every:
                            self._validate()
                    if self._time_is_up(started):
                        self.total_steps = self.step
                    if end_of_epoch or self.step >= self.total_steps:
                        break
            if cfg.run.validate_every and self.step % cfg.run.validate_every:
                self._validate()
            self._checkpoint()
        finally:
            bar.close()
        elapsed = time.monotonic() - started
        steps = self.step - start_step
        summary: dict[str, Any] = {
            "stage": cfg.run.stage,
            "steps": self.step,
            "steps_this_run": steps,
            "seconds": round(elapsed, 1),
            "steps_per_second": round(steps / elapsed, 4) if elapsed > 0 else None,
            "last_losses": logs,
            "last_validation": self.last_validation,
            "best": self.best,
            "checkpoint": str(self.ckpt_dir / "last.pt"),
        }
        if ctx.enabled:
            summary["rank_weight_digests"] = self._rank_digests()
            if len(set(summary["rank_weight_digests"])) != 1:
                log.error("ranks ended with different weights: %s", summary["rank_weight_digests"])
        if ctx.is_main:
            assert self.metrics is not None
            self.metrics.write("summary", self.step, summary)
            log.info(
                "done: %s, %s (%d this run) in %.0f s, %s steps/s; last losses %s; best %s",
                cfg.run.stage,
                count(self.step, "step"),
                steps,
                elapsed,
                summary["steps_per_second"],
                {k: round(v, 4) for k, v in logs.items()},
                self.best or "n/a",
            )
        distributed.barrier(ctx)
        distributed.teardown(ctx)
        return summary


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    make_validator: Callable[[TrainConfig, StageParts, torch.device], Validator | None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the stage ``cfg`` describes; returns the run summary."""
    return Trainer(cfg, resume=resume, make_validator=make_validator).run()


__all__ = ["Trainer", "Validator", "train"]
