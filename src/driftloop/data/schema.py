"""Schema inference and validation: dtype, kind, range, nullability and category set per column.

`infer_schema` describes a table; `check_table` finds what makes a table unusable on its own (all-null
columns, text among numbers); `validate_against` compares a new table with a stored schema and names every
broken column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from driftloop.kinds import Kind, category_key

DType = Literal["integer", "float", "boolean", "string", "datetime"]

#: Fewer rows than this cannot be split into rows to learn from and rows to check with.
MIN_ROWS = 2
#: Share of parseable values above which a text column is taken for a numeric column with bad entries.
NUMERIC_SHARE = 0.9


@dataclass
class ColumnSchema:
    name: str
    dtype: DType
    nullable: bool
    n_unique: int
    minimum: float | None = None
    maximum: float | None = None
    categories: list[str] | None = None
    """The value set of a text or boolean column with at most `max_categories` distinct values."""
    kind: Kind | None = None
    """What the column means, from dtype and categories (`column_kind`); filled in when not given, so
    schemas stored before kinds existed read the same."""

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = column_kind(self.dtype, self.categories)

    @property
    def numeric(self) -> bool:
        return self.dtype in ("integer", "float")


@dataclass
class TableSchema:
    columns: list[ColumnSchema] = field(default_factory=list)
    n_rows: int = 0

    def __getitem__(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        return cls(columns=[ColumnSchema(**c) for c in d["columns"]], n_rows=d.get("n_rows", 0))


def column_kind(dtype: DType, categories: list[str] | None) -> Kind:
    """numeric (integer, float), bool, datetime, categorical (text with a small value set) or text."""
    if dtype in ("integer", "float"):
        return "numeric"
    if dtype == "boolean":
        return "bool"
    if dtype == "datetime":
        return "datetime"
    return "categorical" if categories is not None else "text"


def column_dtype(series: pd.Series) -> DType:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        non_null = series.dropna().to_numpy()
        non_null = non_null[np.isfinite(non_null)]  # inf has no remainder; it is refused by check_table
        if len(non_null) and np.all(np.mod(non_null, 1) == 0) and series.isna().any():
            return "integer"  # integers with gaps: pandas reads them as float
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "string"


def infer_column(series: pd.Series, max_categories: int = 50) -> ColumnSchema:
    dtype = column_dtype(series)
    non_null = series.dropna()
    col = ColumnSchema(
        name=str(series.name),
        dtype=dtype,
        nullable=bool(series.isna().any()),
        n_unique=int(non_null.nunique()),
    )
    if dtype in ("integer", "float") and len(non_null):
        col.minimum = float(non_null.min())
        col.maximum = float(non_null.max())
    elif dtype in ("string", "boolean") and col.n_unique <= max_categories:
        col.categories = sorted({_category(v) for v in non_null.unique()})
    col.kind = column_kind(dtype, col.categories)
    return col


def _category(value: Any) -> str:
    """The category rule (driftloop.kinds), and `str` for objects it has no rule for."""
    try:
        return category_key(value)
    except ValueError:
        return str(value)


def infer_schema(frame: pd.DataFrame, max_categories: int = 50) -> TableSchema:
    return TableSchema(
        columns=[infer_column(frame[c], max_categories) for c in frame.columns], n_rows=len(frame)
    )


def first_non_numeric(series: pd.Series) -> tuple[int, Any] | None:
    """(row number, value) of the first entry of a text column that is not a number, if any."""
    non_null = series.dropna()
    parsed = pd.to_numeric(non_null, errors="coerce")
    bad = parsed.isna()
    if not bad.any():
        return None
    idx = bad.idxmax()
    return int(series.index.get_loc(idx)), non_null.loc[idx]


def first_infinite(series: pd.Series) -> tuple[int, int] | None:
    """(row number of the first, count) of the infinite values of a float column, if any."""
    if not pd.api.types.is_float_dtype(series):
        return None
    infinite = np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan))
    if not infinite.any():
        return None
    return int(np.argmax(infinite)), int(infinite.sum())


def too_few_rows(frame: pd.DataFrame) -> list[str]:
    """The problem of a table too small to be a dataset (a batch to validate may be smaller)."""
    if len(frame) >= MIN_ROWS:
        return []
    return [
        f"{len(frame)} data row(s): a dataset needs at least {MIN_ROWS} (rows to learn from and to check with)"
    ]


def check_table(frame: pd.DataFrame) -> list[str]:
    """Problems that make a table unusable on its own, one line per column."""
    problems = []
    for name in frame.columns:
        series = frame[name]
        if series.isna().all():
            problems.append(f"column {name!r}: every value is missing")
            continue
        infinite = first_infinite(series)
        if infinite is not None:
            row, n = infinite
            problems.append(
                f"column {name!r}: {n} infinite value(s), first {series.iloc[row]} in data row {row + 1} "
                "(no model can learn from or be checked against infinity; use a finite value or leave it empty)"
            )
            continue
        if column_dtype(series) != "string":
            continue
        non_null = series.dropna()
        share = pd.to_numeric(non_null, errors="coerce").notna().mean()
        if NUMERIC_SHARE <= share < 1.0:
            row, value = first_non_numeric(series)  # type: ignore[misc]
            problems.append(
                f"column {name!r}: text {value!r} in a numeric column (data row {row + 1}, "
                f"{(1 - share):.1%} of values are not numbers)"
            )
    return problems


def validate_against(frame: pd.DataFrame, schema: TableSchema) -> tuple[list[str], list[str]]:
    """Compare a table with a stored schema: (errors, warnings), each naming the column.

    Errors break the contract (missing column, numbers turned to text, nulls in an all-present target);
    warnings are changes worth knowing (new columns, values outside the known range, unseen categories).
    """
    errors: list[str] = list(check_table(frame))
    warnings: list[str] = []
    for col in schema.columns:
        if col.name not in frame.columns:
            errors.append(f"column {col.name!r}: missing (expected {col.dtype})")
            continue
        series = frame[col.name]
        got = column_dtype(series)
        if col.numeric and got not in ("integer", "float"):
            found = first_non_numeric(series)
            where = f", e.g. {found[1]!r} in data row {found[0] + 1}" if found else ""
            errors.append(f"column {col.name!r}: expected numbers ({col.dtype}), found {got}{where}")
            continue
        if not col.nullable and series.isna().any():
            n = int(series.isna().sum())
            warnings.append(f"column {col.name!r}: {n} missing value(s); none in the reference")
        if col.numeric and col.minimum is not None and col.maximum is not None:
            values = pd.to_numeric(series, errors="coerce")
            outside = int(((values < col.minimum) | (values > col.maximum)).sum())
            if outside:
                warnings.append(
                    f"column {col.name!r}: {outside} value(s) outside the reference range "
                    f"[{col.minimum:g}, {col.maximum:g}]"
                )
        if col.categories is not None:
            unseen = sorted({str(v) for v in series.dropna().unique()} - set(col.categories))
            if unseen:
                warnings.append(f"column {col.name!r}: unseen categories {unseen[:10]}")
    extra = [c for c in frame.columns if c not in schema]
    if extra:
        warnings.append(f"new column(s) not in the reference: {', '.join(map(repr, extra))}")
    return errors, warnings
