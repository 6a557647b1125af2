"""`driftloop monitor` against real stores: a model version registered in MLflow (SQLite) with its reference
sample, the deployment state naming it champion, and a prediction log of white wine scored by it. The pass
is stored in the metadata store, logged on the version's MLflow monitoring run, written as Prometheus text,
alerted on, and a quiet window afterwards gives "no data" without a new alert."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from driftloop.config import load_config
from driftloop.monitor.publish import MONITORING_TAG
from driftloop.monitor.report import load_schema
from driftloop.stores import open_stores
from driftloop.stores.metadata import Deployment
from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec, log_bundle
from tests.integration.test_monitor_check import write_feedback, write_predictions


def setup_project(tmp_path: Path, red: pd.DataFrame) -> tuple[Path, ModelSpec]:
    config = tmp_path / "driftloop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "project": {"name": "wine"},
                "data": {"target": "quality"},
                "stores": {"root": ".driftloop"},
                "monitoring": {"window": "1h"},
            }
        )
    )
    cfg = load_config(config, environ={})
    stores = open_stores(cfg)
    features = tuple(FeatureSpec(c, "numeric") for c in red.columns if c != "quality")
    classes = tuple(sorted(red["quality"].unique().tolist()))
    spec = ModelSpec(
        task="multiclass", target="quality", features=features, classes=classes, metric="accuracy"
    )
    X = Encoder(spec).encode_frame(red)
    y = red["quality"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    bundle = ModelBundle(spec=spec, estimator=LogisticRegression(max_iter=300).fit(X, y), flavor="sklearn")
    import mlflow

    stores.tracking.client  # noqa: B018 - points mlflow at the project's tracking store
    with mlflow.start_run(experiment_id=stores.tracking.experiment_id()) as run:
        info = log_bundle(bundle)
        ref = tmp_path / "reference.parquet"
        red.sample(1000, random_state=0).to_parquet(ref, index=False)
        mlflow.log_artifact(str(ref), artifact_path="reference")
    version = stores.tracking.register(info.model_uri, run.info.run_id, tags={"holdout_accuracy": "0.58"})
    stores.metadata.update_deployment(Deployment(model_name="wine"), champion=version, reason="test")
    stores.close()
    return config, spec


def run_monitor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftloop.cli.monitor", "monitor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=config.parent,
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_monitor_pass_is_stored_logged_exported_and_alerted(
    tmp_path: Path, red: pd.DataFrame, white: pd.DataFrame
) -> None:
    config, spec = setup_project(tmp_path, red)
    log_dir = tmp_path / ".driftloop" / "logs"
    now = datetime.now(UTC)
    ids = write_predictions(log_dir, white.head(300), list(spec.features), ts=now - timedelta(minutes=10))
    ids += write_predictions(
        log_dir, white.iloc[300:400], list(spec.features), ts=now - timedelta(minutes=9), seed=1, cpu_ms=0.08
    )
    write_feedback(log_dir, ids[:200], ["6"] * 200, now - timedelta(minutes=5))

    proc = run_monitor(config, "--json", "out.json", "--html", "out.html", "--metrics-file", "m.prom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    jsonschema.validate(report, load_schema())
    assert report["status"] == "ok" and report["window"]["rows"] == 400
    assert report["drift"]["dataset_drift"] is True
    assert report["prediction_drift"]["column"] == "prediction"
    assert report["metric"] == {"name": "accuracy", "live": report["metric"]["live"], "reference": 0.58}
    groups = report["performance"]["groups"]
    assert groups[0]["n_labeled"] == 200 and groups[0]["metrics"]["accuracy"]["value"] is not None
    assert [a["rule"] for a in report["alerts"]][:1] == ["dataset-drift"]
    assert report["alerts"][0]["action"] == "sent"
    # Serving cost: 100 of the 400 rows carry the server's CPU figure (the rest predate the column).
    (cost,) = report["cost"]
    assert cost["arm"] == "champion" and cost["source"] == "online"
    assert (cost["rows"], cost["measured_rows"]) == (400, 100)
    assert cost["cpu_ms_per_1k"] == pytest.approx(80.0)
    assert "400 rows, 80.0 CPU-ms per 1,000" in proc.stdout
    assert "Serving cost" in (tmp_path / "out.html").read_text()
    # A version logged without a kept holdout (as before it was kept) has no estimate, and the pass says why.
    note = "v1 was trained before its holdout was kept: no estimate"
    assert report["estimated"] == [
        {"model_version": "1", "arm": "champion", "rows": 400, "method": None, "metrics": {}, "note": note}
    ]
    assert f"v1 champion: 400 rows, no estimate ({note})" in proc.stdout
    assert (tmp_path / "out.html").stat().st_size > 1_000_000  # plotly.js inlined
    prom = (tmp_path / "m.prom").read_text()
    assert "driftloop_dataset_drift 1.0" in prom and "driftloop_monitoring_rows 400.0" in prom
    assert 'driftloop_feature_drifted{feature="alcohol"}' in prom
    (cpu,) = [
        sample
        for family in text_string_to_metric_families(prom)
        if family.name == "driftloop_predict_cpu_ms_per_1k"
        for sample in family.samples
    ]
    assert cpu.labels == {"model_version": "1", "arm": "champion", "source": "online"}
    assert cpu.value == pytest.approx(80.0)

    cfg = load_config(config, environ={})
    stores = open_stores(cfg)
    try:
        stored = stores.metadata.list_monitoring_results("wine")
        assert len(stored) == 1 and stored[0]["dataset_drift"] is True and stored[0]["n_rows"] == 400
        client = stores.tracking.client
        runs = client.search_runs(
            [stores.tracking.experiment_id()], filter_string=f"tags.`{MONITORING_TAG}` = '1'"
        )
        assert len(runs) == 1 and runs[0].data.metrics["dataset_drift"] == 1.0
        assert runs[0].info.status == "FINISHED"  # not left RUNNING between passes
        experiment = client.get_experiment(stores.tracking.experiment_id())
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        assert "drift_score.alcohol" in runs[0].data.metrics
    finally:
        stores.close()

    quiet = run_monitor(config, "--window", "1m", "--json", "quiet.json")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    quiet_report = json.loads((tmp_path / "quiet.json").read_text())
    assert quiet_report["status"] == "no_data" and quiet_report["drift"] is None
    assert quiet_report["alerts"] == [] and "no data" in quiet.stdout

    bad = run_monitor(config, "--window", "soon")
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr


def test_two_passes_over_one_window_both_reach_mlflow(
    tmp_path: Path, red: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """A pass retried over the same window in the same second logs the same values at the same timestamp; MLflow's
    primary key (key, timestamp, step, value) refused the second one when the step was the wall-clock second."""
    import logging

    from prometheus_client import CollectorRegistry

    from driftloop.monitor.check import CheckResult
    from driftloop.monitor.publish import publish

    config, _spec = setup_project(tmp_path, red)
    stores = open_stores(load_config(config, environ={}))
    try:
        end = datetime.now(UTC)
        result = CheckResult("wine", "1", "ok", end - timedelta(hours=1), end, n_rows=400, created_at=end)
        with caplog.at_level(logging.WARNING, logger="driftloop.monitor.publish"):
            ids = [publish(stores, result, registry=CollectorRegistry()) for _ in range(2)]
        warned = [r.getMessage() for r in caplog.records if r.name == "driftloop.monitor.publish"]
        assert not warned, warned
        run = stores.tracking.client.search_runs(
            [stores.tracking.experiment_id()], filter_string=f"tags.`{MONITORING_TAG}` = '1'"
        )[0]
        history = stores.tracking.client.get_metric_history(run.info.run_id, "monitoring_rows")
        assert sorted(m.step for m in history) == sorted(ids) and len(set(ids)) == 2
    finally:
        stores.close()
