"""No unsafe calls in the code: the source of ``service/`` and ``model/``, scanned as ASTs.

No ``torch.load`` without ``weights_only=True``, no unpickling, no network fetches, no
eval/exec/subprocess, and filesystem access in ``service/`` only at reviewed call sites
whose arguments are not request data. The scanner is tested on bad code too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

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
