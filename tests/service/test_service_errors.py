"""Bad input gets a clear error, and nothing else suffers: no model work, no stuck worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from service_test_helpers import (
    GatedPredict,
    RunningApp,
    gray_image,
    image_bytes,
    png_header_only,
    rgb_image,
    run_app,
)

from service import Settings

pytestmark = pytest.mark.anyio

MAX_UPLOAD = 64 * 1024


@pytest.fixture(scope="module")
async def svc(tiny_checkpoint: Path) -> AsyncIterator[RunningApp]:
    """One app for the status-code tests; tests that count things use :func:`fresh`."""
    settings = Settings(
        checkpoint=tiny_checkpoint,
        device="cpu",
        max_batch_size=2,
        torch_threads=1,
        cpu_threads=2,
        max_upload_bytes=MAX_UPLOAD,
        max_pixels=1_000_000,
    )
    async with run_app(settings) as running:
        yield running


@pytest.fixture()
async def fresh(make_settings: Callable[..., Settings], gated: GatedPredict) -> AsyncIterator[RunningApp]:
    """A new app whose forwards are recorded by ``gated`` (warm-up forgotten)."""
    async with run_app(make_settings(max_upload_bytes=MAX_UPLOAD, max_pixels=1_000_000), predict=gated) as running:
        gated.reset_calls()
        yield running


def multipart(data: bytes, media_type: str = "image/png") -> dict[str, object]:
    return {"files": {"file": ("upload", data, media_type)}}


async def assert_error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]  # type: ignore[attr-defined]


async def test_missing_file_field(svc: RunningApp) -> None:
    response = await svc.client.post("/colorize", files={"other": ("x.png", b"abc", "image/png")})
    await assert_error(response, 400, "empty_upload")
    response = await svc.client.post("/colorize", data={"format": "png"}, files={})
    await assert_error(response, 400, "empty_upload")


async def test_empty_bodies(svc: RunningApp) -> None:
    await assert_error(await svc.client.post("/colorize"), 400, "empty_upload")
    await assert_error(
        await svc.client.post("/colorize", content=b"", headers={"content-type": "image/png"}), 400, "empty_upload"
    )
    await assert_error(await svc.client.post("/colorize", **multipart(b"")), 400, "empty_upload")


async def test_malformed_multipart(svc: RunningApp) -> None:
    response = await svc.client.post(
        "/colorize", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"just some text", "text/plain"),
        (b'{"image": 1}', "application/json"),
        (b"not an image at all, just bytes", "image/png"),
        (image_bytes(rgb_image(), "ICO"), "image/x-icon"),
        (image_bytes(rgb_image(), "TGA"), "image/x-tga"),
    ],
    ids=["text", "json", "garbage-as-png", "ico", "tga"],
)
async def test_unsupported_media_is_415(svc: RunningApp, data: bytes, media_type: str) -> None:
    await assert_error(
        await svc.client.post("/colorize", content=data, headers={"content-type": media_type}),
        415,
        "unsupported_media_type",
    )


async def test_truncated_image_is_400(svc: RunningApp) -> None:
    data = image_bytes(rgb_image(128, 128), "PNG")
    await assert_error(await svc.client.post("/colorize", **multipart(data[: len(data) // 2])), 400, "corrupt_image")
    jpeg = image_bytes(rgb_image(128, 128), "JPEG")
    await assert_error(await svc.client.post("/colorize", **multipart(jpeg[:200], "image/jpeg")), 400, "corrupt_image")


async def test_upload_over_the_limit_is_413(svc: RunningApp) -> None:
    refused = {"route": "/colorize", "method": "POST", "status": "413"}
    before = svc.metric("scgan_http_requests_total", refused)
    just_over = b"\x89PNG" + b"\x00" * MAX_UPLOAD  # over max_upload_bytes, within the multipart allowance
    await assert_error(
        await svc.client.post("/colorize", content=just_over, headers={"content-type": "image/png"}),
        413,
        "upload_too_large",
    )
    await assert_error(await svc.client.post("/colorize", **multipart(just_over)), 413, "upload_too_large")
    huge = b"\x00" * (10 * MAX_UPLOAD)  # refused from Content-Length, before any byte is read
    await assert_error(
        await svc.client.post("/colorize", content=huge, headers={"content-type": "image/png"}),
        413,
        "upload_too_large",
    )
    assert svc.metric("scgan_http_requests_total", refused) - before == 3


async def test_streamed_upload_without_length_is_cut_off(svc: RunningApp) -> None:
    sent = 0

    async def endless(preamble: bytes) -> AsyncIterator[bytes]:
        nonlocal sent
        yield preamble
        for _ in range(10_000):  # 640 MB if nobody stopped reading
            sent += 64 * 1024
            yield b"\x00" * (64 * 1024)

    part = b'--abc\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
    for media_type, preamble in (("image/png", b""), ("multipart/form-data; boundary=abc", part)):
        sent = 0
        response = await svc.client.post("/colorize", content=endless(preamble), headers={"content-type": media_type})
        await assert_error(response, 413, "upload_too_large")
        assert sent <= MAX_UPLOAD + 3 * 64 * 1024


async def test_too_many_pixels_is_413(svc: RunningApp) -> None:
    await assert_error(
        await svc.client.post("/colorize", **multipart(png_header_only(50_000, 50_000))), 413, "image_too_large"
    )
    response = await svc.client.post("/colorize", **multipart(png_header_only(1001, 1000)))
    await assert_error(response, 413, "image_too_large")
    message = response.json()["error"]["message"]
    assert message == "the image is 1001 x 1000 = 1,001,000 pixels; the limit is 1,000,000 pixels (1000 x 1000)"


@pytest.mark.parametrize(
    "query",
    [
        "format=gif",
        "format=",
        "quality=0",
        "quality=101",
        "quality=high",
        "render_size=300",
        "render_size=0",
        "render_size=8192",
    ],
)
async def test_invalid_options_are_422(svc: RunningApp, query: str) -> None:
    response = await svc.client.post(f"/colorize?{query}", **multipart(image_bytes(gray_image(), "PNG")))
    # An empty format is invalid too (the schema's enum has no empty value): omit the option for the default.
    await assert_error(response, 422, "invalid_options")


async def test_invalid_form_options_are_422(svc: RunningApp) -> None:
    response = await svc.client.post(
        "/colorize", files={"file": ("g.png", image_bytes(gray_image(), "PNG"), "image/png")}, data={"quality": "500"}
    )
    await assert_error(response, 422, "invalid_options")
    assert "quality" in response.json()["error"]["message"]


async def test_bad_requests_never_reach_the_model(fresh: RunningApp, gated: GatedPredict) -> None:
    svc = fresh
    bad = [
        await svc.client.post("/colorize"),
        await svc.client.post("/colorize", content=b"text", headers={"content-type": "text/plain"}),
        await svc.client.post("/colorize", **multipart(image_bytes(rgb_image(128, 128), "PNG")[:300])),
        await svc.client.post("/colorize", **multipart(png_header_only(50_000, 50_000))),
        await svc.client.post("/colorize?quality=0", **multipart(image_bytes(gray_image(), "PNG"))),
        await svc.client.post("/saliency?render_size=17", **multipart(image_bytes(gray_image(), "PNG"))),
    ]
    assert [r.status_code for r in bad] == [400, 415, 400, 413, 422, 422]
    assert gated.calls == []
    assert svc.metric("scgan_batch_size_count") == 0
    assert svc.state.batcher.depth == 0
    assert svc.metric("scgan_errors_total", {"kind": "corrupt_image"}) == 1
    assert svc.metric("scgan_errors_total", {"kind": "image_too_large"}) == 1
    assert svc.metric("scgan_http_requests_total", {"route": "/colorize", "method": "POST", "status": "422"}) == 1
    # ...and the service is unharmed.
    good = await svc.client.post("/colorize", **multipart(image_bytes(gray_image(), "PNG")))
    assert good.status_code == 200
    assert gated.calls == [1]


async def test_a_stalled_upload_gets_408(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings(request_timeout_s=0.3)) as svc:

        async def stalled() -> AsyncIterator[bytes]:
            yield b"\x89PNG\r\n"
            await asyncio.sleep(3)
            yield b"never mind"

        response = await svc.client.post("/colorize", content=stalled(), headers={"content-type": "image/png"})
        await assert_error(response, 408, "upload_timeout")
