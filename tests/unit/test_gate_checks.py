"""The gate's statistics against hand computations, and its decisions on real (small) fitted models."""

from math import comb

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from driftloop.compiled import served_form
from driftloop.config import GateConfig
from driftloop.metrics import score
from driftloop.registry import gate
from driftloop.registry.gate import (
    CheckResult,
    EdgeInputCheck,
    LatencyCheck,
    MetricCheck,
    cost_check,
    mcnemar_p,
    paired_bootstrap,
    run_gate,
)
from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec


def test_paired_bootstrap_matches_a_hand_loop() -> None:
    rng = np.random.default_rng(0)
    n, k = 200, 3
    y = rng.integers(0, k, n)
    pa, pb = rng.dirichlet(np.ones(k), n), rng.dirichlet(np.ones(k), n)
    cases = [("multiclass", m, y, pa, pb) for m in ("accuracy", "f1_macro", "log_loss", "roc_auc")]
    yb = rng.integers(0, 2, n)
    qa, qb = rng.dirichlet(np.ones(2), n), rng.dirichlet(np.ones(2), n)
    cases += [("binary", "roc_auc", yb, qa, qb)]
    yr = rng.normal(size=n)
    sa, sb = yr + rng.normal(scale=0.5, size=n), yr + rng.normal(scale=0.6, size=n)
    cases += [("regression", m, yr, sa, sb) for m in ("rmse", "mae", "r2")]
    for task, metric, truth, a, b in cases:
        got = paired_bootstrap(metric, task, truth, a, truth, b, resamples=60, seed=5)
        hand_rng = np.random.default_rng(5)
        sign = -1.0 if metric in ("log_loss", "rmse", "mae") else 1.0
        hand = []
        for _ in range(60):
            i = hand_rng.integers(0, n, size=n)
            hand.append(sign * (score(metric, truth[i], a[i], task) - score(metric, truth[i], b[i], task)))
        assert np.allclose(got, hand), (task, metric)


def test_mcnemar_is_the_exact_binomial_tail() -> None:
    a = np.array([True] * 30 + [False] * 10 + [True] * 50 + [False] * 10)
    b = np.array([False] * 30 + [True] * 10 + [True] * 50 + [False] * 10)
    p, only_a, only_b = mcnemar_p(a, b)
    assert (only_a, only_b) == (30, 10)
    hand = sum(comb(40, i) for i in range(30, 41)) / 2**40
    assert p == pytest.approx(hand, rel=1e-9)
    assert mcnemar_p(a, a)[0] == 1.0


def _data(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + 0.3 * x2 + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


SPEC = ModelSpec(
    task="binary",
    target="y",
    features=(FeatureSpec("x1", "numeric", minimum=-4, maximum=4), FeatureSpec("x2", "numeric")),
    classes=(0, 1),
)


def _bundle(estimator: object, columns: list[str], frame: pd.DataFrame) -> ModelBundle:
    spec = ModelSpec(task="binary", target="y", features=SPEC.features, classes=(0, 1))
    X = frame[["x1", "x2"]].to_numpy()
    mask = np.array([c in columns for c in ("x1", "x2")], dtype=float)
    estimator.fit(X * mask, frame["y"])  # type: ignore[attr-defined]
    return ModelBundle(spec=spec, estimator=_Masked(estimator, mask), flavor="sklearn")


class _Masked:
    """A fitted estimator that only sees some columns (a weak model built from a strong one's input)."""

    def __init__(self, est: object, mask: np.ndarray) -> None:
        self.est, self.mask = est, mask

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.est.predict_proba(np.nan_to_num(X) * self.mask)  # type: ignore[attr-defined]


def test_metric_check_passes_a_clearly_better_model_and_stops_an_equal_one() -> None:
    train, holdout = _data(seed=1), _data(seed=2)
    strong = _bundle(LogisticRegression(), ["x1", "x2"], train)
    weak = _bundle(LogisticRegression(), ["x2"], train)
    cfg = GateConfig(bootstrap_resamples=500)
    better = MetricCheck("roc_auc", cfg, seed=0).evaluate(strong, weak, holdout)
    assert better.passed, better.reason
    assert better.details["ci_low"] > 0 and better.details["challenger"] > better.details["champion"]
    worse = MetricCheck("roc_auc", cfg, seed=0).evaluate(weak, strong, holdout)
    assert not worse.passed and worse.reason.startswith("worse than the champion")
    same = MetricCheck("accuracy", cfg, seed=0).evaluate(strong, strong, holdout)
    assert not same.passed and "not better" in same.reason
    # A better point estimate that is within the noise: the paired test refuses it.
    tiny = holdout.head(25)
    noisy = MetricCheck("accuracy", GateConfig(test="mcnemar"), seed=0).evaluate(strong, weak, tiny)
    details = noisy.details
    assert details["improvement"] > 0  # these 25 rows favour the strong model, if not significantly
    assert not noisy.passed and "not significant" in noisy.reason and details["p_value"] >= 0.05
    high_bar = MetricCheck("roc_auc", GateConfig(min_improvement=0.5), seed=0).evaluate(strong, weak, holdout)
    assert not high_bar.passed and "min_improvement=0.5" in high_bar.reason


def test_edge_and_latency_checks() -> None:
    train, holdout = _data(seed=1), _data(seed=2)
    forest = ModelBundle(
        spec=SPEC, estimator=RandomForestClassifier(20, random_state=0).fit(train[["x1", "x2"]].to_numpy(),
                                                                             train["y"]), flavor="sklearn"
    )  # fmt: skip
    ok = EdgeInputCheck().evaluate(forest, None, holdout)
    assert ok.passed and ok.details["cases"]["extreme_values"] == 10  # 5 per numeric feature
    # Plain logistic regression cannot take a missing value: the gate catches it before production does.
    fragile = ModelBundle(
        spec=SPEC, estimator=LogisticRegression().fit(train[["x1", "x2"]].to_numpy(), train["y"]), flavor="sklearn"
    )  # fmt: skip
    bad = EdgeInputCheck().evaluate(fragile, None, holdout)
    assert not bad.passed and "all_missing" in bad.reason and "NaN" in bad.reason
    slow = LatencyCheck(max_ms_per_row=1e-6).evaluate(forest, None, holdout)
    assert not slow.passed and "max_latency_ms_per_row" in slow.reason
    assert LatencyCheck(max_ms_per_row=50).evaluate(forest, None, holdout).passed


def test_run_gate_reports_every_check_and_force_is_recorded() -> None:
    train, holdout = _data(seed=1), _data(seed=2)
    strong = _bundle(LogisticRegression(), ["x1", "x2"], train)
    weak = _bundle(LogisticRegression(), ["x2"], train)
    recent = _data(n=100, seed=3)
    report = run_gate(GateConfig(bootstrap_resamples=300), "roc_auc", weak, strong, holdout, recent=recent)
    assert not report.passed and report.rows == {"holdout": 600, "recent": 100}
    d = report.to_dict()
    assert d["decision"] == "fail" and [c["name"] for c in d["checks"]] == [
        "metric",
        "latency",
        "cost",
        "edge_inputs",
    ]
    # The cost section: both models' figures from the latency check, as the report's own key.
    assert d["cost"] == d["checks"][2]["details"] and set(d["cost"]["ratio"]) == {"one_row", "batch"}
    assert d["cost"]["champion"]["one_row_ms"] == d["checks"][1]["details"]["champion_one_row_ms"]
    assert d["checks"][0]["details"]["n_rows"] == 700
    forced = run_gate(GateConfig(bootstrap_resamples=300), "roc_auc", weak, strong, holdout, force=True)
    assert forced.passed and forced.forced and forced.reason.startswith("FORCED")
    assert forced.to_dict()["checks"][0]["passed"] is False


def _latency(one: float, batch: float, champion: tuple[float, float] | None) -> CheckResult:
    details = {"one_row_ms": one, "batch_ms_per_row": batch}
    if champion is not None:
        details |= {"champion_one_row_ms": champion[0], "champion_batch_ms_per_row": champion[1]}
    return CheckResult("latency", True, "", details)


def test_cost_check_takes_the_worse_ratio_and_refuses_only_over_the_configured_factor() -> None:
    # 3x the champion for one row, 1.5x per row in a batch: the one-row ratio is the increase.
    figures = _latency(0.3, 0.015, champion=(0.1, 0.01))
    reported = cost_check(figures, None)
    assert reported.passed and reported.details["ratio"] == pytest.approx({"one_row": 3.0, "batch": 1.5})
    assert reported.details["challenger"]["cpu_ms_per_1000"] == pytest.approx(15.0)
    assert reported.details["champion"]["cpu_ms_per_1000"] == pytest.approx(10.0)
    assert reported.reason.startswith("3.00x the champion's time in a one-row request")
    refused = cost_check(figures, 2.0)
    assert not refused.passed and "gate.max_cost_increase=2" in refused.reason
    assert cost_check(figures, 3.5).passed
    batch_heavy = cost_check(_latency(0.1, 0.05, champion=(0.1, 0.01)), 4.0)
    assert not batch_heavy.passed and "a batch, per row" in batch_heavy.reason
    first = cost_check(_latency(0.3, 0.015, champion=None), 1.1)
    assert first.passed and "champion" not in first.details


def test_the_gate_times_both_models_as_served_and_compares_their_costs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A forest is timed on GTIL, as a worker serves it (100 trees one row: far under scikit-learn's ~5 ms,
    about the linear model's time), so its cost is compared with the champion's on what each would cost."""
    train, holdout = _data(seed=1), _data(seed=2)
    X = train[["x1", "x2"]].to_numpy()
    forest = ModelBundle(SPEC, RandomForestClassifier(100, random_state=0).fit(X, train["y"]), "sklearn")
    linear = ModelBundle(SPEC, LogisticRegression().fit(X, train["y"]), "sklearn")
    timed: list[str] = []

    def spy(bundle: ModelBundle) -> ModelBundle:
        out = served_form(bundle)
        timed.append(type(out.estimator).__name__)
        return out

    monkeypatch.setattr(gate, "served_form", spy)
    cfg = GateConfig(bootstrap_resamples=200, max_latency_ms_per_row=1e9, max_cost_increase=2.0)
    report = run_gate(cfg, "roc_auc", forest, linear, holdout)
    assert timed == ["CompiledForest", "LogisticRegression"]  # the challenger, then the champion
    latency, cost = report.check("latency"), report.check("cost")
    assert latency is not None and "GTIL" in latency.details["path"]
    d = latency.details
    assert cost is not None and cost.details["ratio"] == pytest.approx(
        {"one_row": d["one_row_ms"] / d["champion_one_row_ms"],
         "batch": d["batch_ms_per_row"] / d["champion_batch_ms_per_row"]}
    )  # fmt: skip
    # The rule itself is tested with given figures above; here it is applied to the measured ones.
    assert cost.passed == (max(cost.details["ratio"].values()) <= 2.0)
    assert cost_check(latency, None).passed
