"""Loss strategies plugged into the one training loop.

A stage is an :class:`Objective`: it says whether a critic (discriminator) is
trained and computes the critic's and the main network's losses for a batch.
GAN variants are :class:`Adversary` strategies inside the colorization objective;
stage 1 is the same objective with no adversary and no perceptual term.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from model.color import rgb_to_chroma
from model.discriminator import PerceptualNet
from model.efficientnet_lite import STAGE_END_BLOCKS, EfficientNetLite0, load_imagenet_weights, normalize_input
from training.colour_losses import bins_loss, colorfulness_loss, enhance_chroma
from training.config import LossConfig
from training.projected import ProjectedHinge

Logs = dict[str, float]
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def gradient_penalty(
    critic: nn.Module,
    condition: torch.Tensor,
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP: mean over the batch of (||grad_x critic(condition, x)||_2 - 1)^2 at x between real and fake."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(condition.float(), mixed.float())
        (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grads.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


class Adversary(Protocol):
    """A GAN variant: how the critic scores real vs fake and what the generator is pushed towards."""

    name: str

    def critic_loss(
        self, critic: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]: ...

    def generator_loss(self, critic: nn.Module, condition: torch.Tensor, fake: torch.Tensor) -> torch.Tensor: ...

    def after_critic_step(self, critic: nn.Module) -> None: ...


@dataclass
class WassersteinGP:
    """WGAN-GP (Gulrajani et al. 2017), the published stage-2 adversary."""

    penalty_weight: float = 10.0
    name: str = "wgan-gp"

    def critic_loss(
        self, critic: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        d_real = critic(condition, real).mean()
        d_fake = critic(condition, fake.detach()).mean()
        gp = gradient_penalty(critic, condition, real, fake)
        loss = -d_real + d_fake + self.penalty_weight * gp
        return loss, {"d_real": d_real.item(), "d_fake": d_fake.item(), "gp": gp.item()}

    def generator_loss(self, critic: nn.Module, condition: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return -critic(condition, fake).mean()

    def after_critic_step(self, critic: nn.Module) -> None:
        return None


@dataclass
class Wasserstein(WassersteinGP):
    """Plain WGAN: weight clipping instead of the gradient penalty."""

    clip: float = 0.01
    name: str = "wgan"

    def critic_loss(
        self, critic: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        d_real = critic(condition, real).mean()
        d_fake = critic(condition, fake.detach()).mean()
        return -d_real + d_fake, {"d_real": d_real.item(), "d_fake": d_fake.item()}

    @torch.no_grad()
    def after_critic_step(self, critic: nn.Module) -> None:
        for p in critic.parameters():
            p.clamp_(-self.clip, self.clip)


@dataclass
class LeastSquares:
    """LSGAN (Mao et al. 2017): real -> 1, fake -> 0 under a squared error."""

    name: str = "lsgan"

    def critic_loss(
        self, critic: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, Logs]:
        d_real = critic(condition, real)
        d_fake = critic(condition, fake.detach())
        loss = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
        return loss, {"d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}

    def generator_loss(self, critic: nn.Module, condition: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        d_fake = critic(condition, fake)
        return F.mse_loss(d_fake, torch.ones_like(d_fake))

    def after_critic_step(self, critic: nn.Module) -> None:
        return None


def make_adversary(cfg: LossConfig) -> Adversary | None:
    if cfg.gan == "none":
        return None
    if cfg.gan == "projected":
        return ProjectedHinge()
    if cfg.gan == "wgan-gp":
        return WassersteinGP(cfg.gradient_penalty)
    if cfg.gan == "wgan":
        return Wasserstein(clip=cfg.wgan_clip)
    return LeastSquares()


#: EfficientNet-Lite0 perceptual taps: the last block of the stages at strides 4, 8 and 16.
LITE0_PERCEPTUAL_BLOCKS: tuple[int, ...] = (STAGE_END_BLOCKS[1], STAGE_END_BLOCKS[2], STAGE_END_BLOCKS[4])


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class PerceptualLoss(nn.Module):
    """L1 between feature maps of a frozen ImageNet network on the RGB output.

    With a torchvision ``vgg16`` state dict: VGG-16 conv3_3 before its ReLU, as published (inputs
    normalised with ImageNet statistics, as those weights expect). Without one (nothing is ever
    downloaded): EfficientNet-Lite0, the ImageNet classifier the ``train`` extra installs, at strides
    4, 8 and 16 (the mean of the three L1s), on its own input normalisation. ``source`` says which
    network and file are in use; it is recorded in training states and exported checkpoints.
    """

    def __init__(self, vgg16_weights: str = "", lite0_weights: str = "") -> None:
        super().__init__()
        self.vgg: PerceptualNet | None = None
        self.lite0: EfficientNetLite0 | None = None
        if vgg16_weights:
            path = Path(vgg16_weights)
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = PerceptualNet()
            net.load_torchvision_vgg16(state)
            self.vgg = net.eval()
            self.source = f"vgg16-conv3_3:{path.name}:{_file_digest(path)}"
            self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        else:
            self.lite0 = EfficientNetLite0(with_classifier=False)
            name = load_imagenet_weights(self.lite0, lite0_weights or None)
            self.source = f"efficientnet-lite0-blocks{'-'.join(map(str, LITE0_PERCEPTUAL_BLOCKS))}:{name}"
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> PerceptualLoss:  # the feature network stays in eval mode
        return super().train(False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.vgg is not None:
            return F.l1_loss(self.vgg((fake - self.mean) / self.std), self.vgg((real - self.mean) / self.std))
        assert self.lite0 is not None
        f = self.lite0.stages(normalize_input(fake), LITE0_PERCEPTUAL_BLOCKS)
        r = self.lite0.stages(normalize_input(real), LITE0_PERCEPTUAL_BLOCKS)
        return torch.stack([F.l1_loss(f[b], r[b]) for b in LITE0_PERCEPTUAL_BLOCKS]).mean()


Outputs = dict[str, torch.Tensor]


class Objective(Protocol):
    """What one stage optimises; the loop owns everything else.

    Per step the loop calls :meth:`forward` once, then (if ``uses_critic``)
    :meth:`critic_loss` and a critic update, then :meth:`main_loss` and a main update.
    """

    name: str
    uses_critic: bool

    def forward(self, main: nn.Module, batch: dict[str, torch.Tensor]) -> Outputs: ...

    def critic_loss(
        self, critic: nn.Module, batch: dict[str, torch.Tensor], out: Outputs
    ) -> tuple[torch.Tensor, Logs]: ...

    def main_loss(
        self, critic: nn.Module | None, batch: dict[str, torch.Tensor], out: Outputs
    ) -> tuple[torch.Tensor, Logs]: ...

    def after_critic_step(self, critic: nn.Module) -> None: ...


class ColorizationObjective:
    """Stage 1 (no adversary) and stage 2 (with one): L1 + attention + optional chroma, adversarial, perceptual."""

    def __init__(
        self,
        cfg: LossConfig,
        adversary: Adversary | None,
        perceptual: PerceptualLoss | None,
        *,
        rebalance: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.cfg = cfg
        self.adversary = adversary
        self.perceptual = perceptual
        self.uses_critic = adversary is not None
        self.name = adversary.name if adversary else "l1-attention"
        if cfg.bins > 0 and rebalance is None:
            raise ValueError("loss.bins > 0 needs the bin centres and their rebalancing weights")
        self.rebalance = rebalance  # (Q x 2 bin centres, Q weights) of the classification loss

    def forward(self, main: nn.Module, batch: dict[str, torch.Tensor]) -> Outputs:
        x = torch.cat((batch["input"], batch["hints"]), 1) if "hints" in batch else batch["input"]
        if self.cfg.bins > 0:
            fake, sal, head = main(x, return_saliency=self.cfg.attention > 0, return_head=True)
            out = {"rgb": fake, "head": head}
        else:
            fake, sal = main(x, return_saliency=self.cfg.attention > 0)
            out = {"rgb": fake}
        if sal is not None:
            out["saliency"] = sal
        return out

    def _enhanced(self, rgb: torch.Tensor) -> torch.Tensor:
        return enhance_chroma(rgb, self.cfg.target_chroma_gain)

    def critic_loss(self, critic: nn.Module, batch: dict[str, torch.Tensor], out: Outputs) -> tuple[torch.Tensor, Logs]:
        assert self.adversary is not None
        real = self._enhanced(batch["rgb"])
        loss, logs = self.adversary.critic_loss(critic, batch["input"], real, out["rgb"].detach())
        return loss, {"loss_d": loss.item(), **logs}

    def main_loss(
        self, critic: nn.Module | None, batch: dict[str, torch.Tensor], out: Outputs
    ) -> tuple[torch.Tensor, Logs]:
        cfg = self.cfg
        target, fake = batch["rgb"], out["rgb"]
        l1 = F.l1_loss(fake, target)
        loss = cfg.l1 * l1
        logs: Logs = {"l1": l1.item()}
        if cfg.bins > 0:
            assert self.rebalance is not None
            classes = bins_loss(out["head"], target, *self.rebalance)
            loss = loss + cfg.bins * classes
            logs["bins"] = classes.item()
        if cfg.colorfulness > 0:
            vivid = colorfulness_loss(fake.clamp(0.0, 1.0))
            loss = loss + cfg.colorfulness * vivid
            logs["colorfulness"] = vivid.item()
        if "saliency" in out:
            attention = F.l1_loss(fake * out["saliency"], target * batch["saliency"])
            loss = loss + cfg.attention * attention
            logs["attention"] = attention.item()
        if cfg.chroma > 0:
            chroma = F.l1_loss(rgb_to_chroma(fake), rgb_to_chroma(target))
            loss = loss + cfg.chroma * chroma
            logs["chroma"] = chroma.item()
        if self.adversary is not None and critic is not None and cfg.adversarial > 0:
            adv = self.adversary.generator_loss(critic, batch["input"], fake)
            loss = loss + cfg.adversarial * adv
            logs["adversarial"] = adv.item()
        if self.perceptual is not None and cfg.perceptual > 0:
            perc = self.perceptual(fake, self._enhanced(target))
            loss = loss + cfg.perceptual * perc
            logs["perceptual"] = perc.item()
        logs["loss_g"] = loss.item()
        return loss, logs

    def after_critic_step(self, critic: nn.Module) -> None:
        if self.adversary is not None:
            self.adversary.after_critic_step(critic)


class ClassificationObjective:
    """Pre-training of the global feature network: cross-entropy, with top-1 accuracy logged."""

    name = "classification"
    uses_critic = False

    def forward(self, main: nn.Module, batch: dict[str, torch.Tensor]) -> Outputs:
        return {"logits": main(batch["input"])}

    def critic_loss(self, critic: nn.Module, batch: dict[str, torch.Tensor], out: Outputs) -> tuple[torch.Tensor, Logs]:
        raise RuntimeError("classification has no critic")

    def main_loss(
        self, critic: nn.Module | None, batch: dict[str, torch.Tensor], out: Outputs
    ) -> tuple[torch.Tensor, Logs]:
        logits = out["logits"]
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, {"loss": loss.item(), "top1": acc.item()}

    def after_critic_step(self, critic: nn.Module) -> None:
        return None


__all__ = [
    "Adversary",
    "ClassificationObjective",
    "ColorizationObjective",
    "LeastSquares",
    "Objective",
    "PerceptualLoss",
    "Wasserstein",
    "WassersteinGP",
    "gradient_penalty",
    "make_adversary",
]
