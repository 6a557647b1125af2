"""Serving cost in the model choice: trials timed on the serving path, `training.max_predict_ms` enforced.

These test the rules, never a timing: limits are either far below anything measurable or the costs are given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from driftloop.compiled.forest import CompiledForest
from driftloop.config import EnsembleConfig, GateConfig
from driftloop.errors import UserError
from driftloop.metrics import score
from driftloop.registry.gate import LatencyCheck, run_gate
from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec, load_bundle_dir, save_bundle_dir
from driftloop.train.candidates import Problem
from driftloop.train.cost import TOO_SLOW, PredictCost, serving_bundle
from driftloop.train.cv import CVResult, make_folds
from driftloop.train.tuning import TrialRecord, leaderboard, run_search, select_ensemble


def _wine(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    X = frame.drop(columns="quality").to_numpy(float)
    classes = np.unique(frame["quality"])
    return X, np.searchsorted(classes, frame["quality"].to_numpy()), len(classes)


def test_every_trial_is_timed_on_the_serving_path_and_recorded(red: pd.DataFrame) -> None:
    X, y, k = _wine(red.sample(400, random_state=1))
    p = Problem("multiclass", X.shape[1], (), seed=3)
    result = run_search(
        X, y, p, k, "accuracy", families=["lightgbm", "linear"], n_folds=3, trials=3, seconds=None,
        ensemble_config=EnsembleConfig(enabled=False), max_predict_ms=1e9,
    )  # fmt: skip
    assert all(t.state == "complete" and t.cost is not None for t in result.trials)
    assert all(t.cost.one_row_ms > 0 and t.cost.batch_ms > 0 for t in result.trials)  # type: ignore[union-attr]
    assert all(t.cv.model is None for t in result.trials)  # type: ignore[union-attr]  # timed, then dropped
    for row in result.leaderboard:
        best = next(t for t in result.trials if t.number == row["best_trial"])
        assert row["predict_ms_1row"] == best.cost.one_row_ms  # type: ignore[union-attr]
        assert row["predict_ms_100rows"] == best.cost.batch_ms  # type: ignore[union-attr]


def test_no_candidate_within_a_tiny_max_predict_ms_stops_the_search_naming_the_key(red: pd.DataFrame) -> None:
    X, y, k = _wine(red.sample(300, random_state=2))
    p = Problem("multiclass", X.shape[1], (), seed=3)
    with pytest.raises(UserError, match=r"training\.max_predict_ms=1e-06.*fastest, trial \d \(") as err:
        run_search(
            X, y, p, k, "accuracy", families=["linear", "lightgbm"], n_folds=3, trials=2, seconds=None,
            max_predict_ms=1e-6,
        )  # fmt: skip
    assert "Raise training.max_predict_ms (null: no limit)" in str(err.value)


def _trial(number: int, oof: np.ndarray, y: np.ndarray, folds: list, one_row_ms: float) -> TrialRecord:
    scores = [score("accuracy", y[v], oof[v], "multiclass") for _, v in folds]
    record = TrialRecord(number, "lightgbm", {}, "complete", CVResult(scores, oof, 1.0))
    record.cost = PredictCost(one_row_ms, 10 * one_row_ms)
    return record


def test_an_ensemble_costs_the_sum_of_its_members_and_is_refused_over_the_limit() -> None:
    rng = np.random.default_rng(0)
    n, k = 300, 4
    y = rng.integers(0, k, size=n)
    truth = np.eye(k)[y]
    oofs = [0.35 * truth + rng.gamma(1.0, size=(n, k)) for _ in range(6)]
    oofs = [o / o.sum(axis=1, keepdims=True) for o in oofs]
    folds = make_folds(y, "multiclass", 5, 0)
    done = [_trial(i, o, y, folds, one_row_ms=1.0) for i, o in enumerate(oofs)]
    config = EnsembleConfig(max_members=3)
    free = select_ensemble(done, y, folds, "accuracy", "multiclass", config, max_predict_ms=None)
    assert free is not None and free.chosen and len(free.members) >= 2
    assert free.cost == PredictCost(float(len(free.members)), 10.0 * len(free.members))
    # Every member alone fits; their sum does not, so the better-scoring ensemble is not the model.
    tight = select_ensemble(done, y, folds, "accuracy", "multiclass", config, max_predict_ms=1.5)
    assert tight is not None and tight.too_slow and not tight.chosen
    row = next(r for r in leaderboard(done, "accuracy", 5, tight) if r["family"] == "ensemble")
    assert row["over_limit"] and row["predict_ms_1row"] == free.cost.one_row_ms


def test_a_too_slow_trial_stays_on_the_leaderboard_marked_below_those_that_fit() -> None:
    # Numbered from 1: trial 0 would also be shown as the baseline row.
    fast = TrialRecord(1, "linear", {}, "complete", CVResult([0.5], None, 1.0), cost=PredictCost(0.1, 1.0))
    slow = TrialRecord(2, "random_forest", {}, TOO_SLOW, CVResult([0.9], None, 1.0), cost=PredictCost(50, 90))
    rows = leaderboard([fast, slow], "accuracy", 2)
    assert [r["family"] for r in rows] == ["linear", "random_forest"]  # the better CV score ranks below
    assert rows[1]["over_limit"] and rows[1][TOO_SLOW] == 1 and rows[1]["predict_ms_1row"] == 50


SPEC = ModelSpec(
    task="binary",
    target="y",
    features=(FeatureSpec("x1", "numeric"), FeatureSpec("x2", "numeric")),
    classes=(0, 1),
)


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": (x1 + 0.3 * x2 > 0).astype(int)})


def test_the_gate_times_the_challenger_loaded_from_its_folder_one_row_requests_included(
    tmp_path: Path,
) -> None:
    train, holdout = _data(400, 1), _data(200, 2)
    forest = RandomForestClassifier(30, random_state=0).fit(train[["x1", "x2"]].to_numpy(), train["y"])
    champion = ModelBundle(SPEC, forest, "sklearn")
    folder = save_bundle_dir(ModelBundle(SPEC, forest, "sklearn"), tmp_path / "challenger")
    report = run_gate(
        GateConfig(bootstrap_resamples=200, max_latency_ms_per_row=1e-6), "roc_auc", champion, champion,
        holdout, challenger_dir=folder,
    )  # fmt: skip
    latency = report.check("latency")
    assert latency is not None and not latency.passed
    assert latency.details["served_from"] == str(folder)
    assert latency.details["one_row_ms"] > 0 and latency.details["path"].startswith("records")
    assert "gate.max_latency_ms_per_row" in latency.reason and "ms per row in a" in latency.reason
    # A folder the server could not load is no challenger at all.
    (folder / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(UserError, match="not a driftloop model"):
        run_gate(GateConfig(), "roc_auc", champion, champion, holdout, challenger_dir=folder)


def test_latency_check_judges_the_one_row_request_not_only_the_batch() -> None:
    train, holdout = _data(400, 1), _data(200, 2)
    forest = ModelBundle(
        SPEC,
        RandomForestClassifier(20, random_state=0).fit(train[["x1", "x2"]].to_numpy(), train["y"]),
        "sklearn",
    )
    result = LatencyCheck(max_ms_per_row=1e9).evaluate(forest, None, holdout)
    assert result.passed and {"one_row_ms", "batch_ms_per_row"} <= set(result.details)


def test_a_trial_is_timed_on_the_model_the_server_would_load(red: pd.DataFrame, tmp_path: Path) -> None:
    X, y, k = _wine(red.head(300))
    p = Problem("multiclass", X.shape[1], (), seed=0)
    forest = RandomForestClassifier(10, n_jobs=2, random_state=0).fit(X, y)
    bundle = serving_bundle("random_forest", forest, p, k)
    # Reloaded from the model format, with one thread (as `for_serving` stores it), then on treelite's GTIL
    # as a worker serves it once converted: the same probabilities, within GTIL's float32 rounding.
    assert bundle.flavor == "sklearn" and isinstance(bundle.estimator, CompiledForest)
    loaded = bundle.estimator._estimator
    assert loaded is not forest and loaded.n_jobs == 1
    np.testing.assert_allclose(bundle.predict_matrix(X[:5]).proba, forest.predict_proba(X[:5]), atol=1e-6)
    again = load_bundle_dir(save_bundle_dir(ModelBundle(bundle.spec, loaded, "sklearn"), tmp_path / "again"))
    assert np.array_equal(again.predict_matrix(X[:5]).proba, forest.predict_proba(X[:5]))
