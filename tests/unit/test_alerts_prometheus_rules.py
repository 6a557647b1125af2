"""deploy/prometheus/alerts.yml passes `promtool check rules` and its unit tests (`promtool test rules`).

promtool comes with the Debian package `prometheus` (make setup installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is needed: install the Debian package `prometheus` (make setup does)"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=RULES, timeout=120)


def test_rules_are_valid() -> None:
    proc = promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_unit_tests_pass() -> None:
    proc = promtool("test", "rules", "alerts_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_unit_tested_and_uses_contract_metrics() -> None:
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    assert alerts == tested
    contract = (RULES.parents[1] / "docs" / "contracts.md").read_text()
    for group in rules["groups"]:
        for rule in group["rules"]:
            for token in re.findall(r"\bdriftloop_[a-z0-9_]+", rule["expr"]):
                base = token.removesuffix("_total").removesuffix("_bucket")
                assert re.search(rf"\b{base}(_total)?\b", contract), (
                    f"{rule['alert']}: {token} not in docs/contracts.md"
                )


def test_error_rate_alert_uses_the_series_the_server_exposes() -> None:
    """The rule and its promtool tests use the labels the server's counter really has, and a model failure
    is the status the rule counts, so the alert can fire on what a failing server exposes."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from driftloop.serve.metrics import Metrics

    metrics = Metrics(CollectorRegistry(), model_name="wine")
    metrics.observe_request("4", "challenger", 500, None)  # what Service.predict counts when a model raises
    exposed = [
        s
        for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in f.samples
        if s.name == "driftloop_requests_total"
    ]
    assert [s.labels for s in exposed] == [
        {"model_name": "wine", "model_version": "4", "arm": "challenger", "status": "500"}
    ]
    names = set(exposed[0].labels)
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r["alert"] == "DriftloopHighErrorRate")
    for by in re.findall(r"by \(([^)]*)\)", rule["expr"]):
        assert {label.strip() for label in by.split(",")} <= names, by
    assert re.search(r'status=~"5\.\."', rule["expr"])
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())
    for t in tests["tests"]:
        for series in t.get("input_series", []):
            if series["series"].startswith("driftloop_requests_total{"):
                labels = set(re.findall(r'(\w+)="', series["series"])) - {"instance", "job"}
                assert labels == names, series["series"]
