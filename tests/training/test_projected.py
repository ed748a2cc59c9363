"""The projected discriminator (frozen EfficientNet-Lite0 features, trainable heads, hinge loss)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from model.efficientnet_lite import default_weights_path
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


def test_the_critic_s_heads_and_scales() -> None:
    critic = ProjectedDiscriminator()
    assert not critic.features.has_classifier
    for head in critic.heads:
        assert [isinstance(m, nn.Conv2d) for m in head] == [True, False, True, False, True]
        assert [isinstance(m, nn.LeakyReLU) for m in head] == [False, True, False, True, False]
        convs = [m for m in head if isinstance(m, nn.Conv2d)]
        assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
            (64, (3, 3), (1, 1)),
            (64, (3, 3), (1, 1)),
            (1, (1, 1), (0, 0)),
        ]
        assert all(parametrize.is_parametrized(c, "weight") for c in convs)  # spectrally normalised
        assert [m.negative_slope for m in head if isinstance(m, nn.LeakyReLU)] == [0.2, 0.2]
    # One logit per patch of the four feature maps (strides 4, 8, 16, 32) at 256 px.
    gray, real, _ = _batch(2)
    with torch.no_grad():
        assert critic.eval()(gray, real).shape == (2, 64 * 64 + 32 * 32 + 16 * 16 + 8 * 8)
    assert critic.train() is critic and critic.training and all(h.training for h in critic.heads)
    assert not critic.features.training
    critic.train(False)
    assert not critic.training and not any(h.training for h in critic.heads)


def test_the_feature_network_weights_come_from_the_given_file(tmp_path: Path) -> None:
    state = torch.load(default_weights_path("lite0"), map_location="cpu", weights_only=True)
    state["_conv_stem.weight"] = 2 * state["_conv_stem.weight"]
    path = tmp_path / "doubled-stem.pth"
    torch.save(state, path)
    critic = ProjectedDiscriminator(8, weights_path=str(path))
    assert critic.weights_source == "doubled-stem.pth"
    assert torch.equal(critic.features._conv_stem.weight, state["_conv_stem.weight"])
    assert ProjectedDiscriminator(8).weights_source == default_weights_path("lite0").name
