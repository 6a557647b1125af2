"""driftloop's loop as an Airflow 3 DAG (TaskFlow API); written by `driftloop airflow-dag`.

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

PROJECT = os.environ.get("DRIFTLOOP_PROJECT", "/opt/driftloop/project")
PYTHON = os.environ.get("DRIFTLOOP_PYTHON") or None
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
    dag_id="driftloop",
    description="driftloop: monitor, retrain on triggers, gate, canary, promote or roll back",
    schedule="*/5 * * * *",
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
