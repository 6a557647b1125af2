"""Where a monitoring pass goes: the metadata store (time series), MLflow (the model version's monitoring
run, so results chart in the MLflow UI) and Prometheus gauges (names in docs/contracts.md).

The metadata store is the record and must succeed; MLflow and the gauges are views, and a failure there
is logged, never raised, so monitoring keeps running when the tracking server is down.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from driftloop.errors import first_line

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
        log_to_mlflow(stores, result, step=row_id)
    except Exception as exc:  # the tracking server being down must not stop monitoring
        # One line: an unreachable tracking store is an expected fault, not a bug; the trace is at debug level.
        log.warning("could not log the monitoring pass to MLflow: %s", first_line(exc))
        log.debug("MLflow logging failed", exc_info=True)
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
    for name, edge in (("prediction", result.prediction_drift), ("target", result.target_drift)):
        if edge is not None and edge.statistic is not None:
            out[f"{name}_drift_score"] = edge.statistic
    for m in result.multivariate:
        out[f"multivariate_score.{m.method}"] = m.statistic
        out[f"multivariate_drift.{m.method}"] = float(m.drift)
    for guess in result.estimated:
        for metric, est in guess.metrics.items():
            if np.isfinite(est.value):
                out[f"estimated_{metric}.{_safe(guess.arm)}.v{_safe(guess.model_version)}"] = est.value
    if result.quality is not None:
        out["quality_passed"] = float(result.quality.passed)
    if result.performance is not None:
        out["feedback_unmatched"] = float(result.performance.unknown_labels)
        for group in result.performance.groups:
            for metric, value in group.metrics.items():
                if value.value is not None:
                    out[f"live_{metric}.{_safe(group.arm)}.v{_safe(group.model_version)}"] = value.value
            out[f"n_labeled.{_safe(group.arm)}.v{_safe(group.model_version)}"] = float(group.n_labeled)
    return out


def log_to_mlflow(stores: Stores, result: CheckResult, *, step: int) -> None:
    """Append the pass to the model version's monitoring run (created on first use), one batch call.

    `step` is the pass's metadata row id: unique per pass, so two passes over the same window (a retried pass, or
    two in one second) never log the same (key, timestamp, step, value), which MLflow's primary key refuses.
    """
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
    metrics = [Metric(k, float(v), ts, step) for k, v in mlflow_metrics(result).items()]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    # Each pass appends to the run and leaves it FINISHED: a run left RUNNING reads as a crashed or live job in
    # the MLflow UI. Logging to a finished run is allowed; its end time becomes the latest pass's.
    client.set_terminated(run_id, "FINISHED")


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
            # A gauge, not a counter: consecutive passes look back over overlapping spans, so summing them
            # would count the same feedback row again and again.
            "last_pass": Gauge(
                "driftloop_monitoring_last_pass_timestamp_seconds",
                "Unix time of the last monitoring pass (a stale one: monitoring stopped)",
                registry=registry,
            ),
            "window": Gauge(
                "driftloop_monitoring_window_seconds",
                "Length of the last monitoring pass's window",
                registry=registry,
            ),
            "joint": Gauge(
                "driftloop_multivariate_drift_score",
                "Multivariate drift statistic per method (domain classifier: ROC AUC; PCA: mean reconstruction error)",
                ["method"],
                registry=registry,
            ),
            "joint_drift": Gauge(
                "driftloop_multivariate_drift",
                "1 if the method says the joint distribution drifted",
                ["method"],
                registry=registry,
            ),
            "cpu": Gauge(
                "driftloop_predict_cpu_ms_per_1k",
                "Model CPU milliseconds per 1,000 predictions in the last monitoring window",
                ["model_version", "arm", "source"],
                registry=registry,
            ),
            "estimated": Gauge(
                "driftloop_model_metric_estimated",
                "Model metric estimated without labels (CBPE / DLE) over the last window, with its band",
                ["metric", "model_version", "arm", "bound"],
                registry=registry,
            ),
            "unmatched": Gauge(
                "driftloop_feedback_unmatched",
                "Feedback labels in the last pass's performance span whose request id matches no prediction",
                registry=registry,
            ),
        }
    return _GAUGES[key]


def export_gauges(result: CheckResult, registry: CollectorRegistry = REGISTRY) -> None:
    """Set the monitoring gauges to this pass; a no-data pass only updates the row count (no stale verdicts
    are cleared into false 'no drift' readings)."""
    g = _gauges(registry)
    g["rows"].set(result.n_rows)
    start, end = result.window_start, result.window_end
    window = (end - start).total_seconds() if start is not None and end is not None else None
    monitoring_freshness(result.created_at.timestamp(), window, registry)
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
    for m in result.multivariate:
        g["joint"].labels(m.method).set(m.statistic)
        g["joint_drift"].labels(m.method).set(float(m.drift))
    if not result.no_data:
        g["estimated"].clear()  # versions and arms come and go: only this pass's estimates stand
    for guess in result.estimated:
        for metric, est in guess.metrics.items():
            for bound, figure in (("value", est.value), ("low", est.low), ("high", est.high)):
                if np.isfinite(figure):
                    g["estimated"].labels(metric, guess.model_version, guess.arm, bound).set(figure)
    g["cpu"].clear()
    for c in result.cost:
        if c.cpu_ms_per_1k is not None:
            g["cpu"].labels(c.model_version, c.arm, c.source).set(c.cpu_ms_per_1k)
    if result.performance is not None:
        g["unmatched"].set(result.performance.unknown_labels)
        for group in result.performance.groups:
            for metric, value in group.metrics.items():
                if value.value is not None:
                    g["metric"].labels(metric, group.model_version, group.arm).set(value.value)


def monitoring_freshness(
    ts: float, window_seconds: float | None, registry: CollectorRegistry = REGISTRY
) -> None:
    """When the last monitoring pass ran and over how long a window (a pass with no data counts: it ran)."""
    g = _gauges(registry)
    g["last_pass"].set(ts)
    if window_seconds is not None and window_seconds > 0:
        g["window"].set(window_seconds)


def _safe(text: Any) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", str(text))
