"""Settings every test starts from, and the tiny checkpoints of the service, page and deployment tests.

``SCGAN_COMPILE=off``: compiling the forward costs 20-30 s per batch size on this 2-core
CPU, far more than any test's budget; set before any fixture builds a ``Settings()``.
The tests that compile for real say so (tests/model/test_compiled.py,
tests/service/test_service_compiled_slow.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from tiny_models import TINY_CONFIG, make_generator, make_hint_follower

from model import save_checkpoint

os.environ["SCGAN_COMPILE"] = "off"

# Property tests draw the same examples on every run, so CI's verdict does not depend on luck;
# `HYPOTHESIS_PROFILE=explore` draws fresh random ones to hunt for new failures.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gray->rgb with a saliency branch, fixed seed (:data:`tiny_models.TINY_CONFIG`)."""
    path = tmp_path_factory.mktemp("tiny-ckpt") / "tiny.pt"
    net = make_generator(TINY_CONFIG, seed=7, with_saliency=True, spectral_norm=False)
    return save_checkpoint(path, net, working_resolution=256)


@pytest.fixture(scope="session")
def tiny_checkpoint_no_saliency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As :func:`tiny_checkpoint`, without the saliency branch."""
    path = tmp_path_factory.mktemp("tiny-ckpt") / "tiny-nosal.pt"
    net = make_generator(TINY_CONFIG, seed=8, with_saliency=False, spectral_norm=False)
    return save_checkpoint(path, net, working_resolution=256)


@pytest.fixture(scope="session")
def tiny_hint_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hint-taking encoder generator whose hints paint their colour around them (:func:`tiny_models.make_hint_follower`)."""
    path = tmp_path_factory.mktemp("tiny-ckpt") / "tiny-hints.pt"
    return save_checkpoint(path, make_hint_follower(), working_resolution=256)
