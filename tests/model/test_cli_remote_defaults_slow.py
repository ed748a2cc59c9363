"""With the defaults on both sides, ``scgan-colorize --server`` writes what the local run writes, within 2 levels.

The server runs as deployed (``python -m service``) on the bundled checkpoint with its defaults: the compiled
forward (``SCGAN_COMPILE=auto``) at precision auto (bf16 on a CPU with native bf16, else fp32), against the local
run's eager forward in batches of 8 at the same precision. Two settings differ from the deployed defaults, to keep
the test within minutes: one worker, and batches of 1 (one compiled shape instead of three; a batch is padded to a
compiled size, so the shape changes which kernels run, not what they compute). The compile cache is a fresh folder.
The tolerance is the one docs/cli.md states; ``benchmarks/remote_vs_local.py`` measures it on more photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from live_server import REPO, service_env, service_process
from PIL import Image

from cli import colorize as colorize_cli
from model import default_checkpoint_path
from model.compiled import compiler_available

#: The documented tolerance (docs/cli.md), in 8-bit levels per channel.
TOLERANCE_LEVELS = 2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(default_checkpoint_path() is None, reason="an install without the bundled checkpoint"),
    pytest.mark.skipif(not compiler_available(torch.device("cpu"))[0], reason="no C++ compiler for inductor"),
]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_remote_outputs_match_the_local_run_with_the_defaults(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for example in sorted((REPO / "service" / "web" / "static" / "examples").glob("*.jpg")):
        shutil.copy(example, photos / example.name)
    checkpoint = default_checkpoint_path()
    assert checkpoint is not None
    env = service_env(
        SCGAN_COMPILE="auto", SCGAN_MAX_BATCH_SIZE="1", SCGAN_COMPILE_CACHE_DIR=str(tmp_path / "compile-cache")
    )
    with service_process(checkpoint, env, timeout_s=900) as url:
        assert colorize_cli.main([str(photos), "-o", str(tmp_path / "remote"), "--server", url]) == 0
    assert colorize_cli.main([str(photos), "-o", str(tmp_path / "local")]) == 0
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "remote").iterdir()) and len(names) == 4
    worst = max(int(np.abs(_pixels(tmp_path / "remote" / n) - _pixels(tmp_path / "local" / n)).max()) for n in names)
    assert worst <= TOLERANCE_LEVELS, f"remote and local differ by up to {worst} levels"
