"""``scgan-colorize --server``: the same outputs as the local run, computed by a real service process.

The servers are ``tests/model/remote_test_server.py``: the real app under uvicorn, behind a wrapper
that can answer 503 first, hold uploads (to see them overlap) or kill the process mid-run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from live_server import ServerProcess, free_port
from PIL import Image

from cli import colorize as colorize_cli
from cli.remote import RetryPolicy, check_server_url, parse_retry_after, read_api_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
API_KEY = "remote-cli-test-key-4f1b"


class FaultyServer(ServerProcess):
    """remote_test_server.py on a loopback port; ``uploads()`` lists (status, in-flight) per upload."""

    def __init__(self, checkpoint: Path, workdir: Path, *args: str, keys_file: Path | None = None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.record = workdir / f"record-{port}.txt"
        self.record.touch()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
        env.update(
            SCGAN_CHECKPOINT=str(checkpoint),
            SCGAN_DEVICE="cpu",
            SCGAN_PRECISION="fp32",
            SCGAN_COMPILE="off",
            SCGAN_TORCH_THREADS="1",
            SCGAN_CPU_THREADS="1",
            SCGAN_MAX_BATCH_SIZE="2",
            PYTHONPATH=str(REPO),
        )
        if keys_file is not None:
            env["SCGAN_API_KEYS_FILE"] = str(keys_file)
        command = [sys.executable, str(HERE / "remote_test_server.py"), str(port), str(self.record), *args]
        super().__init__(command, port=port, env=env)
        self.wait_ready()

    def uploads(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in (line.split() for line in self.record.read_text().splitlines())]


def _picture(width: int, height: int, seed: int, mode: str = "L") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


def _folder(root: Path, count: int) -> Path:
    """``count`` photos in nested folders, with a name clash (x.png and x.jpg) and one broken file."""
    folder = root / "photos"
    for i in range(count):
        sub = folder / ("a/b" if i % 3 == 0 else "a" if i % 3 == 1 else "")
        sub.mkdir(parents=True, exist_ok=True)
        _picture(40 + i, 30 + i, i, "RGBA" if i == 1 else "L").save(sub / f"p{i:02d}.png")
    _picture(20, 20, 99).save(folder / "p00.jpg")  # clashes with nothing: p00.png is in a/b
    _picture(21, 21, 98).save(folder / "a" / "p01.jpg")  # clashes with a/p01.png
    return folder


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert(image.mode))


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"sha256:{hashlib.sha256(API_KEY.encode()).hexdigest()}\n")
    return path


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client") / "key"
    path.write_text(f"# the key for the test server\n{API_KEY}\n")
    return path


@pytest.fixture(scope="module")
def server(
    compact_checkpoint: Path, keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultyServer]:
    """A well-behaved server that needs an API key."""
    running = FaultyServer(compact_checkpoint, tmp_path_factory.mktemp("server"), keys_file=keys_file)
    try:
        yield running
    finally:
        running.stop()


def _run(*args: str | Path) -> int:
    return colorize_cli.main([str(a) for a in args])


# -- against a real server ----------------------------------------------------------------------------------------
def test_remote_writes_what_the_local_run_writes(
    server: FaultyServer, client_key: Path, compact_checkpoint: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 5)
    (folder / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    local, remote = tmp_path / "local", tmp_path / "remote"
    common = ("--saliency", "--format", "png")
    assert _run(folder, "-o", local, "--checkpoint", compact_checkpoint, "--precision", "fp32", *common) == 1
    code = _run(
        folder, "-o", remote, "--server", server.url, "--api-key-file", client_key, "--concurrency", "3", *common
    )
    assert code == 1  # the broken file, as locally
    local_files, remote_files = _files(local), _files(remote)
    assert sorted(remote_files) == sorted(local_files)
    assert "a/p01.png.png" in remote_files and "a/p01.jpg.png" in remote_files  # the clash, resolved alike
    assert "a/b/p00.saliency.png" in remote_files
    for name, path in local_files.items():
        assert np.array_equal(_pixels(remote_files[name]), _pixels(path)), name
        with Image.open(path) as a, Image.open(remote_files[name]) as b:
            assert a.mode == b.mode and a.size == b.size, name
    assert not list(remote.rglob(".*"))


def test_jpeg_output_is_the_local_runs_too(
    server: FaultyServer, client_key: Path, compact_checkpoint: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 2)
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert _run(folder, "-o", local, "--checkpoint", compact_checkpoint, "--precision", "fp32", "--format", "jpeg") == 0
    assert _run(folder, "-o", remote, "--server", server.url, "--api-key-file", client_key, "--format", "jpeg") == 0
    local_files, remote_files = _files(local), _files(remote)
    assert sorted(remote_files) == sorted(local_files)
    for name, path in local_files.items():
        assert path.read_bytes() == remote_files[name].read_bytes(), name


def test_a_missing_or_refused_key_stops_the_run(
    server: FaultyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each with its own message: no key points to --api-key-file, a wrong one says it was refused."""
    folder = _folder(tmp_path, 2)
    wrong = tmp_path / "wrong-key"
    wrong.write_text("not-the-key\n")
    for key_args, message in (((), "needs an API key: pass --api-key-file"), (("--api-key-file", wrong), "refused")):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert _run(folder, "-o", tmp_path / "out", "--server", server.url, *key_args) == 2
        assert message in caplog.text
        assert ("refused" in caplog.text) == bool(key_args)
        assert "not-the-key" not in caplog.text
    assert not (tmp_path / "out").exists()


def test_http_request_lines_only_with_verbose(
    server: FaultyServer, client_key: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path, 1)
    for verbose in (False, True):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            args = ("-o", tmp_path / f"out-{verbose}", "--server", server.url, "--api-key-file", client_key)
            assert _run(folder, *args, *(("--verbose",) if verbose else ())) == 0
        requests = [r for r in caplog.records if r.name == "httpx" and "HTTP Request" in r.getMessage()]
        assert bool(requests) == verbose, [r.getMessage() for r in caplog.records]
        assert "colorized 3 of 3 images" in caplog.text


def test_skip_existing_never_uploads_a_finished_file(server: FaultyServer, client_key: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path, 4)
    out = tmp_path / "out"
    args = (folder, "-o", out, "--server", server.url, "--api-key-file", client_key)
    assert _run(*args) == 0
    before = len(server.uploads())
    (out / "a" / "p01.png.png").unlink()
    stamps = {name: path.stat().st_mtime_ns for name, path in _files(out).items()}
    assert _run(*args, "--skip-existing") == 0
    assert len(server.uploads()) == before + 1  # only the missing one
    after = _files(out)
    assert "a/p01.png.png" in after
    assert all(after[name].stat().st_mtime_ns == stamp for name, stamp in stamps.items())


def test_unreachable_server_is_one_line_and_exit_2(
    client_key: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path, 1)
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens
    with caplog.at_level(logging.INFO):
        assert _run(folder, "-o", tmp_path / "out", "--server", url, "--retries", "1") == 2
    assert f"cannot use {url}" in caplog.text and "ConnectError" in caplog.text


@pytest.mark.slow
def test_busy_server_is_retried_after_retry_after(compact_checkpoint: Path, tmp_path: Path) -> None:
    busy = FaultyServer(compact_checkpoint, tmp_path, "--busy", "3", "--delay-ms", "300")
    try:
        folder = _folder(tmp_path, 6)
        started = time.monotonic()
        code = _run(folder, "-o", tmp_path / "out", "--server", busy.url, "--concurrency", "3", "--retries", "3")
        elapsed = time.monotonic() - started
        uploads = busy.uploads()
    finally:
        busy.stop()
    assert code == 0
    assert len(_files(tmp_path / "out")) == 8
    assert [status for status, _ in uploads].count(503) == 3
    assert [status for status, _ in uploads].count(200) == 8
    assert max(in_flight for _, in_flight in uploads) == 3  # --concurrency 3: three uploads overlapped, never four
    assert elapsed >= 1.0  # the Retry-After: 1 was waited for


@pytest.mark.slow
def test_a_server_that_dies_mid_run(compact_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _folder(tmp_path, 7)  # 9 files
    out = tmp_path / "out"
    dying = FaultyServer(compact_checkpoint, tmp_path, "--die-at", "5")
    try:
        with caplog.at_level(logging.INFO):
            code = _run(folder, "-o", out, "--server", dying.url, "--concurrency", "1", "--retries", "2")
        assert dying.process.wait(timeout=10) == -9
    finally:
        dying.stop()
    assert code == 1
    written = _files(out)
    assert len(written) == 4  # the four answered before the crash, complete and readable
    for path in written.values():
        with Image.open(path) as image:
            image.load()
    assert not list(out.rglob(".*"))
    failed = {line.split("failed: ", 1)[1].split(": ", 1)[0] for line in caplog.text.splitlines() if "failed: " in line}
    sources = {p.relative_to(folder).as_posix() for p in _files(folder).values()}
    assert len(failed) == 5 and {Path(f).relative_to(folder).as_posix() for f in failed} <= sources
    assert "colorized 4 of 9 images" in caplog.text

    # The same command with --skip-existing against a healthy server finishes the job and touches nothing written.
    stamps = {name: path.stat().st_mtime_ns for name, path in written.items()}
    healthy = FaultyServer(compact_checkpoint, tmp_path)
    try:
        assert _run(folder, "-o", out, "--server", healthy.url, "--skip-existing") == 0
        assert len(healthy.uploads()) == 5
    finally:
        healthy.stop()
    assert len(_files(out)) == 9
    assert all(_files(out)[name].stat().st_mtime_ns == stamp for name, stamp in stamps.items())


# -- the pieces -----------------------------------------------------------------------------------------------------
def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=8, base_s=0.5, cap_s=4.0)
    rng = random.Random(0)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)):
        delays = [policy.delay_s(attempt, None, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2 and max(delays) <= ceiling, attempt
        assert len(set(delays)) > 100  # jittered, not one fixed value
    assert policy.delay_s(1, 3.0, rng) == 3.0  # Retry-After wins over a shorter backoff
    assert policy.delay_s(1, 3600.0, rng) == 4.0  # ... up to the cap
    assert parse_retry_after("2") == 2.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None


def test_key_file_and_url_checks(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("\n# comment\n  my-key  \nsecond\n")
    assert read_api_key(path) == "my-key"
    path.write_text("sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match="SHA-256"):
        read_api_key(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        read_api_key(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_api_key(tmp_path / "absent")
    assert check_server_url("http://svc:8000/") == "http://svc:8000"
    for bad in ("svc:8000", "ftp://svc", "http://", "http://svc/?x=1"):
        with pytest.raises(ValueError, match="--server"):
            check_server_url(bad)


@pytest.mark.parametrize(
    "args",
    [
        ("--server", "http://127.0.0.1:9", "--checkpoint", "x.pt"),
        ("--api-key-file", "key"),
        ("--server", "http://127.0.0.1:9", "--concurrency", "0"),
    ],
)
def test_contradictory_options_are_refused(args: tuple[str, ...], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        _run(tmp_path, "-o", tmp_path / "out", *args)
    assert info.value.code == 2


def test_the_local_path_never_imports_httpx(compact_checkpoint: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path, 1)
    code = (
        "import sys\n"
        "from cli.colorize import main\n"
        f"status = main([{str(folder)!r}, '-o', {str(tmp_path / 'out')!r}, '--checkpoint', {str(compact_checkpoint)!r},"
        " '--device', 'cpu'])\n"
        "print(status, 'httpx' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.stdout.split() == ["0", "False"], result.stderr


def test_server_mode_imports_neither_torch_nor_the_networks(tmp_path: Path) -> None:
    """A --server run (here against a closed port) loads PIL and httpx, never torch or the model's networks.

    Colour hints (--hints) are parsed on the way, without torch too.
    """
    folder = _folder(tmp_path, 1)
    hints = tmp_path / "hints.json"
    hints.write_text('[{"x": 1, "y": 2, "color": "#0000ff"}]')
    code = (
        "import sys\n"
        "from cli.colorize import main\n"
        f"status = main([{str(folder)!r}, '-o', {str(tmp_path / 'out')!r}, '--server', 'http://127.0.0.1:9',"
        f" '--retries', '0', '--hints', {str(hints)!r}])\n"
        "loaded = [m for m in ('torch', 'model.pipeline', 'model.generator', 'httpx') if m in sys.modules]\n"
        "print(status, *loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.stdout.split() == ["2", "httpx"], result.stdout + result.stderr
