"""The projected discriminator (frozen EfficientNet-Lite0 features, trainable heads, hinge loss)."""

from __future__ import annotations

import copy

import torch

from training.projected import ProjectedDiscriminator, ProjectedHinge


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    real = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=gen), size=(256, 256), mode="bilinear")
    gray = (0.299 * real[:, :1] + 0.587 * real[:, 1:2] + 0.114 * real[:, 2:]).clamp(0, 1)
    fake = gray.expand(-1, 3, -1, -1) * 0.9 + 0.05  # a washed-out guess with the same structure
    return gray, real, fake


def test_losses_are_finite_and_only_the_heads_learn() -> None:
    torch.manual_seed(0)
    critic = ProjectedDiscriminator(16).train()
    assert not critic.features.training
    gray, real, fake = _batch(0)
    adversary = ProjectedHinge()
    loss_d, logs = adversary.critic_loss(critic, gray, real, fake)
    loss_g = adversary.generator_loss(critic, gray, fake.requires_grad_(True))
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g) and set(logs) == {"d_real", "d_fake"}
    loss_d.backward()
    assert all(p.grad is None for p in critic.features.parameters())
    assert all(p.grad is not None for p in critic.heads.parameters())


def test_critic_learns_to_separate_a_repeated_batch() -> None:
    torch.manual_seed(0)
    critic = ProjectedDiscriminator(16).train()
    frozen = copy.deepcopy(critic.features.state_dict())
    gray, real, fake = _batch(1)
    adversary = ProjectedHinge()
    opt = torch.optim.Adam([p for p in critic.parameters() if p.requires_grad], lr=2e-3, betas=(0.5, 0.999))
    losses, gaps = [], []
    for _ in range(15):
        opt.zero_grad()
        loss, logs = adversary.critic_loss(critic, gray, real, fake)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        gaps.append(logs["d_real"] - logs["d_fake"])
    assert losses[-1] < 0.5 * losses[0], losses
    assert gaps[-1] > 1.0 > gaps[0], gaps  # real scored well above fake, where it started level
    assert all(torch.equal(v, critic.features.state_dict()[k]) for k, v in frozen.items())  # features untouched
