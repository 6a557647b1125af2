"""Reading the two tables `driftloop drift` compares, and deciding which columns are numeric or categorical.

CSV files have their delimiter sniffed (the wine files use `;`); Parquet is read with pyarrow. Without a
model spec, column kinds follow Evidently's inference on the current table, so `driftloop drift` gives
the verdicts an Evidently user expects: floats are numeric; integers are categorical with at most 10
distinct values, numeric otherwise; booleans and categories are categorical; strings are categorical
unless more than half of their non-null values are distinct (free text, which is not tested).

Nullable dtypes (`Int64`, `Float64`, `boolean`, as `convert_dtypes()` and Parquet give them) get the kind
of the NumPy-backed column holding the same values, so one table gets one answer in any format: an
integer column with missing values is numeric, as it is when read from CSV (float64). Evidently leaves
nullable columns out (its inference matches dtype names `int*`, `float*`, `bool`); driftloop tests them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from driftloop.data import io
from driftloop.errors import DataError
from driftloop.monitor.drift import CATEGORICAL, NUMERIC, ColumnOverride, ColumnSpec, DriftDetector

INTEGER_CARDINALITY_LIMIT = 10


def read_table(path: Path | str) -> pd.DataFrame:
    """A CSV (any common delimiter) or Parquet file as a DataFrame; DataError naming the file if unreadable."""
    return io.read_table(path)


def infer_kind(series: pd.Series) -> str | None:
    """`numeric`, `categorical`, or None for columns drift is not tested on (text, dates, empty, other)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if pd.api.types.is_float_dtype(dtype):
        return NUMERIC
    if pd.api.types.is_integer_dtype(dtype):
        if series.hasnans:
            # Only a nullable Int64 column holds integers with gaps; NumPy-backed pandas (and any CSV
            # reader) holds them as float, so they are numeric whatever the file format.
            return NUMERIC
        return CATEGORICAL if series.nunique() <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        values = series.dropna()
        if values.empty or not isinstance(values.iloc[0], str) or not isinstance(values.iloc[-1], str):
            return None
        return None if series.nunique() > values.size * 0.5 else CATEGORICAL
    return None


def why_not_tested(series: pd.Series) -> str:
    """The reason `infer_kind` left a column out, in the user's terms (pandas calls all text `str`)."""
    values = series.dropna()
    if values.empty:
        return "every value is missing"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "a date/time column (drift is tested on numbers and categories)"
    kinds = sorted({type(v).__name__ for v in values})
    if kinds != ["str"]:
        return f"mixed value types ({', '.join(kinds)}) in one column"
    if series.nunique() > values.size * 0.5:
        return (
            f"free text: {series.nunique()} distinct values in {values.size} rows (more than half are "
            "distinct, so it is not a category)"
        )
    return f"values of type {series.dtype} are neither numbers nor categories"


def infer_columns(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[list[ColumnSpec], dict[str, str]]:
    """Specs for the columns both tables share (kinds from the current table), and why others are left out."""
    skipped: dict[str, str] = {}
    specs = []
    for name in current.columns:
        if name not in reference.columns:
            skipped[str(name)] = "missing from the reference data"
            continue
        kind = infer_kind(current[name])
        if kind is None:
            skipped[str(name)] = why_not_tested(current[name])
            continue
        specs.append(ColumnSpec(str(name), kind))
    for name in reference.columns:
        if name not in current.columns:
            skipped[str(name)] = "missing from the current data"
    return specs, skipped


def compare_files(
    reference_path: Path | str,
    current_path: Path | str,
    *,
    drift_share: float = 0.5,
    overrides: dict[str, ColumnOverride] | None = None,
    multivariate: bool = False,
) -> dict:
    """The `driftloop drift` report: per-column drift of CURRENT against REFERENCE, kinds inferred; with
    `multivariate`, the joint distribution too (monitor/multivariate.py)."""
    from datetime import UTC, datetime

    reference = read_table(reference_path)
    current = read_table(current_path)
    if reference.empty:
        raise DataError(f"{reference_path}: the reference table has no rows")
    specs, skipped = infer_columns(reference, current)
    unknown = sorted(set(overrides or {}) - {s.name for s in specs})
    if unknown:
        raise DataError(f"monitoring.columns names columns not tested here: {', '.join(unknown)}")
    try:
        detector = DriftDetector(specs, drift_share=drift_share, overrides=overrides).fit(reference)
    except (KeyError, ValueError) as exc:
        raise DataError(f"monitoring.columns: {exc.args[0]}") from None
    result = detector.evaluate(current)
    joint = []
    if multivariate:
        from driftloop.monitor.multivariate import multivariate_drift

        joint = [m.to_dict() for m in multivariate_drift(reference, current, specs)]
    return {
        "kind": "drift",
        "schema_version": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "reference": {"path": str(reference_path), "rows": len(reference)},
        "current": {"path": str(current_path), "rows": len(current)},
        "drift": result.to_dict(),
        "skipped": skipped,
        **({"multivariate": joint} if multivariate else {}),
    }
