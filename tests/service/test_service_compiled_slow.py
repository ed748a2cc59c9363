"""The service with compiled forwards (SCGAN_COMPILE=on), the real compiler: warm-up compiles, answers match the
eager model, and a second start loads the packages from the cache and answers byte for byte as the first."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import torch
from service_test_helpers import RunningApp, decode, gray_image, image_bytes, max_abs_diff, run_app, wait_ready

from model import Colorizer
from model.compiled import compiler_available
from service import Settings

#: Compiling two shapes of the tiny generator: 20-70 s each on 2 shared cores.
COMPILE_TIMEOUT_S = 600.0

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(not compiler_available(torch.device("cpu"))[0], reason="no C++ compiler for inductor"),
]


async def test_warm_up_compiles_each_bucket_and_answers_match_eager(
    tiny_checkpoint: Path, reference: Colorizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        checkpoint=tiny_checkpoint,
        device="cpu",
        precision="fp32",
        compile="on",
        max_batch_size=2,
        max_batch_delay_ms=200.0,  # so that two concurrent uploads share one forward
        cpu_threads=2,
        torch_threads=1,
        compile_cache_dir=tmp_path / "cache",
    )
    async with run_app(settings, ready=False) as running:
        await wait_ready(running.client, timeout_s=COMPILE_TIMEOUT_S)
        assert (await running.client.get("/v1/model")).json()["compiled_batch_sizes"] == [1, 2]
        images = [gray_image(80, 60, seed=s) for s in range(3)]
        uploads = [image_bytes(img, "PNG") for img in images]
        responses = await asyncio.gather(
            *(running.client.post("/colorize", files={"file": ("x.png", data, "image/png")}) for data in uploads)
        )
        assert [r.status_code for r in responses] == [200, 200, 200]
        sizes = [r.headers["x-batch-size"] for r in responses]
        assert "2" in sizes and set(sizes) <= {"1", "2"}, sizes
        for image, response in zip(images, responses, strict=True):
            # fp32 kernels of another order of summation: at most one level of rounding apart
            assert max_abs_diff(decode(response.content), reference.colorize_one(image)) <= 1
        cold = [await _alone(running, upload) for upload in uploads]  # each alone: the batch-1 graph
    caplog.set_level(logging.INFO, logger="model.compiled")
    async with run_app(settings) as running:  # warm: the same cache folder
        assert (await running.client.get("/v1/model")).json()["compiled_batch_sizes"] == [1, 2]
        warm = [await _alone(running, upload) for upload in uploads]
    assert caplog.text.count("loaded from the cache in") == 2 and "compiled and cached" not in caplog.text
    assert warm == cold


async def _alone(running: RunningApp, upload: bytes) -> bytes:
    response = await running.client.post("/colorize", files={"file": ("x.png", upload, "image/png")})
    assert response.status_code == 200 and response.headers["x-batch-size"] == "1"
    return response.content
