"""Shapes and argument checking of the generator, the discriminator and the perceptual network."""

from __future__ import annotations

import copy

import pytest
import torch
from model_test_helpers import COMPACT, TINY_RGB_IN, make_generator

from model import Generator, GeneratorConfig, PatchDiscriminator70, PerceptualNet
from model.layers import SpectralNorm, fold_spectral_norm, fuse_batch_norm

SIZES = [(256, 256), (512, 512), (256, 512)]


@pytest.fixture(scope="module")
def tiny() -> Generator:
    return make_generator()


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_output_shapes(tiny: Generator, height: int, width: int) -> None:
    x = torch.rand(1, 1, height, width)
    with torch.no_grad():
        # Training mode: RGB and saliency.
        rgb, saliency = tiny.train()(x)
        assert rgb.shape == (1, 3, height, width)
        assert saliency is not None and saliency.shape == (1, 1, height, width)
        assert rgb.abs().max() <= 1.0  # tanh
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0  # sigmoid
        # Eval mode: no saliency unless asked; predict() is the RGB alone.
        tiny.eval()
        predicted = tiny.predict(x)
    assert isinstance(predicted, torch.Tensor)
    assert predicted.shape == (1, 3, height, width)
    assert torch.isfinite(predicted).all()


def test_eval_forward_has_no_saliency_and_predict_matches(tiny: Generator) -> None:
    x = torch.rand(2, 1, 256, 256)
    with torch.no_grad():
        rgb, saliency = tiny.eval()(x)
        predicted = tiny.predict(x)
        rgb_asked, saliency_asked = tiny(x, return_saliency=True)
    assert saliency is None
    torch.testing.assert_close(predicted, rgb, rtol=0, atol=0)
    torch.testing.assert_close(rgb_asked, rgb, rtol=0, atol=0)
    assert saliency_asked is not None and saliency_asked.shape == (2, 1, 256, 256)


def test_saliency_without_branch_is_an_error() -> None:
    net = make_generator(with_saliency=False)
    assert not net.has_saliency
    assert not any(k.startswith("attention_prediction_network.") for k in net.state_dict())
    with pytest.raises(ValueError, match="saliency"):
        net(torch.rand(1, 1, 256, 256), return_saliency=True)
    with torch.no_grad():
        rgb, saliency = net.train()(torch.rand(1, 1, 256, 256))  # train mode, but nothing to return
    assert rgb.shape == (1, 3, 256, 256) and saliency is None


@pytest.mark.parametrize(
    "shape",
    [
        (1, 1, 255, 256),  # not a multiple of 256
        (1, 1, 256, 384),
        (1, 1, 128, 128),
        (1, 1, 300, 300),
        (1, 3, 256, 256),  # wrong channel count
        (1, 2, 256, 256),
        (1, 256, 256),  # no batch dimension
        (256, 256),
    ],
)
def test_invalid_inputs_raise_value_error(tiny: Generator, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        tiny.predict(torch.rand(shape))


def test_three_input_channels() -> None:
    net = make_generator(TINY_RGB_IN)
    assert net.down1.conv2d.module.weight_bar.shape[1] == 3
    assert net.global_feature_network.conv1_1.conv2d.module.weight_bar.shape[1] == 3
    with torch.no_grad():
        assert net.predict(torch.rand(1, 3, 256, 512)).shape == (1, 3, 256, 512)
    with pytest.raises(ValueError):
        net.predict(torch.rand(1, 1, 256, 256))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_channels": 0},
        {"latent_channels": -1},
        {"global_channels": 1.5},
        {"in_channels": True},
        {"padding": "circular"},
        {"norm": "group"},
    ],
)
def test_invalid_config_raises_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trip_and_unknown_keys() -> None:
    assert GeneratorConfig.from_dict(COMPACT.to_dict()) == COMPACT
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({**COMPACT.to_dict(), "start_chanels": 8})


def test_every_generator_conv_is_spectral_and_bias_free() -> None:
    net = Generator(COMPACT)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    wrapped = [m.module for m in net.modules() if isinstance(m, SpectralNorm)]
    assert len(convs) == len(wrapped) > 0
    assert all(c.bias is None for c in convs)
    plain = Generator(COMPACT, spectral_norm=False)
    assert not any(isinstance(m, SpectralNorm) for m in plain.modules())


@pytest.mark.parametrize(("size", "patches"), [(256, 30), (512, 62)])
def test_discriminator_patch_grid(size: int, patches: int) -> None:
    disc = PatchDiscriminator70(start_channels=8).eval()
    with torch.no_grad():
        out = disc(torch.rand(2, 1, size, size), torch.rand(2, 3, size, size))
    assert out.shape == (2, 1, patches, patches)


def test_perceptual_net_shape_and_frozen(perceptual_net: PerceptualNet) -> None:
    net = perceptual_net
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 96))
    assert out.shape == (1, 256, 16, 24)
    assert not any(p.requires_grad for p in net.parameters())
    # conv3_3 before its ReLU: the last module is the convolution, so negatives survive.
    assert isinstance(net.features[-1], torch.nn.Conv2d)
    assert (out < 0).any()


def test_fused_batch_norm_computes_the_same_and_leaves_training_networks_alone() -> None:
    net = fold_spectral_norm(make_generator(seed=3))
    x = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rgb, sal = net(x, return_saliency=True)
        fused = fuse_batch_norm(copy.deepcopy(net))
        fused_rgb, fused_sal = fused(x, return_saliency=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(fused_rgb, rgb, atol=1e-5)
    assert sal is not None and fused_sal is not None and torch.allclose(fused_sal, sal, atol=1e-5)
    # Training-mode BatchNorm (batch statistics) and spectral-norm convolutions are not fused.
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in fuse_batch_norm(make_generator(seed=3).train()).modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in fuse_batch_norm(make_generator(seed=3)).modules())
