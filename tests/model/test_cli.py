"""The command-line tools, run in-process and once as a real subprocess."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_test_helpers import make_generator
from PIL import Image
from scgan_reference import official_state_dict

import cli.common
from cli import colorize as colorize_cli
from cli import convert as convert_cli
from model import load_generator, read_generator, save_checkpoint
from model.checkpoint import FORMAT_NAME
from model.weights import default_checkpoint_path

SIZES = {"a.png": (40, 30), "b.jpg": (64, 48), "sub/c.png": (33, 57)}


def _picture(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    _picture(*SIZES["a.png"], 0).save(folder / "a.png")
    _picture(*SIZES["b.jpg"], 1).convert("L").save(folder / "b.jpg")
    rgba = _picture(*SIZES["sub/c.png"], 2)
    rgba.putalpha(128)
    rgba.save(folder / "sub" / "c.png")
    (folder / "notes.txt").write_text("not an image, and not picked up")
    return folder


@pytest.fixture
def mixed_folder(good_folder: Path) -> Path:
    (good_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return good_folder


def _run(*args: str | Path) -> int:
    return colorize_cli.main([str(a) for a in args])


def _outputs(folder: Path) -> list[str]:
    """Output files relative to the output folder (sub-folders of the input are mirrored)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_broken_file_is_reported_and_the_rest_written(
    mixed_folder: Path, tmp_path: Path, compact_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="scgan.colorize"):
        code = _run(mixed_folder, "-o", out, "--checkpoint", compact_checkpoint, "--device", "cpu", "--batch-size", "2")
    assert code != 0
    assert _outputs(out) == ["a.png", "b.png", "sub/c.png"]
    assert any("broken.png" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    assert any("3 of 4" in r.getMessage() for r in caplog.records)
    for name, size in SIZES.items():
        with Image.open(out / Path(name).with_suffix(".png")) as img:
            assert img.size == size
    with Image.open(out / "sub" / "c.png") as img:
        assert img.mode == "RGBA" and img.getchannel("A").getextrema() == (128, 128)


def test_all_good_exits_zero(good_folder: Path, tmp_path: Path, compact_checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert _run(good_folder, "-o", out, "--checkpoint", compact_checkpoint, "--device", "cpu") == 0
    assert _outputs(out) == ["a.png", "b.png", "sub/c.png"]


def test_outputs_get_the_mode_the_umask_gives_a_new_file(
    good_folder: Path, tmp_path: Path, compact_checkpoint: Path
) -> None:
    """0644 under umask 022 and 0640 under 027 (not the temporary file's private 0600), saliency maps too."""
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"out-{umask:o}"
        before = os.umask(umask)
        try:
            assert _run(good_folder, "-o", out, "--checkpoint", compact_checkpoint, "--saliency") == 0
        finally:
            os.umask(before)
        modes = {name: stat.S_IMODE((out / name).stat().st_mode) for name in _outputs(out)}
        assert len(modes) == 6 and set(modes.values()) == {mode}, modes


def test_one_image_is_counted_in_the_singular(
    good_folder: Path, tmp_path: Path, compact_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scgan.colorize"):
        assert _run(good_folder / "a.png", "-o", tmp_path / "out", "--checkpoint", compact_checkpoint) == 0
    assert "colorized 1 of 1 image into" in caplog.text and "1 images" not in caplog.text


@pytest.mark.parametrize(("fmt", "suffix", "pil_format"), [("jpeg", ".jpg", "JPEG"), ("webp", ".webp", "WEBP")])
def test_output_formats(
    good_folder: Path, tmp_path: Path, compact_checkpoint: Path, fmt: str, suffix: str, pil_format: str
) -> None:
    out = tmp_path / "out"
    code = _run(
        good_folder / "sub" / "c.png",
        "-o",
        out,  # RGBA in: JPEG has no alpha, WebP keeps it
        "--checkpoint",
        compact_checkpoint,
        "--device",
        "cpu",
        "--format",
        fmt,
    )
    assert code == 0
    assert _outputs(out) == [f"c{suffix}"]
    with Image.open(out / f"c{suffix}") as img:
        assert img.format == pil_format
        assert img.size == SIZES["sub/c.png"]
        assert img.mode == ("RGB" if fmt == "jpeg" else "RGBA")


def test_saliency_maps_are_written(good_folder: Path, tmp_path: Path, compact_checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert _run(good_folder, "-o", out, "--checkpoint", compact_checkpoint, "--device", "cpu", "--saliency") == 0
    assert _outputs(out) == ["a.png", "a.saliency.png", "b.png", "b.saliency.png", "sub/c.png", "sub/c.saliency.png"]
    for name, size in SIZES.items():
        with Image.open(out / Path(name).with_suffix(".saliency.png")) as img:
            assert img.mode == "L" and img.size == size


def test_saliency_without_branch_is_refused(good_folder: Path, tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "val.pt", make_generator(seed=3, with_saliency=False))
    assert _run(good_folder, "-o", tmp_path / "out", "--checkpoint", ckpt, "--device", "cpu", "--saliency") == 2


def test_bad_checkpoint_and_bad_settings(good_folder: Path, tmp_path: Path, compact_checkpoint: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert _run(good_folder, "-o", tmp_path / "o1", "--checkpoint", bad, "--device", "cpu") == 2
    assert (
        _run(
            good_folder,
            "-o",
            tmp_path / "o2",
            "--checkpoint",
            compact_checkpoint,
            "--device",
            "cpu",
            "--render-size",
            "300",
        )
        == 2
    )
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_missing_default_checkpoint(good_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An install stripped of the bundled checkpoint, with none given: exit 2, nothing written."""
    monkeypatch.setattr(cli.common, "default_checkpoint_path", lambda: None)
    assert _run(good_folder, "-o", tmp_path / "out") == 2
    assert not (tmp_path / "out").exists()


def test_the_bundled_checkpoint_is_used_by_default(good_folder: Path, tmp_path: Path) -> None:
    if default_checkpoint_path() is None:
        pytest.skip("no starter checkpoint is bundled")
    assert _run(good_folder, "-o", tmp_path / "out", "--device", "cpu") == 0
    assert any((tmp_path / "out").iterdir())


def test_real_subprocess(mixed_folder: Path, tmp_path: Path, compact_checkpoint: Path) -> None:
    """``python -m cli.colorize`` (what the console script calls), one good file and one broken one."""
    command = [sys.executable, "-m", "cli.colorize"]
    out = tmp_path / "out"
    inputs = [str(mixed_folder / "a.png"), str(mixed_folder / "broken.png")]
    done = subprocess.run(
        [*command, *inputs, "-o", str(out), "--checkpoint", str(compact_checkpoint), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("SCGAN_TEST_THREADS", "1")},
    )
    assert done.returncode == 1, done.stderr
    assert "broken.png" in done.stderr
    assert _outputs(out) == ["a.png"]


# --------------------------------------------------------------------------------------
# scgan-convert
# --------------------------------------------------------------------------------------


def test_convert_official_file(tmp_path: Path) -> None:
    source = tmp_path / "SCGAN_epoch10.pth"
    torch.save({"module." + k: v for k, v in official_state_dict("SCGAN_val", divisor=8, seed=6).items()}, source)
    target = tmp_path / "converted.pt"
    assert convert_cli.main([str(source), str(target)]) == 0

    net, info = read_generator(target)
    assert info.source_format == FORMAT_NAME
    assert info.metadata["converted_from"] == source.name
    assert info.metadata["converted_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert not info.has_saliency and info.working_resolution == 256
    x = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net.predict(x), load_generator(source, device="cpu").predict(x), rtol=0, atol=0)


def test_convert_refuses_non_official(tmp_path: Path, compact_checkpoint: Path) -> None:
    assert convert_cli.main([str(compact_checkpoint), str(tmp_path / "x.pt")]) == 2
    assert convert_cli.main([str(tmp_path / "missing.pth"), str(tmp_path / "y.pt")]) == 2
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


def test_name_clashes_do_not_overwrite(tmp_path: Path, compact_checkpoint: Path) -> None:
    folder = tmp_path / "clash"
    folder.mkdir()
    _picture(20, 10, 0).save(folder / "x.png")
    _picture(30, 10, 1).convert("RGB").save(folder / "x.jpg")
    out = tmp_path / "out"
    assert _run(folder, "-o", out, "--checkpoint", compact_checkpoint, "--device", "cpu") == 0
    assert _outputs(out) == ["x.jpg.png", "x.png.png"]
    with Image.open(out / "x.jpg.png") as img:
        assert img.size == (30, 10)


def test_decompression_bomb_is_skipped_not_fatal(tmp_path: Path, compact_checkpoint: Path) -> None:
    folder = tmp_path / "bomb"
    folder.mkdir()
    _picture(20, 10, 0).save(folder / "ok.png")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # a few KB, 400 MP: over Pillow's bomb limit
    out = tmp_path / "out"
    assert _run(folder, "-o", out, "--checkpoint", compact_checkpoint, "--device", "cpu") == 1
    assert _outputs(out) == ["ok.png"]


def test_chroma_gain_zero_writes_the_gray_image_and_out_of_range_is_refused(
    good_folder: Path, tmp_path: Path, compact_checkpoint: Path
) -> None:
    out = tmp_path / "out"
    assert (
        _run(good_folder, "-o", out, "--checkpoint", compact_checkpoint, "--device", "cpu", "--chroma-gain", "0") == 0
    )
    with Image.open(out / "b.png") as img, Image.open(good_folder / "b.jpg") as src:
        colour = np.asarray(img.convert("RGB"), dtype=np.int16)
        assert np.abs(colour - np.asarray(src.convert("RGB"), dtype=np.int16)).max() <= 1
    for bad in ("2.5", "-1"):
        with pytest.raises(SystemExit) as exc:
            _run(good_folder, "-o", tmp_path / "x", "--chroma-gain", bad)
        assert exc.value.code == 2


def _modules_after(code: str) -> set[str]:
    """Top-level packages and ``model.*`` modules loaded by ``code`` in a fresh interpreter."""
    script = (
        "import sys\n"
        f"{code}\n"
        "print(' '.join(m for m in sys.modules if '.' not in m or m.startswith('model.')), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ)
    )
    return set(done.stderr.split())


def test_help_imports_neither_torch_nor_the_networks() -> None:
    """``scgan-colorize --help`` and ``scgan-convert --help`` answer without loading torch (6.6 s with it)."""
    for module in ("cli.colorize", "cli.convert"):
        loaded = _modules_after(f"from {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
        assert "argparse" in loaded, loaded  # the script ran
        assert "torch" not in loaded and "model.pipeline" not in loaded and "model.generator" not in loaded, module


def test_console_scripts_name_real_entry_points() -> None:
    """pyproject's [project.scripts] point at functions that exist (the installed scripts are built from them)."""
    import importlib
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
