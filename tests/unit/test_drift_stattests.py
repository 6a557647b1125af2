"""Each drift statistic against scipy / NumPy on known inputs, the verdict rules on the threshold, and the
default test selection (Evidently's `_get_default_stattest`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from driftloop.monitor.samples import categorical_sample, numeric_sample
from driftloop.monitor.stattests import REGISTRY, default_stattest, sturges_edges

rng = np.random.default_rng(7)


def test_ks_matches_scipy() -> None:
    a, b = rng.normal(size=300), rng.normal(0.3, 1, size=200)
    p, _ = REGISTRY["ks"](numeric_sample(a), numeric_sample(b))
    assert p == stats.ks_2samp(a, b).pvalue


@pytest.mark.parametrize("n, m", [(1000, 1000), (5000, 70), (3, 100_000)])
def test_wasserstein_is_bit_identical_to_scipy(n: int, m: int) -> None:
    a, b = rng.normal(size=n), rng.normal(0.2, 1.5, size=m)
    value, _ = REGISTRY["wasserstein"](numeric_sample(a), numeric_sample(b))
    assert value == stats.wasserstein_distance(a, b) / max(float(np.std(pd.Series(a))), 0.001)


def test_wasserstein_with_ties_and_constant_reference() -> None:
    a = rng.integers(0, 5, 4000).astype(float)
    b = rng.integers(0, 7, 3000).astype(float)
    value, _ = REGISTRY["wasserstein"](numeric_sample(a), numeric_sample(b))
    assert value == stats.wasserstein_distance(a, b) / float(np.std(pd.Series(a)))
    const = np.full(2000, 3.0)
    value, drift = REGISTRY["wasserstein"](numeric_sample(const), numeric_sample(const + 0.001))
    assert value == pytest.approx(0.001 / 0.001) and drift  # std floor of 0.001


def test_chisquare_matches_scipy_and_new_category_is_drift() -> None:
    ref = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    cur = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 20)
    p, drift = REGISTRY["chisquare"](categorical_sample(ref), categorical_sample(cur))
    assert p == pytest.approx(stats.chisquare([40, 40, 20], [50, 30, 20]).pvalue, rel=1e-12)
    assert drift is (p < 0.05)
    p, drift = REGISTRY["chisquare"](
        categorical_sample(ref), categorical_sample(pd.concat([cur, pd.Series(["d"])]))
    )
    assert p == 0.0 and drift


def test_z_test_matches_hand_computation() -> None:
    ref = pd.Series([0] * 60 + [1] * 40)
    cur = pd.Series([0] * 45 + [1] * 55)
    p1, p2 = 40 / 100, 55 / 100
    pooled = (40 + 55) / 200
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    p, drift = REGISTRY["z"](categorical_sample(ref), categorical_sample(cur))
    assert p == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), rel=1e-12)
    assert drift  # p ~ 0.034
    same = categorical_sample(pd.Series(["x"] * 10))
    assert REGISTRY["z"](same, same) == (1.0, False)


def test_jensenshannon_and_psi_on_value_shares() -> None:
    ref = pd.Series(["a"] * 70 + ["b"] * 30)
    cur = pd.Series(["a"] * 50 + ["b"] * 40 + ["c"] * 10)
    js, _ = REGISTRY["jensenshannon"](categorical_sample(ref), categorical_sample(cur))
    assert js == pytest.approx(distance.jensenshannon([0.7, 0.3, 0.0], [0.5, 0.4, 0.1]), rel=1e-12)
    value, drift = REGISTRY["psi"](categorical_sample(ref), categorical_sample(cur))
    r = np.array([0.7, 0.3, 0.0001])  # Evidently's fill of a zero share when the smallest share > 0.0001
    c = np.array([0.5, 0.4, 0.1])
    assert value == pytest.approx(np.sum((r - c) * np.log(r / c)), rel=1e-12)
    assert drift


@pytest.mark.parametrize(
    "a, b",
    [
        (rng.normal(size=5000), rng.normal(1, 1, size=3000)),
        (rng.integers(0, 15, 5000), rng.integers(0, 17, 4000)),  # integer dtype: bins never narrower than 1
        (rng.integers(0, 10_000, 5000), rng.integers(0, 10_000, 4000)),
        (np.full(100, 2.0), np.full(50, 2.0)),
    ],
)
def test_sturges_edges_match_numpy(a: np.ndarray, b: np.ndarray) -> None:
    expected = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    got = sturges_edges(numeric_sample(a), numeric_sample(b))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(numeric_sample(a).histogram(got), np.histogram(a, expected)[0])


def test_histogram_shares_for_numeric_jensenshannon() -> None:
    a, b = rng.normal(size=3000), rng.normal(0.5, 1, size=2000)
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins="sturges")
    expected = distance.jensenshannon(np.histogram(a, edges)[0] / a.size, np.histogram(b, edges)[0] / b.size)
    value, _ = REGISTRY["jensenshannon"](numeric_sample(a), numeric_sample(b))
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "test, value, threshold, drift",
    [
        ("ks", 0.05, 0.05, True),  # Evidently: p <= threshold
        ("chisquare", 0.05, 0.05, False),  # p < threshold
        ("z", 0.05, 0.05, False),
        ("wasserstein", 0.1, 0.1, True),  # distance >= threshold
        ("jensenshannon", 0.1, 0.1, True),
        ("psi", 0.1, 0.1, True),
    ],
)
def test_verdict_on_the_threshold(test: str, value: float, threshold: float, drift: bool) -> None:
    assert REGISTRY[test].drifted(value, threshold) is drift


@pytest.mark.parametrize(
    "kind, n_ref, n_values, expected",
    [
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1000, 5, "chisquare"),
        ("numeric", 1000, 2, "z"),
        ("categorical", 1000, 3, "chisquare"),
        ("categorical", 500, 2, "z"),
        ("categorical", 10, 1, "z"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1001, 5, "jensenshannon"),
        ("categorical", 1001, 40, "jensenshannon"),
    ],
)
def test_default_stattest_selection(kind: str, n_ref: int, n_values: int, expected: str) -> None:
    assert default_stattest(kind, n_ref, n_values).name == expected


def test_nulls_and_infinities_are_dropped() -> None:
    sample = numeric_sample(pd.Series([1.0, np.nan, np.inf, -np.inf, 2.0]))
    assert sample.sorted.tolist() == [1.0, 2.0] and sample.n_missing == 3
    cats = categorical_sample(pd.Series(["a", None, "b", "a"]))
    assert cats.n == 3 and cats.n_missing == 1


def test_unused_categories_of_a_category_dtype_are_not_values() -> None:
    # pandas counts every declared category; `pd.cut` bands and filtered frames leave some unused.
    dtype = pd.CategoricalDtype(["a", "b", "c", "d"])
    sample = categorical_sample(pd.Series(["a", "b", "a", None], dtype=dtype))
    assert dict(zip(sample.keys.tolist(), sample.key_counts.tolist(), strict=True)) == {"a": 2, "b": 1}
    assert sample.n_unique == 2 and sample.n == 3 and sample.n_missing == 1


def test_a_non_finite_score_raises_instead_of_reading_as_no_drift() -> None:
    for name in ("ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi"):
        with pytest.raises(ValueError, match="non-finite"):
            REGISTRY[name].decide(float("nan"), REGISTRY[name].default_threshold)
        with pytest.raises(ValueError, match="non-finite"):
            REGISTRY[name].decide(float("inf"), REGISTRY[name].default_threshold)
    assert REGISTRY["chisquare"].decide(0.0, 0.05) is True  # p = 0 (a new category) stays a verdict


def test_integers_with_gaps_are_binned_as_the_floats_numpy_dtypes_hold_them_as() -> None:
    # NumPy never makes bins narrower than 1 for integer data; a column with gaps is float in NumPy dtypes.
    values = pd.Series([1, 2, None, 4] * 10)
    assert numeric_sample(values.astype("Int64")).is_integer is numeric_sample(values).is_integer is False
    assert numeric_sample(values.dropna().astype("Int64")).is_integer is True
