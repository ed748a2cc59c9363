"""yamllint over every YAML file of the deployment."""

from __future__ import annotations

from deploy_helpers import REPO, run, tool

YAML_FILES = sorted(
    str(p.relative_to(REPO))
    for pattern in ("docker-compose*.yml", "docker/**/*.yml", "docker/**/*.yaml", "k8s/**/*.yaml", "k8s/**/*.yml")
    for p in REPO.glob(pattern)
)


def test_there_is_yaml_to_lint() -> None:
    assert "docker-compose.yml" in YAML_FILES and "k8s/base/deployment.yaml" in YAML_FILES
    assert len(YAML_FILES) >= 20


def test_yamllint() -> None:
    done = run([tool("yamllint"), "--strict", "-c", "tests/deploy/yamllint.yaml", "-f", "parsable", *YAML_FILES])
    assert done.returncode == 0, done.stdout + done.stderr
