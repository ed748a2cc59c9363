"""The Kubernetes manifests: every kustomization renders and validates, and the rendered output is right."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    KUBERNETES_VERSION,
    KUSTOMIZATIONS,
    REPO,
    SERVING_OVERLAYS,
    documents,
    kustomize,
    one,
    pod_templates,
    run,
    tool,
)

from service.settings import Settings
from service.workers import plan_workers

GPU_OVERLAYS = ("k8s/overlays/gpu", "k8s/overlays/monitoring")
CPU_OVERLAYS = ("k8s/overlays/cpu", "k8s/overlays/ci")


def deployment(overlay: str) -> dict[str, Any]:
    return one(documents(overlay), "Deployment", "scgan-colorize")


def container(overlay: str) -> dict[str, Any]:
    [main] = deployment(overlay)["spec"]["template"]["spec"]["containers"]
    return main


def config(overlay: str) -> dict[str, str]:
    """The SCGAN_* settings the Deployment gets: the ConfigMap its envFrom names."""
    [source] = container(overlay)["envFrom"]
    return one(documents(overlay), "ConfigMap", source["configMapRef"]["name"])["data"]


def quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


# -- render + validate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_kustomization_validates_strictly(directory: str) -> None:
    rendered = kustomize(directory)
    done = run([tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", "-"], stdin=rendered)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout, done.stdout
    # Only the Prometheus Operator's kinds have no bundled schema (checked structurally below).
    for line in done.stdout.splitlines():
        if line.startswith("WARN"):
            assert re.search(
                r"kind (ServiceMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1", line
            ), line


def test_every_kustomization_is_covered() -> None:
    found = {str(p.parent.relative_to(REPO)) for p in (REPO / "k8s").rglob("kustomization.yaml")}
    assert found == set(KUSTOMIZATIONS), "add new kustomizations to KUSTOMIZATIONS in deploy_helpers.py"


# -- GPU / CPU -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", ("k8s/base", *GPU_OVERLAYS))
def test_gpu_overlays_ask_for_one_gpu_on_gpu_nodes(overlay: str) -> None:
    assert container(overlay)["resources"]["limits"]["nvidia.com/gpu"] == 1
    spec = deployment(overlay)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    settings = config(overlay)
    assert settings["SCGAN_DEVICE"] == "cuda" and settings["SCGAN_PRECISION"] == "fp16"


@pytest.mark.parametrize("overlay", CPU_OVERLAYS)
def test_cpu_overlays_have_no_gpu(overlay: str) -> None:
    assert "nvidia" not in yaml.safe_dump(deployment(overlay))
    settings = config(overlay)
    assert settings["SCGAN_DEVICE"] == "cpu" and settings["SCGAN_PRECISION"] == "auto"
    assert ":" in container(overlay)["image"] and container(overlay)["image"].split(":")[-1] != "latest"


@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_resources_and_threads(overlay: str) -> None:
    resources = container(overlay)["resources"]
    for key in ("cpu", "memory"):
        assert quantity(resources["requests"][key]) <= quantity(resources["limits"][key]), key
    settings = config(overlay)
    limit = quantity(resources["limits"]["cpu"])
    # The workers the pod starts: SCGAN_WORKERS as service/workers.py resolves it under this CPU limit (cgroup quota).
    torch_threads = int(settings["SCGAN_TORCH_THREADS"])
    plan = plan_workers(
        Settings(workers=settings.get("SCGAN_WORKERS", "auto")).workers,
        cuda=settings["SCGAN_DEVICE"].startswith("cuda"),
        cores=max(1, math.floor(limit)),
        torch_threads=torch_threads,
    )
    if plan.workers == 1:
        # The torch and image threads together stay within the CPU limit.
        threads = torch_threads + int(settings["SCGAN_CPU_THREADS"])
        assert threads <= limit, (threads, resources["limits"]["cpu"])
    else:
        # torch's (spinning) threads of all workers together stay within the CPU limit.
        assert plan.workers * torch_threads <= limit, (plan, resources["limits"]["cpu"])


@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_settings_are_real_and_valid(
    overlay: str, settings_env_names: dict[str, str], settings_from_env: Callable[[dict[str, str]], Any]
) -> None:
    settings = config(overlay)
    unknown = set(settings) - set(settings_env_names)
    assert not unknown, f"not service settings: {sorted(unknown)}"
    built = settings_from_env(settings)  # what the pod's Settings() will read, validated the same way
    assert built.host == "0.0.0.0"
    [port] = container(overlay)["ports"]
    assert port["containerPort"] == built.port and port["name"] == "http"


# -- probes, command, shutdown ------------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_probes_point_at_real_routes(overlay: str, route_table: set[tuple[str, str]]) -> None:
    main = container(overlay)
    expected = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in expected.items():
        get = main[probe]["httpGet"]
        assert get["path"] == path and ("GET", path) in route_table, (probe, get)
        assert get["port"] in {p["name"] for p in main["ports"]}
    # Model load + warm-up get minutes; a failed warm-up (never ready) ends in a restart.
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_command_is_the_one_the_tests_start(overlay: str) -> None:
    main = container(overlay)
    # args replace the image's CMD and keep its ENTRYPOINT (tini): `scgan-serve`, as `make serve` runs it.
    assert "command" not in main and main["args"] == ["scgan-serve"]
    assert 'CMD ["scgan-serve"]' in (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_grace_period_outlasts_the_drain(overlay: str, shutdown_default: float) -> None:
    spec = deployment(overlay)["spec"]["template"]["spec"]
    drain = float(config(overlay).get("SCGAN_SHUTDOWN_TIMEOUT_S", shutdown_default))
    assert drain == shutdown_default, "the ConfigMap keeps the service's default drain deadline"
    pre_stop = container(overlay)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pause = float(pre_stop[1])
    assert pause >= 5, "endpoints need a few seconds to drop the pod before it stops accepting"
    # preStop pause, then uvicorn's graceful window (ceil(drain)), then the lifespan drain (<= drain).
    assert spec["terminationGracePeriodSeconds"] > pause + 2 * drain


# -- security ---------------------------------------------------------------------------------------------------
def _dockerfile_uid() -> int:
    users = re.findall(r"^USER (\d+)", (REPO / "Dockerfile").read_text(), re.M)
    return int(users[-1])


@pytest.mark.parametrize("directory", [d for d in KUSTOMIZATIONS if d != "k8s/base"] + ["k8s/base"])
def test_pods_run_restricted(directory: str) -> None:
    """Pod Security Standard "restricted", plus a read-only root with a writable /tmp."""
    for name, spec in pod_templates(documents(directory)):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == _dockerfile_uid(), name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, name
            [tmp] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], name
        assert not any("hostPath" in v for v in spec["volumes"]), name


# -- Service, PDB, HPA --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", SERVING_OVERLAYS)
def test_selectors_match_the_pods(overlay: str) -> None:
    docs = documents(overlay)
    labels = deployment(overlay)["spec"]["template"]["metadata"]["labels"]
    selector = deployment(overlay)["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= labels.items()
    service = one(docs, "Service", "scgan-colorize")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("overlay", ("k8s/overlays/gpu", "k8s/overlays/cpu", "k8s/overlays/monitoring"))
def test_autoscaler(overlay: str, exported_samples: set[str]) -> None:
    docs = documents(overlay)
    hpa = one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "scgan-colorize")
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    custom = metrics["Pods"]["pods"]["metric"]["name"]
    assert custom == "scgan_queue_depth" and custom in exported_samples
    assert metrics["Resource"]["resource"]["name"] == "cpu", "CPU fallback while the custom metric is missing"
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    adapter = yaml.safe_load((REPO / "k8s" / "prometheus-adapter" / "values.yaml").read_text())
    [rule] = adapter["rules"]["custom"]
    assert rule["name"]["as"] == custom and custom in rule["seriesQuery"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_ci_overlay_is_one_small_replica() -> None:
    docs = documents("k8s/overlays/ci")
    assert deployment("k8s/overlays/ci")["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")]
    assert container("k8s/overlays/ci")["imagePullPolicy"] == "Never"


def test_service_monitor_scrapes_the_metrics_route(route_table: set[tuple[str, str]]) -> None:
    docs = documents("k8s/overlays/monitoring")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "scgan-colorize")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert ("GET", endpoint["path"]) in route_table and endpoint["path"] == "/metrics"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]


def test_prometheus_rule_is_the_compose_alerts() -> None:
    rule = one(documents("k8s/overlays/monitoring"), "PrometheusRule")
    alerts = yaml.safe_load((REPO / "docker" / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"] == alerts


# -- training ---------------------------------------------------------------------------------------------------------
def _job() -> tuple[dict[str, Any], dict[str, Any]]:
    job = one(documents("k8s/training"), "Job", "scgan-train")
    [train] = job["spec"]["template"]["spec"]["containers"]
    return job, train


def _env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_training_job_topology() -> None:
    docs = documents("k8s/training")
    job, train = _job()
    spec = job["spec"]
    env = _env(train)
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(env["NNODES"])
    assert train["resources"]["limits"]["nvidia.com/gpu"] == int(env["NPROC_PER_NODE"])
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # Rendezvous: pod 0 of the Indexed Job, through the headless Service named by the pods' subdomain.
    headless = one(docs, "Service", pod["subdomain"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert env["MASTER_ADDR"] == f"{job['metadata']['name']}-0.{pod['subdomain']}"
    assert headless["spec"]["ports"][0]["port"] == int(env["MASTER_PORT"])
    rank = env["NODE_RANK"]["fieldRef"]["fieldPath"]
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    # Data and runs on PVCs of this kustomization; shared memory for the data loader.
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    mounts = {m["mountPath"]: m for m in train["volumeMounts"]}
    assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"]["claimName"] in claims
    assert volumes[mounts["/workspace"]["name"]]["persistentVolumeClaim"]["claimName"] in claims
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert train["workingDir"] == "/workspace"


def _cli_args(args: list[str]) -> list[str]:
    """The arguments torchrun hands to `-m training.cli` (= scgan-train)."""
    assert args[0] == "torchrun" and "-m" in args
    module_at = args.index("-m")
    assert args[module_at + 1] == "training.cli"
    return args[module_at + 2 :]


def test_training_job_runs_scgan_train(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import tomllib

    from training.cli import main

    _, train = _job()
    args = train["args"]
    env = _env(train)
    launcher = " ".join(args[: args.index("-m")])
    for flag, var in (
        ("--nnodes", "NNODES"),
        ("--nproc_per_node", "NPROC_PER_NODE"),
        ("--node_rank", "NODE_RANK"),
        ("--master_addr", "MASTER_ADDR"),
        ("--master_port", "MASTER_PORT"),
    ):
        assert f"{flag}=$({var})" in launcher and var in env
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["scgan-train"] == "training.cli:main"
    cli = _cli_args(args)
    assert cli[0].startswith("/opt/scgan/configs/") and "--resume" in cli
    # The exact arguments, with the image's config path mapped to the repository: they parse and resolve.
    local = [str(REPO / "configs" / cli[0].removeprefix("/opt/scgan/configs/")), *cli[1:], "--print-config"]
    assert main(local) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["data"]["train_dir"] == "/data/train"
    assert resolved["run"]["out_dir"].startswith("/workspace/")


def test_pytorchjob_alternative_runs_the_same_training() -> None:
    path = REPO / "k8s" / "training" / "alternatives" / "pytorchjob.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "PyTorchJob" and doc["apiVersion"] == "kubeflow.org/v1"
    _, train = _job()
    for role in ("Master", "Worker"):
        [c] = doc["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        assert c["name"] == "pytorch"
        assert _cli_args(c["args"]) == _cli_args(train["args"]), role
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert "--nproc_per_node=1" in c["args"]
        assert c["image"].split(":")[-1] == _job()[1]["image"].split(":")[-1]


def test_deployment_docs_show_how_to_apply_every_kustomization() -> None:
    page = (REPO / "docs" / "deployment.md").read_text()
    for directory in KUSTOMIZATIONS:
        if directory != "k8s/base":
            assert f"kubectl apply -k {directory}" in page, directory
