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
