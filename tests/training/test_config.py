"""Config resolution: presets, files, overrides and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from model.config import GeneratorConfig
from training.config import ConfigError, build_config, load_config, parse_overrides


def test_stage_presets_are_the_published_recipe() -> None:
    s1 = build_config({"data": {"train_dir": "x"}})
    assert (s1.run.epochs, s1.optim.batch_size, s1.optim.lr_g, s1.loss.gan) == (40, 8, 2e-4, "none")
    assert (s1.loss.l1, s1.loss.attention, s1.loss.perceptual) == (1.0, 0.5, 0.0)
    s2 = build_config({"run": {"stage": "stage2"}, "data": {"train_dir": "x"}})
    assert (s2.run.epochs, s2.optim.batch_size, s2.optim.lr_g, s2.optim.lr_d) == (31, 4, 1e-4, 1e-4)
    assert (s2.loss.gan, s2.loss.adversarial, s2.loss.perceptual, s2.loss.gradient_penalty) == (
        "wgan-gp",
        0.05,
        5.0,
        10.0,
    )
    pg = build_config({"run": {"stage": "pretrain-global"}, "data": {"train_dir": "x"}})
    assert (pg.run.epochs, pg.optim.batch_size, pg.optim.lr_g, pg.optim.lr_decay_every) == (150, 256, 0.01, 30)
    assert s1.model.start_channels == 64 and s1.model.latent_channels == 128


def test_file_then_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[run]\nstage = "stage2"\n[data]\ntrain_dir = "d"\n[optim]\nlr_g = 5e-5\n')
    cfg = load_config(path, ["optim.lr_g=3e-4", "loss.gan=lsgan", "run.ema_decay=0.9"])
    assert cfg.optim.lr_g == 3e-4 and cfg.loss.gan == "lsgan" and cfg.run.ema_decay == 0.9
    assert cfg.optim.batch_size == 4  # the stage-2 preset still applies


@pytest.mark.parametrize(
    "data, message",
    [
        ({"data": {"train_dir": "x"}, "optim": {"bogus": 1}}, "unknown keys"),
        ({"data": {"train_dir": "x"}, "nope": {}}, "unknown config sections"),
        ({"data": {"train_dir": "x", "crop_size": 300}}, "multiple of 32"),
        ({"data": {"train_dir": "x", "crop_size": 288}}, "this generator needs multiples of 256"),
        (
            {
                "data": {"train_dir": "x"},
                "run": {"init_global_from": "g.pt"},
                "model": {"encoder": "efficientnet-lite0"},
            },
            "an encoder generator has none",
        ),
        ({"data": {"train_dir": "x"}, "loss": {"bins": 1.0}}, "loss.bins > 0 needs model.chroma_head = 'bins'"),
        ({"data": {"train_dir": "x"}, "run": {"stage": "stage3"}}, "run.stage"),
        ({"data": {"train_dir": "x"}, "run": {"stage": "stage2"}, "loss": {"gan": "none"}}, "adversary"),
        ({"data": {"train_dir": "x"}, "optim": {"batch_size": "eight"}}, "integer"),
        ({}, "train_dir is required"),
        ({"data": {"input_dir": "a"}}, "paired mode"),
    ],
)
def test_invalid_configs_are_rejected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(data)


def test_override_syntax() -> None:
    assert parse_overrides(["a.b=1", "a.c=true", "d.e=hello", "d.f=1e-4"]) == {
        "a": {"b": 1, "c": True},
        "d": {"e": "hello", "f": 1e-4},
    }
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])
    with pytest.raises(ConfigError):
        parse_overrides(["too.many.parts=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        # Accepted before, then failed inside autocast on CUDA.
        ("run.precision=fp8", "run.precision='fp8': input should be 'fp32', 'fp16' or 'bf16'"),
        # Accepted before, and best.pt was silently never written.
        ("run.select_metric=psnr_detla", "run.select_metric='psnr_detla': input should be 'psnr', 'psnr_delta'"),
        # Literal fields were never checked: types were inferred from the defaults.
        ("model.norm=group", "model.norm='group': input should be 'bn', 'in' or 'none'"),
        ("model.padding=circular", "model.padding='circular'"),
        ("pretrain.task=jigsaw", "pretrain.task='jigsaw': input should be 'classes' or 'rotation'"),
        ("optim.batch_size=0", "optim.batch_size=0: input should be greater than or equal to 1"),
        ("model.start_channels=true", "model.start_channels=True: input should be a valid integer"),
        ("data.hflip=1", "data.hflip=1: input should be a valid boolean"),
        ("run.ema_decay=1.0", "run.ema_decay=1.0: input should be less than 1"),
    ],
)
def test_a_bad_value_fails_at_load_with_one_line_naming_key_value_and_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"data": {"train_dir": "x"}}, [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_select_metric_must_be_one_the_stage_validates() -> None:
    with pytest.raises(ConfigError, match="run.select_metric='top1': a stage1 run validates"):
        build_config({"data": {"train_dir": "x"}, "run": {"select_metric": "top1"}})
    with pytest.raises(ConfigError, match="run.select_metric='psnr_delta': a pretrain-global run validates"):
        build_config({"data": {"train_dir": "x"}, "run": {"stage": "pretrain-global", "select_metric": "psnr_delta"}})
    assert build_config({"data": {"train_dir": "x"}, "run": {"stage": "pretrain-global"}}).run.select_metric == "top1"


def test_every_selectable_colour_metric_is_one_validation_reports() -> None:
    from training.config import CLASSIFIER_METRICS, SelectMetric
    from training.evaluate import EvaluationResult

    reported = set(EvaluationResult(images=()).validation_metrics())
    colour = set(get_args(SelectMetric)) - set(CLASSIFIER_METRICS)
    assert colour <= reported, colour - reported


def test_model_section_is_the_generator_config_plus_training_keys() -> None:
    cfg = build_config({"data": {"train_dir": "x"}, "model": {"start_channels": 8, "discriminator_channels": 4}})
    assert isinstance(cfg.model, GeneratorConfig)
    assert cfg.model.generator_config() == GeneratorConfig(start_channels=8)
    assert set(cfg.to_dict()["model"]) == set(GeneratorConfig().to_dict()) | {"discriminator_channels", "init_gain"}


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].glob("docs/starter-training/*/run-config*.json")))
def test_committed_run_configs_still_read_unchanged(path: Path) -> None:
    stored = json.loads(path.read_text())
    loaded = build_config(stored).to_dict()
    # Every stored value reads back unchanged; keys added since then take their defaults.
    assert {section: {k: loaded[section][k] for k in values} for section, values in stored.items()} == stored
