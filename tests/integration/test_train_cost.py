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
"""A forest of 500 python-level trees takes tens of milliseconds for one row; a linear model a tenth of one."""


def test_forests_over_max_predict_ms_are_refused_and_the_served_model_is_timed_and_gated(
    tmp_path: Path,
) -> None:
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
    assert first.family == "linear" and first.champion
    client = MlflowClient(cfg.stores.resolved_tracking_uri())
    trials = client.search_runs(
        [client.get_run(first.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'",
    )
    by_family: dict[str, list] = {}
    for t in trials:
        by_family.setdefault(t.data.tags["family"], []).append(t)
    # Every trial's cost is in MLflow; every forest is over the limit and marked so, never chosen.
    assert set(by_family) == {"random_forest", "linear"}
    for t in by_family["random_forest"]:
        assert t.data.tags["state"] == "too_slow" and t.data.metrics["predict_ms_1row"] > LIMIT_MS
    for t in by_family["linear"]:
        assert t.data.tags["state"] == "complete" and t.data.metrics["predict_ms_1row"] <= LIMIT_MS
        assert t.data.metrics["predict_ms_100rows"] > 0
    board = json.loads(Path(client.download_artifacts(first.run_id, "leaderboard.json")).read_text())
    columns = board["columns"]
    rows = [dict(zip(columns, r, strict=True)) for r in board["data"]]
    # Linear first (LightGBM is not in the families, so the linear defaults are trial 0: the baseline row).
    assert [r["family"] for r in rows] == ["linear", "baseline", "random_forest"]
    assert rows[2]["over_limit"] and rows[2]["too_slow"] >= 1 and rows[0]["predict_ms_1row"] <= LIMIT_MS
    # The registered model is timed once more as logged and loaded back; that figure is on the run.
    run = client.get_run(first.run_id)
    assert run.data.metrics["predict_ms_1row"] == first.predict_ms["predict_ms_1row"] <= LIMIT_MS
    # A second model meets the gate, which times the challenger loaded from its logged folder.
    second = train(cfg, record.version, stores=stores, progress=False)
    assert second.gate is not None
    latency = second.gate.check("latency")
    assert latency is not None and latency.details["served_from"] is not None
    assert (Path(latency.details["served_from"]).name) and latency.details["one_row_ms"] > 0
