"""Reading the two tables `driftloop drift` compares, and deciding which columns are numeric or categorical.

CSV files have their delimiter sniffed (the wine files use `;`); Parquet is read with pyarrow. Without a
model spec, column kinds follow Evidently's inference on the current table, so `driftloop drift` gives
the verdicts an Evidently user expects: floats are numeric; integers are categorical with at most 10
distinct values, numeric otherwise; booleans and categories are categorical; strings are categorical
unless more than half of their non-null values are distinct (free text, which is not tested).
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
        return CATEGORICAL if series.nunique() <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        values = series.dropna()
        if values.empty or not isinstance(values.iloc[0], str) or not isinstance(values.iloc[-1], str):
            return None
        return None if series.nunique() > values.size * 0.5 else CATEGORICAL
    return None


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
            skipped[str(name)] = f"not tested: dtype {current[name].dtype} is neither numeric nor categorical"
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
) -> dict:
    """The `driftloop drift` report: per-column drift of CURRENT against REFERENCE, kinds inferred."""
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
    return {
        "kind": "drift",
        "schema_version": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "reference": {"path": str(reference_path), "rows": len(reference)},
        "current": {"path": str(current_path), "rows": len(current)},
        "drift": result.to_dict(),
        "skipped": skipped,
    }
