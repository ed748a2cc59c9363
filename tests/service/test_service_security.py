"""Security properties: client-chosen names never reach the filesystem, no unsafe calls in the code, bounded requests.

- Uploads: the multipart file name is never used. Files are spooled (over 1 MiB)
  under the temp dir with random names and removed; an audit hook records every
  filesystem event during the requests and none of them names what the client chose.
- The source of ``service/`` and ``model/``, scanned as ASTs: no ``torch.load``
  without ``weights_only=True``, no unpickling, no network fetches, no
  eval/exec/subprocess, and filesystem access in ``service/`` only at reviewed call
  sites whose arguments are not request data. The scanner is tested on bad code too.
- Limits: request heads over :data:`service.middleware.MAX_HEADER_BYTES` are refused,
  in-process (431) and by the real server as ``python -m service`` configures it
  (431, or 400 and a closed connection when the head arrives in pieces); an endless
  chunked body is cut off with 413.
"""

from __future__ import annotations

import ast
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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


# -- static scan of the source -----------------------------------------------------------------------------

#: Dotted call names that load pickles or fetch from the network, or run code / processes.
_FORBIDDEN_CALLS = {
    "pickle.load": "unpickling runs arbitrary code",
    "pickle.loads": "unpickling runs arbitrary code",
    "pickle.Unpickler": "unpickling runs arbitrary code",
    "marshal.load": "unmarshalling untrusted data",
    "marshal.loads": "unmarshalling untrusted data",
    "shelve.open": "shelve is pickle",
    "yaml.unsafe_load": "unsafe YAML",
    "torch.hub.load": "network fetch",
    "torch.hub.load_state_dict_from_url": "network fetch",
    "torch.hub.download_url_to_file": "network fetch",
    "load_state_dict_from_url": "network fetch",
    "download_url_to_file": "network fetch",
    "urlopen": "network fetch",
    "urllib.request.urlopen": "network fetch",
    "urllib.request.urlretrieve": "network fetch",
    "eval": "runs code",
    "exec": "runs code",
    "os.system": "runs a process",
    "os.popen": "runs a process",
    "subprocess.run": "runs a process",
    "subprocess.Popen": "runs a process",
    "subprocess.call": "runs a process",
    "subprocess.check_call": "runs a process",
    "subprocess.check_output": "runs a process",
    "requests.get": "network fetch",
    "requests.post": "network fetch",
    "requests.request": "network fetch",
    "httpx.get": "network fetch",
    "httpx.post": "network fetch",
}
#: Forbidden however they are reached (``torch.hub.x``, ``hub.x``, ``x`` imported by name).
_FORBIDDEN_UNDER_ANY_NAME = {"load_state_dict_from_url", "download_url_to_file", "urlopen"}
#: Modules whose import means network access (or pickling beyond the standard pickle module).
_FORBIDDEN_IMPORTS = {
    "urllib.request",
    "urllib3",
    "requests",
    "httpx",
    "http.client",
    "aiohttp",
    "ftplib",
    "socket",
    "dill",
    "cloudpickle",
    "joblib",
}
#: Calls that touch the filesystem by path (or serve a file).
_FS_ATTRS = {
    "open",
    "read_bytes",
    "read_text",
    "write_bytes",
    "write_text",
    "unlink",
    "rename",
    "mkdir",
    "rmdir",
    "touch",
    "symlink_to",
    "hardlink_to",
}
_FS_CALLS = {"open", "FileResponse", "StaticFiles", "os.open", "os.remove", "os.unlink", "os.rename", "io.open"}
#: Arguments that name what a filesystem call opens (besides the first positional one).
_PATH_KEYWORDS = {"path", "file", "fp", "filename", "name"}
#: Names that carry request data in the service's code.
_REQUEST_NAMES = {"request", "upload", "form", "part", "filename", "headers", "scope", "query", "fields", "name"}

#: Reviewed filesystem call sites of service/: (file, enclosing function, call) -> why it is safe.
_REVIEWED_FS_CALLS = {
    ("service/decoding.py", "decode_image", "Image.open"): "opens the upload's bytes (BytesIO or spooled file object)",
    ("service/web/router.py", "_file", "FileResponse"): "a path from the _FILES table listed at import, never joined",
    ("service/auth.py", "from_file", "path.read_text"): "the operator's SCGAN_API_KEYS_FILE, read at start-up only",
    ("service/redoc_bundle.py", "redoc_bundle", "files().joinpath().read_text"): (
        "the ReDoc bundle inside the installed fastapi-offline package, a fixed name, read once"
    ),
    ("service/workers.py", "usable_cores", "cpu_max.read_text"): "the cgroup's CPU quota (cpu.max), at start-up only",
}
#: Reviewed network imports: (file, enclosing function, module) -> why. The remote CLI's HTTP client is imported
#: inside one function, so the model package and the local CLI never load it.
_REVIEWED_IMPORTS = {
    ("cli/remote.py", "_import_httpx", "httpx"): "scgan-colorize --server: uploads to the URL the user gave",
    ("service/workers.py", "<module>", "socket"): "binds the service's own port (SCGAN_HOST/PORT) for its workers",
    ("service/server.py", "<module>", "socket"): "the type of those listening sockets (service/workers.py)",
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    function: str
    call: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}(): {self.call}: {self.problem}"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return ""


def _names_in(node: ast.AST) -> set[str]:
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def scan(source: str, file: str, *, service: bool) -> list[Finding]:
    """Findings in one module's source; ``service`` adds the filesystem rules of the request-facing package."""
    tree = ast.parse(source, filename=file)
    findings: list[Finding] = []
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent

    def function_of(node: ast.AST) -> str:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node.name
        return "<module>"

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if (file, function_of(node), module) in _REVIEWED_IMPORTS:
                    continue
                if any(module == bad or module.startswith(bad + ".") for bad in _FORBIDDEN_IMPORTS):
                    findings.append(Finding(file, node.lineno, function_of(node), module, "network/pickle import"))
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "marshal"):
                for alias in node.names:
                    if alias.name in ("load", "loads", "Unpickler"):
                        findings.append(Finding(file, node.lineno, function_of(node), alias.name, "unpickling"))
        if not isinstance(node, ast.Call):
            continue
        call = _dotted(node.func)
        where = (file, node.lineno, function_of(node), call)
        last = call.rsplit(".", 1)[-1]
        reason = _FORBIDDEN_CALLS.get(call) or (_FORBIDDEN_CALLS[last] if last in _FORBIDDEN_UNDER_ANY_NAME else None)
        if reason:
            findings.append(Finding(*where, reason))
        if call == "torch.load" or call.endswith(".torch.load"):
            weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                findings.append(Finding(*where, "torch.load without weights_only=True unpickles arbitrary objects"))
        if call == "yaml.load":
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
            if loader is None or "Safe" not in _dotted(loader):
                findings.append(Finding(*where, "yaml.load without a SafeLoader"))
        if not service:
            continue
        is_fs = call in _FS_CALLS or (isinstance(node.func, ast.Attribute) and node.func.attr in _FS_ATTRS)
        if is_fs:
            key = (file, function_of(node), call)
            if key not in _REVIEWED_FS_CALLS:
                findings.append(Finding(*where, "filesystem access at an unreviewed call site"))
            targets = node.args[:1] + [k.value for k in node.keywords if k.arg in _PATH_KEYWORDS]
            tainted = set().union(*(_names_in(arg) for arg in targets)) & _REQUEST_NAMES
            if tainted:
                findings.append(Finding(*where, f"filesystem access with request data: {sorted(tainted)}"))
    if service:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "filename":
                findings.append(
                    Finding(file, node.lineno, function_of(node), _dotted(node), "the client's file name is read")
                )
    return findings


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["service", "model"])
def test_source_has_no_unsafe_calls(package: str) -> None:
    files = _sources(package)
    assert len(files) >= 5
    findings = [
        finding
        for path in files
        for finding in scan(path.read_text(), path.relative_to(REPO).as_posix(), service=package == "service")
    ]
    assert findings == [], "\n".join(map(str, findings))


def test_the_reviewed_imports_still_exist() -> None:
    """Like the call sites below: an allowlisted import that moved must be reviewed again."""
    for file, function, module in _REVIEWED_IMPORTS:
        tree = ast.parse((REPO / file).read_text())
        scopes = (
            [tree]  # "<module>": the module's own top-level imports
            if function == "<module>"
            else [fn for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))]
        )
        imported = {
            alias.name
            for fn in scopes
            if isinstance(fn, ast.Module) or fn.name == function
            for node in (fn.body if isinstance(fn, ast.Module) else ast.walk(fn))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert module in imported, (file, function, module)


def test_the_reviewed_call_sites_still_exist() -> None:
    """An allowlist entry whose call site is gone (renamed, moved) must be removed, not silently kept."""
    for file, function, call in _REVIEWED_FS_CALLS:
        tree = ast.parse((REPO / file).read_text())
        calls = {
            _dotted(node.func)
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == function
            for node in ast.walk(fn)
            if isinstance(node, ast.Call)
        }
        assert call in calls, (file, function, call)


_BAD_SOURCE = """
import pickle
import requests
from urllib.request import urlopen
import torch

def load(path, request):
    state = torch.load(path)
    other = torch.load(path, weights_only=False)
    ok = torch.load(path, map_location="cpu", weights_only=True)
    data = pickle.loads(request.body)
    page = requests.get("http://example.com/weights.pt")
    eval(request.query_params["x"])
    with open(request.query_params["path"], "rb") as fh:
        fh.read()
    upload.file.filename
    return torch.hub.load_state_dict_from_url("http://example.com/w.pt")
"""


def test_the_scanner_finds_what_it_looks_for() -> None:
    findings = scan(_BAD_SOURCE, "service/bad.py", service=True)
    problems = "\n".join(map(str, findings))
    lines = {f.line for f in findings}
    assert {3, 4} <= lines and 2 not in lines, problems  # importing pickle (for its exceptions) is fine
    assert 8 in lines and 9 in lines and 10 not in lines, problems  # torch.load: only weights_only=True passes
    for line in (11, 12, 13, 14, 16, 17):
        assert line in lines, (line, problems)
    assert any("request data" in f.problem for f in findings if f.line == 14), problems
    assert any("file name" in f.problem for f in findings if f.line == 16), problems


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
