"""API keys in the deployments: the pods read them from a Secret, compose from a file on the host."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import REPO, SERVING_OVERLAYS, compose_config, documents, one

CI_KEY = "scgan-ci-key"  # the key whose SHA-256 k8s/overlays/ci/api-keys.ci holds


def _pod(overlay: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(documents(overlay), "Deployment", "scgan-colorize")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_pods_read_the_api_keys_from_a_secret(overlay: str) -> None:
    pod = _pod(overlay)
    [main] = pod["containers"]
    env = {item["name"]: item for item in main.get("env", [])}
    path = Path(env["SCGAN_API_KEYS_FILE"]["value"])
    [mount] = [m for m in main["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert volume["secret"]["secretName"].startswith("scgan-api-keys")
    assert volume["secret"]["defaultMode"] == 0o440  # group-readable: the pod's fsGroup is the service's group
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert path.name == "api-keys"  # the Secret's key (kubectl create secret generic ... --from-file=api-keys=...)


def test_the_ci_overlay_generates_a_hash_only_secret_the_service_loads(tmp_path: Path) -> None:
    from service.auth import ApiKeys

    docs = documents("k8s/overlays/ci")
    name = _pod("k8s/overlays/ci")["volumes"]
    [secret_name] = [v["secret"]["secretName"] for v in name if "secret" in v]
    secret = one(docs, "Secret", secret_name)
    text = base64.b64decode(secret["data"]["api-keys"]).decode()
    keys = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert keys and all(re.fullmatch(r"sha256:[0-9a-f]{64}", line) for line in keys), "digests only, no keys"
    (tmp_path / "api-keys").write_text(text)
    loaded = ApiKeys.from_file(tmp_path / "api-keys")
    assert loaded.verify(CI_KEY) and not loaded.verify(CI_KEY + "x")


def test_compose_mounts_the_keys_file_as_a_secret() -> None:
    config = compose_config("docker-compose.yml")
    [mounted] = config["services"]["scgan"]["secrets"]
    assert mounted["source"] == "api_keys"
    target = mounted.get("target") or f"/run/secrets/{mounted['source']}"
    source = Path(config["secrets"]["api_keys"]["file"])
    assert source == REPO / "docker" / "no-api-keys"  # the default: a file without keys, never read unless asked
    assert not [line for line in source.read_text().splitlines() if line.strip() and not line.startswith("#")]
    # .env.example shows the setting that turns the keys on, pointing at the secret.
    example = (REPO / ".env.example").read_text()
    assert re.search(rf"^# SCGAN_API_KEYS_FILE={re.escape(target)}$", example, re.MULTILINE)
    assert re.search(r"^# API_KEYS_FILE=", example, re.MULTILINE)
