"""The kept holdout (row digests) and the search core: deterministic, leaderboard, pruning, failures."""

import numpy as np
import pandas as pd
import pytest

from driftloop.train.candidates import FAMILIES, Problem, predict_scores
from driftloop.train.split import holdout_mask, row_digests
from driftloop.train.tuning import run_search


def test_holdout_is_a_property_of_the_row_not_of_the_table(red: pd.DataFrame) -> None:
    cols = list(red.columns)
    mask = holdout_mask(red, cols, 0.2)
    assert 0.16 < mask.mean() < 0.24
    # A grown, reshuffled table holds out the same old rows, plus its share of the new ones.
    extra = red.sample(300, random_state=1).assign(alcohol=lambda f: f["alcohol"] + 0.05)
    grown = pd.concat([extra, red], ignore_index=True).sample(frac=1.0, random_state=3)
    grown_mask = pd.Series(holdout_mask(grown, cols, 0.2), index=grown.index)
    old_rows = grown.index[grown.index >= len(extra)]
    assert (grown_mask.loc[old_rows].to_numpy() == mask[old_rows - len(extra)]).all()
    # Integers read as floats (a column that gained a missing value) keep their digest.
    as_float = red.astype({"quality": float, "free sulfur dioxide": float})
    assert (row_digests(as_float, cols) == row_digests(red, cols)).all()
    # Duplicates share a digest, so copies of a holdout row never reach training.
    dup = pd.concat([red.head(50), red.head(50)], ignore_index=True)
    d = row_digests(dup, cols)
    assert (d[:50] == d[50:]).all()


def test_holdout_depends_on_the_values() -> None:
    a = pd.DataFrame({"x": [1.0, 2.0, None], "c": ["a", "b", "a"]})
    b = a.assign(x=[1.0, 2.5, None])
    da, db = row_digests(a, ["x", "c"]), row_digests(b, ["x", "c"])
    assert da[0] == db[0] and da[2] == db[2] and da[1] != db[1]
    assert len(set(da.tolist())) == 3


def _wine(red: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    X = red.drop(columns="quality").to_numpy(float)
    classes = np.unique(red["quality"])
    return X, np.searchsorted(classes, red["quality"].to_numpy()), len(classes)


def test_search_is_deterministic_and_builds_a_leaderboard(red: pd.DataFrame) -> None:
    X, y, _ = _wine(red.sample(400, random_state=0))
    y, k = (y >= 3).astype(int), 2  # good (6+) or not: binary keeps LightGBM to one tree per round
    p = Problem("binary", X.shape[1], (), seed=7)
    runs = [
        run_search(X, y, p, k, "accuracy", families=["lightgbm", "linear"], n_folds=3, trials=4, seconds=None)
        for _ in range(2)
    ]
    a, b = runs
    assert [t.cv.mean if t.cv else None for t in a.trials] == [t.cv.mean if t.cv else None for t in b.trials]
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    # The defaults come first, one per family, and are never pruned.
    assert [t.family for t in a.trials[:2]] == ["lightgbm", "linear"]
    assert all(t.state == "complete" for t in a.trials[:2])
    board = a.leaderboard
    assert {r["family"] for r in board} == {"lightgbm", "linear", "baseline"}
    means = [r["accuracy_mean"] for r in board]
    assert means == sorted(means, reverse=True) and board[0]["accuracy_mean"] == a.best.cv.mean
    assert all(r["fit_seconds"] > 0 and r["accuracy_std"] >= 0 for r in board)
    proba = predict_scores(a.estimator, X[:10], p, k)
    assert np.allclose(predict_scores(b.estimator, X[:10], p, k), proba)
    assert proba.shape == (10, k) and np.allclose(proba.sum(axis=1), 1)


def test_every_family_fits_with_missing_and_categorical_values() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    X[:, 2] = rng.integers(0, 3, size=120)  # a categorical code
    X[::7, 0] = np.nan
    X[::11, 2] = np.nan
    y = (X[:, 1] > 0).astype(int)
    for task, target in (("binary", y), ("regression", X[:, 1] * 2.0)):
        p = Problem(task, 3, (2,), seed=0)
        for name, family in FAMILIES.items():
            est = family.build(family.defaults(p)[0], p, 1)
            from driftloop.train.candidates import fit

            fit(name, est, X, target, p)
            out = predict_scores(est, X, p, 2)
            assert np.isfinite(out).all(), (task, name)


def test_a_search_where_every_trial_fails_says_why() -> None:
    X = np.full((40, 2), np.inf)
    y = np.array([0, 1] * 20)
    p = Problem("binary", 2, (), seed=0)
    with pytest.raises(RuntimeError, match="no candidate model could be trained.*linear"):
        run_search(X, y, p, 2, "accuracy", families=["linear"], n_folds=2, trials=2, seconds=None)


def test_a_seconds_budget_stops_the_search_before_it_overruns(red: pd.DataFrame) -> None:
    X, y, k = _wine(red.sample(300, random_state=1))
    p = Problem("multiclass", X.shape[1], (), seed=0)
    result = run_search(X, y, p, k, "accuracy", families=["linear"], n_folds=2, trials=500, seconds=0.2)
    # The first trial always runs (a model is needed); then the budget is spent.
    assert 1 <= len(result.trials) < 500 and result.best.family == "linear"
