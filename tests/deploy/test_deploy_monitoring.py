"""Prometheus and Grafana files: they use the metric names the service really exports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from deploy_helpers import REPO, compose_config

DASHBOARD = REPO / "docker" / "grafana" / "dashboards" / "scgan-colorize.json"
METRIC = re.compile(r"\bscgan_[a-z0-9_]+\b")


def _exprs(node: Any) -> list[str]:
    """Every PromQL expression in a dashboard / rules tree (values of "expr" and "query" keys)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_exprs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_exprs(item))
    return found


def _panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


@pytest.mark.parametrize(
    "path",
    [
        "docker/grafana/dashboards/scgan-colorize.json",
        "docker/prometheus/alerts.yml",
        "k8s/prometheus-adapter/values.yaml",
        "k8s/base/hpa.yaml",
    ],
)
def test_every_metric_name_is_exported(path: str, exported_samples: set[str]) -> None:
    text = (REPO / path).read_text()
    if path.endswith(".json"):  # the queries, not the prose of panel descriptions
        text = " ".join(_exprs(json.loads(text)))
    names = set(METRIC.findall(text))
    assert names, f"{path} uses no scgan_ metric"
    unknown = names - exported_samples
    assert not unknown, f"{path} uses metrics the service does not export: {sorted(unknown)}"


def test_dashboard_shows_throughput_latency_queue_and_batch_size() -> None:
    exprs = " ".join(_exprs(_panels()))
    assert "rate(scgan_images_processed_total" in exprs  # throughput
    for quantile in ("0.5", "0.95", "0.99"):  # latency percentiles
        assert f"histogram_quantile({quantile}, sum by (le) (rate(scgan_http_request_duration_seconds_bucket" in exprs
    assert "scgan_queue_depth" in exprs and "scgan_queue_capacity" in exprs
    assert "scgan_batch_size_bucket" in exprs and "scgan_batch_size_sum" in exprs
    titles = " ".join(p["title"].lower() for p in _panels())
    for word in ("latency", "queue", "batch size", "/ s"):
        assert word in titles, word


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "scgan-colorize" and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            for used in re.findall(r"\$(\w+)", target["expr"]):
                assert used in variables or used.startswith("__"), used
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    # The provisioned data source is the dashboard's default.
    datasource = yaml.safe_load((REPO / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasource["datasources"]
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["current"]["value"] == source["uid"] and source["url"] == "http://prometheus:9090"


def test_prometheus_scrapes_the_compose_service(route_table: set[tuple[str, str]]) -> None:
    config = yaml.safe_load((REPO / "docker" / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "scgan-colorize"]
    assert ("GET", job["metrics_path"]) in route_table
    [target] = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    services = compose_config("docker-compose.yml", profiles=("monitoring",))["services"]
    assert host in services and int(port) == services[host]["ports"][0]["target"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    mounted = {v["target"] for v in services["prometheus"]["volumes"]}
    assert "/etc/prometheus/alerts.yml" in mounted
    provisioning = yaml.safe_load((REPO / "docker/grafana/provisioning/dashboards/dashboards.yml").read_text())
    [provider] = provisioning["providers"]
    grafana_mounts = {v["target"]: v["source"] for v in services["grafana"]["volumes"] if v["type"] == "bind"}
    assert grafana_mounts[provider["options"]["path"]].endswith("docker/grafana/dashboards")


def test_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load((REPO / "docker" / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["labels"]["severity"] in ("warning", "critical")
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
