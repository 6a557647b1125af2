"""The seconds budget: cheap strong defaults first, a baseline on the board, a stop before a trial that
would overrun. Mechanisms, not wall times."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from driftloop.train import budget
from driftloop.train.candidates import Problem
from driftloop.train.tuning import TrialRecord, _would_overrun, run_search


def _data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5))
    return X, (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)


def test_lightgbm_and_linear_defaults_come_first_and_the_baseline_is_on_the_board() -> None:
    X, y = _data()
    p = Problem("binary", 5, (), seed=0)
    families = ["random_forest", "extra_trees", "lightgbm", "linear"]
    result = run_search(X, y, p, 2, "accuracy", families=families, n_folds=3, trials=2, seconds=None)
    assert [t.family for t in result.trials] == ["lightgbm", "linear"]
    baseline = next(r for r in result.leaderboard if r["family"] == "baseline")
    assert baseline["best_trial"] == 0 and baseline["params"]["family"] == "lightgbm"
    assert result.cv.mean >= baseline["accuracy_mean"]


def _rec(number: int, family: str, seconds: float) -> TrialRecord:
    return TrialRecord(number, family, {}, "complete", seconds=seconds)


def test_the_search_stops_before_a_trial_whose_cost_and_refit_pass_the_budget() -> None:
    records = [_rec(0, "lightgbm", 2.0), _rec(1, "linear", 0.6)]
    best = records[0]
    started = time.perf_counter() - 5.0  # 5 s of a 10 s budget spent
    # Another LightGBM trial (2 s) and its refit (0.6 s) fit in the 5 s left ...
    assert not _would_overrun(records, best, 5, started, 10.0, family="lightgbm")
    # ... a first random forest is expected to cost RELATIVE_COST times the median LightGBM-equivalent trial
    # (2 s, and 0.6 s of linear = 3 s of LightGBM): 4 x 2.5 s = 10 s. It does not fit.
    assert budget.trial_estimate("random_forest", records) == 10.0
    assert _would_overrun(records, best, 5, started, 10.0, family="random_forest")
    # A forest's refit includes saving its trees, which costs more than fitting them.
    assert budget.refit_estimate("random_forest", 10.0, 5) == 3.0 * (1 + budget.FOREST_SAVE_PER_FIT)
    assert budget.refit_estimate("lightgbm", 10.0, 5) == 3.0


def test_a_skipped_trial_is_neither_run_nor_logged() -> None:
    X, y = _data(2000)
    p = Problem("binary", 5, (), seed=0)
    logged: list[int] = []
    result = run_search(
        X, y, p, 2, "accuracy", families=["lightgbm", "random_forest"], n_folds=3, trials=200, seconds=1e-3,
        on_trial=lambda t: logged.append(t.number),
    )  # fmt: skip
    # The first trial always runs; the budget had no room for any other.
    assert [t.family for t in result.trials] == ["lightgbm"] and logged == [0]
    assert result.trials[0].state == "complete"


def test_the_search_gets_the_run_budget_less_what_was_spent_and_a_reserve() -> None:
    assert budget.search_seconds(30.0, 5.0) == 30.0 - 5.0 - budget.AFTER_SEARCH_SECONDS
    assert budget.search_seconds(30.0, 29.0) == 3.0  # a tenth is kept for the first trial and a refit


def test_trusted_types_of_a_forest_are_listed_without_dumping_every_tree() -> None:
    import skops.io
    from sklearn.ensemble import RandomForestRegressor

    from driftloop.stores.models import sklearn_trusted_types

    X, y = _data()
    forest = RandomForestRegressor(20, random_state=0).fit(X, y)
    assert len(forest.estimators_) == 20
    full = skops.io.dumps(forest)
    assert sklearn_trusted_types(forest) == sorted(skops.io.get_untrusted_types(data=full))
    assert len(forest.estimators_) == 20  # the estimator itself is untouched


def test_a_count_target_gets_models_that_never_predict_below_zero() -> None:
    from driftloop.train.candidates import FAMILIES, fit, predict_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = rng.poisson(np.exp(0.9 * X[:, 0] - 0.5)).astype(float)  # mostly 0s and 1s, a few large counts
    far = np.array([[-4.0, 0.0, 0.0], [-6.0, 1.0, -1.0]])  # where a straight line goes below zero
    p = Problem("regression", 3, (), seed=0, nonnegative=True, counts=True)
    assert p.objective == p.loss == "poisson"
    for name in ("lightgbm", "linear", "random_forest"):
        family = FAMILIES[name]
        model = fit(name, family.build(family.defaults(p)[0], p, 1), X, y, p)
        assert (predict_scores(model, far, p, 0) >= 0).all(), name
    squared = Problem("regression", 3, (), seed=0)
    ridge = fit("linear", FAMILIES["linear"].build({"alpha": 1.0}, squared, 1), X, y, squared)
    assert (predict_scores(ridge, far, squared, 0) < 0).any()  # what the objective prevents


def test_a_non_negative_amount_keeps_squared_error_and_is_floored_at_zero_in_cv_and_when_served() -> None:
    """Not counts (a measurement, an amount): a Poisson log link fits it worse, so the loss stays squared
    error and every prediction below zero is raised to zero, by the search's scorer and by both loaders."""
    from driftloop.stores.driftloop_pyfunc import PortableModel
    from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec
    from driftloop.train.candidates import FAMILIES, fit, predict_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = np.clip(2.0 * X[:, 0] + 4.0 + 0.5 * rng.normal(size=400), 0.01, None)  # continuous, never negative
    far = np.array([[-4.0, 0.0, 0.0], [-6.0, 1.0, -1.0], [0.0, 0.0, 0.0]])
    p = Problem("regression", 3, (), seed=0, nonnegative=True, counts=False)
    assert (p.objective, p.loss, p.floor) == ("squared_error", "squared_error, floored at 0", 0.0)
    ridge = fit("linear", FAMILIES["linear"].build({"alpha": 1.0}, p, 1), X, y, p)
    assert type(ridge.named_steps["model"]).__name__ == "Ridge"
    raw = ridge.predict(far)
    assert (raw < 0).any()  # the straight line goes below zero out there
    np.testing.assert_array_equal(predict_scores(ridge, far, p, 0), np.maximum(raw, 0.0))
    spec = ModelSpec(
        task="regression",
        target="y",
        features=tuple(FeatureSpec(f"x{i}", "numeric") for i in range(3)),
        minimum_prediction=0.0,
    )
    assert ModelSpec.from_dict(spec.to_dict()).minimum_prediction == 0.0
    served = ModelBundle(spec, ridge, "sklearn").predict_matrix(far).labels
    np.testing.assert_array_equal(served, np.maximum(raw, 0.0))
    portable = PortableModel(spec.to_dict(), [("sklearn", ridge, None)])
    np.testing.assert_array_equal(portable.predict(pd.DataFrame(far, columns=["x0", "x1", "x2"])), served)
    # A model without the floor (an old model, or a target that can be negative) answers as it predicts.
    unfloored = ModelSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "minimum_prediction"})
    np.testing.assert_array_equal(ModelBundle(unfloored, ridge, "sklearn").predict_matrix(far).labels, raw)


# --- large tables: search on a sample sized from the budget, refit on all rows -------------------------------

#: Seconds a budgeted search may run past its budget besides the 10 %: the first trial always runs to the
#: end (without it there is no model), so a load spike between measuring costs and that trial stretches it;
#: and the timing of each trial's predict cost (~0.3 s) and Python's thread start-up are not in any estimate.
FIXED_OVERHEAD_SECONDS = 2.0


def test_a_large_table_is_searched_on_a_stratified_sample_and_refitted_on_all_rows_within_budget() -> None:
    from sklearn.datasets import make_classification

    from driftloop.config import EnsembleConfig

    X, y = make_classification(50_000, 20, n_informative=10, weights=[0.8], random_state=0)
    p = Problem("binary", 20, (), seed=0)
    families = ["lightgbm", "linear", "extra_trees", "random_forest"]
    # Imports (LightGBM, the model store) happen once per process, before a CLI run's search starts.
    run_search(X[:300], y[:300], p, 2, "accuracy", families=["lightgbm"], n_folds=2, trials=1, seconds=None)
    seconds = 12.0
    started = time.perf_counter()
    result = run_search(
        X, y, p, 2, "accuracy", families=families, n_folds=5, trials=1000, seconds=seconds,
        ensemble_config=EnsembleConfig(), max_predict_ms=3.0,
    )  # fmt: skip
    wall = time.perf_counter() - started
    assert wall <= 1.1 * seconds + FIXED_OVERHEAD_SECONDS, (wall, result.rows)
    plan = result.rows
    assert plan is not None and plan.sampled and plan.total_rows == 50_000
    assert budget.MIN_SAMPLE_ROWS <= plan.search_rows < 50_000
    # Every leaderboard row says CV ran on the sample, not on the table.
    assert {(r["cv_rows"], r["rows"]) for r in result.leaderboard} == {(plan.search_rows, 50_000)}
    assert len(result.best.cv.oof) == plan.search_rows  # type: ignore[union-attr]


def test_the_plan_reserves_the_refit_on_all_rows_and_sizes_the_sample_from_measured_cost() -> None:
    # A fit costs 1 s on 4,000 rows and grows linearly: 12.5 s on 50,000.
    cost = budget.RowCost(4000, 1.0, 1.0)
    roomy = budget.plan_rows(50_000, 120.0, cost, n_folds=5)
    assert roomy.refit_rows == 50_000 and roomy.refit_seconds == 1.3 * 12.5
    # The first trial on the sample takes about FIRST_TRIAL_SHARE of what the refit leaves.
    first = budget.trial_seconds(cost, roomy.search_rows, 5)
    assert abs(first - budget.FIRST_TRIAL_SHARE * (120.0 - roomy.refit_seconds)) < 0.05
    assert roomy.sampled and budget.MIN_SAMPLE_ROWS < roomy.search_rows < 50_000
    # A budget that cannot afford the refit on all rows refits on the rows half of it affords.
    tight = budget.plan_rows(50_000, 10.0, cost, n_folds=5)
    assert tight.refit_rows == int(cost.rows_for(10.0 / 2 / budget.SAFETY)) < 50_000
    assert tight.search_rows == budget.MIN_SAMPLE_ROWS
    # A cheap table is searched whole.
    cheap = budget.plan_rows(5000, 600.0, cost, n_folds=5)
    assert not cheap.sampled and cheap.refit_rows == 5000


def test_measured_cost_follows_a_power_law_and_scales_refits_by_rows() -> None:
    cost = budget.RowCost.through((1000, 0.7), (4000, 1.5))  # LightGBM, measured: 5.0 s on 40,000 rows
    assert 0.5 < cost.exponent < 0.6
    assert abs(cost.seconds(40_000) - 5.0) < 0.5
    assert abs(cost.rows_for(cost.seconds(12_345)) - 12_345) < 1
    assert budget.growth("lightgbm", 4000, 40_000, cost) == cost.seconds(40_000) / 1.5
    assert budget.growth("linear", 1000, 4000) == 4.0
    assert budget.growth("random_forest", 1000, 4000) > 4.0  # deeper trees on more rows
    assert budget.growth("lightgbm", 4000, 1000) == 1.0


def test_a_stratified_sample_keeps_class_shares_and_the_folds_groups() -> None:
    from driftloop.train.cv import make_folds
    from driftloop.train.sampling import restrict_folds, stratified_sample

    y = np.array([0] * 9000 + [1] * 950 + [2] * 50)
    picked = stratified_sample(y, "multiclass", 1000, seed=0)
    assert abs(len(picked) - 1000) <= 5 and (np.diff(picked) > 0).all()
    counts = np.bincount(y[picked])
    assert counts[0] == 900 and counts[1] == 95 and counts[2] == 5
    groups = np.arange(len(y)) // 2  # pairs of copies
    folds = restrict_folds(make_folds(y, "multiclass", 5, 0, groups), picked)
    for train, val in folds:
        assert not set(groups[picked][train]) & set(groups[picked][val])
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(picked)))
    reg = stratified_sample(np.arange(10_000.0), "regression", 500, seed=0)
    assert np.histogram(reg, bins=10, range=(0, 10_000))[0].min() >= 45


def test_shallow_boosting_is_a_default_and_wins_on_a_smooth_small_regression_table() -> None:
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(1000, noise=1.0, random_state=0)
    p = Problem("regression", X.shape[1], (), seed=0)
    result = run_search(X, y, p, 0, "r2", families=["lightgbm"], n_folds=3, trials=2, seconds=None)
    default, shallow = result.trials
    assert shallow.params["num_leaves"] == 8 and shallow.params["n_estimators"] == 600
    assert shallow.cv.mean > default.cv.mean + 0.005  # type: ignore[union-attr]
    assert result.best is shallow


def test_cheap_families_defaults_come_before_the_forests() -> None:
    X, y = _data()
    p = Problem("binary", 5, (), seed=0)
    families = ["random_forest", "extra_trees", "lightgbm", "linear"]
    result = run_search(X, y, p, 2, "accuracy", families=families, n_folds=3, trials=3, seconds=None)
    assert [t.family for t in result.trials] == ["lightgbm", "linear", "lightgbm"]


def test_a_trial_the_budget_cannot_afford_is_skipped_and_cheaper_ones_still_run(monkeypatch) -> None:
    X, y = _data()
    p = Problem("binary", 5, (), seed=0)
    # A random forest trial is expected to cost a million LightGBM trials: never affordable.
    monkeypatch.setitem(budget.RELATIVE_COST, "random_forest", 1e6)
    result = run_search(
        X, y, p, 2, "accuracy", families=["lightgbm", "random_forest"], n_folds=3, trials=9, seconds=600.0
    )
    families = [t.family for t in result.trials]
    assert "random_forest" not in families  # skipped trials are neither run nor recorded
    # After the forests' enqueued defaults were skipped, TPE's LightGBM proposals still ran.
    assert len(families) > 2 and result.trials[-1].number > 3
