"""The perceptual loss: its value on either feature network, and how it reads, names and freezes its weights."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch_files import MakesADirectory, save_as_on_a_gpu

from model.discriminator import PerceptualNet
from model.efficientnet_lite import default_weights_path, normalize_input
from training.losses import LITE0_PERCEPTUAL_BLOCKS, PerceptualLoss


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)


@pytest.fixture(scope="module")
def lite0_perceptual() -> PerceptualLoss:
    return PerceptualLoss()


def test_lite0_perceptual_is_the_mean_l1_of_three_feature_maps(lite0_perceptual: PerceptualLoss) -> None:
    fake, real = _images(0)
    net = lite0_perceptual.lite0
    assert net is not None and len(LITE0_PERCEPTUAL_BLOCKS) == 3
    f = net.stages(normalize_input(fake), LITE0_PERCEPTUAL_BLOCKS)
    r = net.stages(normalize_input(real), LITE0_PERCEPTUAL_BLOCKS)
    expected = sum((f[b] - r[b]).abs().mean() for b in LITE0_PERCEPTUAL_BLOCKS) / 3
    value = lite0_perceptual(fake, real)
    assert value.item() > 0.0 and value.item() == pytest.approx(float(expected), rel=1e-5)
    assert lite0_perceptual(real, real).item() == 0.0
    assert lite0_perceptual.source.startswith("efficientnet-lite0-blocks")


def test_perceptual_gradient_pulls_fake_toward_real(lite0_perceptual: PerceptualLoss) -> None:
    fake, real = _images(1)
    fake.requires_grad_(True)
    before = lite0_perceptual(fake, real)
    before.backward()
    assert fake.grad is not None
    with torch.no_grad():
        after = lite0_perceptual(fake - 0.5 * fake.grad / fake.grad.norm(), real)
    assert after.item() < before.item()
    assert all(p.grad is None for p in lite0_perceptual.parameters())  # the feature network stays frozen
    assert not lite0_perceptual.train().training


def test_lite0_perceptual_reads_the_given_file_names_it_and_stays_frozen(tmp_path: Path) -> None:
    state = torch.load(default_weights_path("lite0"), map_location="cpu", weights_only=True)
    state["_conv_stem.weight"] = 2 * state["_conv_stem.weight"]
    path = tmp_path / "doubled-stem.pth"
    torch.save(state, path)
    loss = PerceptualLoss(lite0_weights=str(path))
    # The source is recorded in training states and checkpoints: the taps (blocks 2, 4 and 10) and the file.
    assert loss.source == "efficientnet-lite0-blocks2-4-10:doubled-stem.pth"
    assert loss.lite0 is not None and torch.equal(loss.lite0._conv_stem.weight, state["_conv_stem.weight"])
    assert not loss.lite0.has_classifier  # a feature extractor: the ImageNet classifier is not built
    assert not any(p.requires_grad for p in loss.parameters()) and not loss.training
    assert PerceptualLoss().source == f"efficientnet-lite0-blocks2-4-10:{default_weights_path('lite0').name}"


@pytest.fixture(scope="module")
def vgg16_state() -> dict[str, torch.Tensor]:
    """Random VGG-16 weights in torchvision's key layout (features.0-14)."""
    torch.manual_seed(0)
    return PerceptualNet().state_dict()


def test_vgg_perceptual_is_l1_of_conv3_3_on_imagenet_normalised_inputs(
    tmp_path: Path, vgg16_state: dict[str, torch.Tensor]
) -> None:
    weights = tmp_path / "vgg16.pth"
    torch.save(vgg16_state, weights)
    loss = PerceptualLoss(vgg16_weights=str(weights))
    net = PerceptualNet()
    net.load_torchvision_vgg16(torch.load(weights, weights_only=True))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    fake, real = _images(2)
    expected = F.l1_loss(net((fake - mean) / std), net((real - mean) / std))
    value = loss(fake, real)
    assert value.item() > 0.0 and value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss(real, real).item() == 0.0
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    assert loss.source == f"vgg16-conv3_3:vgg16.pth:{digest}" and loss.lite0 is None
    # The statistics are buffers in the module's state, shaped to broadcast over B x 3 x H x W batches.
    buffers = loss.state_dict()
    assert torch.equal(buffers["mean"], mean) and torch.equal(buffers["std"], std)
    assert not any(p.requires_grad for p in loss.parameters()) and not loss.training


def test_vgg16_weights_saved_on_a_gpu_load_on_the_cpu(tmp_path: Path, vgg16_state: dict[str, torch.Tensor]) -> None:
    path = save_as_on_a_gpu(vgg16_state, tmp_path / "vgg16-cuda.pth")
    loss = PerceptualLoss(vgg16_weights=str(path))  # without a CUDA device, only map_location="cpu" reads it
    assert loss.vgg is not None
    assert all(torch.equal(v, vgg16_state[k]) and v.device.type == "cpu" for k, v in loss.vgg.state_dict().items())


@pytest.mark.parametrize("unsafe_default", ["0", "1"], ids=["torch-default", "forced-unsafe-default"])
def test_a_vgg16_weights_file_cannot_run_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unsafe_default: str
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "vgg16-evil.pth"
    torch.save({"features.0.weight": MakesADirectory(marker), "features.0.bias": torch.zeros(64)}, path)
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch.load unpickle anything unless weights_only=True is passed.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", unsafe_default)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        PerceptualLoss(vgg16_weights=str(path))
    assert not marker.exists()
