"""Helpers for the Airflow tests: the cached Airflow venv, an Airflow home on SQLite, `airflow dags test`
runs and their task states, and a wine project with a champion and prediction-log traffic."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.stores import Stores
from driftloop.stores.predlog import FeedbackEntry, LogWriter, PredictionEntry, label_string, now_us

REPO = Path(__file__).resolve().parents[2]
VENV_SCRIPT = REPO / "scripts" / "airflow-venv"


def airflow_venv() -> Path:
    """Build or reuse the cached Airflow venv (scripts/airflow-venv); fails the test with the script's output."""
    proc = subprocess.run([str(VENV_SCRIPT)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(
            f"scripts/airflow-venv failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class Airflow:
    """One Airflow installation: the venv, and a home folder with its SQLite database and DAG folder."""

    venv: Path
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
        env.update(
            PATH=f"{self.venv / 'bin'}:{env.get('PATH', '')}",
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.venv / "bin" / "airflow"), *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def migrate(self) -> None:
        self.dags.mkdir(parents=True, exist_ok=True)
        self.run("db", "migrate")

    def dags_test(self, dag_id: str, conf: dict | None = None) -> DagRunResult:
        """`airflow dags test` (a whole run, in process) and what each task ended as."""
        args = ["dags", "test", dag_id]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        proc = self.run(*args)
        return self.last_run(dag_id, proc.stdout + proc.stderr)

    def last_run(self, dag_id: str, output: str = "") -> DagRunResult:
        with sqlite3.connect(self.home / "airflow.db") as con:
            run_id, state = con.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            tasks = dict(
                con.execute(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                    (dag_id, run_id),
                ).fetchall()
            )
            xcoms = {
                task_id: _xcom_value(value)
                for task_id, value in con.execute(
                    "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
                    (dag_id, run_id),
                ).fetchall()
            }
        return DagRunResult(run_id=run_id, state=state, tasks=tasks, xcoms=xcoms, output=output)


def _xcom_value(raw: object) -> object:
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


@dataclass
class DagRunResult:
    run_id: str
    state: str
    tasks: dict[str, str | None]
    xcoms: dict[str, object]
    output: str

    def ran(self) -> set[str]:
        return {t for t, s in self.tasks.items() if s == "success"}

    def describe(self) -> str:
        tail = "\n".join(self.output.splitlines()[-80:])
        return f"run {self.run_id}: {self.state}; tasks {self.tasks}; xcoms {self.xcoms}\n{tail}"


# -- a project with traffic -----------------------------------------------------------------------------------


def serve_rows(stores: Stores, frame: pd.DataFrame, *, target: str = "quality") -> int:
    """Answer `frame` with the champion as the server would, and log predictions and their labels (feedback)."""
    dep = stores.metadata.get_deployment(stores.model_name)
    assert dep.champion is not None
    bundle = stores.tracking.load_bundle(dep.champion)
    spec = bundle.spec
    features = frame[spec.feature_names]
    pred = bundle.predict_frame(features)
    request = uuid.uuid4().hex
    ts = now_us()
    columns = [
        features[f.name].to_numpy(dtype=np.float64)
        if f.kind == "numeric"
        else [None if pd.isna(v) else str(v) for v in features[f.name]]
        for f in spec.features
    ]
    entry = PredictionEntry(
        request_id=request,
        batch=True,
        ts_us=ts,
        model_name=stores.model_name,
        model_version=dep.champion,
        arm="champion",
        source="online",
        feature_names=tuple(spec.feature_names),
        feature_kinds=tuple(f.kind for f in spec.features),
        columns=columns,
        labels=pred.labels,
        proba=pred.proba,
        classes=tuple(label_string(c) for c in spec.classes),
        latency_ms=1.0,
    )
    feedback = FeedbackEntry(
        request_ids=[f"{request}:{i}" for i in range(len(frame))],
        labels=frame[target].tolist(),
        regression=not spec.is_classifier,
        ts_us=ts + 1,
    )
    for kind, item in (("predictions", entry), ("feedback", feedback)):
        writer = LogWriter(stores.log_dir, kind)
        writer.put(item)
        writer.close()
    return len(frame)


#: Small enough to train in seconds, and drift/retraining thresholds the wine traffic below crosses.
SCENARIO = {
    "training": {"budget": {"trials": 4, "seconds": None}, "cv_folds": 3, "families": ["lightgbm", "linear"]},
    "monitoring": {"window": None, "last_rows": 300, "min_rows": 150},
    "gate": {"recent_rows": 600, "bootstrap_resamples": 1000},
    "loop": {"triggers": [{"kind": "dataset_drift"}], "retrain": {"min_labeled_rows": 200}},
}


def project_with_champion(root: Path) -> Path:
    """A wine project in `root` whose champion was trained on red wines; returns its config file."""
    from driftloop.config import load_config
    from driftloop.data.datasets import add_file
    from driftloop.stores import open_stores
    from driftloop.train import search  # the trainer, imported at call time like the loop does
    from tests.conftest import RED, write_project

    root.mkdir(parents=True, exist_ok=True)
    config = write_project(root, RED, **SCENARIO)
    cfg = load_config(config)
    stores = open_stores(cfg)
    try:
        record, _ = add_file(stores.metadata, stores.datasets_dir, RED)
        search.train(cfg, data_version=record.version, stores=stores, progress=False)
        assert stores.metadata.get_deployment(cfg.project.name).champion is not None
    finally:
        stores.close()
    return config
