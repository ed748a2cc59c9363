"""Colour hints on the page, in headless Chromium against the real service.

The service runs the hint follower (tests/tiny_models.py): its automatic colour is a warm tint and a hint
paints its own colour around it, so the test can tell where a hint landed from the answer's pixels.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from web_test_helpers import Server

WIDTH, HEIGHT = 400, 300

#: The displayed answer's pixels as a PNG data: URL (drawn on a canvas: the page's CSP keeps fetch off blob: URLs).
_AFTER_PNG_JS = """img => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    canvas.getContext('2d').drawImage(img, 0, 0);
    return canvas.toDataURL('image/png');
}"""


def _photo(path: Path) -> Path:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    Image.fromarray((60 + (xx + yy) * 140 // (WIDTH + HEIGHT)).astype(np.uint8), "L").save(path)
    return path


def _settled(page: Any) -> None:
    """Wait until the latest answer is displayed (the page marks the result busy while it waits)."""
    page.wait_for_function(
        "() => !document.getElementById('result').hidden && !document.getElementById('result').hasAttribute('aria-busy')"
        " && document.getElementById('after-img').naturalWidth > 0"
    )


def _displayed(page: Any) -> np.ndarray:
    """The displayed answer's RGB pixels."""
    data = page.eval_on_selector("#after-img", _AFTER_PNG_JS).removeprefix("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image.convert("RGB"))


def _change_and_rerender(page: Any, action: Any) -> np.ndarray:
    """Run ``action``, wait for the /colorize it causes and its display; the displayed answer's pixels."""
    with page.expect_response(lambda r: r.url.endswith("/colorize")) as answer:
        action()
    assert answer.value.status == 200, answer.value.text()
    _settled(page)
    return _displayed(page)


def _cb(rgb: np.ndarray, x: int, y: int, radius: int = 6) -> float:
    """Mean Cb (blue-difference chroma, BT.601, in [-0.5, 0.5]) around (x, y) of RGB pixels."""
    ycbcr = np.asarray(Image.fromarray(rgb, "RGB").convert("YCbCr"), dtype=np.float64)
    window = ycbcr[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1, 1]
    return float(window.mean() - 128.0) / 255.0


def _screen_point(page: Any, x: int, y: int) -> tuple[float, float]:
    """Where image pixel (x, y) of the displayed answer is on the screen."""
    box = page.eval_on_selector("#after-img", "e => e.getBoundingClientRect().toJSON()")
    return box["left"] + (x + 0.5) * box["width"] / WIDTH, box["top"] + (y + 0.5) * box["height"] / HEIGHT


def _hint_list(page: Any) -> list[str]:
    return [
        text.strip()
        for text in page.eval_on_selector_all("#hint-list li > span:nth-child(2)", "l => l.map(e => e.textContent)")
    ]


def test_a_blue_hint_turns_its_region_blue_moves_and_goes(server_hints: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server_hints.base_url + "/")
    page.set_input_files("#file", str(_photo(tmp_path / "gray.png")))
    _settled(page)
    page.wait_for_function("() => !document.querySelector('input[name=view][value=hints]').disabled")
    automatic = _displayed(page)
    page.check('input[name="view"][value="hints"]')
    assert not page.is_visible("#before-img") and not page.is_visible("#split")
    page.fill("#hint-color", "#0000ff")

    # Click: a hint of the picked colour where the click was; the answer turns blue there, not elsewhere.
    left = (100, 150)
    blue = _change_and_rerender(page, lambda: page.mouse.click(*_screen_point(page, *left)))
    assert _hint_list(page) == ["#0000ff at (100, 150)"]
    assert page.locator("#hint-layer .hint").count() == 1
    assert _cb(blue, *left) - _cb(automatic, *left) > 0.2
    assert _cb(blue, 340, 40) == pytest.approx(_cb(automatic, 340, 40), abs=1e-3)

    # Drag: the hint moves and the blue follows it.
    right = (300, 150)
    dot = page.locator("#hint-layer .hint").bounding_box()

    def drag() -> None:
        page.mouse.move(dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2)
        page.mouse.down()
        page.mouse.move(*_screen_point(page, *right), steps=8)
        page.mouse.up()

    moved = _change_and_rerender(page, drag)
    [entry] = _hint_list(page)
    x, y = (int(v) for v in entry.removeprefix("#0000ff at (").removesuffix(")").split(", "))
    assert abs(x - right[0]) <= 2 and abs(y - right[1]) <= 2
    assert _cb(moved, *right) - _cb(automatic, *right) > 0.2
    # Back to the automatic colour where it was (the propagation's halo fades with distance, never to exactly 0).
    assert _cb(moved, *left) == pytest.approx(_cb(automatic, *left), abs=0.01)

    # One click on the hint removes it: the automatic answer again, pixel for pixel.
    box = page.locator("#hint-layer .hint").bounding_box()
    restored = _change_and_rerender(
        page, lambda: page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    )
    assert _hint_list(page) == [] and page.locator("#hint-layer .hint").count() == 0
    assert np.array_equal(restored, automatic)
    assert page.eval_on_selector("#error", "e => e.hidden")
    assert not page.console_errors


def test_the_list_removes_hints_and_a_new_photo_starts_without(server_hints: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server_hints.base_url + "/")
    page.set_input_files("#file", str(_photo(tmp_path / "a.png")))
    _settled(page)
    page.wait_for_function("() => !document.querySelector('input[name=view][value=hints]').disabled")
    page.check('input[name="view"][value="hints"]')
    for point, colour in (((50, 50), "#ff0000"), ((350, 250), "#00ff00")):
        page.fill("#hint-color", colour)
        _change_and_rerender(page, lambda point=point: page.mouse.click(*_screen_point(page, *point)))
    assert _hint_list(page) == ["#ff0000 at (50, 50)", "#00ff00 at (350, 250)"]
    _change_and_rerender(page, lambda: page.click("#hint-list li:first-child button"))  # keyboard-reachable too
    assert _hint_list(page) == ["#00ff00 at (350, 250)"]
    page.set_input_files("#file", str(_photo(tmp_path / "b.png")))
    _settled(page)
    assert _hint_list(page) == [] and page.is_disabled("#hints-clear")


def test_a_model_without_hints_disables_them(server: Server, page: Any) -> None:
    page.goto(server.base_url + "/")
    page.wait_for_function("() => document.getElementById('hints-note').textContent.includes('no colour hints')")
    assert page.is_disabled('input[name="view"][value="hints"]')
    assert not page.is_visible("#hint-color")
