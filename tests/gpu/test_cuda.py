"""CUDA checks (``make gpu-check``): reduced precision and batching keep the output, the service answers on CUDA,
and the bins loss's nearest-bin search trains on the device as on the CPU.

Every test is marked ``cuda`` and skips without CUDA. ``GPU_CHECK_ALLOW_CPU=1`` runs them on the
CPU instead (bf16 standing in for fp16), to try the checks and ``make gpu-check`` without a GPU.
The photos are the real ones committed for the web page (``service/web/static/examples``), or
the folder ``GPU_CHECK_PHOTOS`` names. This file needs no ``conftest.py``: ``make gpu-check``
runs it with ``--noconftest`` on machines that lack the test-only packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model import Colorizer, load_generator
from model.weights import default_checkpoint_path

pytestmark = pytest.mark.cuda

REPO = Path(__file__).resolve().parents[2]
# The tests' one free-port helper; this file runs with --noconftest, so tests/ is put on the path here.
sys.path.insert(0, str(REPO / "tests"))
from live_server import free_port  # noqa: E402

PHOTOS = Path(os.environ.get("GPU_CHECK_PHOTOS") or REPO / "service" / "web" / "static" / "examples")
MIN_PSNR_DB = 40.0


@pytest.fixture(scope="module")
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("GPU_CHECK_ALLOW_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("CUDA is not available")


def low_precision(device: torch.device) -> str:
    """fp16 on CUDA (the service's default there); bf16 in a CPU dry run."""
    return "fp16" if device.type == "cuda" else "bf16"


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """The real photos as the service prepares them: N x 1 x R x R at the starter checkpoint's render size."""
    from PIL import Image

    from model.images import is_image_file

    paths = sorted(p for p in PHOTOS.iterdir() if is_image_file(p)) if PHOTOS.is_dir() else []
    if not paths:
        pytest.fail(f"no photos in {PHOTOS}")
    checkpoint = default_checkpoint_path()
    assert checkpoint is not None, "the bundled starter checkpoint is missing"
    colorizer = Colorizer(load_generator(checkpoint), device="cpu", precision="fp32")
    inputs = []
    for path in paths:
        with Image.open(path) as image:
            inputs.append(colorizer.prepare(image).model_input)
    return torch.stack(inputs)


def colorizer_at(device: torch.device, precision: str) -> Colorizer:
    checkpoint = default_checkpoint_path()
    assert checkpoint is not None
    return Colorizer(load_generator(checkpoint), device=device, precision=precision)


def psnr_db(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of RGB in [0, 1]."""
    mse = (output.float() - reference.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def test_reduced_precision_stays_within_40_db_of_fp32_on_real_photos(
    device: torch.device, photos: torch.Tensor
) -> None:
    reference, _ = colorizer_at(device, "fp32").predict(photos)
    output, _ = colorizer_at(device, low_precision(device)).predict(photos)
    worst = float(psnr_db(output, reference).min())
    print(f"{low_precision(device)} vs fp32 on {len(photos)} photos ({device}): worst PSNR {worst:.1f} dB")
    assert worst >= MIN_PSNR_DB


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_a_batch_computes_what_single_images_do(device: torch.device, photos: torch.Tensor, precision: str) -> None:
    colorizer = colorizer_at(device, precision)
    batched, _ = colorizer.predict(photos)
    single = torch.cat([colorizer.predict(photo[None])[0] for photo in photos])
    if colorizer.precision == "fp32":
        assert torch.allclose(batched, single, atol=2e-3), float((batched - single).abs().max())
    else:  # other kernels per batch size, rounded at reduced precision
        assert float(psnr_db(batched, single).min()) >= MIN_PSNR_DB


def test_the_service_answers_on_the_device(device: torch.device) -> None:
    """``python -m service`` with the starter checkpoint and SCGAN_DEVICE set, over real HTTP."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
    env.update(SCGAN_DEVICE=device.type, SCGAN_PORT=str(port), SCGAN_HOST="127.0.0.1")
    if device.type == "cpu":
        env["SCGAN_COMPILE"] = "off"  # a dry run: compiling on CPU costs minutes
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read().decode(errors="replace") if process.stdout else ""
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service was not ready within 120 s"
            time.sleep(0.2)
        model = httpx.get(f"{url}/v1/model", timeout=10).json()
        assert model["device"].startswith(device.type)
        photo = sorted(PHOTOS.glob("*.jpg"))[0]
        answer = httpx.post(
            f"{url}/colorize", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("image/")
        print(f"service on {model['device']} at {model['precision']}: {len(answer.content)} bytes answered")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_bins_loss_on_the_device_is_the_cpus(device: torch.device) -> None:
    """The candidate table and its lookups live on the device of the batch (training on CUDA)."""
    from model.chroma_bins import bin_centres, soft_encode_sparse
    from training.colour_losses import bins_loss

    generator = torch.Generator().manual_seed(0)
    centres = bin_centres()
    rgb = torch.rand(2, 3, 32, 32, generator=generator)
    logits = torch.randn(2, len(centres), 16, 16, generator=generator)
    weights = torch.rand(len(centres), generator=generator) + 0.5
    chroma = torch.rand(2, 2, 16, 16, generator=generator) - 0.5
    index, soft = soft_encode_sparse(chroma.to(device), centres.to(device))
    assert index.device.type == device.type
    want_index, want_soft = soft_encode_sparse(chroma, centres)
    assert torch.equal(index.cpu(), want_index) and torch.allclose(soft.cpu(), want_soft, atol=1e-6)
    got = bins_loss(logits.to(device), rgb.to(device), centres.to(device), weights.to(device))
    assert torch.isclose(got.cpu(), bins_loss(logits, rgb, centres, weights), rtol=1e-5)
