"""Label-free performance in a monitoring pass: an estimate per model version and arm, before labels arrive.

The engine is `monitor/estimation/` (CBPE for classifiers, DLE for regression). Here each model version's
estimator is fitted once, on the version's kept holdout, which `train` logs with the model
(`reference/holdout.parquet`): labelled rows the version never trained on. (The drift reference is a sample
of its training rows, on which every model looks better than it is: calibrating there would make every
estimate optimistic.) A version trained before the holdout was kept has no estimate, and the pass says so.

A window's served rows are grouped by (model_version, arm). A classifier's group is estimated from the class
probabilities the log holds; a regression's from its logged features (encoded as the model encodes them)
and predictions. Shadow rows are not in the window (they repeat the served rows' inputs), so a shadowed
challenger has no estimate. Realised metrics come from `monitor/performance.py` on the labelled rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.config import LOWER_IS_BETTER
from driftloop.errors import DataError
from driftloop.monitor.estimation import MetricEstimate, PerformanceEstimator, fit_estimator
from driftloop.monitor.performance import probability_matrix

if TYPE_CHECKING:
    from driftloop.stores.models import ModelBundle

__all__ = ["GroupEstimate", "VersionEstimator", "estimate_window", "estimated_drop"]


@dataclass
class GroupEstimate:
    """One (model_version, arm)'s estimated metrics over the window's rows, or why there are none."""

    model_version: str
    arm: str
    rows: int
    method: str | None = None
    """`cbpe` or `dle`; None when there is no estimate (`note` says why)."""
    metrics: dict[str, MetricEstimate] = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "arm": self.arm,
            "rows": self.rows,
            "method": self.method,
            "metrics": {
                k: {b: v.to_dict()[b] for b in ("value", "low", "high")} for k, v in self.metrics.items()
            },
            "note": self.note,
        }


@dataclass(frozen=True)
class VersionEstimator:
    """A model version's estimator, fitted on its kept holdout, or the reason it has none."""

    model_version: str
    estimator: PerformanceEstimator | None
    note: str | None = None
    classes: tuple[str, ...] = ()
    """The classes as the log writes them (the keys of its probabilities), in the model's order."""
    bundle: ModelBundle | None = None
    """The version's model: its encoder turns a regression's logged features into the loss models' input."""

    @classmethod
    def fit(
        cls,
        version: str,
        bundle: ModelBundle,
        holdout: pd.DataFrame | None,
        *,
        classes: Sequence[str] = (),
        confidence: float = 0.95,
    ) -> VersionEstimator:
        """`holdout`: the version's kept holdout (features + target), None if the version has none."""
        if holdout is None:
            return cls(version, None, f"v{version} was trained before its holdout was kept: no estimate")
        spec = bundle.spec
        holdout = holdout[holdout[spec.target].notna()]
        try:
            X = _features(bundle, holdout)
            out = bundle.predict_matrix(X.to_numpy())
            estimator = fit_estimator(
                X,
                np.asarray(out.proba if spec.is_classifier else out.labels),
                holdout[spec.target].to_numpy(),
                spec.task,  # type: ignore[arg-type]
                classes=list(spec.classes) or None,
                confidence=confidence,
                rare="raw",
            )
        except DataError as exc:
            return cls(version, None, f"v{version}: its holdout cannot calibrate an estimate: {exc}")
        return cls(version, estimator, None, tuple(classes), bundle)

    def estimate(self, rows: pd.DataFrame) -> tuple[dict[str, MetricEstimate], str, str | None]:
        """The metrics over `rows` (log rows of this version), the method, and a note (rows left out)."""
        assert self.estimator is not None and self.bundle is not None
        if self.estimator.method == "cbpe":
            has = rows["probabilities"].notna()
            proba = probability_matrix(rows.loc[has, "probabilities"], list(self.classes))
            if not len(proba):
                raise DataError("no logged class probabilities")
            result = self.estimator.estimate(proba)
        else:
            predictions = pd.to_numeric(rows["prediction"], errors="coerce")
            has = predictions.notna()
            result = self.estimator.estimate(predictions[has].to_numpy(), _features(self.bundle, rows[has]))
        left = int((~has).sum())
        note = f"{left} row(s) without a logged output left out" if left else None
        uncalibrated = result.detail.get("uncalibrated")
        if uncalibrated:
            extra = (
                f"class(es) {', '.join(uncalibrated)} too rare in the holdout to calibrate: model scores used"
            )
            note = f"{note}; {extra}" if note else extra
        return result.metrics, result.method, note


def _features(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's encoded features of `frame` (holdout or logged rows), named as the spec names them."""
    missing = [f.name for f in bundle.spec.features if f.name not in frame.columns]
    if missing:
        raise DataError(f"no logged feature(s) {', '.join(missing[:5])}")
    return pd.DataFrame(
        bundle.encoder.encode_frame(frame), columns=list(bundle.spec.feature_names), index=frame.index
    )


def estimate_window(
    rows: pd.DataFrame, estimators: Mapping[str, VersionEstimator], *, min_rows: int
) -> list[GroupEstimate]:
    """An estimate per (model_version, arm) of the window's served rows, for the versions in `estimators`."""
    out: list[GroupEstimate] = []
    if rows.empty:
        return out
    for (version, arm), group in rows.groupby(["model_version", "arm"], sort=True, observed=True):
        fitted = estimators.get(str(version))
        if fitted is None:
            continue
        entry = GroupEstimate(str(version), str(arm), len(group), note=fitted.note)
        if fitted.estimator is not None:
            if len(group) < min_rows:
                entry.note = f"{len(group)} rows (< monitoring.min_rows {min_rows}): no estimate"
            else:
                try:
                    entry.metrics, entry.method, entry.note = fitted.estimate(group)
                except DataError as exc:
                    entry.note = f"no estimate: {exc}"
        out.append(entry)
    return out


def estimated_drop(
    metric: str, estimate: MetricEstimate | None, reference: float | None, max_drop: float
) -> tuple[bool, str, dict[str, Any]]:
    """Whether the champion's estimated `metric` has fallen `max_drop` or more below its holdout score, with
    the band clear of the holdout score too (so one small, noisy window does not retrain); a reason and the
    evidence. Shared by the `estimated_performance` trigger and alert rule."""
    if estimate is None or reference is None:
        return False, f"no label-free estimate of {metric} for the champion", {}
    lower_better = metric in LOWER_IS_BETTER
    drop = (estimate.value - reference) if lower_better else (reference - estimate.value)
    clear = estimate.low > reference if lower_better else estimate.high < reference
    evidence = {
        "metric": metric,
        "estimated": estimate.value,
        "low": estimate.low,
        "high": estimate.high,
        "reference": reference,
        "drop": drop,
    }
    band = f"[{estimate.low:.3f}, {estimate.high:.3f}]"
    if drop >= max_drop and clear:
        return (
            True,
            f"{metric} estimated at {estimate.value:.3f} {band} without labels, against {reference:.3f} on "
            "the holdout",
            evidence,
        )
    return (
        False,
        f"estimated {metric} {estimate.value:.3f} {band} vs {reference:.3f}: "
        + ("within " + f"{max_drop}" if drop < max_drop else "band reaches the holdout score"),
        evidence,
    )
