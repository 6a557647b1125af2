"""Label-free performance estimation (CBPE, DLE): under covariate shift the estimate follows the realised
metric across windows and its band holds it; a miscalibrated model is recalibrated; errors name the problem."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftloop.errors import DataError, UserError
from driftloop.monitor.estimation import CBPEEstimator, DLEEstimator, fit_estimator

WINDOWS = 50
WINDOW_ROWS = 400


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def binary_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Features (x0 moved by `shift`) and labels drawn from a fixed P(y | x): covariate shift only."""
    X = rng.normal(size=(n, 3))
    X[:, 0] += shift
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + 0.3 * X[:, 1] ** 2
    return X, (rng.random(n) < _sigmoid(logit)).astype(int)


def multiclass_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, 3))
    X[:, 0] += shift
    logits = np.column_stack([1.2 * X[:, 0], -X[:, 0] + X[:, 1], 0.8 * X[:, 2] - 0.5 * X[:, 1]])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cum = np.cumsum(p, axis=1)
    y = (rng.random((n, 1)) > cum).sum(axis=1)
    return X, np.minimum(y, 2)


def _lgbm_classifier(X: np.ndarray, y: np.ndarray):  # noqa: ANN202
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=150, learning_rate=0.05, num_leaves=15, verbose=-1, n_jobs=1).fit(
        X, y
    )


def _coverage(estimator, model, make, rng, metrics: tuple[str, ...], labels=None):  # noqa: ANN001, ANN202
    """Per metric: share of windows whose realised metric is inside the band, the mean absolute error of the
    estimate, and the correlation of estimate and realised across windows (shifts from -1.5 to 1.5)."""
    hits = {m: 0 for m in metrics}
    est, real = {m: [] for m in metrics}, {m: [] for m in metrics}
    for shift in np.linspace(-1.5, 1.5, WINDOWS):
        X, y = make(rng, WINDOW_ROWS, shift)
        result = estimator.estimate(model.predict_proba(X), labels=y if labels is None else labels[y])
        for m in metrics:
            e = result.metrics[m]
            assert e.low <= e.value <= e.high, (m, e)
            hits[m] += e.low <= e.realised <= e.high
            est[m].append(e.value)
            real[m].append(e.realised)
    return {
        m: (
            hits[m] / WINDOWS,
            float(np.mean(np.abs(np.subtract(est[m], real[m])))),
            float(np.corrcoef(est[m], real[m])[0, 1]),
        )
        for m in metrics
    }


def test_binary_estimate_tracks_covariate_shift_and_its_band_covers() -> None:
    rng = np.random.default_rng(1)
    model = _lgbm_classifier(*binary_rows(rng, 4000))
    Xr, yr = binary_rows(rng, 4000)  # a holdout: out of sample for the model
    estimator = fit_estimator(None, model.predict_proba(Xr), yr, "binary")
    assert isinstance(estimator, CBPEEstimator)
    report = _coverage(estimator, model, binary_rows, rng, ("accuracy", "f1", "f1_macro", "roc_auc"))
    for metric, (coverage, mae, _) in report.items():
        assert coverage >= 0.8, (metric, report)
        assert mae < 0.03, (metric, report)
    # The shift moves accuracy and F1 a lot; an estimate that ignored the window could not follow it.
    assert report["accuracy"][2] > 0.8 and report["f1"][2] > 0.9, report


def test_multiclass_estimate_with_class_labels() -> None:
    rng = np.random.default_rng(2)
    X, y = multiclass_rows(rng, 4000)
    model = _lgbm_classifier(X, y)
    Xr, yr = multiclass_rows(rng, 4000)
    names = np.array(["low", "mid", "high"], dtype=object)
    estimator = fit_estimator(None, model.predict_proba(Xr), names[yr], "multiclass", classes=list(names))
    report = _coverage(estimator, model, multiclass_rows, rng, ("accuracy", "f1_macro", "roc_auc"), names)
    for metric, (coverage, mae, _) in report.items():
        assert coverage >= 0.8, (metric, report)
        assert mae < 0.03, (metric, report)
    assert report["accuracy"][2] > 0.8, report


def test_a_small_reference_widens_the_band_and_it_still_covers() -> None:
    """150 reference rows pin the calibration down far less than 4,000: the band says so (its calibration
    term), and still holds the realised metric in most windows."""
    rng = np.random.default_rng(12)
    model = _lgbm_classifier(*binary_rows(rng, 4000))
    Xs, ys = binary_rows(rng, 150)
    small = fit_estimator(None, model.predict_proba(Xs), ys, "binary")
    Xl, yl = binary_rows(rng, 4000)
    large = fit_estimator(None, model.predict_proba(Xl), yl, "binary")
    X, _ = binary_rows(rng, WINDOW_ROWS, 1.0)
    for name in ("accuracy", "f1", "roc_auc"):
        a, b = (
            small.estimate(model.predict_proba(X)).metrics[name],
            large.estimate(model.predict_proba(X)).metrics[name],
        )
        assert a.high - a.low > 1.2 * (b.high - b.low), name
    report = _coverage(small, model, binary_rows, rng, ("accuracy", "f1", "roc_auc"))
    assert all(coverage >= 0.8 for coverage, _, _ in report.values()), report


def test_overconfident_scores_are_recalibrated() -> None:
    """Scores pushed towards 0 and 1 (logit x 3) say accuracy ~0.95; the calibrated estimate finds ~0.8."""
    rng = np.random.default_rng(3)

    def logit(X: np.ndarray) -> np.ndarray:
        return 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2]

    def rows(n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, 3))
        X[:, 0] += shift
        return X, (rng.random(n) < _sigmoid(logit(X))).astype(int)

    def scores(X: np.ndarray) -> np.ndarray:
        return _sigmoid(3.0 * logit(X))  # right ranking, far too confident

    Xr, yr = rows(4000)
    estimator = fit_estimator(None, scores(Xr), yr, "binary")
    assert isinstance(estimator, CBPEEstimator)
    misses = 0
    for shift in (-1.0, 0.0, 1.0):
        X, y = rows(2000, shift)
        s = scores(X)
        naive = float(np.mean(np.maximum(s, 1 - s)))  # what the raw scores promise
        result = estimator.estimate(s, labels=y)
        acc = result.metrics["accuracy"]
        assert abs(naive - acc.realised) > 0.1  # the raw scores would be badly wrong ...
        assert abs(acc.value - acc.realised) < 0.03  # ... the calibrated estimate is not
        misses += not acc.low <= acc.realised <= acc.high
    assert misses <= 1


def test_calibration_leaves_calibrated_scores_nearly_as_they_are() -> None:
    """True probabilities as scores: the isotonic map moves them little, and the estimates hardly at all."""
    rng = np.random.default_rng(4)
    X, y = binary_rows(rng, 3000)
    true_p = lambda X: _sigmoid(1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + 0.3 * X[:, 1] ** 2)  # noqa: E731
    estimator = fit_estimator(None, true_p(X), y, "binary")
    assert isinstance(estimator, CBPEEstimator)
    Xw, yw = binary_rows(rng, 2000, 1.0)
    p = true_p(Xw)
    assert np.mean(np.abs(estimator.calibrated(p)[:, 1] - p)) < 0.03
    accuracy = estimator.estimate(p, labels=yw).metrics["accuracy"]
    exact = float(np.mean(np.maximum(p, 1 - p)))  # the expected accuracy the true probabilities give
    assert abs(accuracy.value - exact) < 0.02 and accuracy.low < exact < accuracy.high


def _certain() -> CBPEEstimator:
    """Fitted on 20,000 rows whose scores are their labels: the map is the identity (0 -> 0, 1 -> 1, linear
    between), and 10,000 rows a block pin it down."""
    y = np.tile([0, 1], 10_000)
    estimator = fit_estimator(None, y.astype(float), y, "binary")
    assert isinstance(estimator, CBPEEstimator)
    return estimator


def test_certain_probabilities_give_the_realised_metrics() -> None:
    """Probabilities of exactly 0 and 1 leave no doubt: expected and realised metrics coincide, band shut."""
    y = np.array([0, 1, 1] * 30)
    result = _certain().estimate(y.astype(float), labels=y)
    for m in result.metrics.values():
        assert m.value == pytest.approx(m.realised) and m.high - m.low < 1e-3


def test_expected_roc_auc_is_the_weighted_pair_count_with_ties() -> None:
    """sum p_i (1 - p_j) [s_i > s_j] (+ half for ties) / (sum p * sum (1 - p)), by brute force."""
    rng = np.random.default_rng(10)
    s = rng.choice(
        [0.1, 0.3, 0.5, 0.7, 0.9], size=60
    )  # many ties; no calibration map: s are the probabilities
    value = _certain().estimate(s).metrics["roc_auc"].value
    above = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :]) * (1 - np.eye(60))
    brute = float((s[:, None] * (1 - s[None, :]) * above).sum() / (s.sum() * (1 - s).sum()))
    assert value == pytest.approx(brute)


@pytest.mark.parametrize("k", [2, 4])
def test_delta_method_band_matches_simulated_labels(k: int) -> None:
    """The closed-form standard deviations against 4,000 label vectors drawn from the same probabilities."""
    from driftloop.monitor.estimation.cbpe import _gradients, _label_variance, _ranks, _realised

    rng = np.random.default_rng(11 + k)
    n = 300
    logits = rng.normal(scale=1.5, size=(n, k))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    targets = [1] if k == 2 else list(range(k))
    ranks = _ranks(p, targets)
    cum = np.cumsum(p, axis=1)
    y = (rng.random((4000, n, 1)) > cum[None, :, :]).sum(axis=2).clip(max=k - 1)
    simulated = _realised(y, pred, ranks, targets, k)
    for name, G in _gradients(p, pred, ranks, targets, k).items():
        sd = np.sqrt(_label_variance(p, G))
        assert sd == pytest.approx(float(np.std(simulated[name])), rel=0.1), name


def heteroscedastic(
    rng: np.random.Generator, n: int, centre: float | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """y = 2 x0 + sin(3 x1) + noise whose sd grows with |x0|: moving x0 out moves the model's error.

    The reference (`centre` None) spreads x0 over [-2.5, 2.5]; a window gathers it around `centre`, inside
    that range (trees do not extrapolate: beyond the reference's range the estimate is the edge's)."""
    x0 = (
        rng.uniform(-2.5, 2.5, size=n)
        if centre is None
        else np.clip(rng.normal(centre, 0.5, size=n), -2.5, 2.5)
    )
    x1 = rng.uniform(-1, 1, size=n)
    colour = rng.choice(["red", "white"], size=n)
    noise = rng.normal(size=n) * (0.2 + 0.8 * np.abs(x0))
    y = 2 * x0 + np.sin(3 * x1) + np.where(colour == "red", 0.5, 0.0) + noise
    return pd.DataFrame({"x0": x0, "x1": x1, "colour": colour}), y


def test_dle_tracks_mae_when_the_window_moves_into_the_noisy_region() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(5)
    train_X, train_y = heteroscedastic(rng, 4000, None)
    encode = lambda f: np.column_stack([f.x0, f.x1, (f.colour == "red").astype(float)])  # noqa: E731
    model = lgb.LGBMRegressor(n_estimators=200, learning_rate=0.05, verbose=-1, n_jobs=1)
    model.fit(encode(train_X), train_y)
    ref_X, ref_y = heteroscedastic(rng, 4000, None)
    estimator = fit_estimator(ref_X, model.predict(encode(ref_X)), ref_y, "regression")
    assert isinstance(estimator, DLEEstimator)
    hits, est, real = 0, [], []
    centres = np.linspace(-1.6, 1.6, 30)
    for centre in centres:
        X, y = heteroscedastic(rng, WINDOW_ROWS, centre)
        result = estimator.estimate(model.predict(encode(X)), X, labels=y)
        mae = result.metrics["mae"]
        hits += mae.low <= mae.realised <= mae.high
        est.append(mae.value)
        real.append(mae.realised)
        rmse = result.metrics["rmse"]
        assert rmse.low <= rmse.value <= rmse.high and rmse.value >= mae.value
    est_a, real_a = np.asarray(est), np.asarray(real)
    assert hits / len(centres) >= 0.8, (hits, list(zip(est, real, strict=True)))
    assert np.corrcoef(est_a, real_a)[0, 1] > 0.9
    # The noisy windows' MAE is far above the calm ones'; the estimate follows (not the reference's mean).
    assert real_a[[0, -1]].min() > 1.5 * real_a[len(centres) // 2]
    assert np.mean(np.abs(est_a - real_a)) < 0.1 * np.mean(real_a)


def test_concept_drift_is_not_seen() -> None:
    """The documented limit: flip the labels (P(y | x) changes) and the estimate, from scores alone, stays."""
    rng = np.random.default_rng(6)
    model = _lgbm_classifier(*binary_rows(rng, 3000))
    estimator = fit_estimator(
        None, model.predict_proba(binary_rows(rng, 3000)[0]), binary_rows(rng, 3000)[1], "binary"
    )
    X, y = binary_rows(rng, 1000)
    same = estimator.estimate(model.predict_proba(X), labels=y).metrics["accuracy"]
    flipped = estimator.estimate(model.predict_proba(X), labels=1 - y).metrics["accuracy"]
    assert same.value == flipped.value
    assert flipped.realised is not None and flipped.realised < flipped.low


def test_result_is_plain_json() -> None:
    rng = np.random.default_rng(7)
    X, y = binary_rows(rng, 500)
    p = _sigmoid(1.5 * X[:, 0])
    result = fit_estimator(None, p, y, "binary").estimate(p[:100])
    d = json.loads(json.dumps(result.to_dict()))
    assert d["method"] == "cbpe" and d["rows"] == 100
    assert set(d["metrics"]) == {"accuracy", "f1", "f1_macro", "roc_auc"}
    assert d["metrics"]["accuracy"]["realised"] is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, y: fit_estimator(None, p[:20], y[:20], "binary"), "20 labelled rows"),
        (lambda p, y: fit_estimator(None, np.where(np.arange(len(p)) == 3, np.nan, p), y, "binary"), "NaN"),
        (
            lambda p, y: fit_estimator(
                None, p, np.where(y == 1, "yes", "no"), "binary", classes=["no", "maybe"]
            ),
            "yes",
        ),
        (
            lambda p, y: fit_estimator(None, np.column_stack([1 - p, p, 0 * p]), y, "multiclass"),
            "class(es) 2",
        ),
        (lambda p, y: fit_estimator(None, p * 2, y, "binary"), "probabilities in [0, 1]"),
        (lambda p, y: fit_estimator(None, p, y, "ranking"), "ranking"),  # type: ignore[arg-type]
        (lambda p, y: fit_estimator(None, p, y, "regression"), "features"),
        (lambda p, y: fit_estimator(None, p, y, "binary").estimate(np.r_[p[:5], np.nan]), "window scores"),
        (lambda p, y: fit_estimator(None, p, y, "binary").estimate(np.column_stack([p, p, p])), "2 classes"),
    ],
)
def test_user_errors_name_the_problem(make, message: str) -> None:  # noqa: ANN001
    rng = np.random.default_rng(8)
    X, y = binary_rows(rng, 300)
    p = _sigmoid(1.5 * X[:, 0])
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        make(p, y)


def test_regression_errors_name_the_problem() -> None:
    rng = np.random.default_rng(9)
    X, y = heteroscedastic(rng, 300, 0.0)
    pred = 2 * X.x0.to_numpy()
    with pytest.raises(DataError, match="1 missing"):
        fit_estimator(X, np.where(np.arange(300) == 0, np.nan, pred), y, "regression")
    estimator = fit_estimator(X, pred, y, "regression")
    with pytest.raises(DataError, match="missing feature column.*colour"):
        estimator.estimate(pred, X.drop(columns=["colour"]))
    with pytest.raises(DataError, match="needs the window's features"):
        estimator.estimate(pred)
