"""The Dockerfile and what goes into the image: lint, base image, command, user, build context, pins."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from deploy_helpers import REPO, run, tool
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


INSTRUCTIONS = instructions(DOCKERFILE)


def final_stage() -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(INSTRUCTIONS) if word == "FROM"]
    return INSTRUCTIONS[starts[-1] :]


def exec_form(args: str) -> list[str]:
    import json

    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


def test_hadolint_finds_nothing() -> None:
    done = run([tool("hadolint"), "--failure-threshold", "error", "Dockerfile"])
    assert done.returncode == 0, done.stdout + done.stderr
    # Warnings do not fail the threshold above, but there are none to ignore either.
    assert done.stdout.strip() == "", done.stdout


def test_base_image_matches_the_cuda_of_the_pinned_torch() -> None:
    import torch

    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert default, "ARG BASE_IMAGE with a default"
    image = default.group(1)
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu24\.04", image)
    assert match, f"{image} is not an NVIDIA CUDA runtime image with cuDNN on Ubuntu 24.04"
    if torch.version.cuda is None:
        pytest.skip("this torch is a CPU build: the CUDA of the pinned wheels cannot be read here")
    assert f"{match.group(1)}.{match.group(2)}" == torch.version.cuda, (image, torch.version.cuda)
    # The same default wherever a base image is named.
    assert f"BASE_IMAGE:-{image}" in (REPO / "docker-compose.yml").read_text()
    assert f"BASE_IMAGE={image}" in (REPO / ".env.example").read_text()


def test_multi_stage_build_and_runtime_stage() -> None:
    froms = [args for word, args in INSTRUCTIONS if word == "FROM"]
    assert len(froms) >= 3 and froms[0].startswith("${BASE_IMAGE}"), froms
    stage = final_stage()
    words = [word for word, _ in stage]
    for needed in ("USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"):
        assert needed in words, f"runtime stage lacks {needed}"
    # Nothing runs as root after USER, and USER is a numeric non-root uid (so runAsNonRoot can check it).
    user = dict(stage)["USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY"))
    assert "COPY --from=builder /opt/venv /opt/venv" in DOCKERFILE


def test_the_command_is_the_one_make_serve_and_the_tests_run() -> None:
    stage = dict(final_stage())
    assert exec_form(stage["CMD"]) == ["scgan-serve"]
    assert exec_form(stage["ENTRYPOINT"]) == ["/usr/bin/tini", "--"]
    # scgan-serve is service.__main__:main, which the service tests start as `python -m service`.
    assert PYPROJECT["project"]["scripts"]["scgan-serve"] == "service.__main__:main"
    serve = re.search(r"^serve:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert serve and shlex.split(serve.group(1).strip())[-1].endswith("/scgan-serve"), "make serve runs scgan-serve"
    assert (REPO / "service" / "__main__.py").is_file()


def test_environment_defaults() -> None:
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    assert env["SCGAN_HOST"] == "0.0.0.0"
    assert env["SCGAN_DEVICE"] == "auto"
    # 'auto' is fp16 on CUDA and fp32 on CPU (service/settings.py), right for both image flavours.
    assert env["SCGAN_PRECISION"] == "auto"
    exposed = dict(final_stage())["EXPOSE"]
    assert exposed == env["SCGAN_PORT"] == "8000"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # Caches under /tmp: the root filesystem may be read-only (Kubernetes mounts an emptyDir there).
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/")


def test_jemalloc_is_installed_and_preloaded() -> None:
    """glibc's malloc let RSS grow 14-20% over a 2,000-request soak, jemalloc 4.5% (benchmarks/results)."""
    env = {
        key: value
        for word, args in final_stage()
        if word == "ENV"
        for key, _, value in (item.partition("=") for item in shlex.split(args))
    }
    runs = " ".join(args for word, args in final_stage() if word == "RUN")
    assert "libjemalloc2" in runs
    link = env["LD_PRELOAD"]
    assert link == "/usr/local/lib/libjemalloc.so.2" and "ln -s" in runs and link in runs


def test_healthcheck_probes_healthz(route_table: set[tuple[str, str]]) -> None:
    health = dict(final_stage())["HEALTHCHECK"]
    command = exec_form(health.split("CMD", 1)[1].strip())
    assert command == ["python", "/opt/scgan/healthcheck.py"]
    assert "COPY docker/healthcheck.py /opt/scgan/healthcheck.py" in DOCKERFILE
    source = (REPO / "docker" / "healthcheck.py").read_text()
    assert 'else "/healthz"' in source and ("GET", "/healthz") in route_table
    assert "--start-period=" in health


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_service() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_script(fake_service: int) -> None:
    script = str(REPO / "docker" / "healthcheck.py")

    def check(*args: str, port: int = fake_service, host: str = "0.0.0.0") -> int:
        env = {"SCGAN_HOST": host, "SCGAN_PORT": str(port), "PATH": "/usr/bin:/bin"}
        return subprocess.run([sys.executable, script, *args], env=env, capture_output=True, timeout=30).returncode

    assert check() == 0  # /healthz answers 200, reached on loopback although the bind address is 0.0.0.0
    assert check("/readyz") == 1  # a non-200 answer is unhealthy
    with HTTPServer(("127.0.0.1", 0), _Handler) as closed:
        unused = closed.server_address[1]
    assert check(port=unused) == 1  # nobody listening


# -- the build context -------------------------------------------------------------------------------
def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching .dockerignore line wins)."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _dockerignore_regex(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negated
    return result


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "cli/colorize.py",
        "model/generator.py",
        "model/weights/__init__.py",
        "model/weights/scgan-starter.pt",
        "service/app.py",
        "training/cli.py",
        "configs/published-stage1.toml",
        "docker/healthcheck.py",
        "docker/constraints.txt",
    ],
)
def test_build_context_keeps(path: str) -> None:
    assert not ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "runs/starter-stage1/ckpt/last.pt",
        "model/__pycache__/x.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".hypothesis/examples/x",
        "scgan_colorize.egg-info/PKG-INFO",
        "tests/model/data/x.png",
        ".env",
        "data/photos/a.jpg",
        "checkpoints/mine.pt",
        "model/other.pt",
        ".deploy/storage/x",
    ],
)
def test_build_context_drops(path: str) -> None:
    assert ignored(path)


def test_image_copies_what_it_runs() -> None:
    copied = " ".join(args for word, args in INSTRUCTIONS if word == "COPY")
    packages = [pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
    for needed in ("pyproject.toml", "README.md", "docker/constraints.txt", *packages, "configs"):
        assert needed in copied.split(), f"the image never copies {needed}"
    # The bundled checkpoint ships as package data, so `pip install .` puts it beside model/weights/__init__.py.
    assert "weights/*.pt" in PYPROJECT["tool"]["setuptools"]["package-data"]["model"]
    # ... with the card and the training photos' sources and licences that must travel with it.
    assert "weights/*.tsv" in PYPROJECT["tool"]["setuptools"]["package-data"]["model"]
    assert "MODEL_CARD.md" in copied and not ignored("MODEL_CARD.md")
    assert re.search(r"pip install --no-deps \.", DOCKERFILE), "the project is installed, not run from /src"


def test_constraints_pin_what_pyproject_asks_for() -> None:
    pins: dict[str, str] = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in docker/constraints.txt (run docker/lock_constraints.py)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {spec}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_configs_exist_where_the_image_puts_them() -> None:
    assert "COPY configs /opt/scgan/configs" in DOCKERFILE
    assert any(Path(REPO / "configs").glob("*.toml"))
