"""The drift detector contract: fit once, evaluate many; no drift on same-distribution data, injected drift found."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftloop.monitor.drift import ColumnOverride, ColumnSpec, DriftDetector
from driftloop.monitor.tables import infer_columns, infer_kind

SPECS = [
    ColumnSpec("x", "numeric"),
    ColumnSpec("y", "numeric"),
    ColumnSpec("few", "numeric"),
    ColumnSpec("color", "categorical"),
    ColumnSpec("flag", "categorical"),
]


def frame(n: int, seed: int, shift: float = 0.0, colors: tuple[float, ...] = (0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "y": rng.exponential(2.0, n),
            "few": rng.choice([1.0, 2.0, 3.0], n),
            "color": rng.choice(["red", "green", "blue"], n, p=list(colors)),
            "flag": rng.choice(["yes", "no"], n),
        }
    )


def test_no_drift_on_samples_of_one_distribution_large_reference() -> None:
    result = DriftDetector(SPECS).fit(frame(20_000, 1)).evaluate(frame(5000, 2))
    assert result.dataset_drift is False
    assert [c.column for c in result.columns if c.drift] == []
    assert all(c.psi is not None and c.psi < 0.1 for c in result.columns)


def test_no_drift_on_samples_of_one_distribution_small_reference() -> None:
    # p-value tests flag ~5% of same-distribution windows by design, so judge rates over many windows.
    # Chi-square as Evidently runs it treats the reference shares as exact, so it flags more often than 5%
    # with a small reference (see docs/monitoring.md); the dataset verdict stays quiet.
    detector = DriftDetector(SPECS).fit(frame(800, 1))
    results = [detector.evaluate(frame(400, seed)) for seed in range(2, 42)]
    assert sum(bool(r.dataset_drift) for r in results) <= 2
    assert sum(bool(r.column("x").drift) for r in results) <= 5  # KS
    assert sum(bool(r.column("flag").drift) for r in results) <= 5  # z-test


@pytest.mark.parametrize("n_ref, method", [(800, "ks"), (20_000, "wasserstein")])
def test_injected_drift_is_found(n_ref: int, method: str) -> None:
    detector = DriftDetector(SPECS, drift_share=0.4).fit(frame(n_ref, 1))
    result = detector.evaluate(frame(5000, 2, shift=0.8, colors=(0.2, 0.3, 0.5)))
    assert result.column("x").method == method and result.column("x").drift is True
    assert result.column("color").drift is True
    assert result.column("y").drift is False
    assert result.n_drifted == 2 and result.share == pytest.approx(2 / 5)
    assert result.dataset_drift is True  # 0.4 >= 0.4: the share reaching the threshold is drift


def test_evaluate_reuses_the_prepared_reference() -> None:
    detector = DriftDetector(SPECS).fit(frame(3000, 1))
    prepared = detector.reference_["x"]
    first = detector.evaluate(frame(1000, 3)).to_dict()
    second = detector.evaluate(frame(1000, 3)).to_dict()
    assert first == second and detector.reference_["x"] is prepared


def test_overrides_and_arrow_input() -> None:
    overrides = {"x": ColumnOverride(method="psi", threshold=0.5), "color": ColumnOverride(threshold=0.9)}
    detector = DriftDetector(SPECS, overrides=overrides).fit(pa.Table.from_pandas(frame(3000, 1)))
    result = detector.evaluate(pa.Table.from_pandas(frame(2000, 2, shift=0.3)))
    x = result.column("x")
    assert (x.method, x.threshold, x.statistic == x.psi) == ("psi", 0.5, True)
    assert result.column("color").threshold == 0.9


def test_override_test_must_fit_the_column_kind() -> None:
    with pytest.raises(ValueError, match="'ks' does not apply to categorical"):
        DriftDetector(SPECS, overrides={"color": ColumnOverride(method="ks")}).fit(frame(100, 1))


def test_missing_and_empty_columns_are_reported_not_raised() -> None:
    current = frame(500, 2).drop(columns=["y"])
    current["x"] = np.nan
    result = DriftDetector(SPECS).fit(frame(2000, 1)).evaluate(current)
    assert (
        result.column("y").error == "column missing from the current data"
        and result.column("y").drift is None
    )
    assert result.column("x").error == "no non-null values in the current data"
    assert len(result.tested) == 3
    as_dict = result.to_dict()
    assert as_dict["columns"]["y"]["drift"] is None and as_dict["n_tested"] == 3


def test_kind_inference_follows_evidently() -> None:
    assert infer_kind(pd.Series([1.5, 2.0])) == "numeric"
    assert infer_kind(pd.Series(list(range(10)) * 3)) == "categorical"  # integers with <= 10 values
    assert infer_kind(pd.Series(list(range(11)) * 3)) == "numeric"
    assert infer_kind(pd.Series(["a", "b"] * 10)) == "categorical"
    assert infer_kind(pd.Series([f"free text {i}" for i in range(10)])) is None
    specs, skipped = infer_columns(
        pd.DataFrame({"a": [1.0], "b": [2.0]}), pd.DataFrame({"a": [1.0], "c": [1.0]})
    )
    assert specs == [ColumnSpec("a", "numeric")]
    assert skipped == {"c": "missing from the reference data", "b": "missing from the current data"}


def test_compare_files_reads_csv_and_parquet_and_applies_overrides(tmp_path) -> None:  # noqa: ANN001
    from driftloop.errors import DataError
    from driftloop.monitor.tables import compare_files

    frame(3000, 1).to_csv(tmp_path / "ref.csv", sep=";", index=False)
    frame(2000, 2, shift=0.8).to_parquet(tmp_path / "cur.parquet")
    report = compare_files(
        tmp_path / "ref.csv", tmp_path / "cur.parquet", overrides={"x": ColumnOverride(method="ks")}
    )
    assert report["reference"]["rows"] == 3000 and report["current"]["rows"] == 2000
    x = report["drift"]["columns"]["x"]
    assert (x["method"], x["drift"], x["score_kind"]) == ("ks", True, "p_value")
    assert report["drift"]["columns"]["y"]["method"] == "wasserstein"
    with pytest.raises(DataError, match="names columns not tested here: nope"):
        compare_files(
            tmp_path / "ref.csv", tmp_path / "cur.parquet", overrides={"nope": ColumnOverride(threshold=1)}
        )
    with pytest.raises(DataError, match="does not apply to categorical"):
        compare_files(
            tmp_path / "ref.csv", tmp_path / "cur.parquet", overrides={"color": ColumnOverride("ks")}
        )


def test_category_dtype_with_unused_categories_gets_a_verdict_not_nan() -> None:
    # Two used values of four declared, small reference: the z-test, as for the same values as strings.
    # Counting the unused categories picked chi-square, whose 0/0 terms gave p = NaN and `drift: false`.
    rng = np.random.default_rng(3)
    dtype = pd.CategoricalDtype(["low", "high", "unused", "never"])
    ref = pd.DataFrame({"band": pd.Series(rng.choice(["low", "high"], 500, p=[0.8, 0.2]), dtype=dtype)})
    cur = pd.DataFrame({"band": pd.Series(rng.choice(["low", "high"], 500, p=[0.2, 0.8]), dtype=dtype)})
    spec = [ColumnSpec("band", "categorical")]
    band = DriftDetector(spec).fit(ref).evaluate(cur).column("band")
    as_str = DriftDetector(spec).fit(ref.astype(str)).evaluate(cur.astype(str)).column("band")
    assert (band.method, band.drift, band.error) == ("z", True, None)
    assert band.statistic == as_str.statistic and band.psi == as_str.psi
    same = DriftDetector(spec).fit(ref).evaluate(ref.iloc[::-1]).column("band")
    assert (same.method, same.drift, same.statistic) == ("z", False, 1.0)


def test_a_non_finite_statistic_is_the_columns_error_not_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    from driftloop.monitor import stattests

    broken = stattests.StatTest(
        "broken", frozenset({"numeric"}), 0.05, "p_value", lambda r, c: np.nan, lambda p, t: p < t
    )
    monkeypatch.setitem(stattests.REGISTRY, "broken", broken)
    detector = DriftDetector(SPECS, overrides={"x": ColumnOverride(method="broken")})
    result = detector.fit(frame(500, 1)).evaluate(frame(500, 2, shift=2.0))
    x = result.column("x")
    assert x.drift is None and x.statistic is None
    assert x.error == "broken test failed: non-finite p_value (nan), no verdict"
    assert len(result.tested) == len(SPECS) - 1 and result.to_dict()["columns"]["x"]["drift"] is None


def test_values_of_mixed_types_are_the_columns_error_and_the_run_goes_on() -> None:
    specs = [ColumnSpec("code", "categorical"), ColumnSpec("x", "numeric")]
    ref = pd.DataFrame({"code": [1] * 300, "x": np.arange(300.0)})
    cur = pd.DataFrame({"code": ["a"] * 300, "x": np.arange(300.0)})  # int in one table, str in the other
    result = DriftDetector(specs).fit(ref).evaluate(cur)
    code = result.column("code")
    assert code.drift is None and code.error == (
        "values of more than one type (reference: number; current: str): cast the column to one type in both tables"
    )
    assert result.column("x").drift is False and result.n_drifted == 0 and len(result.tested) == 1
    flags = DriftDetector(specs).fit(ref.assign(code=[True, False] * 150)).evaluate(cur.assign(code="yes"))
    assert flags.column("code").error.startswith(
        "values of more than one type (reference: bool; current: str)"
    )
    ones = (
        DriftDetector(specs).fit(ref.assign(code=[True, False] * 150)).evaluate(ref.assign(code=[1, 0] * 150))
    )
    assert ones.column("code").error is None and ones.column("code").statistic == 1.0  # True == 1: one value
    mixed = pd.DataFrame({"code": pd.Series(["a", 1] * 150, dtype=object), "x": np.arange(300.0)})
    code = DriftDetector(specs).fit(mixed).evaluate(mixed).column("code")
    assert code.error is not None and code.error.startswith(
        "values of more than one type (reference: number, str;"
    )


def test_nullable_dtypes_get_the_kind_of_the_same_values_in_numpy_dtypes() -> None:
    few = pd.Series([1, 2, 3, 4, 5, 6] * 5)
    assert infer_kind(few.astype("Int64")) == infer_kind(few) == "categorical"
    gaps = pd.Series([1, 2, 3, 4, 5, 6, None] * 5)  # float64 in NumPy dtypes: numeric, as Evidently says
    assert infer_kind(gaps) == infer_kind(gaps.astype("Int64")) == "numeric"
    assert infer_kind(pd.Series([0.5, None]).astype("Float64")) == "numeric"
    assert infer_kind(pd.Series([True, False, None]).astype("boolean")) == "categorical"


def test_convert_dtypes_gives_the_same_result_as_numpy_dtypes() -> None:
    # One table, NumPy-backed or nullable (`convert_dtypes()`, Parquet written from it): one answer.
    def table(n: int, seed: int, shift: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        counts = rng.integers(0, 8, n) + float(shift > 0)  # 8 values: the kind decides the test
        counts[rng.random(n) < 0.1] = np.nan  # integers with gaps: float64 in NumPy dtypes
        return pd.DataFrame(
            {
                "counts": counts,
                "levels": rng.integers(0, 8 + shift, n),
                "score": rng.normal(shift, 1, n),
                "flag": rng.random(n) < 0.5 + shift / 10,
            }
        )

    for n_ref in (600, 2000):  # both halves of Evidently's test selection
        ref, cur = table(n_ref, 1, 0), table(800, 2, 2)
        nullable_ref, nullable_cur = ref.convert_dtypes(), cur.convert_dtypes()
        assert str(nullable_cur["counts"].dtype) == "Int64" and str(nullable_cur["flag"].dtype) == "boolean"
        specs, _ = infer_columns(ref, cur)
        nullable_specs, _ = infer_columns(nullable_ref, nullable_cur)
        assert nullable_specs == specs and len(specs) == 4
        want = DriftDetector(specs).fit(ref).evaluate(cur).to_dict()
        got = DriftDetector(nullable_specs).fit(nullable_ref).evaluate(nullable_cur).to_dict()
        assert got == want
