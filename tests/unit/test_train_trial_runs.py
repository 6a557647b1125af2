"""Trials as nested MLflow runs: a pruned trial ended as the search meant it to, so it is FINISHED (with its
state in a tag), not KILLED, which the MLflow UI shows as a crash or a user's kill."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from driftloop.train.cv import CVResult
from driftloop.train.record import log_trial
from driftloop.train.tuning import TrialRecord


def test_trial_runs_end_finished_unless_the_trial_failed(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("trials", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment).info.run_id
    cv = CVResult(fold_scores=[0.61], oof=None, fit_seconds=0.1, pruned=True)
    trials = [
        TrialRecord(1, "lightgbm", {"num_leaves": 8}, "pruned", cv=cv),
        TrialRecord(2, "random_forest", {}, "too_slow", cv=CVResult([0.6, 0.62], None, 0.2)),
        TrialRecord(3, "linear", {}, "failed", message="ValueError: boom"),
    ]
    for trial in trials:
        log_trial(client, experiment, parent, trial, "accuracy")
    runs = {r.data.tags["state"]: r for r in client.search_runs([experiment], "tags.state != ''")}
    assert {state: r.info.status for state, r in runs.items()} == {
        "pruned": "FINISHED",
        "too_slow": "FINISHED",
        "failed": "FAILED",
    }
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in runs.values())
