"""The page in a real browser: headless Chromium against the real service on a loopback port."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from web_test_helpers import Server


def _gray_png(path: Path, width: int = 900, height: int = 500) -> Path:
    """Wider than a phone screen, so the preview is scaled while the download is not."""
    yy, xx = np.mgrid[0:height, 0:width]
    Image.fromarray(((xx // 3 + yy // 2) % 256).astype(np.uint8), "L").save(path)
    return path


def _wait_for_result(page: Any) -> None:
    page.wait_for_function(
        "() => !document.getElementById('result').hidden && document.getElementById('after-img').naturalWidth > 0"
    )


def _natural_size(page: Any, selector: str) -> tuple[int, int]:
    width, height = page.eval_on_selector(selector, "img => [img.naturalWidth, img.naturalHeight]")
    return int(width), int(height)


def test_upload_colorize_and_saliency(server: Server, page: Any, tmp_path: Path) -> None:
    source = _gray_png(tmp_path / "street.png")
    page.goto(server.base_url + "/")
    assert page.title().startswith("scgan-colorize")
    page.set_input_files("#file", str(source))
    _wait_for_result(page)

    assert _natural_size(page, "#after-img") == (900, 500)
    assert _natural_size(page, "#before-img") == (900, 500)
    assert page.eval_on_selector("#error", "e => e.hidden")
    # The timings the service reported, read from its response headers.
    total = page.text_content('#timings dd[data-header="X-Total-Ms"]') or ""
    assert total.endswith(" ms") and float(total.split()[0]) > 0
    assert page.text_content('#timings dd[data-header="X-Batch-Size"]') == "1"
    # Download: the full-resolution answer itself, under a sensible name.
    href = page.get_attribute("#download", "href") or ""
    assert href.startswith("blob:")
    assert page.get_attribute("#download", "download") == "street-colorized.png"
    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "street-colorized.png"
    with Image.open(download.path()) as downloaded:
        assert downloaded.size == (900, 500)

    # Saliency overlay: fetched on demand, same size as the input.
    assert page.is_enabled("#saliency")
    page.check("#saliency")
    page.wait_for_function(
        "() => { const i = document.getElementById('saliency-img'); return !i.hidden && i.naturalWidth > 0; }"
    )
    assert _natural_size(page, "#saliency-img") == (900, 500)

    # Keyboard: the before/after split is a range input.
    page.focus("#split")
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert page.eval_on_selector("#split", "e => Number(e.value)") == 60
    assert page.eval_on_selector("#stage", "e => e.style.getPropertyValue('--split')") == "60%"

    page.uncheck("#saliency")
    assert page.eval_on_selector("#saliency-img", "e => e.hidden")
    assert all(url.startswith((server.base_url, "blob:")) for url in page.requests), page.requests
    assert not page.console_errors


def test_non_image_upload_shows_the_error(server: Server, page: Any, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a picture\n")
    page.goto(server.base_url + "/")
    page.set_input_files("#file", str(text))
    page.wait_for_selector("#error:not([hidden])")
    message = page.text_content("#error") or ""
    assert "HTTP 415" in message and "unsupported_media_type" in message and "request id" in message
    assert page.eval_on_selector("#result", "e => e.hidden")


def test_example_gallery_and_screenshot(server: Server, page: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    page.goto(server.base_url + "/")
    examples = page.query_selector_all(".example img")
    assert len(examples) >= 3
    for image in examples:
        assert image.get_attribute("alt")
        assert image.evaluate("i => i.complete && i.naturalWidth > 0")
    page.click(".example >> nth=3")  # coffee.jpg, 600 x 400
    _wait_for_result(page)
    assert _natural_size(page, "#after-img") == (600, 400)
    assert page.get_attribute("#download", "download") == "coffee-colorized.jpg"

    assert "preview scaled" not in (page.text_content("#dimensions") or "")  # 600 px fits at this width
    shot = tmp_path_factory.mktemp("web-screenshot") / "screenshot-web.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    target = os.environ.get("WEB_TEST_SCREENSHOT")  # keep a copy there, e.g. docs/screenshot-web.png
    if target:
        shutil.copyfile(shot, target)


def test_side_by_side_view(server: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server.base_url + "/")
    page.set_input_files("#file", str(_gray_png(tmp_path / "a.png", 320, 200)))
    _wait_for_result(page)
    page.check('input[name="view"][value="side"]')
    before = page.eval_on_selector("#before-img", "e => e.getBoundingClientRect().toJSON()")
    after = page.eval_on_selector("#after-img", "e => e.getBoundingClientRect().toJSON()")
    assert after["left"] >= before["right"] - 1  # next to each other, not stacked
    assert not page.is_visible("#split")


@pytest.mark.parametrize("page", [{"width": 375, "height": 740}], indirect=True)
def test_phone_width(server: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server.base_url + "/")
    page.set_input_files("#file", str(_gray_png(tmp_path / "wide.png")))
    _wait_for_result(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    width = page.eval_on_selector("#after-img", "e => e.getBoundingClientRect().width")
    assert width <= 375  # previewed scaled ...
    assert _natural_size(page, "#after-img") == (900, 500)  # ... computed at full size
    assert "preview scaled" in (page.text_content("#dimensions") or "")


def test_keyboard_reaches_the_file_chooser(server: Server, page: Any) -> None:
    page.goto(server.base_url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "file"


def test_no_saliency_branch_disables_the_toggle(server_no_saliency: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server_no_saliency.base_url + "/")
    page.wait_for_function("() => document.getElementById('saliency').disabled")
    assert "no saliency branch" in (page.text_content("#saliency-note") or "")
    page.set_input_files("#file", str(_gray_png(tmp_path / "b.png", 256, 256)))
    _wait_for_result(page)
    assert page.is_disabled("#saliency")
    assert page.eval_on_selector("#error", "e => e.hidden")


_CHANNEL_SPREAD_JS = """img => {
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data; let m = 0;
    for (let i = 0; i < d.length; i += 4) m = Math.max(m, Math.abs(d[i] - d[i + 1]), Math.abs(d[i + 1] - d[i + 2]));
    return m;
}"""


def test_vividness_slider_recolorizes_with_chroma_gain(server: Server, page: Any, tmp_path: Path) -> None:
    page.goto(server.base_url + "/")
    page.set_input_files("#file", str(_gray_png(tmp_path / "v.png", 320, 200)))
    _wait_for_result(page)
    assert page.eval_on_selector("#after-img", _CHANNEL_SPREAD_JS) > 1  # the model's colours at gain 1
    first = page.get_attribute("#after-img", "src")
    page.eval_on_selector(
        "#vividness",
        "e => { e.value = '0'; e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); }",
    )
    assert page.text_content("#vividness-value") == "0.0"
    page.wait_for_function("src => document.getElementById('after-img').src !== src", arg=first)
    _wait_for_result(page)
    # chroma_gain 0: the answer is the gray photo, every pixel R = G = B (within rounding).
    assert page.eval_on_selector("#after-img", _CHANNEL_SPREAD_JS) <= 1
