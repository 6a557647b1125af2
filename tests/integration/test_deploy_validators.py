"""scripts/check-deploy passes on the repository's deploy/ and Dockerfile, and rejects broken copies of them.

Each negative case copies deploy/ and the Dockerfile to a temp folder, breaks one thing the way people do
(a typo'd key, a metric that does not exist, an unpinned base image...) and expects that check, by name, to
fail. The validators are real tools (scripts/install-tools installs them); a missing tool fails, never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_database  # no store database involved: the postgres pass leaves it out

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-deploy"
CHECKS = ("dockerfile", "compose", "k8s", "prometheus", "workflow", "dashboard", "configs")


def check_deploy(*args: str, tree: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, **env)
    if tree is not None:
        environ.update(DEPLOY_DIR=str(tree / "deploy"), DOCKERFILE=str(tree / "Dockerfile"))
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=300, check=False
    )


def test_check_deploy_passes_on_the_repository() -> None:
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CHECKS:
        assert f"ok   {name}" in result.stdout
    # Both overlays rendered and validated, not an empty folder passing vacuously.
    assert "dev: " in result.stdout and "prod: " in result.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}: update this test with the file"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


BREAKS = {
    # name: (check, file, old, new, what the output must say)
    "unpinned base image": (
        "dockerfile",
        "Dockerfile",
        "FROM ${PYTHON_IMAGE} AS runtime",
        "FROM python:latest AS runtime",
        "DL3007",
    ),
    "typo in a compose key": (
        "compose",
        "deploy/compose/docker-compose.yml",
        "    restart: unless-stopped\n    environment:\n      POSTGRES_USER",
        "    restrat: unless-stopped\n    environment:\n      POSTGRES_USER",
        "restrat",
    ),
    "compose mounts a missing file": (
        "compose",
        "deploy/compose/docker-compose.yml",
        "./nginx.conf:",
        "./nginx.cnf:",
        "nginx.cnf does not exist",
    ),
    "compose needs a variable .env.example lacks": (
        "compose",
        "deploy/compose/.env.example",
        "GRAFANA_ADMIN_PASSWORD=change-me-grafana\n",
        "",
        "GRAFANA_ADMIN_PASSWORD",
    ),
    "typo in a Deployment field": (
        "k8s",
        "deploy/k8s/base/serve-deployment.yaml",
        "  replicas: 2\n",
        "  replica: 2\n",
        "replica",
    ),
    "kustomization names a missing file": (
        "k8s",
        "deploy/k8s/base/kustomization.yaml",
        "  - serve-pdb.yaml\n",
        "  - serve-pbd.yaml\n",
        "kustomize failed",
    ),
    "wrong type in a probe": (
        "k8s",
        "deploy/k8s/base/serve-deployment.yaml",
        "failureThreshold: 24",
        'failureThreshold: "many"',
        "schema validation failed",
    ),
    "bad duration in the Prometheus config": (
        "prometheus",
        "deploy/prometheus/prometheus.yml",
        "scrape_interval: 15s",
        "scrape_interval: 15 seconds",
        "FAILED",
    ),
    "an alert's unit test expects what the rule does not do": (
        "prometheus",
        "deploy/prometheus/alerts_test.yml",
        'summary: "No driftloop controller is up"',
        'summary: "The controller is up"',
        "FAILED",
    ),
    "Alertmanager route names a missing receiver": (
        "alertmanager",
        "deploy/alertmanager/alertmanager.yml",
        "  receiver: driftloop\n",
        "  receiver: on-call\n",
        "on-call",
    ),
    "workflow uses an undefined job's output": (
        "workflow",
        "deploy/github/model-ci.yml",
        "if: needs.train.outputs.challenger != ''",
        "if: needs.training.outputs.challenger != ''",
        "training",
    ),
    "dashboard queries a metric nobody exports": (
        "dashboard",
        "deploy/grafana/dashboards/driftloop.json",
        "rate(driftloop_requests_total{",
        "rate(driftloop_request_count_total{",
        "driftloop_request_count_total is not exported",
    ),
    "dashboard query that is not PromQL": (
        "dashboard",
        "deploy/grafana/dashboards/driftloop.json",
        "sum by (le, arm) (rate(driftloop_request_latency_seconds_bucket",
        "sum by (le, arm (rate(driftloop_request_latency_seconds_bucket",
        "query does not parse",
    ),
    "dashboard names an unprovisioned data source": (
        "dashboard",
        "deploy/grafana/dashboards/driftloop.json",
        '"uid": "prometheus"',
        '"uid": "prom-main"',
        "'prom-main' is not provisioned",
    ),
    "unknown key in a shipped driftloop.yaml": (
        "configs",
        "deploy/k8s/base/driftloop.yaml",
        "interval_seconds: 60",
        "interval_secs: 60",
        "interval_secs",
    ),
}


def test_an_unbroken_copy_passes(tree: Path) -> None:
    """So that every failure below comes from its one break, not from checking a copy elsewhere."""
    result = check_deploy(tree=tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_check_deploy_rejects_a_broken_copy(tree: Path, case: str) -> None:
    check, file, old, new, message = BREAKS[case]
    _edit(tree / file, old, new)
    result = check_deploy("--only", check, tree=tree)
    assert result.returncode == 1, result.stdout
    assert f"FAIL {check}" in result.stdout
    assert message in result.stdout, result.stdout


def test_a_missing_tool_fails_loudly(tree: Path) -> None:
    result = check_deploy(
        "--only", "dockerfile", tree=tree, DRIFTLOOP_TOOLS="/nonexistent", PATH="/usr/bin:/bin"
    )
    assert result.returncode == 1
    assert "hadolint is not installed: run scripts/install-tools" in result.stdout


def test_alert_rules_are_held_to_the_exported_metrics(tree: Path) -> None:
    rules = tree / "deploy" / "prometheus" / "alerts.yml"
    rule = (
        "groups:\n  - name: t\n    rules:\n      - alert: ServerErrors\n"
        '        expr: sum(rate({metric}{{status=~"5.."}}[5m])) > 1\n        for: 5m\n'
    )
    rules.write_text(rule.format(metric="driftloop_requests_total"), encoding="utf-8")
    (tree / "deploy" / "prometheus" / "alerts_test.yml").unlink()  # it tests the alerts replaced here
    assert check_deploy("--only", "dashboard", tree=tree).returncode == 0
    assert check_deploy("--only", "prometheus", tree=tree).returncode == 0
    rules.write_text(rule.format(metric="driftloop_errors_total"), encoding="utf-8")
    result = check_deploy("--only", "dashboard", tree=tree)
    assert result.returncode == 1
    assert "alerts.yml: driftloop_errors_total is not exported" in result.stdout
