"""Offline checks of deploy/ that no off-the-shelf tool does; scripts/check-deploy runs them beside hadolint,
docker-compose, kubectl kustomize + kubernetes-validate, promtool and actionlint.

    python deploy_checks.py dashboard-metrics DEPLOY_DIR   every metric a Grafana query or alert rule names
                                                           is exported
    python deploy_checks.py configs DEPLOY_DIR             every shipped driftloop.yaml validates
    python deploy_checks.py compose-mounts COMPOSE_DIR     (stdin: `docker-compose config`) bind sources exist

Exit 0 when all is well, 1 with one line per problem otherwise. Run with the project's Python (it imports
driftloop to scrape a real /metrics page).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "contracts.md"
METRIC = re.compile(r"\b(driftloop_[A-Za-z0-9_]+)")
#: A metric defined in source: Gauge("driftloop_x", ...), Counter(\n "driftloop_y", ...).
DEFINED = re.compile(r"\b(Gauge|Counter|Histogram|Summary)\(\s*[\"'](driftloop_[A-Za-z0-9_]+)[\"']")
SUFFIXES = {
    "counter": ("", "_total"),
    "gauge": ("",),
    "histogram": ("", "_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def _expand(name: str, kind: str) -> set[str]:
    base = name.removesuffix("_total") if kind == "counter" else name
    return {base + s for s in SUFFIXES.get(kind, ("",))}


# -- what the dashboard asks for -------------------------------------------------------------------------------


def _strings(node: Any, keys: frozenset[str]) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _strings(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, keys)


def dashboard_metrics(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Metric name -> titles of the panels (or variables) whose queries name it."""
    found: dict[str, set[str]] = {}

    def collect(where: str, node: Any) -> None:
        for expr in _strings(node, frozenset({"expr", "query", "definition"})):
            for name in METRIC.findall(expr):
                found.setdefault(name, set()).add(where)

    for panel in _panels(dashboard.get("panels", [])):
        collect(f"panel {panel.get('title')!r}", panel.get("targets", []))
    for var in dashboard.get("templating", {}).get("list", []):
        collect(f"variable {var.get('name')!r}", var)
    return found


def promql_problems(dashboard: dict[str, Any], name: str) -> list[str]:
    """Parse every panel query with promtool (as recording rules), Grafana's variables filled in."""
    exprs: list[tuple[str, str]] = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if isinstance(target.get("expr"), str):
                exprs.append((str(panel.get("title")), _fill_grafana_variables(target["expr"])))
    if not exprs:
        return []
    promtool = shutil.which("promtool")
    if promtool is None:
        return ["promtool is not installed: run scripts/install-tools"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, expr) in enumerate(exprs):
            # One file per query, so a failure names its panel.
            rules = Path(tmp) / f"q{i}.yml"
            rules.write_text(
                yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "q", "expr": expr}]}]})
            )
            result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
            if result.returncode != 0:
                detail = (result.stdout + result.stderr).strip().splitlines()[-1]
                problems.append(f"{name}: panel {title!r}: query does not parse: {detail}")
    return problems


def _fill_grafana_variables(expr: str) -> str:
    """What Grafana sends: $__rate_interval and friends become durations, template variables a regex."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


# -- what driftloop exports ------------------------------------------------------------------------------------


def scraped_server_metrics() -> set[str]:
    """Names on the /metrics page of a real prediction service (no model loaded, no lifespan started)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about httpx, irrelevant to a one-off scrape
        from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from driftloop.config import config_from_dict
    from driftloop.serve.app import create_app
    from driftloop.stores.metadata import MetadataStore

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict({"data": {"target": "y"}, "stores": {"root": tmp}}, environ={})
        store = MetadataStore.connect("sqlite://")
        try:
            response = TestClient(create_app(cfg, metadata=store)).get("/metrics")
        finally:
            store.close()
    if response.status_code != 200:
        raise SystemExit(f"GET /metrics answered {response.status_code}: {response.text[:200]}")
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names |= _expand(family.name, family.type)
    return names


def defined_in_source(folder: Path, *, exclude: Path | None = None) -> set[str]:
    names: set[str] = set()
    for file in sorted(folder.rglob("*.py")):
        if exclude is not None and file == exclude:
            continue
        for kind, name in DEFINED.findall(file.read_text(encoding="utf-8")):
            names |= _expand(name, kind.lower())
    return names


def contract_metrics() -> tuple[set[str], set[str]]:
    """(serving, monitoring) metric names listed in docs/contracts.md."""
    text = CONTRACTS.read_text(encoding="utf-8")
    head, _, monitoring = text.partition("Monitoring (exported by")
    serving_part = head.rpartition("## Prometheus metrics")[2]

    def names(part: str) -> set[str]:
        out: set[str] = set()
        for line in part.splitlines():
            m = re.match(r"\s{4}(driftloop_\w+)(\{[^}]*\})?\s+(counter|gauge|histogram|summary)\b", line)
            if m:
                out |= _expand(m.group(1), m.group(3))
        return out

    return names(serving_part), names(monitoring.split("\n## ", 1)[0])


def check_dashboard_metrics(deploy: Path) -> list[str]:
    problems: list[str] = []
    notes: list[str] = []
    src = ROOT / "src" / "driftloop"
    serving_contract, monitoring_contract = contract_metrics()

    if importlib.util.find_spec("driftloop.serve.app") is not None:
        server = scraped_server_metrics()
        notes.append(f"server metrics: scraped /metrics of driftloop.serve.app ({len(server)} names)")
    elif (src / "serve" / "metrics.py").is_file():
        server = defined_in_source(src / "serve")
        notes.append("server metrics: parsed from src/driftloop/serve/ (the app does not import)")
    else:
        server = serving_contract
        notes.append("NOTE server metrics: from docs/contracts.md, no driftloop.serve module exists yet")

    monitoring = defined_in_source(src, exclude=src / "serve" / "metrics.py") - server
    if monitoring:
        notes.append(f"monitoring metrics: defined in src/driftloop ({len(monitoring)} names)")
    else:
        # Only while nothing in the code exports a monitoring metric: the contract is all there is to hold to.
        monitoring = monitoring_contract
        notes.append("NOTE monitoring metrics: from docs/contracts.md, no module defines them yet")
    exported = server | monitoring

    dashboards = sorted((deploy / "grafana" / "dashboards").glob("*.json"))
    if not dashboards:
        problems.append(f"no dashboard JSON in {deploy / 'grafana' / 'dashboards'}")
    provisioned = _provisioned_datasource_uids(deploy)
    for file in dashboards:
        try:
            dashboard = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(f"{file.name}: not valid JSON: {exc}")
            continue
        used = dashboard_metrics(dashboard)
        problems += promql_problems(dashboard, file.name)
        if not used:
            problems.append(f"{file.name}: no query names a driftloop_ metric")
        for name, where in sorted(used.items()):
            if name not in exported:
                problems.append(
                    f"{file.name}: {name} is not exported by driftloop (used in {', '.join(sorted(where))})"
                )
        for uid in sorted(_datasource_uids(dashboard) - provisioned):
            problems.append(
                f"{file.name}: data source uid {uid!r} is not provisioned in grafana/provisioning"
            )
        notes.append(f"{file.name}: {len(used)} metric names checked, every query parsed by promtool")
    # The alert rules are held to the same list: a rule on a metric nobody exports never fires.
    rules = deploy / "prometheus" / "alerts.yml"
    if rules.is_file():
        used = {}
        for group in (yaml.safe_load(rules.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                for name in METRIC.findall(str(rule.get("expr", ""))):
                    used.setdefault(name, set()).add(str(rule.get("alert") or rule.get("record")))
        for name, where in sorted(used.items()):
            if name not in exported:
                problems.append(
                    f"alerts.yml: {name} is not exported by driftloop (used in {', '.join(sorted(where))})"
                )
        notes.append(f"alerts.yml: {len(used)} metric names checked")
    for note in notes:
        print(note)
    return problems


def _datasource_uids(dashboard: dict[str, Any]) -> set[str]:
    uids: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and isinstance(ds.get("uid"), str) and not ds["uid"].startswith("$"):
                uids.add(ds["uid"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return uids


def _provisioned_datasource_uids(deploy: Path) -> set[str]:
    uids: set[str] = set()
    for file in sorted((deploy / "grafana" / "provisioning" / "datasources").glob("*.y*ml")):
        for ds in (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("datasources", []):
            if ds.get("uid"):
                uids.add(ds["uid"])
    return uids


# -- driftloop.yaml files and compose mounts --------------------------------------------------------------------


def check_configs(deploy: Path) -> list[str]:
    """Every driftloop.yaml under deploy/ is a valid config (data files are in the image, not checked here)."""
    from driftloop.config import config_from_dict
    from driftloop.errors import ConfigError

    problems: list[str] = []
    files = sorted(deploy.rglob("driftloop.yaml"))
    if not files:
        problems.append(f"no driftloop.yaml under {deploy}")
    for file in files:
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ConfigError("the top level must be a mapping of sections")
            config_from_dict(raw, base_dir=file.parent, environ={})
        except (ConfigError, yaml.YAMLError) as exc:
            problems.append(f"{file.relative_to(deploy)}: {exc}")
        else:
            print(f"{file.relative_to(deploy)}: valid")
    return problems


def check_compose_mounts(compose_dir: Path, rendered: str) -> list[str]:
    """Bind-mounted files and folders must exist: `docker-compose config` does not look."""
    problems: list[str] = []
    config = yaml.safe_load(rendered) or {}
    for name, service in sorted((config.get("services") or {}).items()):
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":", 1)[0]
            kind = volume.get("type") if isinstance(volume, dict) else ("bind" if "/" in source else "volume")
            if kind == "bind" and source and not (compose_dir / source).exists():
                problems.append(f"service {name}: bind mount source {source} does not exist")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"dashboard-metrics", "configs", "compose-mounts"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, folder = argv[0], Path(argv[1]).resolve()
    if command == "dashboard-metrics":
        problems = check_dashboard_metrics(folder)
    elif command == "configs":
        problems = check_configs(folder)
    else:
        problems = check_compose_mounts(folder, sys.stdin.read())
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
