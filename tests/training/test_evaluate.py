"""Evaluation end to end: a tiny real checkpoint, synthetic photos, the CLI run in-process."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import COMPACT_CONFIG

import cli.common
from model import Colorizer, Generator, default_checkpoint_path, init_weights, save_checkpoint
from model.color import GRAY_WEIGHTS
from model.images import load_rgb
from training import cli_eval, metrics
from training.eval_report import write_report
from training.evaluate import CSV_COLUMNS, TILE_HEIGHT, evaluate, evaluate_images, to_gray
from training.vividness import scale_chroma

TINY = COMPACT_CONFIG


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = Generator(TINY)
    init_weights(net)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", net.eval())


def _photo(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour gradients with a little noise: a stand-in for a natural photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 128 + 100 * np.sin((x + y) / 7.0 + seed)
    rgb = np.stack((r, g, b), axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    _photo(48, 40, 1).save(root / "a.png")
    _photo(64, 64, 2).save(root / "b.jpg", quality=95)
    _photo(40, 56, 3).save(root / "sub" / "c.png")
    (root / "broken.png").write_bytes(b"this is not a png")
    Image.fromarray(np.full((24, 24), 90, np.uint8), "L").convert("RGB").save(root / "gray.png")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root


@pytest.fixture(scope="module")
def colorizer(checkpoint: Path) -> Colorizer:
    return Colorizer.from_checkpoint(checkpoint, device="cpu", batch_size=2)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def test_cli_end_to_end(photos: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code = cli_eval.main(
        [
            str(photos),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--sample",
            "2",
        ]
    )
    assert code == 0

    columns, rows = _read_csv(out / "metrics.csv")
    assert columns == list(CSV_COLUMNS)
    for key in ("psnr", "ssim", "mse", "nrmse", "colorfulness", "cci_optimum", "cni"):
        assert key in columns and f"{key}_gray" in columns
    assert [r["name"] for r in rows] == ["a.png", "b.jpg", "sub/c.png"]
    for row in rows:
        psnr, psnr_gray = float(row["psnr"]), float(row["psnr_gray"])
        assert 5.0 < psnr < 60.0 and 5.0 < psnr_gray < 60.0
        assert float(row["psnr_delta"]) == pytest.approx(psnr - psnr_gray, abs=1e-5)
        assert 0.0 < float(row["ssim"]) <= 1.0
        assert float(row["colorfulness_gray"]) == 0.0 and float(row["cni_gray"]) == 0.0
        assert float(row["colorfulness_original"]) > 0.0
    assert {(r["width"], r["height"]) for r in rows} == {("48", "40"), ("64", "64"), ("40", "56")}

    summary = json.loads((out / "summary.json").read_text())
    assert {"count", "skipped", "checkpoint", "settings", "means", "psnr", "colorfulness", "cci", "cni"} <= set(summary)
    assert summary["count"] == 3
    assert {s["name"] for s in summary["skipped"]} == {"broken.png", "gray.png"}
    assert summary["checkpoint"]["path"] == str(checkpoint)
    assert summary["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    psnr = summary["psnr"]
    assert set(psnr) == {"mean", "mean_gray", "mean_delta_vs_gray", "worst_delta_vs_gray", "worst_delta_image"}
    deltas = {r["name"]: float(r["psnr_delta"]) for r in rows}
    assert psnr["worst_delta_image"] == min(deltas, key=deltas.get)
    assert psnr["mean_delta_vs_gray"] == pytest.approx(np.mean(list(deltas.values())), abs=1e-5)
    colour = summary["colorfulness"]
    assert colour["ratio_model_to_original"] == pytest.approx(colour["mean"] / colour["mean_original"])
    assert "signed" in colour["variant"]
    assert summary["cci"]["optimum_range"] == [16.0, 20.0]
    assert 0.0 <= summary["cci"]["optimum_share"] <= 1.0
    assert summary["means"]["colorfulness_gray"] == 0.0

    report = (out / "report.md").read_text()
    assert "grid.png" in report and "broken.png" in report
    with Image.open(out / "grid.png") as grid:
        # two sampled photos (first and last of the 5 inputs: a.png, sub/c.png), 192 px rows
        assert grid.height == 20 + 2 * TILE_HEIGHT + 3 * 4
        assert grid.width >= 3 * TILE_HEIGHT


def test_cli_limit_and_max_side(photos: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    code = cli_eval.main(
        [
            str(photos),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--max-side",
            "32",
            "--limit",
            "2",
            "--sample",
            "0",
        ]
    )
    assert code == 0
    _, rows = _read_csv(out / "metrics.csv")
    assert [r["name"] for r in rows] == ["a.png", "b.jpg"]
    assert all(max(int(r["width"]), int(r["height"])) == 32 for r in rows)
    assert not (out / "grid.png").exists()
    assert json.loads((out / "summary.json").read_text())["settings"]["max_side"] == 32


def test_cli_without_any_checkpoint_exits_2(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if default_checkpoint_path() is not None:  # a starter is bundled: simulate an install without one
        monkeypatch.setattr(cli.common, "default_checkpoint_path", lambda: None)
    assert cli_eval.main([str(photos), "--out", str(tmp_path / "r")]) == 2
    assert "--checkpoint" in caplog.text
    assert not (tmp_path / "r").exists()


def test_cli_rejects_a_bad_checkpoint_and_a_missing_folder(photos: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert cli_eval.main([str(photos), "--checkpoint", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert cli_eval.main([str(tmp_path / "missing"), "--checkpoint", str(bad)]) == 2


def test_cli_with_nothing_evaluable_exits_1(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(b"nope")
    assert (
        cli_eval.main([str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "r"), "--device", "cpu"])
        == 1
    )


def test_evaluate_in_memory(colorizer: Colorizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    images = [_photo(40, 32, 4), _photo(32, 48, 5), Image.new("RGB", (16, 16), (80, 80, 80))]
    result = evaluate(colorizer, images, sample=1)
    assert list(tmp_path.iterdir()) == []  # wrote nothing
    assert result.count == 2
    assert [name for name, _ in result.skipped] == ["image-00002"]
    assert len(result.samples) == 1 and result.samples[0].original.height == TILE_HEIGHT
    assert result.checkpoint is colorizer.checkpoint_info

    flat = result.validation_metrics()
    assert {"psnr", "psnr_gray", "psnr_delta", "ssim", "colorfulness_ratio", "cci_optimum_share", "cni"} <= set(flat)
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat.values())
    assert flat["psnr_delta"] == pytest.approx(flat["psnr"] - flat["psnr_gray"])
    assert flat["colorfulness_ratio"] == pytest.approx(
        result.mean("colorfulness") / result.mean("colorfulness", "original")
    )

    # The training loop's hooks give the same numbers (the model is deterministic in eval mode).
    assert evaluate_images(colorizer, images) == pytest.approx(flat)


def test_evaluate_scores_against_the_service_pipeline(colorizer: Colorizer) -> None:
    photo = _photo(40, 40, 6)
    result = evaluate(colorizer, [photo], names=["p"])
    (row,) = result.images
    expected = colorizer.colorize([to_gray(photo)])[0]
    assert row.model["psnr"] == metrics.psnr(photo, expected)
    assert row.gray["psnr"] == metrics.psnr(photo, to_gray(photo).convert("RGB"))


def test_to_gray_is_bt601_luma() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 90]]], dtype=np.uint8)
    gray = np.asarray(to_gray(Image.fromarray(rgb)))
    expected = np.round(rgb.astype(np.float64) @ np.array(GRAY_WEIGHTS)).astype(np.uint8)
    assert gray.tolist() == expected.tolist()


def test_write_report_with_no_images(tmp_path: Path, colorizer: Colorizer) -> None:
    result = evaluate(colorizer, [])
    paths = write_report(result, tmp_path / "empty")
    columns, rows = _read_csv(paths["csv"])
    assert columns == list(CSV_COLUMNS) and rows == []
    summary = json.loads(paths["json"].read_text())
    assert summary["count"] == 0 and summary["means"]["psnr"] is None
    assert "grid" not in paths


def test_summary_reports_matched_colourfulness_and_photos_below_gray(
    photos: Path, checkpoint: Path, colorizer: Colorizer, tmp_path: Path
) -> None:
    from training.cli_eval import main

    out = tmp_path / "report"
    assert main([str(photos), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    matched = summary["matched_colorfulness"]
    assert matched["target_ratio"] == 0.6
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    # k is the one chroma factor that brings the outputs' mean colourfulness to 60% of the originals'.
    k = matched["k"]
    originals = [np.asarray(load_rgb(photos / row["name"])) for row in rows]
    outputs = [np.asarray(colorizer.colorize([to_gray(Image.fromarray(o))])[0].convert("RGB")) for o in originals]
    assert len(originals) == 3 and 0.0 < k < 64.0
    target = 0.6 * np.mean([metrics.colorfulness(o) for o in originals])
    assert np.mean([metrics.colorfulness(scale_chroma(out, k)) for out in outputs]) == pytest.approx(target, rel=1e-3)
    gains = [
        metrics.psnr(o, scale_chroma(out, k)) - metrics.psnr(o, np.asarray(to_gray(Image.fromarray(o)).convert("RGB")))
        for o, out in zip(originals, outputs)
    ]
    assert matched["mean_psnr_delta_vs_gray"] == pytest.approx(np.mean(gains), abs=1e-2)
    below = [float(r["psnr_delta"]) < -3.0 for r in rows]
    assert summary["below_gray"]["share"] == pytest.approx(sum(below) / len(below))
    assert "matched colourfulness" in (out / "report.md").read_text()
