"""Security properties: client-chosen names never reach the filesystem, no unsafe calls in the code, bounded requests.

- Uploads: the multipart file name is never used. Files are spooled (over 1 MiB)
  under the temp dir with random names and removed; an audit hook records every
  filesystem event during the requests and none of them names what the client chose.
- The source, scanned as ASTs: tests/service/test_service_source_scan.py.
- Limits: request heads over :data:`service.middleware.MAX_HEADER_BYTES` are refused,
  in-process (431) and by the real server as ``python -m service`` configures it
  (431, or 400 and a closed connection when the head arrives in pieces); an endless
  chunked body is cut off with 413.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from live_server import service_env, service_process
from PIL import Image
from service_test_helpers import RunningApp, decode, gray_image, image_bytes, run_app

from service import Settings
from service.decoding import decode_image
from service.middleware import MAX_HEADER_BYTES

REPO = Path(__file__).resolve().parents[2]

# -- an audit hook that records filesystem events ------------------------------------------------------

_FS_EVENTS = frozenset(
    {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.link", "os.symlink", "os.truncate", "os.chmod"}
)
_recording = threading.Event()
_events: list[tuple[str, str]] = []
_hook_installed = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _recording.is_set() and (event in _FS_EVENTS or event.startswith("shutil.")):
        _events.append((event, " ".join(os.fsdecode(a) if isinstance(a, (str, bytes)) else str(a) for a in args)))


@pytest.fixture()
def fs_events() -> Iterator[list[tuple[str, str]]]:
    """Filesystem events (any thread) while the test runs. Audit hooks cannot be removed: one, switched on and off."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    _events.clear()
    _recording.set()
    try:
        yield _events
    finally:
        _recording.clear()


# -- uploads never touch the filesystem under a client-chosen name -------------------------------------


@pytest.fixture(scope="module")
async def svc(tiny_checkpoint: Path) -> AsyncIterator[RunningApp]:
    settings = Settings(
        checkpoint=tiny_checkpoint,
        device="cpu",
        precision="fp32",
        max_batch_size=2,
        cpu_threads=2,
        torch_threads=1,
        max_upload_bytes=4 * 1024 * 1024,
    )
    async with run_app(settings) as running:
        yield running


def _big_png() -> bytes:
    """Over Starlette's 1 MiB spool threshold, so the upload goes through a temporary file."""
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1200), dtype=np.uint8)
    data = image_bytes(Image.fromarray(noise, "L"), "PNG", compress_level=0)
    assert 1024 * 1024 < len(data) < 4 * 1024 * 1024
    return data


def _hostile_names(token: str, target_dir: Path) -> list[str]:
    return [
        f"../../{token}.png",
        f"../../../../../../tmp/{token}",
        f"/tmp/{token}",
        str(target_dir / f"{token}.png"),
        f"..\\..\\{token}.png",
        f"{token}/../../{token}.png",
        f"%2e%2e%2f%2e%2e%2f{token}.png",
        f"{token}.png\r\nX-Injected: yes",
    ]


@pytest.mark.anyio
async def test_uploads_never_reach_the_filesystem_under_the_clients_name(
    svc: RunningApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fs_events: list[tuple[str, str]]
) -> None:
    spool = tmp_path / "spool"
    target = tmp_path / "target"
    spool.mkdir()
    target.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where Starlette spools large uploads
    token = f"scgan-evil-{uuid.uuid4().hex}"
    data = _big_png()
    for name in _hostile_names(token, target):
        response = await svc.client.post("/colorize", files={"file": (name, data, "image/png")})
        assert response.status_code == 200, (name, response.text)
        assert decode(response.content).size == (1200, 1000)
        assert token not in response.headers.get("content-disposition", "")
        assert "x-injected" not in response.headers
    _recording.clear()

    touched = [(event, args) for event, args in fs_events if token in args]
    assert touched == [], touched
    spooled = [args for event, args in fs_events if event == "open" and str(spool) in args]
    assert spooled, "the large upload was not spooled under the temp dir: the audit hook saw nothing"
    assert list(spool.iterdir()) == [], "spooled uploads were left behind"
    assert list(target.iterdir()) == []
    for directory in (Path(tempfile.gettempdir()), Path("/tmp"), Path.cwd(), Path.cwd().parent, REPO, REPO.parent):
        assert not list(directory.glob(f"*{token}*")), directory


def test_decode_image_never_opens_a_path(tmp_path: Path, fs_events: list[tuple[str, str]]) -> None:
    """The decoder takes bytes or a file object; a string (a path) is refused without being opened."""
    path = tmp_path / "real.png"
    path.write_bytes(image_bytes(gray_image(8, 8), "PNG"))
    fs_events.clear()
    with pytest.raises((TypeError, AttributeError)):
        decode_image(str(path), max_pixels=1_000_000)  # type: ignore[arg-type]
    assert not [args for event, args in fs_events if "real.png" in args]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name",
    [
        "../../../../etc/passwd",
        "..%2f..%2f..%2fpyproject.toml",
        "%2e%2e/%2e%2e/router.py",
        "/etc/passwd",
        "examples/../../router.py",
        "..\\..\\router.py",
        "index.html%00.png",
    ],
)
async def test_static_files_cannot_be_escaped(svc: RunningApp, name: str, fs_events: list[tuple[str, str]]) -> None:
    response = await svc.client.get(f"/web/{name}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    opened = [args for event, args in fs_events if event == "open" and ("passwd" in args or args.endswith(".py"))]
    assert opened == []


# -- request size limits -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_oversized_request_head_is_431_in_process(svc: RunningApp) -> None:
    response = await svc.client.get("/healthz", headers={"X-Padding": "a" * (MAX_HEADER_BYTES + 1)})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    many = {f"X-H{i}": "v" * 20 for i in range(MAX_HEADER_BYTES // 20)}
    assert (await svc.client.get("/healthz", headers=many)).status_code == 431
    normal = {"Cookie": "c" * 8000, "User-Agent": "u" * 500}  # big but ordinary
    assert (await svc.client.get("/healthz", headers=normal)).status_code == 200
    assert (await svc.client.get("/readyz")).status_code == 200


@pytest.fixture(scope="module")
def real_server(tiny_checkpoint: Path) -> Iterator[tuple[str, int]]:
    """``python -m service`` on a loopback port, exactly as deployed (its uvicorn configuration)."""
    env = service_env(
        SCGAN_TORCH_THREADS="1",
        SCGAN_CPU_THREADS="1",
        SCGAN_MAX_BATCH_SIZE="1",
        SCGAN_WARMUP="false",
        SCGAN_MAX_UPLOAD_BYTES=str(1024 * 1024),
    )
    with service_process(tiny_checkpoint, env) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        yield host, int(port)


def _exchange(address: tuple[str, int], request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it (or a reset: b'')."""
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received
        except (ConnectionResetError, BrokenPipeError):
            return b""  # the server dropped the connection while we were still sending


def _status(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * (100 * 1024) + b"\r\n",
        b"X-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)),
        b"X-Long-Target: yes\r\n",  # with a 1 MiB query string, below
    ],
    ids=["100KiB-header", "4MiB-header", "20000-headers", "1MiB-url"],
)
def test_the_real_server_refuses_enormous_request_heads(real_server: tuple[str, int], head: bytes) -> None:
    target = b"/healthz?" + b"q" * (1024 * 1024) if head.startswith(b"X-Long-Target") else b"/healthz"
    request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + head + b"Connection: close\r\n\r\n"
    response = _exchange(real_server, request)
    # 431 from the service (the head arrived whole), 400 from h11 (it arrived in pieces), or a dropped connection
    assert _status(response) in (431, 400, None), response[:200]
    ok = _exchange(real_server, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(ok) == 200, ok[:200]


def test_the_real_server_accepts_ordinary_heads(real_server: tuple[str, int]) -> None:
    head = b"Cookie: " + b"c" * 8000 + b"\r\nUser-Agent: " + b"u" * 500 + b"\r\n"
    response = _exchange(real_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"Connection: close\r\n\r\n")
    assert _status(response) == 200, response[:200]


def test_the_real_server_cuts_off_an_endless_chunked_body(real_server: tuple[str, int]) -> None:
    """No Content-Length, chunks forever: 413 once past max_upload_bytes (1 MiB here), long before 256 MiB."""
    chunk = b"\0" * 65536
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    sent = 0
    response = b""
    with socket.create_connection(real_server, timeout=10) as sock:
        sock.sendall(
            b"POST /colorize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.setblocking(False)
        deadline = time.monotonic() + 30
        while sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
            try:
                response += sock.recv(65536)
                if response:
                    break
            except BlockingIOError:
                pass
            try:
                sent += sock.send(framed)
            except BlockingIOError:
                time.sleep(0.001)
            except (ConnectionResetError, BrokenPipeError):
                break
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            while chunk_in := sock.recv(65536):
                response += chunk_in
        except (OSError, TimeoutError):
            pass
    assert _status(response) == 413, (sent, response[:300])
    assert b"upload_too_large" in response
    assert sent < 64 * 1024 * 1024, sent  # the limit plus what socket buffers hold, not the whole stream
    ok = _exchange(real_server, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(ok) == 200
