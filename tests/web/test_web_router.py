"""The page's router without a browser: what it serves, what it refuses, what ships in the wheel."""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service import Settings, create_app
from service.web.router import STATIC_DIR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # No lifespan (no `with`): the page needs no model. The developer's SCGAN_* variables stay out.
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SCGAN_")]:
            patch.delenv(name)
        app = create_app(Settings(device="cpu"))
    yield TestClient(app)


def test_index_is_self_contained(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert "http://" not in html and "https://" not in html  # no CDN, no external fonts
    for asset in ("/web/app.css", "/web/app.js"):
        assert asset in html
        assert client.get(asset).status_code == 200
    for asset in ("app.css", "app.js"):
        text = (STATIC_DIR / asset).read_text()
        assert "http://" not in text and "https://" not in text and "@import" not in text


@pytest.mark.parametrize("path", ["/web/../app.py", "/web/%2e%2e/router.py", "/web/nope.js", "/web/"])
def test_only_shipped_files_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_examples_are_small_grayscale_and_licensed() -> None:
    examples = sorted((STATIC_DIR / "examples").glob("*.jpg"))
    assert 3 <= len(examples) <= 4
    licences = (STATIC_DIR / "examples" / "LICENSES.md").read_text()
    for path in examples:
        assert f"`{path.name}`" in licences
        assert path.stat().st_size < 80_000
        with Image.open(path) as image:
            assert image.mode == "L" and max(image.size) <= 640


def test_static_files_ship_in_the_wheel() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["service.web"]
    web = STATIC_DIR.parent
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            name = path.relative_to(web).as_posix()
            assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} is not in package-data"
