"""The authors' released networks: names and shapes, loading, and numerical equivalence.

The manifest (tests/model/data/scgan_official_state_dict.json) lists every tensor
of the reference networks at their published sizes. State dicts are built from it
with random values; ``divisor=8`` keeps the names and divides every width by 8
(c=8, g=8, l=16), which is what the numerical checks run at.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_test_helpers import COMPACT
from scgan_reference import NETWORKS, manifest, official_state_dict, reference_forward, scaled_shapes

from model import (
    Generator,
    GeneratorConfig,
    PatchDiscriminator70,
    PerceptualNet,
    Task,
    load_generator,
    read_generator,
)
from model.layers import SpectralNorm, has_spectral_norm


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def _build(network: str, config: GeneratorConfig | None = None) -> torch.nn.Module:
    if network == "SCGAN":
        return Generator(config or GeneratorConfig(), with_saliency=True)
    if network == "SCGAN_val":
        return Generator(config or GeneratorConfig(), with_saliency=False)
    if network == "PatchDiscriminator70":
        return PatchDiscriminator70()
    return PerceptualNet()


def _save_official(path: Path, state: dict[str, torch.Tensor], prefix: str = "") -> Path:
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return path


def test_manifest_lists_the_four_networks() -> None:
    data = manifest()
    assert tuple(data) == NETWORKS
    assert len(data["SCGAN"]) == 279 and len(data["SCGAN_val"]) == 236


@pytest.mark.parametrize("network", NETWORKS)
def test_published_names_and_shapes_match(network: str) -> None:
    # Built on the meta device: exact names and shapes at full width without allocating ~60M weights.
    with torch.device("meta"):
        ours = _shapes(_build(network))
    theirs = manifest()[network]
    assert sorted(set(ours) - set(theirs)) == []
    assert sorted(set(theirs) - set(ours)) == []
    assert ours == theirs


def test_published_discriminator_loads_strictly() -> None:
    state = official_state_dict("PatchDiscriminator70")
    net = PatchDiscriminator70()
    net.load_state_dict(state, strict=True)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_published_perceptual_net_loads_strictly(perceptual_net: PerceptualNet) -> None:
    state = official_state_dict("PerceptualNet")
    perceptual_net.load_state_dict(state, strict=True)
    for name, tensor in perceptual_net.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_perceptual_net_takes_a_torchvision_vgg16_state_dict(perceptual_net: PerceptualNet) -> None:
    # torchvision's vgg16 state dict also holds later feature layers and the classifier: they are dropped.
    vgg = official_state_dict("PerceptualNet", seed=9)
    vgg.update({"features.17.weight": torch.zeros(512, 256, 3, 3), "classifier.6.bias": torch.zeros(1000)})
    perceptual_net.load_torchvision_vgg16(vgg)
    assert torch.equal(perceptual_net.features[14].weight, vgg["features.14.weight"])
    with pytest.raises(RuntimeError):  # strict: a missing layer is an error
        perceptual_net.load_torchvision_vgg16({k: v for k, v in vgg.items() if k != "features.14.bias"})


@pytest.mark.parametrize("network", ["SCGAN", "SCGAN_val"])
def test_scaled_manifest_matches_compact_generator(network: str) -> None:
    state = official_state_dict(network, divisor=8)
    assert {k: tuple(v.shape) for k, v in state.items()} == scaled_shapes(network, 8)
    net = _build(network, COMPACT)
    assert _shapes(net) == scaled_shapes(network, 8)
    net.load_state_dict(state, strict=True)
    assert state["down2.norm.num_batches_tracked"].dtype == torch.long
    assert state["down2.norm.num_batches_tracked"].shape == ()
    assert (state["down2.norm.running_var"] > 0).all()


@pytest.mark.parametrize("network", ["SCGAN", "SCGAN_val"])
@pytest.mark.parametrize("layout", ["plain", "module-prefix", "wrapped"])
def test_official_files_are_detected_and_loaded(tmp_path: Path, network: str, layout: str) -> None:
    state = official_state_dict(network, divisor=8)
    path = tmp_path / f"{network}.pth"
    if layout == "wrapped":
        torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 10}, path)
    else:
        _save_official(path, state, "module." if layout == "module-prefix" else "")

    net, info = read_generator(path)
    assert info.source_format == "official"
    assert info.task is Task.GRAY_TO_RGB
    assert info.working_resolution == 256
    assert info.has_saliency is (network == "SCGAN") is net.has_saliency
    assert info.path == str(path) and info.name == path.name and len(info.sha256) == 64
    assert (info.config.start_channels, info.config.global_channels) == (8, 8)
    if network == "SCGAN":
        assert info.config == COMPACT
    assert not net.training
    assert not has_spectral_norm(net)  # folded for inference
    assert all(p.device.type == "cpu" for p in net.parameters())

    if layout == "plain":
        loaded = load_generator(path, device="cpu")
        assert isinstance(loaded, Generator) and not loaded.training
        assert loaded.checkpoint_info.source_format == "official"  # type: ignore[attr-defined]
        assert loaded.checkpoint_info.sha256 == info.sha256  # type: ignore[attr-defined]


def test_published_size_official_file_loads(tmp_path: Path) -> None:
    """One full-width file, as DataParallel saves it: detected, sized as published, folded."""
    path = _save_official(tmp_path / "SCGAN_full.pth", official_state_dict("SCGAN"), "module.")
    net, info = read_generator(path)
    assert info.source_format == "official"
    assert info.config == GeneratorConfig()
    assert net.has_saliency and not has_spectral_norm(net)
    assert net.up2.conv2d.conv2d.weight.shape == (512, 1024, 3, 3)


# --------------------------------------------------------------------------------------
# Numerical equivalence with an independent re-implementation of the reference forward
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_compact(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path]:
    """A compact official-style SCGAN state dict, saved as DataParallel saves it."""
    state = official_state_dict("SCGAN", divisor=8, seed=3)
    path = _save_official(tmp_path_factory.mktemp("official") / "SCGAN_compact.pth", state, "module.")
    return state, path


@pytest.fixture(scope="module")
def reference(
    official_compact: tuple[dict[str, torch.Tensor], Path],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, reference rgb, reference saliency), computed once: the float64 forward is the slow part.

    256 x 512, so that a height/width mix-up in padding, upsampling or concatenation shows.
    """
    state, _ = official_compact
    x = torch.rand(1, 1, 256, 512, generator=torch.Generator().manual_seed(7))
    rgb, saliency = reference_forward(state, x)
    assert saliency is not None
    # The comparison only means something if the outputs are neither flat nor saturated.
    assert rgb.std() > 0.05 and rgb.abs().max() < 0.999
    assert saliency.std() > 1e-3
    return x, rgb, saliency


def test_loaded_official_generator_equals_reference_forward(
    official_compact: tuple[dict[str, torch.Tensor], Path],
    reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    _, path = official_compact
    x, want_rgb, want_saliency = reference
    net = load_generator(path, device="cpu")
    with torch.no_grad():
        rgb = net.predict(x)
        rgb_train_path, saliency = net(x, return_saliency=True)
    torch.testing.assert_close(rgb.double(), want_rgb, rtol=0, atol=1e-4)
    torch.testing.assert_close(rgb_train_path, rgb, rtol=0, atol=0)
    assert saliency is not None
    torch.testing.assert_close(saliency.double(), want_saliency, rtol=0, atol=1e-4)


def test_unfolded_eval_generator_equals_reference_forward(
    official_compact: tuple[dict[str, torch.Tensor], Path],
    reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    state, _ = official_compact
    x, want_rgb, want_saliency = reference
    net = Generator(COMPACT, spectral_norm=True)
    net.load_state_dict(state, strict=True)
    net.eval()
    assert sum(isinstance(m, SpectralNorm) for m in net.modules()) > 0
    with torch.no_grad():
        rgb, saliency = net(x, return_saliency=True)
    torch.testing.assert_close(rgb.double(), want_rgb, rtol=0, atol=1e-4)
    torch.testing.assert_close(saliency.double(), want_saliency, rtol=0, atol=1e-4)  # type: ignore[union-attr]
    # Eval mode runs no stored power iteration: the vectors are untouched.
    u = "down2.conv2d.module.weight_u"
    assert torch.equal(net.state_dict()[u], state[u])


def test_inference_only_official_generator_equals_reference_forward(
    tmp_path: Path,
    official_compact: tuple[dict[str, torch.Tensor], Path],
    reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """SCGAN_val is SCGAN without the attention branch: same names, same RGB."""
    state, _ = official_compact
    val_state = {k: v for k, v in state.items() if not k.startswith("attention_prediction_network.")}
    assert {k: tuple(v.shape) for k, v in val_state.items()} == scaled_shapes("SCGAN_val", 8)
    path = _save_official(tmp_path / "SCGAN_val.pth", val_state)
    x, want_rgb, _ = reference
    with torch.no_grad():
        rgb = load_generator(path, device="cpu").predict(x)
    torch.testing.assert_close(rgb.double(), want_rgb, rtol=0, atol=1e-4)


def test_a_wrong_weight_is_noticed(
    official_compact: tuple[dict[str, torch.Tensor], Path],
    reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    """Negative control: one perturbed BN bias near the output breaks the 1e-4 agreement."""
    state, _ = official_compact
    x, want_rgb, _ = reference
    changed = dict(state)
    changed["up8.conv2d.norm.bias"] = state["up8.conv2d.norm.bias"] + 0.05
    net = Generator(COMPACT, with_saliency=True)
    net.load_state_dict(changed, strict=True)
    with torch.no_grad():
        rgb = net.eval().predict(x)
    assert (rgb.double() - want_rgb).abs().max() > 1e-3
