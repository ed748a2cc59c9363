"""The EfficientNet-Lite0 port against its reference implementation, and the Lite0 global network."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

# Test-only: the 2020 reference implementation (efficientnet-lite-pytorch==0.1.0, a dev dependency).
from efficientnet_lite_pytorch import EfficientNet as ReferenceEfficientNet

from model import Generator, GeneratorConfig
from model.checkpoint import read_generator, save_checkpoint
from model.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLite0,
    default_weights_path,
    load_imagenet_weights,
    normalize_input,
)
from model.lite0_global import Lite0GlobalNetwork
from model.pipeline import Colorizer

TINY_LITE0 = GeneratorConfig(start_channels=4, latent_channels=8, global_channels=4, global_net="efficientnet-lite0")


@pytest.fixture(scope="module")
def ported() -> EfficientNetLite0:
    net = EfficientNetLite0()
    load_imagenet_weights(net)
    return net.eval()


def _reference(image_size: int | tuple[int, int]) -> torch.nn.Module:
    net = ReferenceEfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(default_weights_path()), image_size=image_size
    )
    return net.eval()


def _photo_like(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth random RGB image in [0, 1] (closer to a photo than white noise)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


@torch.no_grad()
def test_logits_match_the_reference_on_256(ported: EfficientNetLite0) -> None:
    x = normalize_input(torch.cat([_photo_like(256, 256, 0), torch.rand(1, 3, 256, 256)]))
    expected = _reference(256)(x)
    got = ported(x)
    assert got.shape == (2, 1000)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), float((got - expected).abs().max())


@torch.no_grad()
def test_tf_same_padding_matches_on_odd_sizes(ported: EfficientNetLite0) -> None:
    # TF "same" padding is asymmetric on stride 2 (the extra pixel goes after); odd sides exercise both cases.
    x = normalize_input(_photo_like(250, 333, 1))
    assert torch.allclose(ported(x), _reference((250, 333))(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
@torch.no_grad()
def test_lite1_and_lite2_logits_match_the_reference(variant: str) -> None:
    # Lite1 scales depth (x1.1), Lite2 width (x1.1) and depth (x1.2); stem, head and the end stages' repeats stay.
    net = EfficientNetLite(variant)  # type: ignore[arg-type]
    assert load_imagenet_weights(net) == default_weights_path(variant).name  # type: ignore[arg-type]
    net.eval()
    reference = ReferenceEfficientNet.from_pretrained(
        f"efficientnet-{variant}",
        weights_path=str(default_weights_path(variant)),
        image_size=(250, 333),  # type: ignore[arg-type]
    ).eval()
    x = normalize_input(torch.cat([_photo_like(250, 333, 2), torch.rand(1, 3, 250, 333)]))
    got, expected = net(x), reference(x)
    assert got.shape == (2, 1000)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), float((got - expected).abs().max())
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_normalisation_is_tf_lites() -> None:
    pixels = torch.tensor([0.0, 127.0, 255.0]) / 255.0
    assert torch.allclose(normalize_input(pixels), torch.tensor([-127.0, 0.0, 128.0]) / 128.0)


def test_weights_load_strictly_and_refuse_a_wrong_file(tmp_path: Path) -> None:
    net = EfficientNetLite0(with_classifier=False)
    assert load_imagenet_weights(net) == default_weights_path().name
    bad = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, bad)
    with pytest.raises(RuntimeError):
        load_imagenet_weights(EfficientNetLite0(), bad)


def test_trunk_stays_in_eval_mode_while_the_generator_trains() -> None:
    net = Generator(TINY_LITE0).train()
    lite0 = net.global_feature_network
    assert isinstance(lite0, Lite0GlobalNetwork)
    assert not lite0.trunk.training and lite0.projection.training
    x = torch.rand(2, 1, 256, 256)
    before = copy.deepcopy(lite0.trunk.state_dict())
    rgb, saliency = net(x)
    assert rgb.shape == (2, 3, 256, 256) and saliency is not None
    after = lite0.trunk.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "BatchNorm statistics of the trunk changed"
    assert net.down7.conv2d.module.weight_bar.shape[1] == 8 * 4 + 8 * 4  # down6 (8c) + global (8g), as published


@torch.no_grad()
def test_global_net_round_trips_through_our_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Generator(TINY_LITE0).eval()
    load_imagenet_weights(net.global_feature_network.trunk)
    path = save_checkpoint(tmp_path / "lite0.pt", net)
    loaded, info = read_generator(path)
    assert info.config == TINY_LITE0 and loaded.config.global_net == "efficientnet-lite0"
    assert isinstance(loaded.global_feature_network, Lite0GlobalNetwork)
    x = torch.rand(1, 1, 256, 256)
    reference = Colorizer(net, precision="fp32", channels_last=False).predict(x)[0]
    assert torch.allclose(Colorizer(loaded, precision="fp32", channels_last=False).predict(x)[0], reference, atol=1e-5)


def test_unknown_global_net_is_refused() -> None:
    with pytest.raises(ValueError, match="global_net"):
        GeneratorConfig(global_net="resnet50")  # type: ignore[arg-type]
    assert GeneratorConfig.from_dict({"start_channels": 8}).global_net == "scgan"  # older checkpoints
