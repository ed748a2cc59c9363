"""Colour hints through POST /colorize: the form field, every 422, EXIF-oriented coordinates, mixed batches.

The hint-taking checkpoint is :func:`tiny_models.make_hint_follower`: its automatic colour is a warm tint and
each hint paints its own chroma around it, so a test can tell where a hint landed and what colour it carried.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from service_test_helpers import (
    GatedPredict,
    RunningApp,
    decode,
    gray_image,
    image_bytes,
    max_abs_diff,
    run_app,
    wait_until,
)

from model import Colorizer
from model.color import rgb_to_chroma
from model.hints import Hint
from service import Settings

pytestmark = pytest.mark.anyio

BLUE = "#0000ff"


@pytest.fixture(scope="module")
def hint_reference(tiny_hint_checkpoint: Path) -> Colorizer:
    """The hint checkpoint loaded through the model API: the expected answers."""
    return Colorizer.from_checkpoint(tiny_hint_checkpoint, device="cpu", precision="fp32")


def _settings(checkpoint: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"device": "cpu", "precision": "fp32", "max_batch_size": 2, "cpu_threads": 2}
    return Settings(checkpoint=checkpoint, torch_threads=1, compile="off", **{**values, **overrides})


@pytest.fixture(scope="module")
async def hinted(tiny_hint_checkpoint: Path) -> AsyncIterator[RunningApp]:
    """The hint follower served with a limit of 8 hints (read-only tests)."""
    async with run_app(_settings(tiny_hint_checkpoint, max_hints=8)) as running:
        yield running


@pytest.fixture(scope="module")
async def plain(tiny_checkpoint: Path) -> AsyncIterator[RunningApp]:
    """A checkpoint that takes no hints, default limit."""
    async with run_app(_settings(tiny_checkpoint)) as running:
        yield running


def _form(data: bytes, hints: Any = None, *, name: str = "in.png", media: str = "image/png") -> dict[str, Any]:
    """Multipart arguments: the file and, unless None, the hints (a string as is, anything else as JSON)."""
    fields = {} if hints is None else {"hints": hints if isinstance(hints, str) else json.dumps(hints)}
    return {"files": {"file": (name, data, media)}, "data": fields}


def _chroma(image: Image.Image) -> torch.Tensor:
    """2 x H x W Cb/Cr of an RGB image."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return rgb_to_chroma(pixels)


def _blue_shift(hinted: Image.Image, automatic: Image.Image, x: int, y: int, radius: int = 4) -> float:
    """How much bluer (mean Cb gained) ``hinted`` is than ``automatic`` around pixel (``x``, ``y``)."""
    window = (slice(None), slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
    return float((_chroma(hinted)[window][0] - _chroma(automatic)[window][0]).mean())


def _png(image: Image.Image) -> bytes:
    return image_bytes(image, "PNG")


async def test_model_info_and_schema_say_whether_hints_are_taken(hinted: RunningApp, plain: RunningApp) -> None:
    info = (await hinted.client.get("/v1/model")).json()
    assert info["takes_hints"] is True and info["config"]["hints"] is True
    assert info["limits"]["max_hints"] == 8
    other = (await plain.client.get("/v1/model")).json()
    assert other["takes_hints"] is False and other["limits"]["max_hints"] == 256
    spec = (await plain.client.get("/openapi.json")).json()
    field = spec["paths"]["/colorize"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    hints = field["properties"]["hints"]
    assert hints["type"] == "string"  # JSON in a text field (tests/web: Swagger UI offers a text box)
    assert "takes_hints" in hints["description"] and "EXIF" in hints["description"]
    assert "hints" not in {p["name"] for p in spec["paths"]["/colorize"]["post"]["parameters"]}
    assert "hints" not in spec["components"]["schemas"]["ModelDescription"]["properties"]["config"].get(
        "properties", {}
    )
    assert "takes_hints" in spec["components"]["schemas"]["ModelDescription"]["properties"]


async def test_a_hint_colours_its_region_and_keeps_size_and_luma(hinted: RunningApp, hint_reference: Colorizer) -> None:
    image = gray_image(90, 61, seed=3)  # odd sizes
    automatic = await hinted.client.post("/colorize", **_form(_png(image)))
    blue = await hinted.client.post("/colorize", **_form(_png(image), [{"x": 20, "y": 30, "color": BLUE}]))
    assert automatic.status_code == blue.status_code == 200, blue.text
    auto_img, blue_img = decode(automatic.content), decode(blue.content)
    assert blue_img.size == (90, 61)
    # The photo keeps its own luma: within rounding of the 8-bit RGB answer.
    assert max_abs_diff(blue_img.convert("L"), image) <= 2
    assert _blue_shift(blue_img, auto_img, 20, 30) > 0.15
    assert abs(_blue_shift(blue_img, auto_img, 80, 5)) < 1e-3  # far away: unchanged
    expected = hint_reference.colorize_with_saliency([image], hints=[[Hint(20, 30, BLUE)]])[0][0]
    assert max_abs_diff(blue_img, expected) <= 1
    # An empty list is no hints, and so is a blank field (Swagger UI's try-it-out sends one).
    for blank in ([], "", "  "):
        empty = await hinted.client.post("/colorize", **_form(_png(image), blank))
        assert empty.status_code == 200 and empty.content == automatic.content


@pytest.mark.parametrize(
    ("x", "y"), [(0, 0), (89, 0), (0, 60), (89, 60)], ids=["top-left", "top-right", "bottom-left", "bottom-right"]
)
async def test_hints_at_the_corners(hinted: RunningApp, x: int, y: int) -> None:
    image = gray_image(90, 61, seed=4)
    automatic = decode((await hinted.client.post("/colorize", **_form(_png(image)))).content)
    response = await hinted.client.post("/colorize", **_form(_png(image), [{"x": x, "y": y, "color": BLUE}]))
    assert response.status_code == 200, response.text
    assert _blue_shift(decode(response.content), automatic, x, y, radius=2) > 0.15


async def test_coordinates_are_those_of_the_exif_oriented_image(hinted: RunningApp, hint_reference: Colorizer) -> None:
    """A phone photo stored 96 x 40 with Orientation 6 is displayed 40 x 96: hints are in the displayed frame."""
    stored = gray_image(96, 40, seed=5).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    jpeg = buffer.getvalue()
    hints = [{"x": 30, "y": 85, "color": BLUE}]  # inside 40 x 96 only (y = 85 is past the stored height)

    def form(hint_list: Any) -> dict[str, Any]:
        return {**_form(jpeg, hint_list, name="phone.jpg", media="image/jpeg"), "params": {"format": "png"}}

    automatic = decode((await hinted.client.post("/colorize", **form(None))).content)
    response = await hinted.client.post("/colorize", **form(hints))
    assert response.status_code == 200, response.text
    answer = decode(response.content)
    assert answer.size == automatic.size == (40, 96)
    assert _blue_shift(answer, automatic, 30, 85) > 0.15
    assert abs(_blue_shift(answer, automatic, 10, 5)) < 1e-3
    with Image.open(io.BytesIO(jpeg)) as upload:
        expected = hint_reference.colorize_with_saliency([upload], hints=[[Hint(30, 85, BLUE)]])[0][0]
    assert max_abs_diff(answer, expected) <= 1
    # Inside the stored 96 x 40 but not the displayed 40 x 96: outside.
    outside = await hinted.client.post("/colorize", **form([{"x": 60, "y": 10, "color": BLUE}]))
    assert outside.status_code == 422
    assert "outside the 40 x 96 image" in outside.json()["error"]["message"]


@pytest.mark.parametrize(
    ("hints", "message"),
    [
        ("[{", "hints are not valid JSON"),
        ('{"x": 1, "y": 1, "color": "#000000"}', "hints must be a JSON array of objects, got a JSON dict"),
        ([[1, 2, "#0000ff"]], 'hint 0 must be an object with exactly the keys "x", "y" and "color"'),
        ([{"x": 1, "y": 1}], 'hint 0 must be an object with exactly the keys "x", "y" and "color"'),
        ([{"x": 1, "y": 1, "color": BLUE, "z": 0}], 'hint 0 must be an object with exactly the keys "x", "y"'),
        ([{"x": 1.5, "y": 1, "color": BLUE}], "hint 0: x and y must be integer pixel coordinates"),
        ([{"x": 1, "y": True, "color": BLUE}], "hint 0: x and y must be integer pixel coordinates"),
        ([{"x": 1, "y": 1, "color": BLUE}, {"x": 2, "y": 2, "color": "blue"}], 'hint 1: color must be "#rrggbb"'),
        ([{"x": 1, "y": 1, "color": "#00f"}], 'hint 0: color must be "#rrggbb"'),
        ([{"x": 1, "y": 1, "color": "#0000fg"}], 'hint 0: color must be "#rrggbb"'),
        ([{"x": 64, "y": 1, "color": BLUE}], "hint 0 at (64, 1) is outside the 64 x 48 image"),
        ([{"x": 1, "y": 48, "color": BLUE}], "hint 0 at (1, 48) is outside the 64 x 48 image"),
        ([{"x": -1, "y": 0, "color": BLUE}], "hint 0 at (-1, 0) is outside the 64 x 48 image"),
        ([{"x": i, "y": i, "color": BLUE} for i in range(9)], "9 hints is more than the limit of 8"),
    ],
    ids=[
        "truncated-json",
        "object-not-array",
        "list-not-object",
        "missing-key",
        "extra-key",
        "float-coordinate",
        "bool-coordinate",
        "colour-name",
        "short-colour",
        "bad-hex",
        "x-past-width",
        "y-past-height",
        "negative",
        "over-the-limit",
    ],
)
async def test_bad_hints_are_422_naming_the_problem(hinted: RunningApp, hints: Any, message: str) -> None:
    response = await hinted.client.post("/colorize", **_form(_png(gray_image(64, 48)), hints))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_hints"
    assert message in error["message"], error["message"]


async def test_the_default_limit_fits_in_a_form_field_and_one_more_is_422(tiny_hint_checkpoint: Path) -> None:
    """256 hints (the default limit) in spaced-out JSON pass the multipart parser; 257 get the limit's 422."""
    async with run_app(_settings(tiny_hint_checkpoint)) as running:
        image = _png(gray_image(64, 48))
        many = [{"x": i % 64, "y": i % 48, "color": "#A0B0C0"} for i in range(257)]
        spaced = json.dumps(many[:256], indent=4)
        assert len(spaced) > 16 * 1024  # more than an option field may hold
        assert (await running.client.post("/colorize", **_form(image, spaced))).status_code == 200
        response = await running.client.post("/colorize", **_form(image, json.dumps(many, indent=4)))
        assert response.status_code == 422
        assert response.json()["error"]["message"] == "257 hints is more than the limit of 256"


async def test_hints_for_a_checkpoint_that_takes_none_are_422(plain: RunningApp) -> None:
    image = _png(gray_image(64, 48))
    response = await plain.client.post("/colorize", **_form(image, [{"x": 1, "y": 1, "color": BLUE}]))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_hints"
    assert "this checkpoint takes no colour hints" in response.json()["error"]["message"]
    # An empty list asks for nothing the checkpoint lacks.
    empty = await plain.client.post("/colorize", **_form(image, []))
    unhinted = await plain.client.post("/colorize", **_form(image))
    assert empty.status_code == 200 and empty.content == unhinted.content


async def test_hints_in_the_query_string_are_422(hinted: RunningApp) -> None:
    hints = json.dumps([{"x": 1, "y": 1, "color": BLUE}])
    response = await hinted.client.post("/colorize", params={"hints": hints}, **_form(_png(gray_image())))
    assert response.status_code == 422
    assert "multipart form field 'hints'" in response.json()["error"]["message"]


async def test_mixed_batches_equal_the_same_requests_alone(
    make_settings: Callable[..., Settings], tiny_hint_checkpoint: Path, hint_reference: Colorizer
) -> None:
    gated = GatedPredict(inner=lambda batch, saliency: hint_reference.predict(batch, saliency=saliency))
    settings = make_settings(checkpoint=tiny_hint_checkpoint, max_batch_size=4, max_batch_delay_ms=20)
    requests = [
        (gray_image(70, 50, seed=1), [Hint(10, 10, BLUE)]),
        (gray_image(64, 64, seed=2), []),
        (gray_image(50, 80, seed=3), [Hint(40, 70, "#ff2000"), Hint(5, 5, "#00c000")]),
        (gray_image(70, 50, seed=1), None),  # the first image again, unhinted
    ]
    async with run_app(settings, predict=gated) as svc:

        def post(image: Image.Image, hints: list[Hint] | None) -> asyncio.Task[httpx.Response]:
            raw = None if hints is None else [{"x": h.x, "y": h.y, "color": h.color} for h in hints]
            return asyncio.create_task(svc.client.post("/colorize", **_form(_png(image), raw)))

        gated.reset_calls()
        gated.close()
        first = post(gray_image(32, 32, seed=9), None)
        await wait_until(gated.entered.is_set, what="the first forward to start")
        tasks = [post(image, hints) for image, hints in requests]
        await wait_until(lambda: svc.state.batcher.depth == len(requests), what="the requests to queue")
        gated.open()
        responses = [await first] + [await task for task in tasks]
        assert [r.status_code for r in responses] == [200] * 5
        assert [int(r.headers["x-batch-size"]) for r in responses[1:]] == [4] * 4
        assert gated.calls == [1, 4]
    answers = [decode(r.content) for r in responses[1:]]
    for (image, hints), answer in zip(requests, answers):
        alone = hint_reference.colorize_with_saliency([image], hints=[hints or []])[0][0]
        assert max_abs_diff(answer, alone) <= 1
    assert max_abs_diff(answers[0], answers[3]) > 50  # the same image, hinted and not: hints reached their item
