"""``scgan-colorize --hints``: colour hints from a JSON file, here and with ``--server``, and what it refuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli_remote import FaultyServer

from cli import colorize as colorize_cli
from model import Colorizer
from model.hints import Hint

HINTS = [Hint(10, 12, "#0000ff"), Hint(50, 30, "#ff4000")]


def _run(*args: str | Path) -> int:
    return colorize_cli.main([str(a) for a in args])


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """Two gray photos: 64 x 40, and 40 x 64 stored sideways with EXIF Orientation 6 (also displayed 64 x 40)."""
    folder = tmp_path / "in"
    folder.mkdir()
    yy, xx = np.mgrid[0:40, 0:64]
    Image.fromarray((40 + 2 * xx + yy).astype(np.uint8), "L").save(folder / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = Image.fromarray((200 - xx - yy).astype(np.uint8), "L").transpose(Image.Transpose.ROTATE_90)
    sideways.save(folder / "b.jpg", quality=95, exif=exif.tobytes())
    return folder


@pytest.fixture()
def hints_file(tmp_path: Path) -> Path:
    path = tmp_path / "hints.json"
    path.write_text(json.dumps([{"x": h.x, "y": h.y, "color": h.color} for h in HINTS]))
    return path


@pytest.fixture(scope="module")
def hint_server(tiny_hint_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyServer]:
    running = FaultyServer(tiny_hint_checkpoint, tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        running.stop()


def test_local_hints_equal_the_model_api_and_change_the_answer(
    photos: Path, hints_file: Path, tiny_hint_checkpoint: Path, tmp_path: Path
) -> None:
    local = ("--checkpoint", tiny_hint_checkpoint, "--precision", "fp32", "--device", "cpu")
    assert _run(photos, "-o", tmp_path / "plain", *local) == 0
    assert _run(photos, "-o", tmp_path / "hinted", *local, "--hints", hints_file) == 0
    colorizer = Colorizer.from_checkpoint(tiny_hint_checkpoint, device="cpu", precision="fp32")
    for name in ("a", "b"):
        src = next(photos.glob(f"{name}.*"))
        with Image.open(src) as image:
            expected = np.asarray(colorizer.colorize_with_saliency([image], hints=[HINTS])[0][0].convert("RGB"))
        hinted = _pixels(tmp_path / "hinted" / f"{name}.png")
        assert hinted.shape == (40, 64, 3)  # b.jpg as displayed
        assert np.abs(hinted.astype(int) - expected).max() <= 1
        assert np.abs(hinted.astype(int) - _pixels(tmp_path / "plain" / f"{name}.png")).max() > 50


def test_remote_hints_write_what_the_local_run_writes(
    photos: Path, hints_file: Path, hint_server: FaultyServer, tiny_hint_checkpoint: Path, tmp_path: Path
) -> None:
    local = ("--checkpoint", tiny_hint_checkpoint, "--precision", "fp32", "--device", "cpu")
    assert _run(photos, "-o", tmp_path / "local", *local, "--hints", hints_file) == 0
    assert _run(photos, "-o", tmp_path / "remote", "--server", hint_server.url, "--hints", hints_file) == 0
    for name in ("a.png", "b.png"):
        assert np.array_equal(_pixels(tmp_path / "remote" / name), _pixels(tmp_path / "local" / name)), name


def test_a_hint_outside_one_photo_fails_that_photo_only(
    photos: Path,
    hint_server: FaultyServer,
    tiny_hint_checkpoint: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    Image.new("L", (20, 20), 128).save(photos / "small.png")
    hints = tmp_path / "far.json"
    hints.write_text('[{"x": 30, "y": 5, "color": "#00ff00"}]')
    local = ("--checkpoint", tiny_hint_checkpoint, "--precision", "fp32", "--device", "cpu")
    for where, args in (("local", local), ("remote", ("--server", hint_server.url))):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert _run(photos, "-o", tmp_path / where, *args, "--hints", hints) == 1
        assert sorted(p.name for p in (tmp_path / where).iterdir()) == ["a.png", "b.png"]
        assert "small.png" in caplog.text and "hint 0 at (30, 5) is outside the 20 x 20 image" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "hints are not valid JSON"),
        ('[{"x": 1, "y": 1, "color": "blue"}]', 'hint 0: color must be "#rrggbb"'),
        ('{"x": 1}', "hints must be a JSON array"),
    ],
)
def test_a_bad_hints_file_is_exit_2_naming_the_problem(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        _run(photos, "-o", tmp_path / "out", "--hints", path)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(photos, "-o", tmp_path / "out", "--hints", tmp_path / "missing.json")
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_hints_refuses_them(
    photos: Path, hints_file: Path, compact_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert _run(photos, "-o", tmp_path / "out", "--checkpoint", compact_checkpoint, "--hints", hints_file) == 2
    assert "the checkpoint takes no colour hints; drop --hints" in caplog.text
    plain = FaultyServer(compact_checkpoint, tmp_path)
    try:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert _run(photos, "-o", tmp_path / "out", "--server", plain.url, "--hints", hints_file) == 2
        assert "the server's checkpoint takes no colour hints; drop --hints" in caplog.text
        assert plain.uploads() == []
    finally:
        plain.stop()
    assert not (tmp_path / "out").exists()
