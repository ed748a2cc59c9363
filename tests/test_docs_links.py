"""The README is a short front page, and every relative link in it and in docs/ leads somewhere that exists.

Anchors (``page.md#heading``) are checked against the target page's headings, slugged as GitHub does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
#: The issue's bar: a front page of about 200 lines, at most 250.
README_MAX_LINES = 250
#: The pages the README promises; other work adds sections to them, so their names stay.
PROMISED = ("api.md", "operations.md", "performance.md", "training.md", "deployment.md", "cli.md")

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside code blocks and code spans, where a markdown link is a link."""
    return _CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", _FENCE.sub("", page.read_text()), re.M)}


def relative_links(page: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(page.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    """The relative links of a page whose file or heading does not exist."""
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## Errors here\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#errors-here) [gone](nope.md) [bad](a.md#nope) `[code](x.md)`\n```\n[fenced](y.md)\n```\n"
        "[web](https://example.org/x.md) [self](#b)\n# B\n"
    )
    assert broken_links(page) == ["nope.md: no such file", "a.md#nope: no heading #nope"]


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_readme_links_every_promised_page() -> None:
    linked = {Path(t.partition("#")[0]).name for t in relative_links(README) if t.startswith("docs/")}
    for name in PROMISED:
        assert (REPO / "docs" / name).is_file(), name
        assert name in linked, f"README.md does not link docs/{name}"


def test_the_quick_start_curl_names_its_output_by_the_format_it_asks_for() -> None:
    """A JPEG upload comes back as a JPEG unless ``format`` says otherwise (service/routes/colorize.py)."""
    [quick_start] = re.findall(r"^## Quick start\n(.*?)^## ", README.read_text(), re.M | re.S)
    curls = re.findall(r"^curl .*$", quick_start, re.M)
    assert curls, "the quick start shows no curl"
    for curl in curls:
        fmt = re.search(r"[?&]format=(\w+)", curl)
        out = re.search(r"-o \S+\.(\w+)", curl)
        assert fmt and out, curl
        assert {"jpg": "jpeg"}.get(out.group(1), out.group(1)) == fmt.group(1), curl
    assert "SCGAN_PORT=" in quick_start, "the quick start shows how to choose the port"
