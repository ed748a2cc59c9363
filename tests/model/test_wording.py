"""Counts in messages (model/wording.py)."""

from __future__ import annotations

from model.wording import count


def test_count_agrees_in_number() -> None:
    assert [count(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert count(1, "retry", "retries") == "1 retry" and count(3, "retry", "retries") == "3 retries"
