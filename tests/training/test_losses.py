"""The adversarial and objective losses pinned to hand-computed values and gradient directions.

A linear critic ``D(x) = sum(w * x)`` makes every score, loss and gradient computable by hand: on the
two-pixel samples below, ``w = (1, 2)`` scores real ``(0.25, 0), (0, 1)`` as ``0.25, 2`` and fake
``(0.5, 0.5), (-1, 0)`` as ``1.5, -1``, and the critic's gradient with respect to its input is ``w``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tiny_models import TINY_HINT_CONFIG
from torch import nn

from model.chroma_bins import bin_centres, num_bins
from model.color import rgb_to_chroma
from model.encoder_generator import EncoderGenerator
from training.colour_losses import bins_loss, colorfulness_loss, enhance_chroma
from training.config import LossConfig
from training.losses import (
    Adversary,
    ClassificationObjective,
    ColorizationObjective,
    LeastSquares,
    Wasserstein,
    WassersteinGP,
    gradient_penalty,
    make_adversary,
)
from training.projected import ProjectedHinge


class LinearCritic(nn.Module):
    """``D(condition, x) = sum(w * x) + sum(condition)`` per sample: scores and gradients a reader can compute.

    The condition (the gray input) is all zeros below; adding it checks that it is passed.
    """

    def __init__(self, *w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w).view(1, 1, 1, -1))

    def forward(self, condition: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1) + condition.flatten(1).sum(1)


def _samples(*rows: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(rows).view(len(rows), 1, 1, 2)


REAL = _samples((0.25, 0.0), (0.0, 1.0))  # D = 0.25, 2     with w = (1, 2)
FAKE = _samples((0.5, 0.5), (-1.0, 0.0))  # D = 1.5, -1
COND = torch.zeros(2, 1, 1, 2)  # the gray input
GP_UNIT_W = (math.sqrt(5.0) - 1.0) ** 2  # (||w|| - 1)^2 with ||(1, 2)|| = sqrt(5)


def _critic() -> LinearCritic:
    return LinearCritic(1.0, 2.0)


# -- values ------------------------------------------------------------------------------------


def test_gradient_penalty_at_the_interpolates() -> None:
    # D(x) = |x|^2 / 2 has gradient x: the penalty is the mean of (|x_hat| - 1)^2 at x_hat = a r + (1 - a) f.
    alpha = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1)
    gp = gradient_penalty(lambda c, x: 0.5 * (x**2).flatten(1).sum(1), COND, REAL, FAKE, alpha)
    # sample 0: 0.5 (0.25, 0) + 0.5 (0.5, 0.5) = (0.375, 0.25); sample 1: 0.25 (0, 1) + 0.75 (-1, 0) = (-0.75, 0.25)
    expected = ((math.hypot(0.375, 0.25) - 1.0) ** 2 + (math.hypot(-0.75, 0.25) - 1.0) ** 2) / 2
    assert gp.item() == pytest.approx(expected, rel=1e-6)


def test_gradient_penalty_draws_one_alpha_per_sample() -> None:
    square = lambda c, x: 0.5 * (x**2).flatten(1).sum(1)  # noqa: E731
    torch.manual_seed(3)
    alpha = torch.rand(2, 1, 1, 1)
    torch.manual_seed(3)
    drawn = gradient_penalty(square, COND, REAL, FAKE)
    assert drawn.item() == pytest.approx(gradient_penalty(square, COND, REAL, FAKE, alpha).item(), rel=1e-6)
    # drawn in the data's dtype
    real, fake = REAL.bfloat16(), FAKE.bfloat16()
    torch.manual_seed(3)
    alpha = torch.rand(2, 1, 1, 1, dtype=torch.bfloat16)
    torch.manual_seed(3)
    assert torch.equal(gradient_penalty(square, COND, real, fake), gradient_penalty(square, COND, real, fake, alpha))


def test_gradient_penalty_runs_in_fp32_under_mixed_precision() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)
    critic = lambda c, x: conv(x + c).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    # Under bf16 autocast the generator's output (fake) and the gray condition arrive in bf16, the data in fp32.
    cond, fake = torch.rand(2, 1, 8, 8).bfloat16(), fake.bfloat16()
    alpha = torch.tensor([0.3, 0.6]).view(2, 1, 1, 1)
    # The critic is linear in x: its input gradient, computed here in fp32, is the same at every point.
    x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(critic(torch.zeros(1, 1, 8, 8), x).sum(), x)
    exact = (grad.norm() - 1.0) ** 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = gradient_penalty(critic, cond, real, fake, alpha)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(exact.item(), rel=1e-5)  # a bf16 convolution would be ~1e-3 off


def test_gradient_penalty_is_a_differentiable_function_of_the_critic() -> None:
    critic = _critic()
    gp = gradient_penalty(critic, COND, REAL, FAKE)
    assert gp.item() == pytest.approx(GP_UNIT_W, rel=1e-6)  # a linear critic: the same at every interpolate
    gp.backward()
    # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|
    norm = math.sqrt(5.0)
    expected = [2 * (norm - 1) * wi / norm for wi in (1.0, 2.0)]
    assert critic.w.grad is not None
    assert critic.w.grad.flatten().tolist() == pytest.approx(expected, rel=1e-5)
    # Real and fake enter detached: the penalty never reaches the generator.
    fake = FAKE.clone().requires_grad_(True)
    gradient_penalty(critic, COND, REAL, fake).backward()
    assert fake.grad is None


@pytest.mark.parametrize(
    "adversary, loss, logs",
    [
        (WassersteinGP(penalty_weight=10.0), -1.125 + 0.25 + 10 * GP_UNIT_W, {"gp": GP_UNIT_W}),
        (WassersteinGP(penalty_weight=0.5), -1.125 + 0.25 + 0.5 * GP_UNIT_W, {"gp": GP_UNIT_W}),
        (Wasserstein(), -1.125 + 0.25, {}),
        # 0.5 (mean((d_real - 1)^2) + mean(d_fake^2)) = 0.5 ((0.5625 + 1) / 2 + (2.25 + 1) / 2)
        (LeastSquares(), 0.5 * ((0.5625 + 1.0) / 2 + (2.25 + 1.0) / 2), {}),
        # mean(relu(1 - d_real)) + mean(relu(1 + d_fake)) = (0.75 + 0) / 2 + (2.5 + 0) / 2
        (ProjectedHinge(), 0.375 + 1.25, {}),
    ],
    ids=["wgan-gp", "wgan-gp-0.5", "wgan", "lsgan", "projected"],
)
def test_critic_loss_values(adversary: Adversary, loss: float, logs: dict[str, float]) -> None:
    value, logged = adversary.critic_loss(_critic(), COND, REAL, FAKE)
    assert value.item() == pytest.approx(loss, rel=1e-6)
    assert logged == pytest.approx({"d_real": 1.125, "d_fake": 0.25, **logs}, rel=1e-6)


@pytest.mark.parametrize(
    "adversary, loss",
    [
        (WassersteinGP(), -0.25),  # -mean(d_fake)
        (Wasserstein(), -0.25),
        (LeastSquares(), (0.25 + 4.0) / 2),  # mean((d_fake - 1)^2)
        (ProjectedHinge(), -0.25),
    ],
    ids=["wgan-gp", "wgan", "lsgan", "projected"],
)
def test_generator_loss_values(adversary: Adversary, loss: float) -> None:
    assert adversary.generator_loss(_critic(), COND, FAKE).item() == pytest.approx(loss, rel=1e-6)


def test_critic_losses_do_not_reach_the_generator() -> None:
    fake = FAKE.clone().requires_grad_(True)
    for adversary in (WassersteinGP(), Wasserstein(), LeastSquares(), ProjectedHinge()):
        adversary.critic_loss(_critic(), COND, REAL, fake)[0].backward()
        assert fake.grad is None, adversary.name


# -- directions --------------------------------------------------------------------------------

# Real and fake apart along (1, 1); a critic already leaning that way, with |w| = 0.5 < 1 and scores in
# (-1, 1), so every term of every loss is active.
DIR_REAL = _samples((1.0, 0.5), (0.5, 1.0))
DIR_FAKE = _samples((0.0, 0.0), (0.25, 0.0))
DIR_W = (0.5 / math.sqrt(2.0), 0.5 / math.sqrt(2.0))
ADVERSARIES = [WassersteinGP(), Wasserstein(), LeastSquares(), ProjectedHinge()]


def _gap(critic: nn.Module) -> float:
    with torch.no_grad():
        return (critic(COND, DIR_REAL).mean() - critic(COND, DIR_FAKE).mean()).item()


@pytest.mark.parametrize("adversary", ADVERSARIES, ids=lambda a: a.name)
def test_a_critic_step_pushes_real_and_fake_apart(adversary: Adversary) -> None:
    critic = LinearCritic(*DIR_W)
    before = _gap(critic)
    loss, _ = adversary.critic_loss(critic, COND, DIR_REAL, DIR_FAKE)
    loss.backward()
    with torch.no_grad():
        critic.w -= 0.01 * critic.w.grad  # type: ignore[operator]
    assert _gap(critic) > before + 1e-4


@pytest.mark.parametrize("adversary", ADVERSARIES, ids=lambda a: a.name)
def test_a_generator_step_pulls_fake_toward_real(adversary: Adversary) -> None:
    critic = LinearCritic(*DIR_W)
    fake = DIR_FAKE.clone().requires_grad_(True)
    adversary.generator_loss(critic, COND, fake).backward()
    assert critic.w.grad is not None  # the generator's loss flows through the critic (its step is discarded)
    assert fake.grad is not None
    moved = DIR_FAKE - 0.01 * fake.grad
    distance = lambda x: (x - DIR_REAL).flatten(1).norm(dim=1)  # noqa: E731
    assert torch.all(distance(moved) < distance(DIR_FAKE) - 1e-5)
    with torch.no_grad():
        assert critic(COND, moved).mean() > critic(COND, DIR_FAKE).mean()


# -- WGAN's clipping, and the factory ---------------------------------------------------------------


def test_wgan_clips_every_critic_weight_and_the_others_leave_them() -> None:
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.5, -0.02, 0.005]]))
        critic.bias.fill_(-3.0)
    for adversary in (WassersteinGP(), LeastSquares(), ProjectedHinge()):
        adversary.after_critic_step(critic)
    assert torch.equal(critic.weight, torch.tensor([[0.5, -0.02, 0.005]])) and critic.bias.item() == -3.0
    Wasserstein(clip=0.01).after_critic_step(critic)
    assert critic.weight.flatten().tolist() == pytest.approx([0.01, -0.01, 0.005])
    assert critic.bias.item() == pytest.approx(-0.01)
    assert critic.weight.grad is None  # clipping is no part of the graph


def test_make_adversary_follows_the_config() -> None:
    assert make_adversary(LossConfig(gan="none")) is None
    gp = make_adversary(LossConfig(gan="wgan-gp", gradient_penalty=3.0))
    assert type(gp) is WassersteinGP and gp.penalty_weight == 3.0 and gp.name == "wgan-gp"
    clip = make_adversary(LossConfig(gan="wgan", wgan_clip=0.2))
    assert type(clip) is Wasserstein and clip.clip == 0.2 and clip.name == "wgan"
    assert type(make_adversary(LossConfig(gan="lsgan"))) is LeastSquares
    assert type(make_adversary(LossConfig(gan="projected"))) is ProjectedHinge
    assert (LeastSquares().name, ProjectedHinge().name) == ("lsgan", "projected")


# -- the objectives ---------------------------------------------------------------------------------


class RedMeanL1(nn.Module):
    """A stand-in perceptual loss with a hand-computable value: |mean(fake R) - mean(real R)|."""

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return (fake[:, 0].mean() - real[:, 0].mean()).abs()


class ChannelCritic(nn.Module):
    """``D(condition, rgb) = sum over pixels of (1 R + 2 G + 0 B + condition)`` (the condition is zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, 2.0, 0.0]).view(1, 3, 1, 1))

    def forward(self, condition: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb * self.w).flatten(1).sum(1) + condition.flatten(1).sum(1)


def _colour(r: float, g: float, b: float) -> torch.Tensor:
    """Two samples of 1 x 2 pixels of one colour."""
    return torch.tensor([r, g, b]).view(1, 3, 1, 1).expand(2, 3, 1, 2).clone()


class ConstantGenerator(nn.Module):
    """Outputs one colour plus its (zero) input, and a saliency of 0.5 (``return_saliency`` as the generator's)."""

    def forward(self, x: torch.Tensor, return_saliency: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _colour(0.5, 0.25, 0.25) + x, (torch.full((2, 1, 1, 2), 0.5) if return_saliency else None)


BATCH = {"input": COND, "rgb": _colour(0.25, 0.25, 0.5), "saliency": torch.full((2, 1, 1, 2), 0.25)}
# |(0.5, 0.25, 0.25) - (0.25, 0.25, 0.5)| = (0.25, 0, 0.25): mean 1/6.
L1 = 1 / 6
# Saliency 0.5 on the output, 0.25 on the target: |(0.25, 0.125, 0.125) - (0.0625, 0.0625, 0.125)|: mean 0.25 / 3.
ATTENTION = 0.25 / 3
# -D(fake) under WGAN: 2 pixels x (1 x 0.5 + 2 x 0.25).
ADVERSARIAL = -2.0
# |0.5 - 0.25| on R.
PERCEPTUAL = 0.25


@pytest.mark.parametrize(
    "l1_w, attention_w, chroma_w, adversarial_w, perceptual_w",
    [(1.0, 0.5, 0.0, 0.0, 0.0), (2.0, 0.0, 3.0, 0.5, 4.0), (0.0, 1.5, 1.0, 0.05, 0.5)],
)
def test_colorization_main_loss_is_the_weighted_sum(
    l1_w: float, attention_w: float, chroma_w: float, adversarial_w: float, perceptual_w: float
) -> None:
    cfg = LossConfig(
        gan="wgan", l1=l1_w, attention=attention_w, chroma=chroma_w, adversarial=adversarial_w, perceptual=perceptual_w
    )
    objective = ColorizationObjective(cfg, Wasserstein(), RedMeanL1())  # type: ignore[arg-type]
    assert objective.name == "wgan" and objective.uses_critic
    out = objective.forward(ConstantGenerator(), BATCH)
    assert set(out) == ({"rgb", "saliency"} if attention_w > 0 else {"rgb"})
    chroma = (rgb_to_chroma(out["rgb"]) - rgb_to_chroma(BATCH["rgb"])).abs().mean().item()
    assert chroma > 0.1
    terms = {"l1": (l1_w, L1)}
    if attention_w > 0:
        terms["attention"] = (attention_w, ATTENTION)
    if chroma_w > 0:
        terms["chroma"] = (chroma_w, chroma)
    if adversarial_w > 0:
        terms["adversarial"] = (adversarial_w, ADVERSARIAL)
    if perceptual_w > 0:
        terms["perceptual"] = (perceptual_w, PERCEPTUAL)
    total = sum(w * v for w, v in terms.values())
    loss, logs = objective.main_loss(ChannelCritic(), BATCH, out)
    assert loss.item() == pytest.approx(total, rel=1e-6)
    assert logs == pytest.approx({**{k: v for k, (_, v) in terms.items()}, "loss_g": total}, rel=1e-6)


def test_colorization_critic_loss_is_the_adversary_s_on_detached_output() -> None:
    objective = ColorizationObjective(LossConfig(gan="wgan"), Wasserstein(), None)
    out = {"rgb": _colour(0.5, 0.25, 0.25).requires_grad_(True)}
    loss, logs = objective.critic_loss(ChannelCritic(), BATCH, out)
    # -mean D(real) + mean D(fake) = -2 (0.25 + 0.5) + 2 (0.5 + 0.5)
    assert loss.item() == pytest.approx(0.5) and logs == pytest.approx({"loss_d": 0.5, "d_real": 1.5, "d_fake": 2.0})
    loss.backward()
    assert out["rgb"].grad is None


def test_stage1_objective_has_no_critic() -> None:
    objective = ColorizationObjective(LossConfig(attention=0.0), None, RedMeanL1())  # type: ignore[arg-type]
    assert objective.name == "l1-attention" and not objective.uses_critic
    out = objective.forward(ConstantGenerator(), BATCH)
    loss, logs = objective.main_loss(None, BATCH, out)
    assert loss.item() == pytest.approx(L1 + 5.0 * PERCEPTUAL) and set(logs) == {"l1", "perceptual", "loss_g"}
    critic = ChannelCritic()
    objective.after_critic_step(critic)
    assert critic.w.flatten().tolist() == [1.0, 2.0, 0.0]
    clipping = ColorizationObjective(LossConfig(gan="wgan", wgan_clip=0.1), Wasserstein(clip=0.1), None)
    clipping.after_critic_step(critic)
    assert critic.w.flatten().tolist() == pytest.approx([0.1, 0.1, 0.0])


def test_classification_loss_and_top1() -> None:
    objective = ClassificationObjective()
    logits = torch.tensor([[1.0, 0.0], [0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    batch = {"input": logits, "label": torch.tensor([0, 0, 1])}
    out = objective.forward(nn.Identity(), batch)
    loss, logs = objective.main_loss(None, batch, out)
    # -log softmax: log(1 + e^-1), log(4), log(4 / 3); the first and the third are right.
    expected = (math.log1p(math.exp(-1.0)) + math.log(4.0) + math.log(4.0 / 3.0)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logs == pytest.approx({"loss": expected, "top1": 2 / 3}, rel=1e-6)
    assert not objective.uses_critic and objective.name == "classification"
    with pytest.raises(RuntimeError, match="^classification has no critic$"):
        objective.critic_loss(nn.Identity(), batch, out)


class HeadGenerator(nn.Module):
    """Records its input; outputs one colour and, when asked, fixed bin logits (``return_head``)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, return_saliency: bool = True, return_head: bool = False
    ) -> tuple[torch.Tensor, ...]:
        self.seen = x
        rgb = _colour(0.5, 0.25, 0.25)
        return (rgb, None, self.logits) if return_head else (rgb, None)


def test_hints_enhanced_targets_colourfulness_and_bins_enter_the_objective() -> None:
    centres = bin_centres()
    weights = torch.linspace(0.5, 1.5, num_bins())
    logits = torch.randn(2, num_bins(), 1, 2, generator=torch.Generator().manual_seed(0))
    cfg = LossConfig(
        gan="wgan",
        l1=0.0,
        attention=0.0,
        adversarial=0.0,
        perceptual=2.0,
        colorfulness=0.5,
        target_chroma_gain=1.5,
        bins=3.0,
    )
    with pytest.raises(ValueError, match="loss.bins > 0 needs the bin centres"):
        ColorizationObjective(cfg, Wasserstein(), RedMeanL1())  # type: ignore[arg-type]
    objective = ColorizationObjective(cfg, Wasserstein(), RedMeanL1(), rebalance=(centres, weights))  # type: ignore[arg-type]
    generator = HeadGenerator(logits)
    hints = torch.full((2, 3, 1, 2), 0.75)
    batch = {**BATCH, "hints": hints}
    out = objective.forward(generator, batch)
    assert generator.seen is not None and torch.equal(generator.seen, torch.cat((COND, hints), 1))
    assert set(out) == {"rgb", "head"} and out["head"] is logits
    enhanced = enhance_chroma(BATCH["rgb"], 1.5)
    assert not torch.equal(enhanced, BATCH["rgb"])
    terms = {
        "l1": (0.0, L1),
        "bins": (3.0, bins_loss(logits, BATCH["rgb"], centres, weights).item()),
        "colorfulness": (0.5, colorfulness_loss(out["rgb"]).item()),
        "perceptual": (2.0, RedMeanL1()(out["rgb"], enhanced).item()),
    }
    loss, logs = objective.main_loss(ChannelCritic(), batch, out)
    total = sum(w * v for w, v in terms.values())
    assert loss.item() == pytest.approx(total, rel=1e-6)
    assert logs == pytest.approx({**{k: v for k, (_, v) in terms.items()}, "loss_g": total}, rel=1e-6)
    # The critic, too, sees the enhanced target as the real image.
    critic = ChannelCritic()
    loss_d, _ = objective.critic_loss(critic, batch, out)
    expected = -critic(COND, enhanced).mean() + critic(COND, out["rgb"]).mean()
    assert loss_d.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bins_need_their_rebalancing_whatever_their_weight() -> None:
    message = r"^loss\.bins > 0 needs the bin centres and their rebalancing weights$"
    for weight in (0.5, 3.0):
        with pytest.raises(ValueError, match=message):
            ColorizationObjective(LossConfig(bins=weight), None, None)


@pytest.mark.parametrize("attention", [0.0, 0.5])
def test_a_bins_weight_below_one_trains_the_head_and_saliency_follows_attention(attention: float) -> None:
    rebalance = (bin_centres(), torch.linspace(0.5, 1.5, num_bins()))
    cfg = LossConfig(l1=1.0, attention=attention, perceptual=0.0, bins=0.5)
    objective = ColorizationObjective(cfg, None, None, rebalance=rebalance)
    torch.manual_seed(0)
    # Training mode, with a saliency branch: the generator's own default would compute the saliency.
    generator = EncoderGenerator(dataclasses.replace(TINY_HINT_CONFIG, chroma_head="bins", hints=False)).train()
    batch = {"input": torch.rand(2, 1, 32, 32), "rgb": torch.rand(2, 3, 32, 32), "saliency": torch.rand(2, 1, 32, 32)}
    out = objective.forward(generator, batch)
    assert set(out) == {"rgb", "head"} | ({"saliency"} if attention > 0 else set())
    loss, logs = objective.main_loss(None, batch, out)
    classes = bins_loss(out["head"], batch["rgb"], *rebalance).item()
    assert set(logs) == {"l1", "bins", "loss_g"} | ({"attention"} if attention > 0 else set())
    assert logs["bins"] == pytest.approx(classes, rel=1e-6)
    expected = logs["l1"] + 0.5 * classes + attention * logs.get("attention", 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_colourfulness_is_measured_on_the_output_clamped_to_the_rgb_cube() -> None:
    def pixels(*rgb: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(rgb).T.reshape(1, 3, 1, len(rgb))

    # The raw output leaves [0, 1] both ways (R above 1, G below 0): it is scored as the nearest colours inside.
    fake = pixels((1.5, -0.5, 0.25), (0.75, 0.25, 0.5))
    inside = colorfulness_loss(pixels((1.0, 0.0, 0.25), (0.75, 0.25, 0.5))).item()
    objective = ColorizationObjective(LossConfig(l1=0.0, attention=0.0, perceptual=0.0, colorfulness=2.0), None, None)
    loss, logs = objective.main_loss(None, {"input": torch.zeros(1, 1, 1, 2), "rgb": fake.clamp(0, 1)}, {"rgb": fake})
    assert logs["colorfulness"] == pytest.approx(inside, rel=1e-6) and loss.item() == pytest.approx(2 * inside)
    assert inside == pytest.approx(0.49239, abs=1e-5)  # unclamped: -0.137; only R clamped: 0.2; only G: 0.132
