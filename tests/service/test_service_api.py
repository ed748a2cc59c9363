"""The HTTP API end to end, in-process: results equal the model's, formats, alpha, EXIF, metadata, docs."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_test_helpers import (
    RunningApp,
    decode,
    gray_image,
    image_bytes,
    max_abs_diff,
    rgb_image,
    run_app,
)

from model import Colorizer
from service import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def api(tiny_checkpoint: Path) -> AsyncIterator[RunningApp]:
    """One app for the read-only tests of this module (they assert on answers, not on shared counters)."""
    settings = Settings(
        checkpoint=tiny_checkpoint, device="cpu", precision="fp32", max_batch_size=2, cpu_threads=2, torch_threads=1
    )
    async with run_app(settings) as running:
        yield running


def upload(data: bytes, name: str = "image", media_type: str = "application/octet-stream") -> dict[str, object]:
    return {"files": {"file": (name, data, media_type)}}


async def test_colorize_multipart_equals_the_model(api: RunningApp, reference: Colorizer) -> None:
    image = gray_image(80, 60)
    response = await api.client.post("/colorize", **upload(image_bytes(image, "PNG"), "g.png", "image/png"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    for header in ("x-batch-size", "x-queue-wait-ms", "x-inference-ms", "x-total-ms", "server-timing"):
        assert header in response.headers
    assert float(response.headers["x-total-ms"]) >= float(response.headers["x-inference-ms"])
    out = decode(response.content)
    assert out.mode == "RGB" and out.size == (80, 60)
    assert max_abs_diff(out, reference.colorize_one(image)) == 0


async def test_raw_body_keeps_the_input_format(api: RunningApp, reference: Colorizer) -> None:
    data = image_bytes(rgb_image(70, 50), "JPEG", quality=95)
    response = await api.client.post("/colorize", content=data, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert decode(response.content).format == "JPEG"

    response = await api.client.post("/colorize?format=png", content=data, headers={"content-type": "image/jpeg"})
    assert response.headers["content-type"] == "image/png"
    expected = reference.colorize_one(decode(data))
    assert max_abs_diff(decode(response.content), expected) == 0


async def test_form_fields_override_query_options(api: RunningApp) -> None:
    data = image_bytes(gray_image(), "PNG")
    response = await api.client.post(
        "/colorize?format=jpeg", files={"file": ("g.png", data, "image/png")}, data={"format": "webp"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"


@pytest.mark.parametrize(
    ("fmt", "params", "media_type"),
    [
        ("WEBP", {"lossless": True}, "image/webp"),
        ("BMP", {}, "image/png"),
        ("TIFF", {}, "image/png"),
        ("PNG", {}, "image/png"),
    ],
)
async def test_input_formats_round_trip(
    api: RunningApp, reference: Colorizer, fmt: str, params: dict[str, object], media_type: str
) -> None:
    image = rgb_image(48, 40, seed=3)
    data = image_bytes(image, fmt, **params)
    response = await api.client.post("/colorize", **upload(data))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    out = decode(response.content)
    assert out.size == image.size
    if fmt != "WEBP":  # lossless WebP decodes to the same pixels too, but its output is lossy by default
        assert max_abs_diff(out, reference.colorize_one(decode(data))) == 0


async def test_animated_gif_uses_the_first_frame(api: RunningApp, reference: Colorizer) -> None:
    frames = [gray_image(40, 30, seed=1).convert("P"), gray_image(40, 30, seed=2).convert("P")]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    response = await api.client.post("/colorize", **upload(data))
    assert response.status_code == 200
    assert max_abs_diff(decode(response.content), reference.colorize_one(frames[0])) == 0


async def test_alpha_is_kept(api: RunningApp) -> None:
    image = rgb_image(50, 40).convert("RGBA")
    alpha = Image.fromarray(np.tile(np.arange(50, dtype=np.uint8) * 5, (40, 1)), "L")
    image.putalpha(alpha)
    for fmt in ("png", "webp"):
        response = await api.client.post(f"/colorize?format={fmt}&quality=100", **upload(image_bytes(image, "PNG")))
        out = decode(response.content)
        assert out.mode == "RGBA", fmt
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha)), fmt


async def test_jpeg_output_of_rgba_is_flattened_onto_white(api: RunningApp) -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # fully transparent
    response = await api.client.post("/colorize?format=jpeg", **upload(image_bytes(image, "PNG")))
    assert response.status_code == 200
    assert response.headers["x-alpha-flattened"] == "true"
    out = decode(response.content)
    assert out.mode == "RGB"
    assert np.asarray(out).min() >= 250


async def test_palette_transparency_becomes_alpha(api: RunningApp) -> None:
    image = rgb_image(30, 20).convert("P")
    response = await api.client.post("/colorize", **upload(image_bytes(image, "PNG", transparency=0)))
    assert decode(response.content).mode == "RGBA"


async def test_exif_orientation_is_applied(api: RunningApp, reference: Colorizer) -> None:
    image = gray_image(64, 32).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    data = image_bytes(image, "JPEG", exif=exif.tobytes(), quality=95)
    response = await api.client.post("/colorize?format=png", **upload(data))
    out = decode(response.content)
    assert out.size == (32, 64)  # displayed orientation
    assert max_abs_diff(out, reference.colorize_one(decode(data))) == 0
    assert "exif" not in out.info  # orientation is baked into the pixels, not re-applied by viewers


@pytest.mark.parametrize("case", ["cmyk", "progressive", "png16"])
async def test_awkward_encodings(api: RunningApp, reference: Colorizer, case: str) -> None:
    if case == "cmyk":
        data = image_bytes(rgb_image(40, 30).convert("CMYK"), "JPEG")
    elif case == "progressive":
        data = image_bytes(rgb_image(40, 30), "JPEG", progressive=True)
    else:
        data = image_bytes(Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50), "PNG")
    response = await api.client.post("/colorize?format=png", **upload(data))
    assert response.status_code == 200, response.text
    assert max_abs_diff(decode(response.content), reference.colorize_one(decode(data))) == 0


async def test_quality_changes_lossy_output(api: RunningApp) -> None:
    data = image_bytes(rgb_image(128, 96), "PNG")
    low = await api.client.post("/colorize?format=jpeg&quality=5", **upload(data))
    high = await api.client.post("/colorize?format=jpg&quality=95", **upload(data))
    assert low.status_code == high.status_code == 200
    assert len(low.content) < len(high.content)


async def test_render_size_option(api: RunningApp, reference: Colorizer) -> None:
    image = gray_image(90, 70)
    response = await api.client.post("/colorize?render_size=512", **upload(image_bytes(image, "PNG")))
    assert response.status_code == 200
    assert response.headers["x-render-size"] == "512"
    assert max_abs_diff(decode(response.content), reference.colorize_one(image, render_size=512)) == 0


async def test_saliency_map(api: RunningApp, reference: Colorizer) -> None:
    image = gray_image(72, 40)
    response = await api.client.post("/saliency", **upload(image_bytes(image, "PNG")))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    out = decode(response.content)
    assert out.mode == "L" and out.size == (72, 40)
    assert max_abs_diff(out, reference.saliency([image])[0]) == 0


async def test_saliency_without_a_branch_is_501(make_settings, tiny_checkpoint_no_saliency: Path) -> None:  # type: ignore[no-untyped-def]
    async with run_app(make_settings(checkpoint=tiny_checkpoint_no_saliency)) as running:
        response = await running.client.post("/saliency", **upload(image_bytes(gray_image(), "PNG")))
        assert response.status_code == 501
        assert response.json()["error"]["code"] == "saliency_unavailable"
        assert (await running.client.get("/v1/model")).json()["has_saliency"] is False
        assert (await running.client.post("/colorize", **upload(image_bytes(gray_image(), "PNG")))).status_code == 200


async def test_request_ids(api: RunningApp) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-ID": "client-abc.123"})
    assert response.headers["x-request-id"] == "client-abc.123"
    response = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32
    response = await api.client.post("/colorize", content=b"", headers={"X-Request-ID": "req-42"})
    assert response.json()["error"]["request_id"] == "req-42" == response.headers["x-request-id"]


async def test_model_info(api: RunningApp, tiny_checkpoint: Path) -> None:
    body = (await api.client.get("/v1/model")).json()
    assert body["checkpoint"]["name"] == "tiny.pt"
    assert body["checkpoint"]["sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert body["config"]["start_channels"] == 4
    assert body["task"] == "gray->rgb"
    assert body["device"] == "cpu" and body["precision"] == "fp32" and body["compiled_batch_sizes"] == []
    assert body["working_resolution"] == 256 and body["render_size"] == 256
    assert body["batching"]["max_batch_size"] == 2
    assert body["limits"]["max_pixels"] == 4096 * 4096
    assert body["version"]["service"]


async def test_health_and_docs(api: RunningApp) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert "swagger" in (await api.client.get("/docs")).text.lower()
    spec = (await api.client.get("/openapi.json")).json()
    body = spec["paths"]["/colorize"]["post"]["requestBody"]["content"]
    assert "file" in body["multipart/form-data"]["schema"]["properties"]
    assert "image/*" in body
    params = {p["name"] for p in spec["paths"]["/colorize"]["post"]["parameters"]}
    assert {"format", "quality", "render_size"} <= params


async def test_unknown_routes_use_the_error_envelope(api: RunningApp) -> None:
    response = await api.client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await api.client.get("/colorize")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_chroma_gain_zero_gives_the_gray_image_and_scales_the_colour(
    api: RunningApp, reference: Colorizer
) -> None:
    image = gray_image(80, 60)
    data = image_bytes(image, "PNG")
    gray = await api.client.post("/colorize", files={"file": ("g.png", data, "image/png")}, data={"chroma_gain": "0"})
    assert gray.status_code == 200, gray.text
    out = np.asarray(decode(gray.content).convert("RGB"), dtype=np.int16)
    assert np.abs(out - np.asarray(image.convert("RGB"), dtype=np.int16)).max() <= 1  # the luma back, no colour
    vivid = await api.client.post("/colorize?chroma_gain=1.5", **upload(data, "g.png", "image/png"))
    assert vivid.status_code == 200, vivid.text
    assert max_abs_diff(decode(vivid.content), reference.colorize_one(image, chroma_gain=1.5)) == 0
    assert max_abs_diff(decode(vivid.content), reference.colorize_one(image)) > 0


@pytest.mark.parametrize("value", ["-0.1", "2.01", "nan", "inf", "vivid", ""])
async def test_chroma_gain_outside_its_range_is_422(api: RunningApp, value: str) -> None:
    data = image_bytes(gray_image(), "PNG")
    for request in (
        {"files": {"file": ("g.png", data, "image/png")}, "data": {"chroma_gain": value}},
        {"params": {"chroma_gain": value}, **upload(data, "g.png", "image/png")},
    ):
        response = await api.client.post("/colorize", **request)
        assert response.status_code == 422, (value, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_options" and "chroma_gain" in error["message"], error


async def test_chroma_gain_is_in_the_openapi_schema(api: RunningApp) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    operation = schema["paths"]["/colorize"]["post"]
    query = {p["name"]: p for p in operation["parameters"]}["chroma_gain"]["schema"]
    assert (query["minimum"], query["maximum"], query["default"]) == (0.0, 2.0, 1.0)
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["chroma_gain"]
    assert (form["minimum"], form["maximum"]) == (0.0, 2.0)
