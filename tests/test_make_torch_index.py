"""`make ... TORCH_INDEX=cpu` installs PyTorch's CPU-only wheels, at pyproject.toml's pins, before the package.

Checked with `make -n` (what make would run) against a venv path that does not exist, so nothing is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, tmp_path: Path, *variables: str) -> list[str]:
    venv = tmp_path / "no-venv"
    out = subprocess.run(
        ["make", "-n", "-C", str(REPO), target, f"VENV={venv}", *variables],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def torch_pins() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if d.split("==")[0] in ("torch", "torchvision")]


@pytest.mark.parametrize("target", ["serve", "test", "bench-load"])
def test_cpu_index_installs_the_pinned_torch_first(target: str, tmp_path: Path) -> None:
    installs = dry_run(target, tmp_path, "TORCH_INDEX=cpu")
    torch_line = [i for i, line in enumerate(installs) if f"--index-url {CPU_INDEX}" in line]
    package_line = [i for i, line in enumerate(installs) if " -e " in line]
    assert torch_line and package_line and torch_line[0] < package_line[0], installs
    pins = torch_pins()
    assert len(pins) == 2 and all(pin in installs[torch_line[0]].split() for pin in pins), installs


def test_any_index_url_is_taken_as_is(tmp_path: Path) -> None:
    installs = dry_run("serve", tmp_path, "TORCH_INDEX=https://mirror.example/simple")
    assert any("--index-url https://mirror.example/simple torch==" in line for line in installs), installs


def test_default_takes_torch_from_pypi(tmp_path: Path) -> None:
    installs = dry_run("serve", tmp_path)
    assert installs and not any("--index-url" in line for line in installs), installs
