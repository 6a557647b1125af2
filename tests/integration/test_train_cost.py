"""`train` with serving cost in the choice, on real MLflow: what is refused, recorded, registered and gated."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from driftloop.config import load_config
from driftloop.data.datasets import add_frame
from driftloop.stores import open_stores
from driftloop.train.search import train
from tests.conftest import RED, write_project

LIMIT_MS = 3.0
"""500 wine trees walked by scikit-learn take ~24 ms a row; on treelite's GTIL, as a worker serves them, ~0.3 ms."""


def test_forests_are_timed_as_served_and_the_served_model_is_timed_and_gated(tmp_path: Path) -> None:
    training = {
        "families": ["random_forest", "linear"],
        "budget": {"trials": 3, "seconds": None},
        "reference_rows": 300,
        "max_predict_ms": LIMIT_MS,
    }
    cfg = load_config(write_project(tmp_path, training=training))
    stores = open_stores(cfg)
    red = pd.read_csv(RED, sep=";")
    record, _ = add_frame(stores.metadata, stores.datasets_dir, red, source=str(RED))
    first = train(cfg, record.version, stores=stores, progress=False)
    assert first.champion
    client = MlflowClient(cfg.stores.resolved_tracking_uri())
    trials = client.search_runs(
        [client.get_run(first.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'",
    )
    by_family: dict[str, list] = {}
    for t in trials:
        by_family.setdefault(t.data.tags["family"], []).append(t)
    # Every trial's cost is in MLflow. Forests timed as served (GTIL, scaled to their refit trees) fit the
    # limit that scikit-learn's own walk of the same trees is far over, so they may be chosen.
    assert set(by_family) == {"random_forest", "linear"}
    for t in by_family["random_forest"] + by_family["linear"]:
        assert t.data.tags["state"] == "complete" and 0 < t.data.metrics["predict_ms_1row"] <= LIMIT_MS
        assert t.data.metrics["predict_ms_100rows"] > 0
    board = json.loads(Path(client.download_artifacts(first.run_id, "leaderboard.json")).read_text())
    columns = board["columns"]
    rows = [dict(zip(columns, r, strict=True)) for r in board["data"]]
    # Nothing is over the limit; the baseline row (the linear defaults, trial 0) is on the board.
    assert "baseline" in [r["family"] for r in rows] and not any(r["over_limit"] for r in rows)
    # The registered model is timed once more as logged and loaded back; that figure is on the run.
    run = client.get_run(first.run_id)
    assert run.data.metrics["predict_ms_1row"] == first.predict_ms["predict_ms_1row"] <= LIMIT_MS
    # A second model meets the gate, which times the challenger loaded from its logged folder.
    second = train(cfg, record.version, stores=stores, progress=False)
    assert second.gate is not None
    latency = second.gate.check("latency")
    assert latency is not None and latency.details["served_from"] is not None
    assert (Path(latency.details["served_from"]).name) and latency.details["one_row_ms"] > 0
