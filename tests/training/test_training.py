"""The training loop end to end on tiny synthetic data: every stage, resume, export, DDP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import Colorizer, load_generator
from model.options import Precision
from tests.training.conftest import make_photos, tiny_config
from training.data import DataError, list_images, split_paths
from training.export import export_checkpoint
from training.loop import train, training_precision
from training.losses import gradient_penalty
from training.state import load_state
from training.validation import make_validator


def _train_rows(out_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


@pytest.mark.parametrize(
    "stage, extra",
    [
        ("stage1", {}),
        ("stage2", {"loss": {"gan": "wgan-gp"}}),
        ("stage2", {"loss": {"gan": "wgan"}}),
        ("stage2", {"loss": {"gan": "lsgan"}}),
        ("stage2", {"loss": {"gan": "wgan-gp"}, "optim": {"n_critic": 2, "grad_accum": 2, "batch_size": 1}}),
        ("stage1", {"optim": {"grad_accum": 2, "batch_size": 1}}),
        ("stage2", {"loss": {"gan": "projected"}}),
        ("stage1", {"model": {"global_net": "efficientnet-lite0"}}),
        ("stage2", {"model": {"global_net": "efficientnet-lite0"}, "optim": {"lr_global_scale": 0.1}}),
    ],
)
def test_colorization_stages_run_with_finite_losses(tmp_path: Path, photos: Path, stage: str, extra: dict) -> None:
    cfg = tiny_config(tmp_path / "run", photos, run={"stage": stage, "max_steps": 2}, **extra)
    summary = train(cfg)
    assert summary["steps"] == 2
    rows = _train_rows(tmp_path / "run")
    assert len(rows) == 2
    for row in rows:
        for key in ("l1", "loss_g"):
            assert np.isfinite(row[key])
        if stage == "stage2":
            assert np.isfinite(row["loss_d"]) and np.isfinite(row["adversarial"]) and np.isfinite(row["perceptual"])
    state = load_state(tmp_path / "run" / "ckpt")
    assert state["step"] == 2 and (state["critic"] is not None) == (stage == "stage2")
    if stage == "stage2":
        assert state["perceptual"].startswith("efficientnet-lite0")  # no VGG-16 file given


@pytest.mark.parametrize("task", ["rotation", "classes"])
def test_pretrain_global_runs_and_feeds_stage1(tmp_path: Path, task: str) -> None:
    data = tmp_path / "cls"
    if task == "classes":
        make_photos(data / "cats", 4, seed=1)
        make_photos(data / "dogs", 4, seed=2)
        val = tmp_path / "val"
        make_photos(val / "cats", 2, seed=3)
        make_photos(val / "dogs", 2, seed=4)
        extra = {"pretrain": {"task": "classes", "val_dir": str(val)}}
    else:
        make_photos(data, 8)
        extra = {"pretrain": {"task": "rotation"}, "data": {"val_fraction": 0.3}}
    cfg = tiny_config(
        tmp_path / "pre",
        data,
        run={"stage": "pretrain-global", "max_steps": 2, "validate_every": 2},
        optim={"batch_size": 2},
        **extra,
    )
    summary = train(cfg, make_validator=make_validator)
    assert summary["steps"] == 2
    assert set(summary["last_validation"]) == {"top1", "top5"}
    assert 0.0 <= summary["last_validation"]["top1"] <= summary["last_validation"]["top5"] <= 1.0

    s1 = tiny_config(
        tmp_path / "s1",
        data if task == "rotation" else data / "cats",
        run={"max_steps": 1, "init_global_from": str(tmp_path / "pre" / "ckpt" / "last.pt")},
    )
    train(s1)
    pre = load_state(tmp_path / "pre" / "ckpt")["main"]
    assert pre["features.conv1_1.conv2d.module.weight_bar"].shape == torch.Size([4, 1, 3, 3])


def test_stage1_loss_falls_on_a_repeated_batch(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    make_photos(folder, 1)
    cfg = tiny_config(
        tmp_path / "run",
        folder,
        run={"max_steps": 40},
        data={"scale_min": 1.0, "scale_max": 1.0, "ratio_min": 1.0, "ratio_max": 1.0, "hflip": False},
        optim={"batch_size": 1, "lr_g": 2e-3},
    )
    train(cfg)
    losses = [r["loss_g"] for r in _train_rows(tmp_path / "run")]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


def test_gradient_penalty_known_answer() -> None:
    # A linear critic f(c, x) = sum(w * x) has gradient w everywhere: penalty = (||w|| - 1)^2.
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w|| = 0.5 * sqrt(48)

    def critic(condition: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    gp = gradient_penalty(critic, torch.zeros(5, 1, 4, 4), real, fake)
    assert gp.item() == pytest.approx((0.5 * 48**0.5 - 1.0) ** 2, rel=1e-6)
    # A critic with unit-norm gradient has zero penalty, and the penalty is differentiable.
    w_unit = torch.randn(1, 3, 4, 4)
    w_unit = (w_unit / w_unit.norm()).requires_grad_(True)
    gp_unit = gradient_penalty(
        lambda c, x: (x * w_unit).flatten(1).sum(1),
        torch.zeros(2, 1, 4, 4),
        torch.rand(2, 3, 4, 4),
        torch.rand(2, 3, 4, 4),
    )
    assert gp_unit.item() == pytest.approx(0.0, abs=1e-10)
    gp_unit.backward()
    assert w_unit.grad is not None


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_resume_matches_an_uninterrupted_run(tmp_path: Path, photos: Path, stage: str) -> None:
    n = 2
    full = tiny_config(tmp_path / "full", photos, run={"stage": stage, "max_steps": 2 * n, "ema_decay": 0.5})
    train(full)
    first = tiny_config(tmp_path / "split", photos, run={"stage": stage, "max_steps": n, "ema_decay": 0.5})
    train(first)
    second = tiny_config(tmp_path / "split", photos, run={"stage": stage, "max_steps": 2 * n, "ema_decay": 0.5})
    train(second, resume=True)
    a, b = load_state(tmp_path / "full" / "ckpt" / "last.pt"), load_state(tmp_path / "split" / "ckpt" / "last.pt")
    assert a["step"] == b["step"] == 2 * n
    for part in ("main", "ema") + (("critic",) if stage == "stage2" else ()):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"


def test_export_loads_and_colorizes(tmp_path: Path, photos: Path) -> None:
    cfg = tiny_config(tmp_path / "run", photos, run={"max_steps": 2, "validate_every": 2}, data={"val_fraction": 0.4})
    train(cfg, make_validator=make_validator)
    out = tmp_path / "serving.pt"
    export_checkpoint(tmp_path / "run" / "ckpt", out, half=True)
    gen = load_generator(out, device="cpu")
    info = gen.checkpoint_info
    assert info.task.value == "gray->rgb" and info.working_resolution == 256 and info.has_saliency
    assert info.metadata["training_data"]["train_images"] + info.metadata["training_data"]["validation_images"] == 6
    assert "psnr_delta" in info.metadata["metrics"]["best_validation"]
    image = Image.open(next(iter(list_images(photos)))).convert("L")
    colored = Colorizer(gen).colorize_one(image)
    assert colored.size == image.size and colored.mode == "RGB"


def test_paired_nchannel_mode_trains_and_exports(tmp_path: Path) -> None:
    targets = tmp_path / "visible"
    inputs = tmp_path / "thermal"
    make_photos(targets, 4)
    inputs.mkdir()
    for path in list_images(targets):  # a fake 3-channel "thermal" image per target, same relative path
        rgb = np.asarray(Image.open(path))
        Image.fromarray(255 - rgb[..., ::-1].copy()).save(inputs / path.name)
    cfg = tiny_config(
        tmp_path / "run",
        targets,
        run={"max_steps": 2},
        data={"train_dir": "", "input_dir": str(inputs), "target_dir": str(targets)},
        model={"in_channels": 3},
    )
    train(cfg)
    out = export_checkpoint(tmp_path / "run" / "ckpt", tmp_path / "thermal.pt")
    gen = load_generator(out, device="cpu")
    assert gen.checkpoint_info.task.value == "nchannel->rgb" and gen.config.in_channels == 3
    result = Colorizer(gen).colorize_one(Image.open(inputs / "photo00.png"))
    assert result.size == (96, 72)


def test_unusable_files_are_skipped_and_empty_data_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    make_photos(folder, 3)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("L", (64, 64), 128).convert("RGB").save(folder / "gray.png")
    cfg = tiny_config(tmp_path / "run", folder, run={"max_steps": 1})
    with caplog.at_level(logging.WARNING):
        summary = train(cfg)
    assert summary["steps"] == 1
    text = caplog.text
    assert "broken.jpg" in text and "gray.png" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="no usable"):
        train(tiny_config(tmp_path / "run2", empty, run={"max_steps": 1}))


def test_validation_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    make_photos(folder, 40, size=(8, 8))
    train_a, val_a = split_paths(folder, 0.25)
    train_b, val_b = split_paths(folder, 0.25)
    assert train_a == train_b and val_a == val_b
    assert not set(train_a) & set(val_a) and len(train_a) + len(val_a) == 40
    # The hold-out is SHA-1 of the relative path, so a folder's split never changes between versions or runs.
    assert [p.name for p in val_a] == [f"photo{i:02d}.png" for i in (6, 10, 12, 17, 21, 27, 29, 34)]
    assert split_paths(folder, 0.0)[1] == [] and split_paths(folder, 1.0)[0] == []


def test_fine_tuning_starts_from_a_serving_checkpoint(tmp_path: Path, photos: Path) -> None:
    from model import Generator, init_weights, save_checkpoint
    from model.layers import SpectralNorm
    from training.stages import build_stage

    cfg = tiny_config(tmp_path / "tune", photos, run={"max_steps": 1, "init_from": str(tmp_path / "serving.pt")})
    source = Generator(cfg.model.generator_config())
    init_weights(source)
    for module in source.modules():  # as after a long run: u and v have converged
        if isinstance(module, SpectralNorm):
            for _ in range(100):
                module.normalized_weight(update=True)
    save_checkpoint(tmp_path / "serving.pt", source.eval())
    parts = build_stage(cfg)
    x = torch.rand(1, 1, 256, 256)
    parts.main.eval()
    served = load_generator(tmp_path / "serving.pt", device="cpu")
    # Power iteration converges only approximately for layers with close singular values,
    # so the re-wrapped weights differ from the folded ones by a small scale factor.
    assert torch.allclose(parts.main.predict(x), served.predict(x), atol=2e-3)
    assert train(cfg)["steps"] == 1
    with pytest.raises(ValueError, match="config"):
        other = tiny_config(
            tmp_path / "bad",
            photos,
            run={"max_steps": 1, "init_from": str(tmp_path / "serving.pt")},
            model={"start_channels": 8},
        )
        build_stage(other)


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_lite0_trunk_starts_from_imagenet_and_is_frozen_or_fine_tuned(
    tmp_path: Path, photos: Path, scale: float
) -> None:
    from model.efficientnet_lite import EfficientNetLite0, load_imagenet_weights

    imagenet = EfficientNetLite0(with_classifier=False)
    load_imagenet_weights(imagenet)
    cfg = tiny_config(
        tmp_path / "run",
        photos,
        run={"max_steps": 2},
        model={"global_net": "efficientnet-lite0"},
        optim={"lr_global_scale": scale, "lr_g": 1e-2},
    )
    train(cfg)
    trunk = {
        k[len("global_feature_network.trunk.") :]: v
        for k, v in load_state(tmp_path / "run" / "ckpt")["main"].items()
        if k.startswith("global_feature_network.trunk.")
    }
    reference = imagenet.state_dict()
    assert set(trunk) == set(reference)
    unchanged = all(torch.equal(trunk[k], reference[k]) for k in reference)
    assert unchanged == (scale == 0.0)
    # BatchNorm statistics stay ImageNet's either way.
    assert all(torch.equal(trunk[k], reference[k]) for k in reference if "running_" in k)


def test_near_gray_photos_are_left_out(tmp_path: Path, photos: Path) -> None:
    from training.metrics import colorfulness

    muted = np.full((72, 96, 3), 120, np.uint8)
    muted[..., 0] = np.linspace(115, 125, 96, dtype=np.float32)[None].astype(np.uint8)  # a faint tint
    Image.fromarray(muted).save(photos / "muted.png")
    assert 0 < colorfulness(muted) < 15
    cfg = tiny_config(tmp_path / "run", photos, run={"max_steps": 1}, data={"min_colorfulness": 15.0})
    from training.stages import build_stage

    parts = build_stage(cfg)
    assert [p.name for p in parts.train_set.dropped_low_colorfulness] == ["muted.png"]
    assert parts.data_description["dropped_low_colorfulness"] == ["muted.png"]
    assert len(parts.train_set) == 6


@pytest.mark.parametrize(
    "stage, extra",
    [
        ("stage2", {"loss": {"gan": "wgan-gp"}}),  # SCGAN's spectral-normalised layers and the critic
        (
            "stage1",
            {
                "model": {"encoder": "efficientnet-lite0", "decoder_channels": 8, "chroma_head": "bins"},
                "loss": {"bins": 1.0, "perceptual": 1.0},
                "data": {"crop_size": 64},
            },
        ),
    ],
)
def test_channels_last_trains_like_contiguous_memory(tmp_path: Path, photos: Path, stage: str, extra: dict) -> None:
    """NHWC weights and batches (``run.channels_last``) change the speed, not the training."""
    states, rows = {}, {}
    for nhwc in (False, True):
        out = tmp_path / f"nhwc-{nhwc}"
        train(tiny_config(out, photos, run={"stage": stage, "max_steps": 2, "channels_last": nhwc}, **extra))
        states[nhwc], rows[nhwc] = load_state(out / "ckpt" / "last.pt"), _train_rows(out)
    convs = [
        k for k, v in states[True]["main"].items() if v.dim() == 4 and v.shape[1] > 1 and v.shape[2] * v.shape[3] > 1
    ]
    assert convs
    for nhwc, state in states.items():
        assert all(state["main"][k].is_contiguous(memory_format=torch.channels_last) == nhwc for k in convs)
    # Step 1's forward terms agree up to float rounding. Step 2 follows one Adam step, whose near-zero
    # gradients' signs rounding can flip (the tiny critic's gradient penalty is in the tens of thousands), so
    # it agrees more loosely; a scrambled layout or update would move the losses by far more.
    first, second = rows[False], rows[True]
    assert len(first) == len(second) == 2
    for key in ("l1", "perceptual", "d_real", "d_fake"):
        if key in first[0]:
            assert second[0][key] == pytest.approx(first[0][key], rel=1e-3), key
    assert second[1]["loss_g"] == pytest.approx(first[1]["loss_g"], rel=0.05)


@pytest.mark.parametrize(
    "asked, device, native_bf16, trains_in",
    [
        ("bf16", "cpu", True, "bf16"),
        ("bf16", "cpu", False, "fp32"),  # emulated bf16 is many times slower than fp32
        ("fp16", "cpu", True, "fp32"),  # fp16 needs CUDA's gradient scaler
        ("fp32", "cpu", True, "fp32"),
        ("bf16", "cuda", False, "bf16"),
        ("fp16", "cuda", False, "fp16"),
        ("bf16", "mps", False, "bf16"),  # the CPU's kernels say nothing about another device's
    ],
)
def test_training_precision_falls_back_to_fp32_where_autocast_does_not_pay(
    monkeypatch: pytest.MonkeyPatch, asked: Precision, device: str, native_bf16: bool, trains_in: Precision
) -> None:
    monkeypatch.setattr("training.loop.cpu_runs_bf16_natively", lambda: native_bf16)
    assert training_precision(asked, torch.device(device)) == trains_in


def test_a_cpu_run_asked_for_emulated_bf16_trains_in_fp32_and_says_why(
    tmp_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("training.loop.cpu_runs_bf16_natively", lambda: False)
    cfg = tiny_config(tmp_path / "run", photos, run={"max_steps": 1, "precision": "bf16"})
    with caplog.at_level(logging.WARNING, logger="scgan.train"):
        train(cfg)
    assert "run.precision=bf16 applies on CPUs with native bf16 kernels only" in caplog.text
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in rows if r["kind"] == "start"][0] | {"time": 0} == {
        "kind": "start",
        "step": 0,
        "time": 0,
        "precision": "fp32",
        "device": "cpu",
    }
