"""The encoder generator: shapes at odd sizes, hint planes, the checkpoint round trip, SCGAN's checkpoints untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import read_generator, save_checkpoint
from model.color import rgb_to_chroma, rgb_to_gray
from model.config import ENCODER_SIZE_MULTIPLE, SIZE_MULTIPLE, GeneratorConfig
from model.encoder_generator import EncoderGenerator, hint_pyramid
from model.generator import Generator, build_generator
from model.hints import Hint, HintError, hint_planes
from model.pipeline import Colorizer

TINY_ENCODER = GeneratorConfig(encoder="efficientnet-lite0", decoder_channels=8)
TINY_HINTS_BINS = GeneratorConfig(encoder="efficientnet-lite0", decoder_channels=8, hints=True, chroma_head="bins")


@pytest.mark.parametrize("config", [TINY_ENCODER, TINY_HINTS_BINS])
@pytest.mark.parametrize("size", [(32, 32), (77, 131), (256, 192)])
@torch.no_grad()
def test_shapes_at_odd_sizes_and_luma_kept(config: GeneratorConfig, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = build_generator(config).train()
    x = torch.rand(2, config.input_channels, *size)
    rgb, saliency, head = net(x, return_head=True)
    assert rgb.shape == (2, 3, *size) and saliency.shape == (2, 1, *size)
    half = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    assert head.shape == (2, 179 if config.chroma_head == "bins" else 2, *half)
    net.eval()
    out = net.predict(x)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Inside the cube the output's luma is the input's own (chroma only is predicted).
    assert torch.allclose(rgb_to_gray(out), x[:, :1], atol=1e-4)


def test_size_multiple_and_input_checks() -> None:
    assert TINY_ENCODER.size_multiple == ENCODER_SIZE_MULTIPLE == 32
    assert GeneratorConfig().size_multiple == SIZE_MULTIPLE == 256
    assert TINY_HINTS_BINS.input_channels == 4 and TINY_ENCODER.input_channels == 1
    net = build_generator(TINY_HINTS_BINS).eval()
    with pytest.raises(ValueError, match="B x 4 x H x W"):
        net.predict(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32"):
        net.predict(torch.rand(1, 4, 31, 64))
    with pytest.raises(ValueError, match="encoder generator"):
        GeneratorConfig(hints=True)
    with pytest.raises(ValueError, match="build_generator"):
        Generator(TINY_ENCODER)
    assert isinstance(
        build_generator(GeneratorConfig(start_channels=4, latent_channels=4, global_channels=4)), Generator
    )


@torch.no_grad()
def test_round_trip_through_our_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = build_generator(TINY_HINTS_BINS).eval()
    path = save_checkpoint(tmp_path / "enc.pt", net)
    loaded, info = read_generator(path)
    assert isinstance(loaded, EncoderGenerator) and info.config == TINY_HINTS_BINS and info.has_saliency
    x = torch.rand(2, 4, 96, 96)
    assert torch.equal(loaded.predict(x), net.predict(x))


def test_hint_pyramid_keeps_a_small_hint_at_full_strength() -> None:
    planes = torch.zeros(1, 3, 64, 64)
    planes[:, 0, 10:13, 20:23], planes[:, 1, 10:13, 20:23], planes[:, 2, 10:13, 20:23] = 0.3, -0.2, 1.0
    levels = hint_pyramid(planes, 6)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16, 8, 4, 2]
    for level in levels[1:]:
        held = level[0, 2] > 0
        assert held.sum() >= 1
        assert torch.allclose(level[0, 0][held], torch.tensor(0.3)) and torch.allclose(
            level[0, 1][held], torch.tensor(-0.2)
        )
        assert (level[0, :2][:, ~held] == 0).all()


def test_hint_planes_map_image_pixels_to_the_working_size() -> None:
    # Corners of an odd-sized image land in the corners of the working grid; only the chroma is kept.
    planes = hint_planes([Hint(0, 0, "#0000ff"), Hint(300, 200, "#ff0000")], 301, 201, 256, patch=1)
    blue = rgb_to_chroma(torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)).flatten()
    red = rgb_to_chroma(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)).flatten()
    assert planes[2].sum() == 2 and planes[2, 0, 0] == 1 and planes[2, 255, 255] == 1
    assert torch.allclose(planes[:2, 0, 0], blue) and torch.allclose(planes[:2, 255, 255], red)
    with pytest.raises(HintError, match=r"outside the 301 x 201 image"):
        hint_planes([Hint(301, 0, "#000000")], 301, 201, 256)


def test_pipeline_feeds_hints_and_refuses_them_without_support() -> None:
    torch.manual_seed(2)
    colorizer = Colorizer(build_generator(TINY_HINTS_BINS), precision="fp32", channels_last=False)
    image = Image.fromarray(np.full((50, 70, 3), 128, np.uint8))
    plain = colorizer.prepare(image)
    hinted = colorizer.prepare(image, hints=[Hint(69, 49, "#00ff00")])
    assert plain.model_input.shape == hinted.model_input.shape == (4, 256, 256)
    assert plain.model_input[1:].abs().sum() == 0 and hinted.model_input[3].sum() > 0
    sized = colorizer.colorize_with_saliency([image], hints=[[Hint(3, 4, "#123456")]])[0][0]
    assert sized.size == (70, 50)
    no_hints = Colorizer(build_generator(TINY_ENCODER), precision="fp32", channels_last=False)
    with pytest.raises(HintError, match="takes no colour hints"):
        no_hints.prepare(image, hints=[Hint(0, 0, "#ffffff")])
