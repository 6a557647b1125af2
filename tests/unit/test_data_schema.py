from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.data.features import infer_task, is_datetime_like, is_id_like
from driftloop.data.io import read_table
from driftloop.data.leakage import find_leaks
from driftloop.data.schema import check_table, infer_schema, validate_against
from driftloop.errors import DataError
from tests.conftest import RED


def test_reads_semicolon_csv_with_sniffed_delimiter() -> None:
    frame = read_table(RED)
    assert frame.shape == (1599, 12)
    assert "fixed acidity" in frame.columns


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty"), ("a,b\n", "no data rows")],
)
def test_empty_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_schema_infers_types_ranges_and_categories() -> None:
    frame = pd.DataFrame({"n": [1.5, 2.0, None], "k": ["a", "b", "a"], "i": [1, 2, 3]})
    schema = infer_schema(frame)
    assert schema["n"].dtype == "float" and schema["n"].nullable and schema["n"].maximum == 2.0
    assert schema["k"].categories == ["a", "b"]
    assert schema["i"].dtype == "integer" and not schema["i"].nullable


def test_check_table_names_all_null_and_text_in_numeric_columns() -> None:
    values = [str(v) for v in range(30)] + ["oops"]
    frame = pd.DataFrame({"empty": [None] * 31, "num": values})
    problems = check_table(frame)
    assert any("'empty'" in p and "every value is missing" in p for p in problems)
    assert any("'num'" in p and "'oops'" in p and "row 31" in p for p in problems)


def test_validate_against_reports_broken_columns_by_name(red: pd.DataFrame) -> None:
    schema = infer_schema(red)
    broken = red.drop(columns=["pH"]).assign(alcohol=["x"] * len(red))
    errors, _ = validate_against(broken, schema)
    assert any("'pH'" in e and "missing" in e for e in errors)
    assert any("'alcohol'" in e and "expected numbers" in e for e in errors)
    errors, warnings = validate_against(red, schema)
    assert errors == [] and warnings == []


def test_task_inference(red: pd.DataFrame) -> None:
    assert infer_task(red["quality"]) == "multiclass"
    assert infer_task(red["alcohol"]) == "regression"
    assert infer_task(pd.Series(["yes", "no", "yes"], name="t")) == "binary"
    with pytest.raises(DataError, match="single value"):
        infer_task(pd.Series([1, 1, 1], name="t"))


def test_id_and_datetime_detection() -> None:
    n = 50
    assert is_id_like(pd.Series(range(1000, 1000 + n), name="customer_id"))
    assert not is_id_like(pd.Series(np.random.default_rng(0).normal(size=n), name="x"))
    assert is_datetime_like(pd.Series(pd.date_range("2024-01-01", periods=n).astype(str), name="when"))


def test_leakage_finds_copies_and_sums_but_not_honest_features(red: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    frame = red.copy()
    frame["quality_copy"] = frame["quality"] * 10 + rng.normal(0, 0.1, len(frame))
    part = rng.integers(0, 5, len(frame))
    frame["part_a"] = part
    frame["part_b"] = frame["quality"] - part
    features = [c for c in frame.columns if c != "quality"]
    leaks = find_leaks(frame, "quality", "multiclass", features)
    flagged = {leak.columns for leak in leaks}
    assert ("quality_copy",) in flagged
    assert ("part_a", "part_b") in flagged
    honest = [c for c in red.columns if c != "quality"]
    assert not any(set(leak.columns) & set(honest) for leak in leaks)


def test_infinities_are_refused_by_validation_and_training(red: pd.DataFrame) -> None:
    """`data validate` names the column; `train` on a version stored before that check says so too, instead of
    a scikit-learn 'Input X contains infinity' traceback."""
    from datetime import UTC, datetime

    from driftloop.config import config_from_dict
    from driftloop.stores.metadata import DatasetRecord
    from driftloop.train.prepare import prepare

    frame = red.head(300).copy()
    frame.loc[7, "density"] = -np.inf
    schema = infer_schema(frame)
    problems = check_table(frame)
    assert problems == [
        "column 'density': 1 infinite value(s), first -inf in data row 8 (no model can learn from or be "
        "checked against infinity; use a finite value or leave it empty)"
    ]
    errors, _ = validate_against(frame, infer_schema(red.head(300)))
    assert any("'density'" in e and "infinite" in e for e in errors)
    record = DatasetRecord(
        version="old", digest="0" * 64, created_at=datetime.now(UTC), source="old.csv", path="old.parquet",
        n_rows=len(frame), n_columns=frame.shape[1], schema=schema.to_dict(), parents=[], note="",
    )  # fmt: skip
    cfg = config_from_dict({"data": {"target": "quality"}}, base_dir=Path("."), environ={})
    with pytest.raises(DataError, match="infinite") as raised:
        prepare(cfg, frame, record)
    assert raised.value.problems == ["column 'density': 1 infinite value(s), first in data row 8"]


def test_drift_names_why_a_text_column_is_not_tested() -> None:
    from driftloop.monitor.tables import infer_columns, why_not_tested

    frame = pd.DataFrame(
        {
            "note": [f"tasted on visit {i}" for i in range(40)],
            "when": pd.date_range("2024-01-01", periods=40),
            "empty": [None] * 40,
        }
    )
    _, skipped = infer_columns(frame, frame)
    assert skipped["note"].startswith("free text: 40 distinct values in 40 rows")
    assert skipped["when"].startswith("a date/time column")
    assert skipped["empty"] == "every value is missing"
    assert not any("dtype" in reason for reason in skipped.values())
    assert why_not_tested(pd.Series(["a", 1] * 20)) == "mixed value types (int, str) in one column"
