"""Where a monitoring pass goes: the metadata store (time series), MLflow (the model version's monitoring
run, so results chart in the MLflow UI) and Prometheus gauges (names in docs/contracts.md).

The metadata store is the record and must succeed; MLflow and the gauges are views, and a failure there
is logged, never raised, so monitoring keeps running when the tracking server is down.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

if TYPE_CHECKING:
    from driftloop.monitor.check import CheckResult
    from driftloop.stores import Stores

log = logging.getLogger(__name__)
MONITORING_TAG = "driftloop.monitoring_for_version"


def publish(stores: Stores, result: CheckResult, registry: CollectorRegistry = REGISTRY) -> int:
    """Store, log and export one pass; returns the metadata row id."""
    drift = result.drift
    row_id = stores.metadata.add_monitoring_result(
        result.model_name,
        result.to_dict(distributions=False),
        model_version=result.model_version,
        window_start=result.window_start,
        window_end=result.window_end,
        n_rows=result.n_rows,
        dataset_drift=None if drift is None else drift.dataset_drift,
        drift_share=None if drift is None else drift.share,
    )
    try:
        log_to_mlflow(stores, result)
    except Exception:  # the tracking server being down must not stop monitoring
        log.warning("could not log the monitoring pass to MLflow", exc_info=True)
    export_gauges(result, registry)
    return row_id


def mlflow_metrics(result: CheckResult) -> dict[str, float]:
    """Flat metric names MLflow accepts: drift per feature, dataset verdict, quality, live metrics."""
    out: dict[str, float] = {"monitoring_rows": float(result.n_rows)}
    drift = result.drift
    if drift is not None:
        if drift.share is not None:
            out["drift_share"] = drift.share
            out["dataset_drift"] = float(bool(drift.dataset_drift))
        for col in drift.tested:
            out[f"drift_score.{_safe(col.column)}"] = float(col.statistic)  # type: ignore[arg-type]
            out[f"drifted.{_safe(col.column)}"] = float(bool(col.drift))
            if col.psi is not None:
                out[f"psi.{_safe(col.column)}"] = col.psi
    for name, col in (("prediction", result.prediction_drift), ("target", result.target_drift)):
        if col is not None and col.statistic is not None:
            out[f"{name}_drift_score"] = col.statistic
    if result.quality is not None:
        out["quality_passed"] = float(result.quality.passed)
    if result.performance is not None:
        for group in result.performance.groups:
            for metric, value in group.metrics.items():
                if value.value is not None:
                    out[f"live_{metric}.{_safe(group.arm)}.v{_safe(group.model_version)}"] = value.value
            out[f"n_labeled.{_safe(group.arm)}.v{_safe(group.model_version)}"] = float(group.n_labeled)
    return out


def log_to_mlflow(stores: Stores, result: CheckResult) -> None:
    """Append the pass to the model version's monitoring run (created on first use), one batch call."""
    if result.model_version is None:
        return
    from mlflow.entities import Metric

    client = stores.tracking.client
    experiment_id = stores.tracking.experiment_id()
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{MONITORING_TAG}` = '{result.model_version}'", max_results=1
    )
    if runs:
        run_id = runs[0].info.run_id
    else:
        run = client.create_run(
            experiment_id,
            run_name=f"monitoring-v{result.model_version}",
            tags={MONITORING_TAG: str(result.model_version), "driftloop.kind": "monitoring"},
        )
        run_id = run.info.run_id
    ts = int((result.window_end or result.created_at).timestamp() * 1000)
    step = int(time.time())
    metrics = [Metric(k, float(v), ts, step) for k, v in mlflow_metrics(result).items()]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 1000])


_GAUGES: dict[int, dict[str, Gauge]] = {}


def _gauges(registry: CollectorRegistry) -> dict[str, Gauge]:
    key = id(registry)
    if key not in _GAUGES:
        _GAUGES[key] = {
            "score": Gauge(
                "driftloop_feature_drift_score",
                "Drift statistic per feature",
                ["feature", "method"],
                registry=registry,
            ),
            "drifted": Gauge(
                "driftloop_feature_drifted", "1 if the feature drifted", ["feature"], registry=registry
            ),
            "dataset": Gauge("driftloop_dataset_drift", "1 if the dataset drifted", registry=registry),
            "share": Gauge("driftloop_drift_share", "Share of drifted features", registry=registry),
            "metric": Gauge(
                "driftloop_model_metric",
                "Live model metric on labeled rows",
                ["metric", "model_version", "arm"],
                registry=registry,
            ),
            "rows": Gauge(
                "driftloop_monitoring_rows", "Rows in the last monitoring window", registry=registry
            ),
        }
    return _GAUGES[key]


def export_gauges(result: CheckResult, registry: CollectorRegistry = REGISTRY) -> None:
    """Set the monitoring gauges to this pass; a no-data pass only updates the row count (no stale verdicts
    are cleared into false 'no drift' readings)."""
    g = _gauges(registry)
    g["rows"].set(result.n_rows)
    drift = result.drift
    if drift is not None:
        g["score"].clear()
        g["drifted"].clear()
        for col in drift.tested:
            g["score"].labels(col.column, col.method).set(float(col.statistic))  # type: ignore[arg-type]
            g["drifted"].labels(col.column).set(float(bool(col.drift)))
        if drift.share is not None:
            g["share"].set(drift.share)
            g["dataset"].set(float(bool(drift.dataset_drift)))
    if result.performance is not None:
        for group in result.performance.groups:
            for metric, value in group.metrics.items():
                if value.value is not None:
                    g["metric"].labels(metric, group.model_version, group.arm).set(value.value)


def _safe(text: Any) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(text))
