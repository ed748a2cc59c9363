"""Shared fixtures for the model tests: compact checkpoints with known, non-trivial weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from model_test_helpers import TINY_RGB_IN, make_generator

from model import Colorizer, PerceptualNet, save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread (override with SCGAN_TEST_THREADS).

    The nets here are tiny and the machine is shared: with two OpenMP threads on a
    busy 2-core box the suite ran 3.5x slower (133 s vs 37 s), mostly spin-waiting.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("SCGAN_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def hint_colorizer(tiny_hint_checkpoint: Path) -> Colorizer:
    """The hint follower (tests/tiny_models.py) in fp32 on the CPU; tests may set its ``hint_propagation``."""
    return Colorizer.from_checkpoint(tiny_hint_checkpoint, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def compact_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our format, gray->rgb, with the saliency branch."""
    path = tmp_path_factory.mktemp("ckpt") / "compact.pt"
    return save_checkpoint(path, make_generator(seed=1), working_resolution=256)


@pytest.fixture(scope="session")
def nchannel_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our format, 3 channels -> rgb (thermal->visible style), no saliency branch."""
    path = tmp_path_factory.mktemp("ckpt") / "nchannel.pt"
    net = make_generator(TINY_RGB_IN, seed=2, with_saliency=False)
    return save_checkpoint(path, net, task="nchannel->rgb")


@pytest.fixture(scope="session")
def perceptual_net() -> PerceptualNet:
    """Built once: construction goes through torchvision's full VGG-16 (~2 s on this CPU)."""
    return PerceptualNet().eval()
