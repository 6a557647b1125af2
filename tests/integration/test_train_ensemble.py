"""`train` choosing an ensemble, on real MLflow: registered, its leaderboard row, loaded back, same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from driftloop.config import load_config
from driftloop.data.datasets import add_frame, load_dataset
from driftloop.stores import open_stores
from driftloop.stores.models import ENSEMBLE_FILE, load_bundle_dir
from driftloop.train.prepare import prepare
from driftloop.train.search import holdout_scores, train
from tests.conftest import RED, write_project


def test_an_ensemble_is_trained_registered_loaded_back_and_predicts_identically(tmp_path: Path) -> None:
    training = {
        "families": ["extra_trees", "lightgbm", "linear"],
        "budget": {"trials": 5, "seconds": None},
        "reference_rows": 300,
        "ensemble": {"max_members": 3},
        "max_predict_ms": None,  # forest members are what this test is about, however slow they serve
    }
    cfg = load_config(write_project(tmp_path, training=training))
    stores = open_stores(cfg)
    red = pd.read_csv(RED, sep=";")
    record, _ = add_frame(stores.metadata, stores.datasets_dir, red, source=str(RED))
    result = train(cfg, record.version, stores=stores, progress=False)
    assert result.family == "ensemble" and result.champion
    row = next(r for r in result.leaderboard if r["family"] == "ensemble")
    assert row["params"]["chosen"] and result.leaderboard[0] is row  # it won on CV, so it ranks first
    members = row["params"]["members"]
    assert 2 <= len(members) <= 3 and abs(sum(m["weight"] for m in members) - 1.0) < 1e-9
    # Registered with its CV score; nested runs are the trials only.
    version = stores.tracking.get_version(result.version)
    assert version.tags["family"] == "ensemble" and float(version.tags["cv_accuracy"]) == round(
        result.cv_mean, 6
    )
    client = MlflowClient(cfg.stores.resolved_tracking_uri())
    run = client.get_run(result.run_id)
    assert run.data.metrics["ensemble_chosen"] == 1.0
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == result.n_trials == 5
    board = json.loads(Path(client.download_artifacts(result.run_id, "leaderboard.json")).read_text())
    assert "ensemble" in {r[1] for r in board["data"]}
    # The model folder: members in native files, the JSON manifest, a pyfunc flavor; no pickle anywhere.
    folder = stores.tracking.model_dir(result.version)
    files = {p.name for p in Path(folder).rglob("*") if p.is_file()}
    assert ENSEMBLE_FILE in files and not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files)
    assert any(f.endswith(".skops") for f in files) and "uv.lock" not in files
    manifest = json.loads(next(Path(folder).rglob(ENSEMBLE_FILE)).read_text())
    assert [(m["trial"], m["family"]) for m in manifest["members"]] == [
        (m["trial"], m["family"]) for m in members
    ]
    # Loaded back from MLflow it predicts the holdout exactly as scored at training time.
    bundle = stores.tracking.load_bundle(result.version)
    assert bundle.flavor == "ensemble" and bundle.spec.family == "ensemble"
    holdout = prepare(cfg, *load_dataset(stores.metadata, record.version)).holdout
    assert holdout_scores(bundle, holdout) == result.holdout
    again = load_bundle_dir(folder).predict_frame(holdout)
    assert np.array_equal(again.proba, bundle.predict_frame(holdout).proba)
    records = holdout.drop(columns="quality").head(20).to_dict("records")
    assert np.array_equal(bundle.predict_records(records).proba, again.proba[:20])
    # MLflow's generic loader reads it too (through the loader shipped with the model), on raw feature
    # rows: the class and one column per class probability, the same as driftloop's.
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(f"models:/{stores.model_name}/{result.version}")
    labelled = pyfunc.predict(holdout.drop(columns="quality").head(20))
    assert labelled["prediction"].tolist() == again.labels[:20].tolist()
    assert np.array_equal(labelled.drop(columns="prediction").to_numpy(), again.proba[:20])
    # A serving worker loads it like any version, then compiles its tree members one by one (LightGBM with
    # lleaves, forests with treelite), each checked against the original: the same probabilities.
    from driftloop.serve.pool import compile_loaded, load_model

    served = load_model(result.version, folder, unknown_fields="reject", max_rows=100, use_compiled=True)
    assert not served.compiled
    assert np.array_equal(served.bundle.predict_records(records).proba, again.proba[:20])
    assert {m["family"] for m in manifest["members"]} & {"lightgbm", "extra_trees"}, manifest
    compiled = compile_loaded(served)
    assert compiled is not None and compiled.compiled
    assert np.allclose(compiled.bundle.predict_records(records).proba, again.proba[:20], rtol=0, atol=1e-6)
