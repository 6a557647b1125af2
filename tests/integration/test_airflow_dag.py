"""The Airflow DAG without Airflow: the rendered files, the constraints file, and the task bodies' lease and
branch behaviour against a real project (its stores on this run's backend). The full path runs under Airflow in
test_airflow_dags_test.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from driftloop import airflow_dag as tasks
from driftloop.airflow_dag import render_dag
from driftloop.cli.airflow import airflow_dag
from driftloop.config import load_config
from driftloop.errors import ConfigError
from driftloop.stores import open_stores
from tests.integration.airflow_support import REPO

HOLDER = "airflow:driftloop-wine:manual__test"


@pytest.mark.no_database
def test_deploy_copy_is_the_rendered_template() -> None:
    """deploy/airflow/driftloop_dag.py is what render_dag(None) writes: regenerate it after editing the template."""
    committed = (REPO / "deploy" / "airflow" / "driftloop_dag.py").read_text()
    assert committed == render_dag(None), (
        "deploy/airflow/driftloop_dag.py is stale; regenerate it with: .venv/bin/python -c "
        "'from driftloop.airflow_dag import render_dag; print(render_dag(None), end=\"\")' "
        "> deploy/airflow/driftloop_dag.py"
    )


@pytest.mark.no_database
def test_render_for_a_project_names_it_and_compiles(project: Path) -> None:
    for given in (project, project.parent):
        source = render_dag(given, schedule="@hourly")
        compile(source, "driftloop_dag.py", "exec")
        assert f"PROJECT = {str(project.parent)!r}".replace("'", '"') in source
        assert 'dag_id="driftloop-wine"' in source
        assert 'schedule="@hourly"' in source
    generic = render_dag(None)
    assert 'os.environ.get("DRIFTLOOP_PROJECT", "/opt/driftloop/project")' in generic
    assert 'dag_id="driftloop"' in generic


@pytest.mark.no_database
def test_render_rejects_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no driftloop.yaml"):
        render_dag(tmp_path)


@pytest.mark.no_database
def test_cli_writes_the_file_atomically(project: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(airflow_dag)
    out = tmp_path / "dags" / "wine.py"
    result = CliRunner().invoke(app, ["--project", str(project.parent), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_dag(project.parent)
    assert [p.name for p in out.parent.iterdir()] == ["wine.py"]  # no temp file left behind
    printed = CliRunner().invoke(app, ["--project", str(project.parent)])
    assert printed.stdout == render_dag(project.parent)


@pytest.mark.no_database
def test_constraints_pin_airflow_and_every_driftloop_dependency() -> None:
    """A dependency added to pyproject.toml without `scripts/airflow-venv --compile` fails here."""
    script = (REPO / "scripts" / "airflow-venv").read_text()
    version = re.search(r'^AIRFLOW_VERSION="([\d.]+)"', script, re.M).group(1)  # type: ignore[union-attr]
    constraints = REPO / "deploy" / "airflow" / f"constraints-{version}-py3.11.txt"
    pins = dict(
        line.split("==", 1)
        for line in constraints.read_text().splitlines()
        if "==" in line and line[0] != "#"
    )
    assert pins["apache-airflow"] == version
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    assert names - set(pins) == set()


# -- the task bodies against a real project ---------------------------------------------------------------------


def test_route_without_champion_does_nothing_and_gives_the_lease_back(project: Path) -> None:
    assert tasks.route(str(project.parent), HOLDER) is None
    stores = open_stores(load_config(project))
    try:
        assert stores.metadata.acquire_lease("controller:wine", "someone-else", 60)
    finally:
        stores.close()


def test_a_running_controller_keeps_the_dag_out(project: Path) -> None:
    """`driftloop watch` holds the lease: every task that would change something does nothing."""
    stores = open_stores(load_config(project))
    try:
        assert stores.metadata.acquire_lease("controller:wine", "watch:1234", 600)
        assert tasks.route(str(project), HOLDER) is None
        assert tasks.monitor(str(project), HOLDER)["fired"] == []
        retrained = tasks.retrain(str(project), HOLDER, {"fired": [{"name": "x", "reason": "y"}]})
        assert retrained["version"] is None
        assert tasks.start_canary(str(project), HOLDER, {"version": "2"}).startswith("lease lost")
        assert tasks.judge_canary(str(project), HOLDER)["action"] == "hold"
        assert stores.metadata.list_events("wine") == []
        assert stores.metadata.get_deployment("wine").revision == 0
    finally:
        stores.close()


@pytest.mark.no_database
def test_branches_follow_the_trigger_and_the_gate() -> None:
    assert tasks.should_retrain({"fired": [{"name": "dataset_drift", "reason": "r"}]}) == "retrain"
    assert tasks.should_retrain({"fired": []}) is None
    assert tasks.gate({"version": "2", "gate_passed": True}) == "start_canary"
    assert tasks.gate({"version": "2", "gate_passed": False}) is None
    assert tasks.gate({"version": None, "gate_passed": False}) is None
