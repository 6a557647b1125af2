"""Multivariate drift sees a change in how features move together that every per-column test misses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.monitor.drift import CATEGORICAL, NUMERIC, ColumnSpec, DriftDetector
from driftloop.monitor.multivariate import domain_classifier, multivariate_drift, pca_reconstruction

SPECS = [
    ColumnSpec("x", NUMERIC),
    ColumnSpec("y", NUMERIC),
    ColumnSpec("a", NUMERIC),
    ColumnSpec("b", NUMERIC),
    ColumnSpec("colour", CATEGORICAL),
]


def table(rng: np.random.Generator, n: int, correlation: float) -> pd.DataFrame:
    """x and y standard normal with the given correlation, two independent columns and a category."""
    x = rng.normal(size=n)
    y = correlation * x + np.sqrt(1 - correlation**2) * rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "y": y,
            "a": rng.normal(size=n),
            "b": rng.exponential(size=n),
            "colour": rng.choice(["red", "white", "rosé"], size=n, p=[0.5, 0.3, 0.2]),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return table(np.random.default_rng(0), 3000, 0.9)


def test_a_flipped_correlation_is_caught_where_every_column_test_says_no_drift(
    reference: pd.DataFrame,
) -> None:
    current = table(np.random.default_rng(1), 2000, -0.9)  # every marginal as before
    univariate = DriftDetector(SPECS).fit(reference).evaluate(current)
    assert univariate.n_drifted == 0 and univariate.dataset_drift is False
    for result in multivariate_drift(reference, current, SPECS):
        assert result.drift, result
        assert {d["feature"] for d in result.drivers[:2]} == {"x", "y"}, result.drivers
    auc = domain_classifier(reference, current, SPECS)
    assert auc.statistic > 0.8


def test_the_same_distribution_is_not_drift(reference: pd.DataFrame) -> None:
    for seed in (1, 2, 3):
        current = table(np.random.default_rng(seed), 2000, 0.9)
        results = multivariate_drift(reference, current, SPECS, seed=seed)
        assert [r.drift for r in results] == [False, False], results
        assert 0.4 < results[0].statistic < results[0].threshold


def test_missing_values_and_unseen_categories_are_encoded_not_fatal(reference: pd.DataFrame) -> None:
    current = table(np.random.default_rng(4), 1500, 0.9)
    current.loc[current.index[:600], "a"] = np.nan  # missingness jumps from 0 to 40 %
    current.loc[current.index[:300], "colour"] = "orange"
    result = domain_classifier(reference, current, SPECS)
    assert result.drift and result.drivers[0]["feature"] in {"a (missing)", "a", "colour"}
    assert pca_reconstruction(reference, current, SPECS).statistic > 0


def test_one_column_has_no_joint_distribution(reference: pd.DataFrame) -> None:
    assert multivariate_drift(reference, reference, SPECS[:1]) == []
