"""One monitoring pass: a window of the prediction log against the champion's reference sample.

The engine (`ReferenceState.build`, `evaluate_window`) works on plain DataFrames and feature specs, so it
is tested without any store. `run_check` is the glue: it reads the deployment state, fetches the
champion's reference sample and spec from the tracking store (prepared once per model version and kept
in memory), reads the window with DuckDB, and records the result in the metadata store, in MLflow (the
model version's monitoring run) and in Prometheus gauges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.errors import first_line
from driftloop.kinds import bool_key, category_key
from driftloop.monitor.cost import ArmCost, serving_cost
from driftloop.monitor.drift import ColumnDrift, ColumnOverride, ColumnSpec, DriftDetector, DriftResult
from driftloop.monitor.estimated import GroupEstimate, VersionEstimator, estimate_window
from driftloop.monitor.estimation import MetricEstimate
from driftloop.monitor.logwindow import Window, read_labeled, read_window
from driftloop.monitor.multivariate import MultivariateResult, multivariate_drift
from driftloop.monitor.performance import PerformanceResult, evaluate_performance
from driftloop.monitor.quality import (
    FeatureProfile,
    QualityLimits,
    QualityResult,
    check_quality,
    profile_features,
)
from driftloop.monitor.samples import CATEGORICAL, NUMERIC

if TYPE_CHECKING:
    from driftloop.config import Config, MonitoringConfig
    from driftloop.stores import Stores

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as the log writes them, by the category rule of `driftloop.kinds` (a boolean as
    "True"/"False", an integral number as its integer); missing values (None, NaN, pd.NA) as None."""
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        return series  # already strings (the log's categorical columns): nothing to convert

    def one(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, bool | np.bool_):
            return bool_key(v)
        try:
            return category_key(v)
        except ValueError:
            return str(v)

    return series.astype(object).map(one)


def class_strings(classes: Sequence[Any]) -> tuple[str, ...]:
    """A model's classes as the log writes them (the keys of its probabilities and its labels)."""
    return tuple(str(v) for v in category_strings(pd.Series(list(classes), dtype=object)))


def _frame_for(specs: Sequence[ColumnSpec], frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the specs name (those present), categorical ones as strings."""
    out = {}
    for spec in specs:
        if spec.name in frame.columns:
            col = frame[spec.name]
            out[spec.name] = (
                category_strings(col) if spec.kind == CATEGORICAL else pd.to_numeric(col, errors="coerce")
            )
    return pd.DataFrame(out, index=frame.index)


@dataclass
class ReferenceState:
    """Everything a pass compares against, prepared once per model version."""

    model_name: str
    model_version: str | None
    task: str
    classes: tuple[str, ...]
    features: list[ColumnSpec]
    detector: DriftDetector
    profiles: list[FeatureProfile]
    prediction_detector: DriftDetector | None = None
    target_detector: DriftDetector | None = None
    metric_name: str | None = None
    reference_metric: float | None = None
    joint_reference: pd.DataFrame | None = None
    """The reference features for multivariate drift (`monitoring.multivariate`), else None."""

    @classmethod
    def build(
        cls,
        reference: pd.DataFrame,
        features: Sequence[Any],
        *,
        task: str,
        monitoring: MonitoringConfig,
        target: str | None = None,
        classes: Sequence[Any] = (),
        reference_predictions: Sequence[Any] | np.ndarray | None = None,
        model_name: str = "",
        model_version: str | None = None,
        metric_name: str | None = None,
        reference_metric: float | None = None,
    ) -> ReferenceState:
        specs = [ColumnSpec(f.name, f.kind) for f in features]
        overrides = {k: ColumnOverride(v.method, v.threshold) for k, v in monitoring.columns.items()}
        common: dict[str, Any] = {
            "drift_share": monitoring.drift_share,
            "psi_threshold": monitoring.psi_threshold,
        }
        detector = DriftDetector(specs, overrides=overrides, **common).fit(_frame_for(specs, reference))
        out_kind = NUMERIC if task == "regression" else CATEGORICAL
        pred = tgt = None
        if reference_predictions is not None:
            spec = ColumnSpec("prediction", out_kind)
            pred = DriftDetector([spec], **common).fit(
                _frame_for([spec], pd.DataFrame({"prediction": reference_predictions}))
            )
        if target is not None and target in reference.columns:
            spec = ColumnSpec("label", out_kind)
            tgt = DriftDetector([spec], **common).fit(
                _frame_for([spec], pd.DataFrame({"label": reference[target]}))
            )
        return cls(
            model_name=model_name,
            model_version=model_version,
            task=task,
            classes=class_strings(classes),
            features=specs,
            detector=detector,
            profiles=profile_features(features, reference),
            prediction_detector=pred,
            target_detector=tgt,
            joint_reference=_frame_for(specs, reference) if monitoring.multivariate else None,
            metric_name=metric_name,
            reference_metric=reference_metric,
        )


@dataclass
class CheckResult:
    model_name: str
    model_version: str | None
    status: str
    """`ok`, `no_data` (fewer rows than monitoring.min_rows: no verdicts) or `no_model` (nothing deployed)."""
    window_start: datetime | None
    window_end: datetime | None
    n_rows: int
    drift: DriftResult | None = None
    prediction_drift: ColumnDrift | None = None
    target_drift: ColumnDrift | None = None
    quality: QualityResult | None = None
    performance: PerformanceResult | None = None
    metric_name: str | None = None
    champion_metric: float | None = None
    """The gate metric on labeled production rows of the champion (arm champion)."""
    reference_metric: float | None = None
    """The champion's holdout score for the gate metric when it was trained."""
    last_rows: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    alerts: list[dict[str, Any]] = field(default_factory=list)
    multivariate: list[MultivariateResult] = field(default_factory=list)
    """Joint-distribution drift (`monitoring.multivariate`): one result per method, empty when off."""
    cost: list[ArmCost] = field(default_factory=list)
    """Serving cost per version, arm and source over the window (shadow scoring included)."""
    estimated: list[GroupEstimate] = field(default_factory=list)
    """Label-free performance per version and arm over the window (`monitoring.estimation`)."""

    @property
    def no_data(self) -> bool:
        return self.status != "ok"

    @property
    def n_labeled(self) -> int:
        if self.performance is None or self.model_version is None:
            return 0
        group = self.performance.group(self.model_version, "champion")
        return group.n_labeled if group else 0

    @property
    def champion_estimate(self) -> MetricEstimate | None:
        """The label-free estimate of the gate metric for the champion's own arm, if the pass made one."""
        for group in self.estimated:
            if group.model_version == self.model_version and group.arm == "champion":
                return group.metrics.get(self.metric_name or "")
        return None

    def to_dict(self, *, distributions: bool = True) -> dict[str, Any]:
        def col(c: ColumnDrift | None) -> dict[str, Any] | None:
            return None if c is None else c.to_dict(distributions=distributions)

        return {
            "kind": "monitor",
            "schema_version": SCHEMA_VERSION,
            "created_at": self.created_at.isoformat(),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "status": self.status,
            "window": {
                "start": self.window_start.isoformat() if self.window_start else None,
                "end": self.window_end.isoformat() if self.window_end else None,
                "rows": self.n_rows,
                "last_rows": self.last_rows,
            },
            "drift": None if self.drift is None else self.drift.to_dict(distributions=distributions),
            "prediction_drift": col(self.prediction_drift),
            "target_drift": col(self.target_drift),
            "quality": None if self.quality is None else self.quality.to_dict(),
            "performance": None if self.performance is None else self.performance.to_dict(),
            "metric": {
                "name": self.metric_name,
                "live": self.champion_metric,
                "reference": self.reference_metric,
            },
            "alerts": self.alerts,
            "multivariate": [m.to_dict() for m in self.multivariate],
            "cost": [c.to_dict() for c in self.cost],
            "estimated": [g.to_dict() for g in self.estimated],
        }

    def report(self, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The full report (charts' distributions included), with earlier passes for the performance chart."""
        out = self.to_dict()
        if history:
            out["history"] = history
        return out


def evaluate_window(
    state: ReferenceState,
    window: Window,
    labeled: pd.DataFrame,
    *,
    monitoring: MonitoringConfig,
    unknown_labels: int = 0,
    last_rows: int | None = None,
    estimators: Mapping[str, VersionEstimator] | None = None,
) -> CheckResult:
    """Drift, quality and performance of one window against a prepared reference; with `estimators` (per
    model version), performance estimated without labels too."""
    rows = window.rows
    n = len(rows)
    status = "ok" if n >= monitoring.min_rows else "no_data"
    result = CheckResult(
        model_name=state.model_name,
        model_version=state.model_version,
        status=status,
        window_start=window.start,
        window_end=window.end,
        n_rows=n,
        metric_name=state.metric_name,
        reference_metric=state.reference_metric,
        last_rows=last_rows,
    )
    limits = QualityLimits(
        monitoring.max_null_increase, monitoring.max_out_of_range_share, monitoring.max_unseen_share
    )
    feature_frame = rows[window.feature_columns] if n else rows
    if n:
        result.quality = check_quality(feature_frame, state.profiles, limits)
    if status == "ok":
        current = _frame_for(state.features, feature_frame)
        result.drift = state.detector.evaluate(current)
        if state.joint_reference is not None:
            result.multivariate = multivariate_drift(state.joint_reference, current, state.features)
        if estimators:
            result.estimated = estimate_window(rows, estimators, min_rows=monitoring.min_rows)
        if state.prediction_detector is not None:
            served = (
                rows[rows["model_version"].astype(str) == str(state.model_version)]
                if state.model_version
                else rows
            )
            if len(served) >= monitoring.min_rows:
                spec = state.prediction_detector.columns
                result.prediction_drift = state.prediction_detector.evaluate(
                    _frame_for(spec, served)
                ).columns[0]
        if state.target_detector is not None and len(labeled):
            in_window = labeled[labeled["request_id"].isin(set(rows["request_id"]))]
            if len(in_window) >= monitoring.min_rows:
                spec = state.target_detector.columns
                result.target_drift = state.target_detector.evaluate(_frame_for(spec, in_window)).columns[0]
    result.performance = evaluate_performance(
        labeled,
        task=state.task,
        classes=state.classes,
        unknown_labels=unknown_labels,
        confidence=monitoring.confidence,
        resamples=monitoring.bootstrap_resamples,
    )
    if state.metric_name and state.model_version:
        group = result.performance.group(state.model_version, "champion")
        if group is not None and state.metric_name in group.metrics:
            result.champion_metric = group.metrics[state.metric_name].value
    return result


# -- glue over the stores ---------------------------------------------------------------------------------


class _Memo:
    """What a pass prepares once per model version (its reference, its estimator), kept for the next passes;
    bounded, oldest out first, since versions come and go."""

    def __init__(self, size: int = 8) -> None:
        self._items: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value


_REFERENCES = _Memo()
_ESTIMATORS = _Memo()


def reference_state(stores: Stores, cfg: Config, version: str) -> ReferenceState:
    """The champion's prepared reference, built once per (store, model, version, monitoring config)."""
    key = (stores.tracking.tracking_uri, stores.model_name, str(version), cfg.monitoring.model_dump_json())
    cached: ReferenceState | None = _REFERENCES.get(key)
    if cached is not None:
        return cached
    bundle = stores.tracking.load_bundle(version)
    spec = bundle.spec
    reference = pd.read_parquet(stores.tracking.reference_path(version))
    names = [f.name for f in spec.features if f.name in reference.columns]
    predictions = bundle.predict_frame(reference[names]).labels if len(names) == len(spec.features) else None
    metric = spec.metric or cfg.metric(spec.task)
    tags = stores.tracking.get_version(version).tags
    try:
        reference_metric = float(tags[f"holdout_{metric}"])
    except (KeyError, ValueError):
        reference_metric = None
    state = ReferenceState.build(
        reference,
        spec.features,
        task=spec.task,
        monitoring=cfg.monitoring,
        target=spec.target,
        classes=spec.classes,
        reference_predictions=predictions,
        model_name=stores.model_name,
        model_version=str(version),
        metric_name=metric,
        reference_metric=reference_metric,
    )
    _REFERENCES.put(key, state)
    return state


def version_estimator(stores: Stores, cfg: Config, version: str) -> VersionEstimator:
    """A version's label-free estimator, fitted on its kept holdout once per (store, model, version, level).

    A version whose holdout or model cannot be read (the tracking store down) has no estimate this pass,
    with the reason in the result; it is tried again next pass."""
    key = (stores.tracking.tracking_uri, stores.model_name, str(version), cfg.monitoring.confidence)
    cached: VersionEstimator | None = _ESTIMATORS.get(key)
    if cached is not None:
        return cached
    try:
        bundle = stores.tracking.load_bundle(version)
        path = stores.tracking.holdout_path(version)
        holdout = None if path is None else pd.read_parquet(path)
    except Exception as exc:  # a view like MLflow logging: a store fault must not stop the pass
        log.warning("no performance estimate for v%s: %s", version, first_line(exc))
        return VersionEstimator(
            str(version), None, f"v{version}: model or holdout unreadable: {first_line(exc)}"
        )
    fitted = VersionEstimator.fit(
        str(version),
        bundle,
        holdout,
        classes=class_strings(bundle.spec.classes),
        confidence=cfg.monitoring.confidence,
    )
    _ESTIMATORS.put(key, fitted)
    return fitted


def champion_since(stores: Stores, champion: str) -> datetime | None:
    """When `champion` took over from another champion (deployment history); None for the first champion
    (nothing served before it, and rows a test or an import back-dates still count) or if history is silent."""
    since = None
    had_other = False
    for dep in stores.metadata.deployment_history(stores.model_name):
        if dep.champion != champion:
            since = None
            had_other = had_other or dep.champion is not None
        elif since is None and had_other:
            since = dep.updated_at
    return since


def run_check(
    stores: Stores,
    cfg: Config,
    *,
    window: str | None = None,
    last: int | None = None,
    now: datetime | None = None,
    record: bool = True,
) -> CheckResult:
    """One pass over the window (`--window 1h` / `--last N`, default from `monitoring`); stored unless `record`
    is False. Nothing deployed yet gives status `no_model`, not an error."""
    from driftloop.monitor.publish import publish
    from driftloop.timeutil import parse_duration

    now = now or datetime.now(UTC)
    mon = cfg.monitoring
    if window is None and last is None:
        window, last = (mon.window, None) if mon.window else (None, mon.last_rows)
    if window is None and last is None:
        window = "1h"
    start = end = None
    if last is None:
        start, end = now - parse_duration(str(window)), now
    champion = stores.metadata.get_deployment(stores.model_name).champion
    if champion is None:
        return CheckResult(stores.model_name, None, "no_model", start, end, 0, last_rows=last)
    state = reference_state(stores, cfg, champion)
    # Only rows served since this champion took over: older rows were the previous champion's world, the
    # one this champion was retrained away from; counting them would re-fire the drift trigger at once.
    since = champion_since(stores, champion)
    if since is not None and (start is None or since > start):
        start = since
    win = read_window(stores.log_dir, stores.model_name, start=start, end=end, last=last)
    # Labels arrive late: performance looks back `performance_window` from the window's end (for --last,
    # up to now, so the newest row is included).
    anchor = win.end if last is not None else end
    perf_start = win.start
    if mon.performance_window and anchor is not None:
        perf_start = anchor - parse_duration(mon.performance_window)
    labeled, unknown = read_labeled(
        stores.log_dir, stores.model_name, start=perf_start, end=None if last is not None else end
    )
    estimators = None
    if mon.estimation and len(win.rows) >= mon.min_rows:
        versions = sorted(set(win.rows["model_version"].astype(str)))
        estimators = {v: version_estimator(stores, cfg, v) for v in versions}
    result = evaluate_window(
        state, win, labeled, monitoring=mon, unknown_labels=unknown, last_rows=last, estimators=estimators
    )
    # With --last N the window ends at its newest row, which `ts < end` would leave out: read up to now.
    cost_end = None if last is not None else end
    result.cost = serving_cost(stores.log_dir, stores.model_name, start=win.start, end=cost_end)
    if record:
        publish(stores, result)
    return result
