"""The loop as an Apache Airflow DAG: the task bodies the DAG calls, and `render_dag` that writes the DAG file.

Each task body is a thin call into `driftloop.loop.steps`, the same functions `driftloop watch` calls, so the
DAG and the controller cannot decide differently. Tasks take the project (folder or config file) and a lease
holder as plain strings and return small JSON-able values, the only things that cross task boundaries (XCom).
All state is in the stores: a task that is retried or run twice re-reads them and does no harm.

Like the controller, a DAG run holds the controller lease (`controller:<project>`) while it works, so a
`driftloop watch` on the same project waits instead of deciding twice; every task renews it for as long as
the task may take (so it cannot lapse under a running task, nor between the tasks of a run), and the run's
teardown task releases it. Every event and deployment change a task writes is fenced by that lease, as the
controller's are: written only while this run's acquisition (its epoch) still holds it.

The DAG file itself is `DAG_TEMPLATE`; `deploy/airflow/driftloop_dag.py` is `render_dag(None)` (the project
comes from the DRIFTLOOP_PROJECT environment variable) and `driftloop airflow-dag --project PATH` writes a
copy wired to one project.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.config import CONFIG_FILE, Config, load_config
from driftloop.errors import ConfigError

if TYPE_CHECKING:
    from driftloop.stores import Stores
    from driftloop.stores.metadata import Lease

log = logging.getLogger("driftloop.airflow")

#: Each task's time limit in the DAG, and how long its lease renewal lasts (plus `loop.lease_seconds`).
TIMEOUT_MINUTES = {
    "route": 5,
    "monitor": 30,
    "should_retrain": 2,
    "retrain": 120,
    "gate": 2,
    "start_canary": 5,
    "judge_canary": 10,
    "release": 2,
}


def config_path(project: str | Path) -> Path:
    """The config file of a project given as its folder or as the file itself."""
    path = Path(project).expanduser()
    return path / CONFIG_FILE if path.is_dir() else path


@contextmanager
def _opened(project: str, holder: str, task: str) -> Iterator[tuple[Config, Stores, Lease | None]]:
    """Config and stores for one task, with the controller lease renewed for the task's time limit.

    Yields the lease this run holds (the fence for the task's writes), or None: a task that lost it (another
    controller took over after it expired) must not change anything.
    """
    from driftloop.stores import open_stores

    cfg = load_config(config_path(project))
    stores = open_stores(cfg)
    try:
        seconds = 60 * TIMEOUT_MINUTES[task] + cfg.loop.lease_seconds
        held = stores.metadata.acquire_lease(lease_name(cfg), holder, seconds)
        if held is None:
            log.warning("another controller holds the lease %s; %s does nothing", lease_name(cfg), task)
        yield cfg, stores, held
    finally:
        stores.close()


def lease_name(cfg: Config) -> str:
    """The controller's lease name (loop/controller.py), so a DAG run and `driftloop watch` exclude each other."""
    return f"controller:{cfg.project.name}"


# -- task bodies ----------------------------------------------------------------------------------------------


def route(project: str, holder: str) -> str | None:
    """Which branch this run takes, decided as the controller decides a pass: judge the canary if one is
    running, else monitor. None (nothing to do) without the lease or without a champion; then the lease is
    given back here, because a branch to nothing skips the teardown too."""
    with _opened(project, holder, "route") as (cfg, stores, held):
        if not held:
            return None
        dep = stores.metadata.get_deployment(cfg.project.name)
        if dep.champion is None:
            log.info("no champion yet: run `driftloop train`")
            stores.metadata.release_lease(lease_name(cfg), holder)
            return None
        from driftloop.loop import steps

        for line in steps.recover_step(stores, cfg, fence=held):  # what a killed run left, as watch does
            log.info("recovered: %s", line)
        dep = stores.metadata.get_deployment(cfg.project.name)
        if dep.challenger is not None and dep.strategy == "canary":
            log.info("canary of v%s at %.0f%% in progress", dep.challenger, 100 * dep.challenger_weight)
            return "judge_canary"
        return "monitor"


def monitor(project: str, holder: str) -> dict[str, Any]:
    """One monitoring pass, then the triggers (fired ones are recorded as events). Returns what the branch needs."""
    from driftloop.loop import steps

    with _opened(project, holder, "monitor") as (cfg, stores, held):
        if not held:
            return {"summary": "lease lost", "signals": None, "fired": []}
        outcome = steps.monitor_step(stores, cfg)
        # Triggers last: once they are recorded, their cool-down starts, so nothing may fail after them.
        fired = steps.trigger_step(stores, cfg, outcome.signals, fence=held)
    log.info("%s", outcome.summary)
    for t in fired:
        log.info("trigger %s fired: %s", t.name, t.reason)
    return jsonable(
        {
            "summary": outcome.summary,
            "signals": signals_dict(outcome.signals),
            "fired": [{"name": t.name, "reason": t.reason} for t in fired],
        }
    )


def signals_dict(signals: Any) -> dict[str, Any]:
    """The frozen `Signals` as JSON-able data (datetimes as ISO strings, sets as sorted lists)."""
    out = asdict(signals)
    out["now"] = signals.now.isoformat()
    out["drifted_features"] = sorted(signals.drifted_features)
    return out


def should_retrain(monitored: dict[str, Any]) -> str | None:
    """The branch on the trigger decision: retrain when a trigger fired."""
    return "retrain" if monitored.get("fired") else None


def retrain(project: str, holder: str, monitored: dict[str, Any]) -> dict[str, Any]:
    """Assemble data, train, run the gate (`steps.retrain_step`); a failure is recorded and the champion stays."""
    from driftloop.loop import steps

    reasons = [t["reason"] for t in monitored["fired"]]
    with _opened(project, holder, "retrain") as (cfg, stores, held):
        if not held:
            return {"version": None, "gate_passed": False, "summary": "lease lost", "data_version": None}
        outcome = steps.retrain_step(stores, cfg, reasons=reasons, fence=held)
    log.info("%s", outcome.summary)
    return jsonable(asdict(outcome))


def gate(retrained: dict[str, Any]) -> str | None:
    """The branch on the gate's verdict: start the canary only for a challenger that passed it."""
    return "start_canary" if retrained.get("version") and retrained.get("gate_passed") else None


def start_canary(project: str, holder: str, retrained: dict[str, Any]) -> str:
    """Route the first canary step to the gated challenger; a second call for the same version is a no-op."""
    from driftloop.loop import steps

    version = str(retrained["version"])
    with _opened(project, holder, "start_canary") as (cfg, stores, held):
        if not held:
            return "lease lost: canary not started"
        dep = stores.metadata.get_deployment(cfg.project.name)
        # The gate made the version the idle challenger (strategy single); a retry finds its canary running.
        if dep.challenger != version:
            summary = f"v{version} is not the challenger (v{dep.challenger}): no canary started"
        elif dep.strategy == "canary":
            summary = f"canary of v{version} already started"
        else:
            summary = f"v{version}: " + steps.start_canary(stores, cfg, version, fence=held)
    log.info("%s", summary)
    return summary


def judge_canary(project: str, holder: str) -> dict[str, Any]:
    """Judge the running canary step and apply the decision: advance, promote, roll back or hold."""
    from driftloop.loop import steps

    with _opened(project, holder, "judge_canary") as (cfg, stores, held):
        if not held:
            return {"action": "hold", "reason": "lease lost", "evidence": {}}
        decision = steps.rollout_step(stores, cfg, fence=held)
    log.info("canary: %s: %s", decision.action, decision.reason)
    return jsonable(decision.to_dict())


def release(project: str, holder: str) -> None:
    """Give the controller lease back at the end of a run (it would otherwise expire on its own)."""
    from driftloop.stores import open_stores

    cfg = load_config(config_path(project))
    stores = open_stores(cfg)
    try:
        stores.metadata.release_lease(lease_name(cfg), holder)
    finally:
        stores.close()


def jsonable(value: Any) -> Any:
    """Plain JSON values for XCom: numpy scalars (in signals and evidence) and datetimes become numbers/strings."""
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# -- the DAG file ---------------------------------------------------------------------------------------------

DEFAULT_PROJECT = "/opt/driftloop/project"
DEFAULT_SCHEDULE = "*/5 * * * *"


def render_dag(project: Path | None, *, schedule: str = DEFAULT_SCHEDULE) -> str:
    """The DAG file's source, wired to `project` (a folder with driftloop.yaml, or the file).

    With `project=None` the project comes from the DRIFTLOOP_PROJECT environment variable at parse time
    (default /opt/driftloop/project, the Compose mount) and the DAG id is `driftloop`; with a project the
    DAG id is `driftloop-<project.name>`, so one Airflow can run the loop of several projects.
    """
    if project is None:
        project_expr = f'os.environ.get("DRIFTLOOP_PROJECT", "{DEFAULT_PROJECT}")'
        dag_id = "driftloop"
    else:
        path = config_path(project).resolve()
        if not path.is_file():
            raise ConfigError(
                f"project: no {CONFIG_FILE} at {path}; pass the project folder or its config file"
            )
        cfg = load_config(path)
        project_expr = json.dumps(str(path.parent if path.name == CONFIG_FILE else path))
        dag_id = f"driftloop-{cfg.project.name}"
    # One key per line with a trailing comma: the rendered file is what `ruff format` would write.
    timeouts = "{\n" + "".join(f"    {json.dumps(k)}: {v},\n" for k, v in TIMEOUT_MINUTES.items()) + "}"
    return (
        DAG_TEMPLATE.replace("__PROJECT__", project_expr)
        .replace("__DAG_ID__", json.dumps(dag_id))
        .replace("__SCHEDULE__", json.dumps(schedule))
        .replace("__TIMEOUT_MINUTES__", timeouts)
    )


DAG_TEMPLATE = '''"""driftloop's loop as an Airflow 3 DAG (TaskFlow API); written by `driftloop airflow-dag`.

    route ─┬─► monitor ─► should_retrain ─► retrain ─► gate ─► start_canary ─┬─► release
           └─► judge_canary (advance, promote or roll back) ─────────────────┘   (teardown)

Every task is a thin call into driftloop.airflow_dag, which calls the same steps as `driftloop watch`, so the
two cannot disagree. The project (its folder or driftloop.yaml) is the DAG param `project`. Tasks run in this
Python environment, or, when DRIFTLOOP_PYTHON names another interpreter with driftloop installed, in that
one (external_python). State lives in driftloop's stores: a retried task re-reads it and does no harm.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

PROJECT = __PROJECT__
PYTHON = os.environ.get("DRIFTLOOP_PYTHON") or None
TIMEOUT_MINUTES = __TIMEOUT_MINUTES__
ARGS = {"project": "{{ params.project }}", "holder": "airflow:{{ dag.dag_id }}:{{ run_id }}"}


def driftloop_task(task_id: str, *, retries: int = 2, branch: bool = False):
    """A task running driftloop code (here or in DRIFTLOOP_PYTHON) with a time limit and retries."""
    opts = {
        "task_id": task_id,
        "execution_timeout": timedelta(minutes=TIMEOUT_MINUTES[task_id]),
        "retries": retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
    }
    if PYTHON:
        decorator = task.branch_external_python if branch else task.external_python
        return decorator(python=PYTHON, expect_airflow=False, **opts)
    return (task.branch if branch else task)(**opts)


# Plain functions, wrapped below rather than decorated: external_python ships a function's source to the other
# interpreter and strips only Airflow's own decorators from it. Each imports driftloop when it runs, never here.
def route(project: str, holder: str):
    from driftloop.airflow_dag import route

    return route(project, holder)


def monitor(project: str, holder: str):
    from driftloop.airflow_dag import monitor

    return monitor(project, holder)


def should_retrain(monitored: dict):
    from driftloop.airflow_dag import should_retrain

    return should_retrain(monitored)


def retrain(project: str, holder: str, monitored: dict):
    from driftloop.airflow_dag import retrain

    return retrain(project, holder, monitored)


def gate(retrained: dict):
    from driftloop.airflow_dag import gate

    return gate(retrained)


def start_canary(project: str, holder: str, retrained: dict):
    from driftloop.airflow_dag import start_canary

    return start_canary(project, holder, retrained)


def judge_canary(project: str, holder: str):
    from driftloop.airflow_dag import judge_canary

    return judge_canary(project, holder)


def release(project: str, holder: str):
    from driftloop.airflow_dag import release

    release(project, holder)


with DAG(
    dag_id=__DAG_ID__,
    description="driftloop: monitor, retrain on triggers, gate, canary, promote or roll back",
    schedule=__SCHEDULE__,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    params={"project": Param(PROJECT, type="string", description="project folder or its driftloop.yaml")},
    tags=["driftloop", "mlops"],
) as dag:
    routed = driftloop_task("route", branch=True)(route)(**ARGS)
    monitored = driftloop_task("monitor")(monitor)(**ARGS)
    retrained = driftloop_task("retrain", retries=1)(retrain)(**ARGS, monitored=monitored)
    started = driftloop_task("start_canary")(start_canary)(**ARGS, retrained=retrained)
    judged = driftloop_task("judge_canary")(judge_canary)(**ARGS)
    routed >> [monitored, judged]
    driftloop_task("should_retrain", branch=True)(should_retrain)(monitored) >> retrained
    driftloop_task("gate", branch=True)(gate)(retrained) >> started
    # A teardown runs whatever happened upstream and does not decide the run's state: failures still show.
    [started, judged] >> driftloop_task("release")(release)(**ARGS).as_teardown(setups=routed)
'''
