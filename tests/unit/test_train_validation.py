"""CV folds that estimate what the holdout measures: copies of a row stay in one fold, time runs forward."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.train.candidates import Problem
from driftloop.train.cv import cross_validate, make_folds, time_folds
from driftloop.train.split import row_digests


def _noise_with_copies(n: int = 240, copies: int = 3, seed: int = 0) -> pd.DataFrame:
    """Labels that no feature predicts, each row repeated: only memorising copies can score above chance."""
    rng = np.random.default_rng(seed)
    base = pd.DataFrame(rng.normal(size=(n, 4)).round(3), columns=["a", "b", "c", "d"])
    base["label"] = rng.integers(0, 2, n)
    return base.loc[base.index.repeat(copies)].sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_copies_of_a_row_never_straddle_a_fold_and_classes_stay_balanced() -> None:
    frame = _noise_with_copies()
    groups = row_digests(frame, list(frame.columns))
    y = frame["label"].to_numpy()
    folds = make_folds(y, "binary", 5, seed=1, groups=groups)
    assert sorted(np.concatenate([val for _, val in folds]).tolist()) == list(range(len(frame)))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
        assert abs(y[val].mean() - y.mean()) < 0.1
    # Regression folds are grouped the same way.
    for train, val in make_folds(y.astype(float), "regression", 4, seed=1, groups=groups):
        assert not set(groups[train]) & set(groups[val])


def test_grouped_cv_does_not_reward_memorising_duplicates() -> None:
    frame = _noise_with_copies()
    X, y = frame[["a", "b", "c", "d"]].to_numpy(), frame["label"].to_numpy()
    groups = row_digests(frame, list(frame.columns))
    p = Problem("binary", 4, (), seed=0)
    params = {"max_features": 0.5, "min_samples_leaf": 1, "criterion": "gini"}

    def cv(folds: list) -> float:
        return cross_validate("random_forest", params, X, y, p, 2, "accuracy", folds, workers=1).mean

    # Row-wise folds put copies on both sides: a forest "predicts" pure noise (the leak this guards against).
    assert cv(make_folds(y, "binary", 5, seed=0)) > 0.8
    assert cv(make_folds(y, "binary", 5, seed=0, groups=groups)) < 0.62


def test_time_folds_validate_forward_and_drop_copies_from_training() -> None:
    groups = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 3, 12])  # row 10 is a copy of row 2
    folds = time_folds(12, 3, groups, start=6)
    assert [val.tolist() for _, val in folds] == [[6, 7], [8, 9], [10, 11]]
    for train, val in folds:
        assert train.max() < val.min()
    assert 2 not in folds[2][0].tolist()  # the copy of a validation row does not train
    assert folds[0][0].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="rows before and after"):
        time_folds(5, 3, start=4)
