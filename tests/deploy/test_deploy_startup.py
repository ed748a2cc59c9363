"""Start-up in the deployment files: probe windows sized from the measured time to ready, a kept compile cache,
compose's readiness healthcheck, and the monitoring profile's own address and required Grafana password.

The measurement is ``benchmarks/results/time_to_ready.json`` (``python benchmarks/time_to_ready.py``): a
start-up window must cover the slowest cold start measured there (every shape compiled) MARGIN times.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import REPO, SERVING_OVERLAYS, compose_config, documents, one, run, tool

GPU = ("docker-compose.yml",)
CPU = ("docker-compose.yml", "docker-compose.cpu.yml")
#: A start-up window covers this many times the slowest measured cold start: a busier or slower host still fits.
MARGIN = 2.0


def slowest_cold_start_s() -> float:
    rows = json.loads((REPO / "benchmarks" / "results" / "time_to_ready.json").read_text())["rows"]
    cold = [float(r["ready_s"]) for r in rows if r["start"] == "cold"]
    assert cold, "time_to_ready.json holds no cold start"
    return max(cold)


def _seconds(value: str | int | float) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", value)
    assert parts and "".join(a + b for a, b in parts) == value, value
    return sum(float(amount) * units[unit] for amount, unit in parts)


def _image_env() -> dict[str, str]:
    """The final stage's ENV of the Dockerfile (one ENV instruction with continuation lines)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_the_image_keeps_compiled_forwards_in_a_volume() -> None:
    folder = Path(_image_env()["SCGAN_COMPILE_CACHE_DIR"])
    text = (REPO / "Dockerfile").read_text()
    volumes = [json.loads(m) for m in re.findall(r"^VOLUME (\[.*\])$", text, re.M)]
    assert any(folder.is_relative_to(v) for vs in volumes for v in vs), (folder, volumes)
    assert re.search(rf"install -d -o scgan -g scgan [^\n]*{re.escape(str(folder.parent))}", text), (
        "the volume's folder belongs to the service's user (a new named volume copies its owner)"
    )
    start_period = re.search(r"HEALTHCHECK [^\n]*--start-period=(\d+)s", text)
    assert start_period and int(start_period.group(1)) >= MARGIN * slowest_cold_start_s()


@pytest.mark.parametrize("files", [GPU, CPU], ids=["gpu", "cpu-override"])
def test_compose_waits_for_readiness_long_enough_and_keeps_the_cache(files: tuple[str, ...]) -> None:
    service = compose_config(*files)["services"]["scgan"]
    health = service["healthcheck"]
    assert health["test"][-1] == "/readyz", "healthy means ready to serve, not only alive"
    assert _seconds(health["start_period"]) >= MARGIN * slowest_cold_start_s()
    cache = Path(_image_env()["SCGAN_COMPILE_CACHE_DIR"])
    mounts = [v for v in service["volumes"] if v["type"] == "volume" and cache.is_relative_to(v["target"])]
    assert mounts, "a named volume keeps the compiled forwards across restarts and re-creations"


@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_startup_probe_covers_a_cold_start_and_restarts_keep_progress(overlay: str) -> None:
    """A probe that gives up restarts the container, not the pod: the emptyDir cache keeps what was compiled.

    So even a start-up slower than the probe cannot loop for ever (each try compiles at least one more
    shape, as long as one shape fits in the window), and a measured cold start fits MARGIN times over.
    """
    docs = documents(overlay)
    deployment = one(docs, "Deployment", "scgan-colorize")
    pod = deployment["spec"]["template"]["spec"]
    [main] = pod["containers"]
    startup = main["startupProbe"]
    window = startup["periodSeconds"] * startup["failureThreshold"]
    assert window >= MARGIN * slowest_cold_start_s(), (overlay, window)
    settings = one(docs, "ConfigMap", main["envFrom"][0]["configMapRef"]["name"])["data"]
    cache = Path(settings.get("SCGAN_COMPILE_CACHE_DIR", _image_env()["SCGAN_COMPILE_CACHE_DIR"]))
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = [m for m in main["volumeMounts"] if cache.is_relative_to(m["mountPath"])]
    kept = volumes[mount["name"]]
    assert "emptyDir" in kept or "persistentVolumeClaim" in kept, kept
    assert not mount.get("readOnly")


# -- the monitoring profile -----------------------------------------------------------------------------------------
def _with_env(tmp_path: Path, **values: str) -> dict[str, Any]:
    env = tmp_path / "env"
    env.write_text((REPO / ".env.example").read_text() + "".join(f"\n{k}={v}" for k, v in values.items()) + "\n")
    args = [tool("docker-compose"), "--project-directory", ".", "--env-file", str(env), "-f", "docker-compose.yml"]
    done = run([*args, "--profile", "monitoring", "config", "--format", "json"])
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def test_monitoring_has_its_own_bind_address(tmp_path: Path) -> None:
    services = _with_env(tmp_path, BIND_ADDRESS="0.0.0.0")["services"]
    assert [p["host_ip"] for p in services["scgan"]["ports"]] == ["0.0.0.0"]
    for name in ("prometheus", "grafana"):
        assert [p["host_ip"] for p in services[name]["ports"]] == ["127.0.0.1"], "exposing the API exposes no more"
    services = _with_env(tmp_path, MONITORING_BIND_ADDRESS="10.0.0.5")["services"]
    assert [p["host_ip"] for p in services["grafana"]["ports"]] == ["10.0.0.5"]
    assert [p["host_ip"] for p in services["scgan"]["ports"]] == ["127.0.0.1"]


@pytest.mark.parametrize(("password", "starts"), [("", False), ("admin", False), ("a-real-one", True)])
def test_grafana_refuses_to_start_without_a_password(tmp_path: Path, password: str, starts: bool) -> None:
    """Grafana's entrypoint as compose hands it over, run by sh with the password the .env gives."""
    grafana = _with_env(tmp_path, GRAFANA_ADMIN_PASSWORD=password)["services"]["grafana"]
    shell, flag, script, name = grafana["entrypoint"]
    script = script.replace("$$", "$")  # compose's escape for a literal $
    env = {"PATH": "/usr/bin:/bin", **grafana["environment"]}
    done = subprocess.run([shell, flag, script, name], env=env, capture_output=True, text=True, timeout=30)
    if starts:  # it got past the check to Grafana's own /run.sh, which this machine lacks
        assert done.returncode == 127 and "/run.sh" in done.stderr, done.stderr
    else:
        assert done.returncode == 64 and "set GRAFANA_ADMIN_PASSWORD" in done.stderr, done.stderr


def test_the_measurement_covers_both_worker_counts() -> None:
    """The figures the windows are sized from: both worker counts, cold and warm, warm answers equal to cold."""
    rows = json.loads((REPO / "benchmarks" / "results" / "time_to_ready.json").read_text())["rows"]
    seen = {(r["workers"], r["start"]) for r in rows}
    assert {(1, "cold"), (1, "warm"), (2, "cold"), (2, "warm")} <= seen
    by = {(r["workers"], r["start"]): r for r in rows}
    for workers in (1, 2):
        assert by[(workers, "warm")]["answers_sha256"] == by[(workers, "cold")]["answers_sha256"]
    assert math.isfinite(slowest_cold_start_s())
