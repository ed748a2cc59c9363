"""The colour pipeline (model.Colorizer) on real PIL images of every mode a user may upload."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_test_helpers import make_generator
from PIL import Image, ImageOps

from model import Colorizer, PreparedImage, Task, check_render_size, load_generator

#: ITU-R BT.601 luma, written out here on purpose: the spec, not the code under test.
LUMA = np.array([0.299, 0.587, 0.114])


def _pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful, asymmetric H x W x 3 uint8 test picture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.28)
        chans.append(0.5 + 0.5 * np.sin(fx * 6.28 * xx / max(width, 1) + fy * 6.28 * yy / max(height, 1) + phase))
    img = np.stack(chans, -1)
    img[: height // 3, : width // 4] = (0.95, 0.1, 0.05)  # a red corner marks the orientation
    return (img * 255).round().astype(np.uint8)


def _rgb(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(_pattern(width, height, seed))


def _luma255(image: Image.Image) -> np.ndarray:
    """Float luma in 0..255 of an L/RGB(A) image; of an I;16 image, scaled from 0..65535."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(image, dtype=np.float64) / 65535.0 * 255.0
    if image.mode == "L":
        return np.asarray(image, dtype=np.float64)
    return np.asarray(image.convert("RGB"), dtype=np.float64) @ LUMA


def _assert_same_luma(result: Image.Image, expected_luma: np.ndarray) -> None:
    got = _luma255(result)
    assert got.shape == expected_luma.shape
    assert np.abs(got - expected_luma).max() <= 2.0


@pytest.fixture(scope="module")
def colorizer(compact_checkpoint: Path) -> Colorizer:
    return Colorizer.from_checkpoint(compact_checkpoint, device="cpu", batch_size=8)


@pytest.mark.parametrize("size", [(64, 48), (300, 200), (256, 256), (1, 1), (513, 7)])
def test_keeps_size_and_luma_of_rgb(colorizer: Colorizer, size: tuple[int, int]) -> None:
    image = _rgb(*size)
    result = colorizer.colorize_one(image)
    assert result.size == image.size and result.mode == "RGB"
    _assert_same_luma(result, _luma255(image))


def test_output_is_coloured(colorizer: Colorizer) -> None:
    gray = _rgb(128, 96).convert("L")
    result = np.asarray(colorizer.colorize_one(gray), dtype=np.int16)
    assert np.abs(result[..., 0] - result[..., 2]).max() > 5  # chroma was added


def test_keeps_luma_of_l_and_16_bit(colorizer: Colorizer) -> None:
    gray = _rgb(80, 60, seed=1).convert("L")
    wide = np.asarray(gray, dtype=np.uint16) * 257 + np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) % 200
    sixteen = Image.fromarray(wide)
    assert sixteen.mode == "I;16"
    out_l, out_16 = colorizer.colorize([gray, sixteen])
    assert out_l.size == out_16.size == (80, 60)
    _assert_same_luma(out_l, _luma255(gray))
    _assert_same_luma(out_16, _luma255(sixteen))


def _p_with_transparency(width: int, height: int) -> Image.Image:
    p = _rgb(width, height, seed=2).quantize(colors=16)
    p.info["transparency"] = 3
    buffer = io.BytesIO()
    p.save(buffer, "PNG", transparency=3)
    reopened = Image.open(io.BytesIO(buffer.getvalue()))
    reopened.load()
    assert reopened.mode == "P" and "transparency" in reopened.info
    return reopened


def _alpha_ramp(width: int, height: int) -> Image.Image:
    ramp = (np.arange(width * height).reshape(height, width) * 7 % 256).astype(np.uint8)
    return Image.fromarray(ramp)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_keeps_alpha_exactly(colorizer: Colorizer, mode: str) -> None:
    width, height = 70, 50
    if mode == "RGBA":
        image = _rgb(width, height).copy()
        image.putalpha(_alpha_ramp(width, height))
    elif mode == "LA":
        image = Image.merge("LA", (_rgb(width, height).convert("L"), _alpha_ramp(width, height)))
    else:
        image = _p_with_transparency(width, height)
    expected_alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    assert expected_alpha.min() == 0 < expected_alpha.max()  # fully transparent pixels and others
    result = colorizer.colorize_one(image)
    assert result.mode == "RGBA" and result.size == image.size
    np.testing.assert_array_equal(np.asarray(result.getchannel("A")), expected_alpha)
    _assert_same_luma(result.convert("RGB"), _luma255(image.convert("RGB")))


def _with_orientation(orientation: int) -> Image.Image:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    _rgb(48, 32, seed=3).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.getexif()[0x0112] == orientation
    return image


def test_applies_exif_orientation(colorizer: Colorizer) -> None:
    images = [_with_orientation(o) for o in range(1, 9)]
    expected = [ImageOps.exif_transpose(img) for img in images]
    results = colorizer.colorize(images)
    for orientation, want, got in zip(range(1, 9), expected, results, strict=True):
        assert got.size == want.size, orientation
        assert got.size == ((48, 32) if orientation <= 4 else (32, 48)), orientation
        _assert_same_luma(got, _luma255(want))


def _animated_gif() -> Image.Image:
    first = _rgb(40, 30, seed=4)
    second = Image.fromarray(255 - _pattern(40, 30, seed=4))
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    gif = Image.open(io.BytesIO(buffer.getvalue()))
    assert gif.n_frames == 2
    return gif


def _mode_image(mode: str) -> tuple[Image.Image, np.ndarray]:
    """An image in ``mode`` and the luma (0..255) its colorized version must keep."""
    base = _rgb(66, 44, seed=5)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        return image, _luma255(image)
    if mode == "GIF":
        gif = _animated_gif()
        first = _luma255(gif.convert("RGB"))  # frame 0
        gif.seek(1)  # the decoder is left on another frame; the pipeline must go back
        return gif, first
    if mode == "LA":
        image = Image.merge("LA", (base.convert("L"), _alpha_ramp(66, 44)))
        return image, _luma255(base.convert("L"))
    if mode == "RGBA":
        image = base.copy()
        image.putalpha(_alpha_ramp(66, 44))
        return image, _luma255(base)
    if mode == "P":
        image = base.quantize(colors=64)
        return image, _luma255(image.convert("RGB"))
    image = base.convert(mode)
    return image, _luma255(image.convert("L") if mode == "1" else image.convert("RGB"))


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "GIF"]


def test_handles_every_mode(colorizer: Colorizer) -> None:
    cases = [_mode_image(mode) for mode in MODES]
    assert [img.mode for img, _ in cases][:-1] == MODES[:-1]
    results = colorizer.colorize([img for img, _ in cases])
    for mode, (image, luma), result in zip(MODES, cases, results, strict=True):
        assert result.size == image.size, mode
        assert result.mode == ("RGBA" if mode in ("LA", "RGBA") else "RGB"), mode
        _assert_same_luma(result.convert("RGB"), luma)


def test_batched_equals_unbatched(colorizer: Colorizer) -> None:
    images = [_rgb(90, 70, seed=s) for s in (10, 11, 12)]
    prepared = [colorizer.prepare(img) for img in images]
    assert all(isinstance(p, PreparedImage) and p.model_input.shape == (1, 256, 256) for p in prepared)
    alone, _ = colorizer.predict(prepared[1].model_input[None])
    batch, _ = colorizer.predict(torch.stack([p.model_input for p in prepared]))
    assert alone.dtype == batch.dtype == torch.float32 and alone.device.type == "cpu"
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=1e-5)

    single = np.asarray(colorizer.colorize_one(images[1]), dtype=np.int16)
    together = np.asarray(colorizer.colorize(images)[1], dtype=np.int16)
    diff = np.abs(single - together)
    # 1e-5 apart before rounding: identical images, save a pixel landing exactly on a rounding boundary.
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("kwargs", [{"precision": "bf16"}, {"channels_last": True}])
def test_cpu_precision_and_layout(compact_checkpoint: Path, colorizer: Colorizer, kwargs: dict[str, object]) -> None:
    other = Colorizer.from_checkpoint(compact_checkpoint, device="cpu", **kwargs)
    image = _rgb(120, 80, seed=13)
    result = other.colorize_one(image)
    assert result.size == image.size
    _assert_same_luma(result, _luma255(image))  # luma comes from the input, whatever the precision
    x = colorizer.prepare(image).model_input[None]
    if kwargs.get("precision") == "bf16":
        # Against fp32 itself ('auto', the fixture's, is bf16 on CPUs that run it natively), held to the documented
        # bar for a lower precision: within 40 dB PSNR of fp32 (model/device.py, README).
        fp32 = Colorizer.from_checkpoint(compact_checkpoint, device="cpu", precision="fp32")
        ours, reference = other.predict(x)[0], fp32.predict(x)[0]
        assert not torch.equal(ours, reference), "bf16 ran as fp32"
        psnr_db = 10 * np.log10(1.0 / float((ours - reference).pow(2).mean()))
        assert psnr_db >= 40.0, f"bf16 is {psnr_db:.1f} dB from fp32"
    else:  # the same precision in another memory layout: the same numbers
        torch.testing.assert_close(other.predict(x)[0], colorizer.predict(x)[0], rtol=0, atol=1e-5)


def test_batch_size_splits_work(compact_checkpoint: Path, colorizer: Colorizer) -> None:
    small = Colorizer.from_checkpoint(compact_checkpoint, device="cpu", batch_size=2)
    images = [_rgb(40, 40, seed=s) for s in (20, 21, 22)]
    for a, b in zip(small.colorize(images), colorizer.colorize(images), strict=True):
        assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 1


def test_render_size_512(compact_checkpoint: Path, colorizer: Colorizer) -> None:
    image = _rgb(100, 60, seed=6)
    assert colorizer.prepare(image, render_size=512).model_input.shape == (1, 512, 512)
    result = colorizer.colorize_one(image, render_size=512)
    assert result.size == image.size
    _assert_same_luma(result, _luma255(image))
    at_512 = Colorizer.from_checkpoint(compact_checkpoint, device="cpu", render_size=512)
    assert at_512.render_size == 512
    assert at_512.prepare(image).render_size == 512


@pytest.mark.parametrize("bad", [100, 300, 0, -256, 255, True, 256.0, "256"])
def test_invalid_render_sizes(compact_checkpoint: Path, colorizer: Colorizer, bad: object) -> None:
    with pytest.raises(ValueError):
        check_render_size(bad)  # type: ignore[arg-type]
    generator = load_generator(compact_checkpoint, device="cpu")
    with pytest.raises(ValueError):
        Colorizer(generator, device="cpu", render_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        colorizer.colorize([_rgb(32, 32)], render_size=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"precision": "fp64"}, {"batch_size": 0}, {"device": "cuda:99"}])
def test_invalid_colorizer_settings(compact_checkpoint: Path, kwargs: dict[str, object]) -> None:
    if kwargs.get("device") and torch.cuda.is_available():
        pytest.skip("only meaningful without CUDA")
    generator = load_generator(compact_checkpoint, device="cpu")
    with pytest.raises(ValueError):
        Colorizer(generator, **{"device": "cpu", **kwargs})  # type: ignore[arg-type]


def test_saliency_maps(colorizer: Colorizer) -> None:
    images = [_rgb(90, 50, seed=7), _rgb(33, 77, seed=8).convert("L")]
    maps = colorizer.saliency(images)
    for image, sal in zip(images, maps, strict=True):
        assert sal.mode == "L" and sal.size == image.size
        assert np.asarray(sal).std() > 0


def test_saliency_needs_the_branch(tmp_path: Path) -> None:
    colorizer = Colorizer(make_generator(seed=9, with_saliency=False), device="cpu")
    assert not colorizer.has_saliency
    with pytest.raises(ValueError, match="saliency"):
        colorizer.saliency([_rgb(32, 32)])


def test_nchannel_checkpoint_returns_the_network_rgb(nchannel_checkpoint: Path) -> None:
    colorizer = Colorizer.from_checkpoint(nchannel_checkpoint, device="cpu", precision="fp32")
    assert colorizer.task is Task.NCHANNEL_TO_RGB and colorizer.in_channels == 3
    image = _rgb(256, 256, seed=9)  # at the working resolution: no resampling on the way in or out
    result = np.asarray(colorizer.colorize_one(image), dtype=np.int16)

    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        rgb = colorizer.generator.predict(x).clamp(0, 1)[0]
    expected = (rgb * 255).round().permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(result - expected).max() <= 1
    # No luma recombination: the output's luma is the network's, not the input's.
    assert np.abs(_luma255(Image.fromarray(result.astype(np.uint8))) - _luma255(image)).max() > 10

    wide = _rgb(300, 120, seed=10)
    result_wide = colorizer.colorize_one(wide)
    assert result_wide.size == wide.size
    x = F.interpolate(
        torch.from_numpy(np.asarray(wide, dtype=np.float32) / 255.0).permute(2, 0, 1)[None],
        size=(256, 256),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    with torch.no_grad():
        rgb = colorizer.generator.predict(x).clamp(0, 1)
    # Shrinks in height (antialiased, as on the way in), grows in width.
    up = F.interpolate(rgb, size=(120, 300), mode="bilinear", align_corners=False, antialias=True)[0]
    expected_wide = (up * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(result_wide, dtype=np.float64) - expected_wide).max() <= 1.0
    # A gray upload feeds all three input channels.
    assert colorizer.colorize_one(wide.convert("L")).size == wide.size


def test_prepare_does_no_device_work(colorizer: Colorizer) -> None:
    image = _rgb(50, 40)
    prepared = colorizer.prepare(image)
    assert prepared.size == (50, 40)
    assert prepared.luma.shape == (1, 40, 50) and prepared.luma.device.type == "cpu"
    expected = np.asarray(image, dtype=np.float64) @ LUMA / 255.0
    np.testing.assert_allclose(prepared.luma[0].numpy(), expected, atol=1e-6)
