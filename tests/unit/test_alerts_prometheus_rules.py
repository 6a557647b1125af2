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
