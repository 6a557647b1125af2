"""Drift from merged per-partition summaries on a 2-worker LocalCluster equals the in-memory engine."""

from __future__ import annotations

from collections.abc import Iterator

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from driftloop.monitor.drift import ColumnOverride, ColumnSpec, DriftDetector
from driftloop.monitor.samples import numeric_sample
from driftloop.scale.cluster import dask_client
from driftloop.scale.drift import distributed_drift, ks_statistic
from driftloop.scale.summaries import GridCounts
from tests.integration.scale_support import FEATURES

pytestmark = pytest.mark.no_database  # no store database involved: the postgres pass leaves it out


@pytest.fixture(scope="module")
def client() -> Iterator:
    with dask_client(None, n_workers=2, threads_per_worker=1, processes=False) as c:
        yield c


def _tables(red: pd.DataFrame, white: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[ColumnSpec]]:
    def prepare(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out["taste"] = np.where(out["alcohol"] > 10.5, "strong", "light")
        out["grade"] = out["quality"].astype(str)  # categorical with a category only one side has
        return out

    # The window: red wine resampled, with three columns from white wine (drifted) and the rest not.
    cur = red.sample(len(white), replace=True, random_state=1).reset_index(drop=True)
    for name in ("alcohol", "residual sugar", "total sulfur dioxide"):
        cur[name] = white[name].to_numpy()
    ref, cur = prepare(red), prepare(cur)
    cur["grade"] = white["quality"].astype(str).to_numpy()  # white wine has grade 9, red never
    cur.loc[cur.index[::97], "pH"] = np.nan
    cur.loc[cur.index[5], "density"] = np.inf
    cur.loc[cur.index[7], "taste"] = None
    specs = [ColumnSpec(f, "numeric") for f in FEATURES]
    specs += [
        ColumnSpec("quality", "numeric"),
        ColumnSpec("taste", "categorical"),
        ColumnSpec("grade", "categorical"),
    ]
    return ref, cur, specs


def _assert_same(distributed, exact, bounds: dict[str, float]) -> None:
    assert distributed.dataset_drift == exact.dataset_drift
    assert distributed.share == exact.share
    for got, want in zip(distributed.columns, exact.columns, strict=True):
        # Dask reads text as string[pyarrow] where pandas says str: compare errors without the dtype.
        assert (got.column, got.method, got.drift) == (want.column, want.method, want.drift)
        assert (got.error or "").split(" (dtype")[0] == (want.error or "").split(" (dtype")[0]
        assert (got.n_reference, got.n_current, got.threshold) == (
            want.n_reference,
            want.n_current,
            want.threshold,
        )
        if want.statistic is None:
            assert got.statistic is None
            continue
        tolerance = bounds.get(got.column, 0.0) + 1e-9 * abs(want.statistic)
        assert abs(got.statistic - want.statistic) <= tolerance, got.column
        assert got.psi == pytest.approx(want.psi, rel=1e-9, abs=1e-12), got.column
        assert got.distribution["type"] == want.distribution["type"]
        np.testing.assert_allclose(got.distribution["current"], want.distribution["current"], rtol=1e-12)


@pytest.mark.parametrize(
    ("reference_rows", "repeat"),
    [
        (None, 1),  # 1,599 reference rows: Wasserstein, Jensen-Shannon (and PSI) on summaries
        (800, 1),  # small reference: KS (window gathered: scipy's exact p), chi-square and z-test
        (800, 3),  # 14,694 window rows: KS from grid counts with scipy's asymptotic p
    ],
)
def test_distributed_verdicts_equal_the_in_memory_engine(
    client, red: pd.DataFrame, white: pd.DataFrame, reference_rows: int | None, repeat: int
) -> None:
    ref, cur, specs = _tables(red, white)
    if reference_rows:
        ref = ref.sample(reference_rows, random_state=3)
    cur = pd.concat([cur] * repeat, ignore_index=True)
    exact = DriftDetector(specs).fit(ref).evaluate(cur)

    result = distributed_drift(client, dd.from_pandas(cur, npartitions=5), ref, specs)

    methods = {c.method for c in exact.columns}
    assert methods == ({"wasserstein", "jensenshannon"} if not reference_rows else {"ks", "chisquare", "z"})
    assert 0 < exact.n_drifted < len(specs)  # both verdicts occur
    _assert_same(result.drift, exact, result.error_bounds)
    assert result.uncertain == []
    assert result.partitions == 5
    if not reference_rows:
        assert result.error_bounds and max(result.error_bounds.values()) < 1e-3


def test_quality_counts_are_exact(client, red: pd.DataFrame, white: pd.DataFrame) -> None:
    ref, cur, specs = _tables(red, white)
    result = distributed_drift(client, dd.from_pandas(cur, npartitions=3), ref, specs)
    quality = {q.column: q for q in result.quality}
    assert quality["pH"].nulls == cur["pH"].isna().sum() > 0
    assert quality["density"].non_finite == 1
    for name in FEATURES:
        finite = cur[name][np.isfinite(cur[name])]
        assert quality[name].below_reference == (finite < ref[name].min()).sum(), name
        assert quality[name].above_reference == (finite > ref[name].max()).sum(), name
    assert quality["taste"].nulls == 1
    assert quality["grade"].new_categories == (~cur["grade"].isin(set(ref["grade"]))).sum() > 0
    assert {q.rows for q in result.quality} == {len(cur)}


def test_overrides_and_missing_columns_match_the_engine(
    client, red: pd.DataFrame, white: pd.DataFrame
) -> None:
    ref, cur, specs = _tables(red, white)
    cur = cur.drop(columns=["citric acid"]).assign(sulphates=cur["sulphates"].astype(str))
    overrides = {
        "alcohol": ColumnOverride(method="ks"),
        "pH": ColumnOverride(method="psi", threshold=0.2),
        "taste": ColumnOverride(method="chisquare"),
    }
    exact = DriftDetector(specs, overrides=overrides).fit(ref).evaluate(cur)
    result = distributed_drift(client, dd.from_pandas(cur, npartitions=2), ref, specs, overrides=overrides)
    _assert_same(result.drift, exact, result.error_bounds)
    assert result.drift.column("citric acid").error == "column missing from the current data"


def test_ks_statistic_from_grid_counts_is_scipys_to_the_bit() -> None:
    rng = np.random.default_rng(7)
    ref = numeric_sample(pd.Series(np.round(rng.normal(size=700), 2)))
    for cur in (
        np.round(rng.normal(0.1, 1.1, size=30_000), 3),
        rng.normal(size=5000),
        np.round(ref.sorted, 1),
    ):
        grid = GridCounts.of(np.unique(np.concatenate([ref.counts[0], np.linspace(-6, 6, 101)])), cur)
        # method="asymp" keeps D as computed; the exact method rounds it to a multiple of 1/lcm(n, m).
        assert ks_statistic(ref, grid, cur.size) == stats.ks_2samp(ref.sorted, cur, method="asymp").statistic


def test_messy_column_types_follow_the_engines_rules(client) -> None:
    """Unused categories, nullable dtypes with gaps and a column int in one table and str in the other."""
    rng = np.random.default_rng(11)
    bands = pd.CategoricalDtype(["low", "high", "unused"])

    def table(n: int, p_high: float, shift: int, code: object) -> pd.DataFrame:
        counts = pd.array(rng.integers(0, 8, n) + shift, dtype="Int64")
        counts[rng.random(n) < 0.1] = pd.NA
        return pd.DataFrame(
            {
                "band": pd.Series(rng.choice(["low", "high"], n, p=[1 - p_high, p_high]), dtype=bands),
                "counts": counts,
                "level": pd.array(rng.normal(shift, 1, n), dtype="Float64"),
                "code": pd.Series([code] * n, dtype=object),
            }
        )

    specs = [
        ColumnSpec("band", "categorical"),
        ColumnSpec("counts", "numeric"),
        ColumnSpec("level", "numeric"),
        ColumnSpec("code", "categorical"),
    ]
    ref, cur = table(600, 0.2, 0, 7), table(900, 0.7, 1, "B7")
    exact = DriftDetector(specs).fit(ref).evaluate(cur)
    result = distributed_drift(client, dd.from_pandas(cur, npartitions=3), ref, specs)
    _assert_same(result.drift, exact, result.error_bounds)
    band = result.drift.column("band")
    assert (band.method, band.drift, band.error) == ("z", True, None)
    assert result.drift.column("code").error.startswith("values of more than one type")
    assert [c.drift for c in result.drift.columns] == [True, True, True, None]


def test_a_flipped_correlation_in_a_large_window_is_caught_from_a_uniform_sample(client) -> None:
    """Every column of a 60,000-row window is distributed as in the reference, but two of them now move
    against each other: the column tests see nothing, the joint methods (on a sample) both see it and name
    the pair; the same window without the flip is no drift."""
    rng = np.random.default_rng(0)

    def table(n: int, correlation: float) -> pd.DataFrame:
        x = rng.normal(size=n)
        y = correlation * x + np.sqrt(1 - correlation**2) * rng.normal(size=n)
        return pd.DataFrame({"x": x, "y": y, "a": rng.normal(size=n), "b": rng.exponential(size=n)})

    specs = [ColumnSpec(c, "numeric") for c in ("x", "y", "a", "b")]
    reference = table(3000, 0.9)
    flipped = distributed_drift(
        client, dd.from_pandas(table(60_000, -0.9), npartitions=8), reference, specs, multivariate=True
    )
    assert flipped.drift.n_drifted == 0
    assert [m.method for m in flipped.multivariate] == ["domain_classifier", "pca_reconstruction"]
    for m in flipped.multivariate:
        assert m.drift and {d["feature"] for d in m.drivers[:2]} == {"x", "y"}, m
        assert m.detail.get("current_rows", 5000) <= 5000  # a sample travelled, not the window
    assert flipped.to_dict()["multivariate"][0]["drift"] is True
    same = distributed_drift(
        client, dd.from_pandas(table(60_000, 0.9), npartitions=8), reference, specs, multivariate=True
    )
    assert [m.drift for m in same.multivariate] == [False, False]
    again = distributed_drift(
        client, dd.from_pandas(table(60_000, 0.9), npartitions=8), reference, specs, multivariate=False
    )
    assert again.multivariate == []
