"""Atomic writes and weight digests (model/storage.py), shared by checkpoints, training states and caches."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from model.storage import atomic_torch_save, atomic_write, file_sha256, weights_sha256


def test_atomic_write_replaces_the_file_with_plain_file_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    old_umask = os.umask(0o022)
    try:
        with atomic_write(target) as tmp:
            assert tmp.parent == target.parent and not target.exists()
            tmp.write_bytes(b"new")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_torch_save_round_trips_and_digests_name_the_content(tmp_path: Path) -> None:
    path = atomic_torch_save({"w": torch.arange(4.0)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(4.0))
    assert file_sha256(path) == file_sha256(path) and len(file_sha256(path)) == 64

    a, b = torch.ones(2), torch.zeros(3)
    assert weights_sha256([("a", a), ("b", b)]) == weights_sha256([("b", b), ("a", a)])  # name order, not input order
    assert weights_sha256([("a", a), ("b", b)]) != weights_sha256([("a", b), ("b", a)])
    assert weights_sha256([("a", a)]) != weights_sha256([("a", a + 1)])
