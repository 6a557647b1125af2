"""The monitoring pass's label-free estimates (monitor/estimated.py) on real model bundles: a regression version
estimated from its logged features, a classifier with a class too rare to calibrate, a version without a
kept holdout, a group too small, and the drop rule the trigger and the alert share."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftloop.errors import DataError
from driftloop.monitor.estimated import VersionEstimator, estimate_window, estimated_drop
from driftloop.monitor.estimation import CBPEEstimator, MetricEstimate
from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec


def _bundle(task: str, X: pd.DataFrame, y: np.ndarray, classes: tuple = ()) -> ModelBundle:
    import lightgbm as lgb

    spec = ModelSpec(
        task=task,
        target="y",
        features=(
            FeatureSpec("x0", "numeric"),
            FeatureSpec("x1", "numeric"),
            FeatureSpec("colour", "categorical", categories=("red", "white")),
        ),
        classes=classes,
    )
    matrix = Encoder(spec).encode_frame(X)
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    target = y if task == "regression" else np.searchsorted(classes, y)
    booster = cls(n_estimators=60, learning_rate=0.1, verbose=-1, n_jobs=1).fit(matrix, target).booster_
    return ModelBundle(spec, booster, "lightgbm")


def _rows(rng: np.random.Generator, n: int, centre: float | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Noise grows with |x0|; `centre` gathers x0 around one place (covariate shift, one P(y | x))."""
    x0 = rng.normal(size=n) if centre is None else rng.normal(centre, 0.3, size=n)
    frame = pd.DataFrame({"x0": x0, "x1": rng.normal(size=n), "colour": rng.choice(["red", "white"], size=n)})
    y = 2 * x0 + frame.x1 + (frame.colour == "red") + rng.normal(scale=0.2 + np.abs(x0), size=n)
    return frame, y.to_numpy()


def _log(bundle: ModelBundle, frame: pd.DataFrame, version: str = "3", arm: str = "champion") -> pd.DataFrame:
    """Window rows as the log reader returns them: meta columns and one column per feature."""
    out = bundle.predict_frame(frame)
    rows = frame.copy()
    rows["model_version"], rows["arm"] = version, arm
    rows["prediction"] = out.labels
    if bundle.spec.is_classifier:
        names = [str(c) for c in bundle.spec.classes]
        rows["probabilities"] = [json.dumps(dict(zip(names, map(float, p), strict=True))) for p in out.proba]
    else:
        rows["probabilities"] = None
    return rows


def test_a_regression_version_is_estimated_from_its_logged_features() -> None:
    rng = np.random.default_rng(0)
    train_X, train_y = _rows(rng, 3000, None)
    bundle = _bundle("regression", train_X, train_y)
    holdout, holdout_y = _rows(rng, 2000, None)
    fitted = VersionEstimator.fit("3", bundle, holdout.assign(y=holdout_y))
    calm, calm_y = _rows(rng, 600, 0.0)
    noisy, noisy_y = _rows(rng, 600, 2.0)
    window = pd.concat([_log(bundle, calm, arm="champion"), _log(bundle, noisy, arm="challenger")])
    groups = {g.arm: g for g in estimate_window(window, {"3": fitted}, min_rows=100)}
    assert {g.method for g in groups.values()} == {"dle"}
    for arm, frame, y in (("champion", calm, calm_y), ("challenger", noisy, noisy_y)):
        mae = groups[arm].metrics["mae"]
        real = float(np.mean(np.abs(bundle.predict_frame(frame).labels - y)))
        assert abs(mae.value - real) < 0.15 * real, (arm, mae, real)
    # The noisy place's error is far above the calm one's, and the estimate says so without a label.
    assert groups["challenger"].metrics["mae"].value > 2 * groups["champion"].metrics["mae"].value


def test_a_class_too_rare_in_the_holdout_keeps_the_model_scores_and_says_so() -> None:
    rng = np.random.default_rng(1)
    X, _ = _rows(rng, 3000, None)
    y = np.where(X.x0 > 2.3, "c", np.where(X.x0 + X.x1 > 0, "b", "a"))
    bundle = _bundle("multiclass", X, y, classes=("a", "b", "c"))
    holdout = X.iloc[:400].assign(y=y[:400])
    holdout = holdout[(holdout.y != "c")].copy()
    holdout.iloc[0, holdout.columns.get_loc("y")] = "c"  # one row of c: too few to calibrate
    with pytest.raises(DataError, match="fewer than 2 labelled rows"):
        CBPEEstimator.fit(
            bundle.predict_frame(holdout).proba, holdout.y, "multiclass", classes=("a", "b", "c")
        )
    fitted = VersionEstimator.fit("3", bundle, holdout, classes=("a", "b", "c"))
    assert fitted.estimator is not None
    [group] = estimate_window(_log(bundle, X.iloc[1000:1600]), {"3": fitted}, min_rows=100)
    assert group.method == "cbpe" and 0.5 < group.metrics["accuracy"].value <= 1
    assert "class(es) c too rare in the holdout" in (group.note or "")


def test_versions_without_an_estimate_say_why() -> None:
    rng = np.random.default_rng(2)
    X, y = _rows(rng, 1000, None)
    bundle = _bundle("regression", X, y)
    old = VersionEstimator.fit("1", bundle, None)
    fitted = VersionEstimator.fit("2", bundle, X.iloc[:500].assign(y=y[:500]))
    window = pd.concat([_log(bundle, X.iloc[:300], "1"), _log(bundle, X.iloc[:50], "2")])
    window = pd.concat([window, _log(bundle, X.iloc[:40], "9")])  # a version the pass has no estimator for
    groups = {g.model_version: g for g in estimate_window(window, {"1": old, "2": fitted}, min_rows=100)}
    assert set(groups) == {"1", "2"}
    assert groups["1"].method is None and "trained before its holdout was kept" in (groups["1"].note or "")
    assert (
        groups["2"].method is None and groups["2"].note == "50 rows (< monitoring.min_rows 100): no estimate"
    )
    assert groups["1"].to_dict()["metrics"] == {} and groups["1"].rows == 300
    no_x1 = _log(bundle, X.iloc[:200], "2").drop(columns=["x1"])
    [g1] = estimate_window(no_x1, {"2": fitted}, min_rows=100)
    assert g1.note == "no estimate: no logged feature(s) x1"


@pytest.mark.parametrize(
    ("metric", "value", "band", "reference", "fired"),
    [
        ("roc_auc", 0.80, (0.75, 0.85), 0.90, True),  # 0.10 below, band clear of 0.90
        ("roc_auc", 0.80, (0.70, 0.91), 0.90, False),  # far enough, but the band reaches the holdout score
        ("roc_auc", 0.87, (0.85, 0.89), 0.90, False),  # within max_drop
        ("rmse", 1.4, (1.3, 1.5), 1.2, True),  # lower is better: a rise is the drop
        ("rmse", 1.0, (0.9, 1.1), 1.2, False),  # an improvement never fires
    ],
)
def test_the_estimated_drop_rule(metric, value, band, reference, fired) -> None:  # noqa: ANN001
    est = MetricEstimate(value, *band)
    got, reason, evidence = estimated_drop(metric, est, reference, 0.05)
    assert got is fired, reason
    assert evidence["reference"] == reference and evidence["estimated"] == value
    assert estimated_drop(metric, None, reference, 0.05)[0] is False
