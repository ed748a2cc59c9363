"""docker-compose.yml, its CPU override and .env.example: schema, `docker compose config`, and what matters."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from deploy_helpers import REPO, compose_config, run, tool

GPU = ("docker-compose.yml",)
CPU = ("docker-compose.yml", "docker-compose.cpu.yml")


def seconds(value: str | int | float) -> float:
    """Compose durations ("1m15s", "75s", 75) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(a + b for a, b in parts) == value, value
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_compose_file_matches_the_compose_spec() -> None:
    done = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("files", [GPU, CPU], ids=["gpu", "cpu-override"])
def test_docker_compose_config_is_valid(files: tuple[str, ...], tmp_path: Any) -> None:
    args = [tool("docker-compose"), "--project-directory", ".", "--env-file", ".env.example"]
    for name in files:
        args += ["-f", name]
    done = run([*args, "config", "-q"])
    assert done.returncode == 0, done.stderr
    # The merged file (the override uses !reset, which only Compose itself understands) is still spec-valid.
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps(compose_config(*files)))
    done = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(merged)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_plain_file_works_without_an_env_file() -> None:
    done = run(
        [
            tool("docker-compose"),
            "--project-directory",
            ".",
            "--env-file",
            "/dev/null",
            "-f",
            "docker-compose.yml",
            "--profile",
            "monitoring",
            "config",
            "-q",
        ]
    )
    assert done.returncode == 0, done.stderr


def test_gpu_reservation() -> None:
    service = compose_config(*GPU)["services"]["scgan"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_cpu_override_drops_the_gpu_and_builds_the_cpu_image() -> None:
    service = compose_config(*CPU)["services"]["scgan"]
    assert "nvidia" not in json.dumps(service)
    assert service["environment"]["SCGAN_DEVICE"] == "cpu"
    assert service["build"]["args"]["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert not service["build"]["args"]["BASE_IMAGE"].startswith("nvidia/")
    assert service["image"] != compose_config(*GPU)["services"]["scgan"]["image"]


@pytest.mark.parametrize("files", [GPU, CPU], ids=["gpu", "cpu-override"])
def test_service_essentials(files: tuple[str, ...], route_table: set[tuple[str, str]], shutdown_default: float) -> None:
    service = compose_config(*files)["services"]["scgan"]
    assert not service.get("command") and not service.get("entrypoint"), "the image's own command (scgan-serve)"
    [port] = service["ports"]
    assert port["target"] == 8000 and port["host_ip"] == "127.0.0.1", "published on loopback by default"
    assert service["environment"]["SCGAN_HOST"] == "0.0.0.0" and service["environment"]["SCGAN_PORT"] == "8000"
    assert service["restart"] == "unless-stopped"
    health = service["healthcheck"]["test"]
    assert health[:3] == ["CMD", "python", "/opt/scgan/healthcheck.py"] and ("GET", health[3]) in route_table
    assert seconds(service["healthcheck"]["start_period"]) >= 60
    # SIGTERM -> uvicorn's graceful window + the lifespan drain, each up to the drain deadline.
    assert seconds(service["stop_grace_period"]) > 2 * shutdown_default
    [volume] = [v for v in service["volumes"] if v["target"] == "/checkpoints"]
    assert volume["type"] == "bind" and volume["read_only"] is True
    assert service["read_only"] is True and any(t.startswith("/tmp") for t in service["tmpfs"])
    assert service["cap_drop"] == ["ALL"]


def test_monitoring_profile() -> None:
    plain = compose_config(*GPU)["services"]
    assert set(plain) == {"scgan"}, "Prometheus and Grafana only with --profile monitoring"
    services = compose_config(*GPU, profiles=("monitoring",))["services"]
    assert {"scgan", "prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image is pinned: {image}"
        for volume in services[name]["volumes"]:
            if volume["type"] == "bind":
                assert (REPO / volume["source"]).exists(), volume["source"]
                assert volume["source"].startswith(str(REPO / "docker")), volume["source"]
    assert any(v["target"] == "/etc/prometheus/prometheus.yml" for v in services["prometheus"]["volumes"])


# -- .env.example ---------------------------------------------------------------------------------------
def _env_lines() -> list[tuple[bool, str, str]]:
    """(active, key, value) of every KEY=value line of .env.example, commented-out ones included."""
    out = []
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            out.append((match.group(1) is None, match.group(2), match.group(3)))
    return out


def test_env_example_names_only_real_settings(settings_env_names: dict[str, str]) -> None:
    names = {key for _, key, _ in _env_lines() if key.startswith("SCGAN_")}
    unknown = names - set(settings_env_names)
    assert not unknown, f"not service settings: {sorted(unknown)}"
    # The main ones are documented (a setting added later works without being listed here).
    for key in (
        "SCGAN_CHECKPOINT",
        "SCGAN_DEVICE",
        "SCGAN_PRECISION",
        "SCGAN_MAX_BATCH_SIZE",
        "SCGAN_QUEUE_CAPACITY",
        "SCGAN_SHUTDOWN_TIMEOUT_S",
        "SCGAN_LOG_FORMAT",
    ):
        assert key in names, key


def test_env_example_values_are_valid(settings_from_env: Callable[[dict[str, str]], Any]) -> None:
    values = {key: value for active, key, value in _env_lines() if active and key.startswith("SCGAN_")}
    settings = settings_from_env(values)
    assert settings.device == "auto" and settings.precision == "auto"


def test_env_example_documents_every_compose_variable() -> None:
    documented = {key for _, key, _ in _env_lines()}
    used = set()
    for name in ("docker-compose.yml", "docker-compose.cpu.yml"):
        used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (REPO / name).read_text()))
    missing = (
        used
        - documented
        - {"CPU_BASE_IMAGE", "CPU_TORCH_INDEX_URL", "TORCH_INDEX_URL", "PROMETHEUS_IMAGE", "GRAFANA_IMAGE"}
    )
    assert not missing, f"compose variables not in .env.example: {sorted(missing)}"
