"""The compile cache: keys, entries checked on load (stale, foreign, corrupt), locks between processes.

These tests build with :class:`tiny_models.ExportCompiler` (the exported program stands in for the
AOTInductor package: a second, not a minute); ``tests/service/test_service_compiled_slow.py`` runs the
real compiler.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from pathlib import Path

import pytest
import torch
from tiny_models import ExportCompiler, make_generator

from model import Colorizer
from model.compile_cache import CacheEntry, InvalidEntry, cache_key, default_cache_dir, hardware_id, key_digest
from model.compiled import CompiledShape

CPU = torch.device("cpu")


def _key(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "weights_sha256": "ab" * 32,
        "network": "Generator:tiny",
        "device": CPU,
        "precision": "fp32",
        "shape": (1, 1, 256, 256),
        "saliency": False,
        "options": {"freezing": True},
    }
    values.update(changes)
    return cache_key(**values)  # type: ignore[arg-type]


def test_the_key_changes_with_everything_that_changes_the_result() -> None:
    base = key_digest(_key())
    variants = [
        _key(weights_sha256="cd" * 32),
        _key(network="Generator:other"),
        _key(precision="bf16"),
        _key(shape=(2, 1, 256, 256)),
        _key(saliency=True),
        _key(options={"freezing": False}),
    ]
    assert len({base, *(key_digest(k) for k in variants)}) == len(variants) + 1
    key = _key()
    assert key["torch"] == torch.__version__
    assert key["hardware"] == hardware_id(CPU) and torch.backends.cpu.get_cpu_capability() in key["hardware"]


def test_default_folder_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "scgan-colorize" / "compile"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "scgan-colorize" / "compile"


def _saved(tmp_path: Path, payload: bytes = b"package bytes") -> CacheEntry:
    entry = CacheEntry(tmp_path, _key())
    entry.save(lambda path: path.write_bytes(payload))
    return entry


def test_an_entry_for_another_key_is_refused(tmp_path: Path) -> None:
    entry = _saved(tmp_path)
    record = json.loads((entry.folder / "entry.json").read_text())
    record["key"]["torch"] = "2.0.0"  # a stale entry: built by another torch, left under this digest
    (entry.folder / "entry.json").write_text(json.dumps(record))
    with pytest.raises(InvalidEntry, match="another key \\(torch: 2.0.0 there"):
        entry.load(CPU)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda e: e.package.write_bytes(b"package bytez"), "is corrupt"),
        (lambda e: e.package.unlink(), "no readable package"),
        (lambda e: (e.folder / "entry.json").write_text("{not json"), "unreadable entry.json"),
        (lambda e: (e.folder / "entry.json").unlink(), "has no entry.json"),
    ],
)
def test_a_damaged_entry_is_refused(tmp_path: Path, damage: object, message: str) -> None:
    entry = _saved(tmp_path)
    damage(entry)  # type: ignore[operator]
    with pytest.raises(InvalidEntry, match=message):
        entry.load(CPU)


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    entry = CacheEntry(tmp_path, _key())

    def build(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        entry.save(build)
    assert not entry.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["locks"] or not any(tmp_path.iterdir())


def test_a_lock_held_elsewhere_is_not_taken(tmp_path: Path) -> None:
    """flock belongs to an open file: a second opening (another process, or here another handle) is refused."""
    with CacheEntry(tmp_path, _key()).locked(wait=True) as held:
        assert held is True
        with CacheEntry(tmp_path, _key()).locked(wait=False) as got:
            assert got is False
        with CacheEntry(tmp_path, _key(precision="bf16")).locked(wait=False) as other_entry:
            assert other_entry is True  # one lock per entry
    with CacheEntry(tmp_path, _key()).locked(wait=False) as got:
        assert got is True


def test_one_process_compiles_at_a_time(tmp_path: Path) -> None:
    """The compiler lock is cache-wide: a second compile (another entry) waits, and says so once, until the first ends."""
    events: list[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def first() -> None:
        with CacheEntry(tmp_path, _key()).compiling(lambda: events.append("first waited")):
            events.append("first compiles")
            first_in.set()
            release.wait(10)
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    waiting = threading.Thread(
        target=lambda: _enter_compiling(CacheEntry(tmp_path, _key(precision="bf16")), events), daemon=True
    )
    waiting.start()
    time.sleep(0.2)
    assert events == ["first compiles", "second waited"]  # told that it waits, and not in yet
    release.set()
    thread.join(10)
    waiting.join(10)
    assert events == ["first compiles", "second waited", "first done", "second compiles"]


def _enter_compiling(entry: CacheEntry, events: list[str]) -> None:
    with entry.compiling(lambda: events.append("second waited")):
        events.append("second compiles")


# -- through Colorizer.compile --------------------------------------------------------------------------------------


def _colorizer() -> Colorizer:
    return Colorizer(make_generator(seed=4), device="cpu", precision="fp32", batch_size=2)


def test_a_second_compile_loads_and_answers_the_same(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compiler = ExportCompiler().install(monkeypatch)
    x = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(1))
    cold = _colorizer()
    first = cold.compile([1, 2], cache_dir=tmp_path)
    assert first.compiled == [CompiledShape(1, 256, False), CompiledShape(2, 256, False)] and first.loaded == []
    assert compiler.builds == 2
    warm = _colorizer()
    second = warm.compile([1, 2], cache_dir=tmp_path)
    assert second.loaded == second.compiled == first.compiled and compiler.builds == 2
    for batch in (x[:1], x):
        assert torch.equal(warm.predict(batch)[0], cold.predict(batch)[0])


def test_other_weights_do_not_load_the_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compiler = ExportCompiler().install(monkeypatch)
    _colorizer().compile([1], cache_dir=tmp_path)
    other = Colorizer(make_generator(seed=5), device="cpu", precision="fp32", batch_size=2)
    assert other.compile([1], cache_dir=tmp_path).loaded == []
    assert compiler.builds == 2


def test_a_corrupt_entry_is_logged_in_one_line_and_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    compiler = ExportCompiler().install(monkeypatch)
    _colorizer().compile([1], cache_dir=tmp_path)
    (package,) = tmp_path.glob("*/forward.pt2")
    data = bytearray(package.read_bytes())
    data[len(data) // 2] ^= 0xFF
    package.write_bytes(bytes(data))
    caplog.set_level(logging.INFO, logger="model.compiled")
    again = _colorizer()
    report = again.compile([1], cache_dir=tmp_path)
    assert report.compiled == [CompiledShape(1, 256, False)] and report.loaded == []
    assert compiler.builds == 2
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "is corrupt" in warning.getMessage() and "rebuilding" in warning.getMessage()
    assert "\n" not in warning.getMessage()
    assert _colorizer().compile([1], cache_dir=tmp_path).loaded == [CompiledShape(1, 256, False)]  # whole again


def test_a_build_that_disagrees_with_eager_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A wrong graph (here: a package of another network) is caught before it serves, and not cached."""
    ExportCompiler().install(monkeypatch)
    wrong = Colorizer(make_generator(seed=9), device="cpu", precision="fp32", batch_size=2)
    wrong.compile([1], cache_dir=tmp_path / "other")
    (other_package,) = (tmp_path / "other").glob("*/forward.pt2")
    monkeypatch.setattr(
        "torch._inductor.aoti_compile_and_package",
        lambda _p, package_path, inductor_configs=None: Path(package_path).write_bytes(other_package.read_bytes()),
    )
    colorizer = _colorizer()
    report = colorizer.compile([1], cache_dir=tmp_path / "ours")
    assert report.compiled == [] and "differs from the eager forward" in report.failed[CompiledShape(1, 256, False)]
    assert not list((tmp_path / "ours").glob("*/forward.pt2"))


def _compile_in_child(root: str, log: str) -> None:
    ExportCompiler(Path(log), build_seconds=1.0).install()
    report = _colorizer().compile([1, 2], cache_dir=Path(root))
    assert len(report.compiled) == 2, report


@pytest.mark.slow  # two spawned processes importing torch: tens of seconds on 2 busy cores
def test_two_processes_never_build_the_same_shape_at_once(tmp_path: Path) -> None:
    """Started together, two processes share the work: each shape is built once, one at a time, and loaded by the other."""
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_compile_in_child, args=(str(tmp_path / "cache"), str(log))) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0, 0]
    events = [line.split() for line in log.read_text().splitlines()]
    starts = [e for e in events if e[0] == "start"]
    assert len(starts) == 2 and len({e[2] for e in starts}) == 2  # two shapes, each built once
    assert [e[0] for e in sorted(events, key=lambda e: float(e[3]))] == ["start", "end"] * 2  # never two at once
    assert len(list((tmp_path / "cache").glob("*/forward.pt2"))) == 2
