"""The container's command with the Kubernetes ConfigMap's settings, run for real on a loopback port.

What the pod would do, minus the container: `scgan-serve` with the SCGAN_* values of the
ci overlay (CPU, small batches), bound to 127.0.0.1 instead of 0.0.0.0. The probes'
paths must answer as the kubelet expects, /metrics must carry every series the HPA and the
dashboard read, and SIGTERM must drain well within the pod's grace period.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import httpx
import yaml
from deploy_helpers import REPO, documents, one
from live_server import free_port, process_exit, service_env, start_process, wait_ready

OVERLAY = "k8s/overlays/ci"


def test_pod_command_and_settings_serve_the_probes() -> None:
    docs = documents(OVERLAY)
    deployment = one(docs, "Deployment", "scgan-colorize")
    pod = deployment["spec"]["template"]["spec"]
    [main] = pod["containers"]
    settings = one(docs, "ConfigMap", main["envFrom"][0]["configMapRef"]["name"])["data"]
    port = free_port()
    env = service_env(**{**settings, "SCGAN_HOST": "127.0.0.1", "SCGAN_PORT": str(port), "SCGAN_LOG_FORMAT": "json"})
    command = [str(Path(sys.executable).parent / main["args"][0]), *main["args"][1:]]
    process = start_process(command, env)
    try:
        base = f"http://127.0.0.1:{port}"
        startup = main["startupProbe"]
        wait_ready(
            base + startup["httpGet"]["path"],
            exited=process_exit(process),
            timeout_s=startup["periodSeconds"] * startup["failureThreshold"],
            interval_s=0.2,
            what="the startup probe would have given up",
        )
        for probe in ("readinessProbe", "livenessProbe"):
            get = main[probe]["httpGet"]
            assert httpx.get(base + get["path"], timeout=main[probe]["timeoutSeconds"]).status_code == 200, probe
        model = httpx.get(f"{base}/v1/model", timeout=5).json()
        # The ConfigMap's values are the ones in force (the overlay's, merged over the base's CUDA defaults).
        assert model["device"] == settings["SCGAN_DEVICE"] == "cpu"
        assert model["batching"]["max_batch_size"] == int(settings["SCGAN_MAX_BATCH_SIZE"])
        assert model["compiled_batch_sizes"] == [] and settings["SCGAN_COMPILE"] == "off"
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        hpa_metric = yaml.safe_load((REPO / "k8s/base/hpa.yaml").read_text())["spec"]["metrics"][0]["pods"]["metric"]
        assert f"\n{hpa_metric['name']} " in metrics, "the series the HPA scales on is exported"
        assert "\nscgan_ready 1.0" in metrics
        # Shutdown as the kubelet does it (after preStop): SIGTERM, then the drain must end in time.
        pause = float(main["lifecycle"]["preStop"]["exec"]["command"][1])
        budget = pod["terminationGracePeriodSeconds"] - pause
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=budget)
        assert process.returncode in (0, -signal.SIGTERM), output
        assert time.monotonic() - started < budget
        assert '"shutdown complete"' in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
