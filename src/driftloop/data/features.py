"""From a table and the config to the model's input: the task, and the features with their kinds.

The rules `driftloop init` proposes and training applies live here once: which columns are ids, timestamps,
free text, the target, or excluded; which are numeric and which categorical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from driftloop.config import Config
from driftloop.data.schema import ColumnSchema, TableSchema, column_dtype
from driftloop.errors import DataError
from driftloop.kinds import category_key
from driftloop.stores.models import FeatureSpec

#: An integer target with at most this many distinct values is a class label, not a quantity.
MAX_CLASSES = 20
#: A numeric column with at most this many distinct integer values is proposed as categorical.
_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key)$|^id[_\s-]|_id$", re.IGNORECASE)
_TIME_NAME = re.compile(r"(date|time|timestamp|_at$|^ts$)", re.IGNORECASE)


def infer_task(target: pd.Series) -> str:
    """binary, multiclass or regression, from the target's values."""
    values = target.dropna()
    if values.empty:
        raise DataError(f"target column {target.name!r}: every value is missing")
    n_unique = values.nunique()
    if n_unique < 2:
        raise DataError(
            f"target column {target.name!r}: a single value ({_plain(values.iloc[0])!r}) in "
            f"{len(values)} labeled row(s); a model needs at least two distinct values to learn from"
        )
    dtype = column_dtype(target)
    if dtype in ("string", "boolean"):
        return "binary" if n_unique == 2 else "multiclass"
    if dtype == "integer" and n_unique <= MAX_CLASSES:
        return "binary" if n_unique == 2 else "multiclass"
    return "regression"


def is_id_like(series: pd.Series) -> bool:
    """Unique per row and integer or text: a row key, which can only memorise, never generalise."""
    if len(series) < 20 or series.isna().any():
        return False
    if column_dtype(series) not in ("integer", "string"):
        return False
    if series.nunique() != len(series):
        return False
    return (
        bool(_ID_NAME.search(str(series.name))) or column_dtype(series) == "string" or _is_row_counter(series)
    )


def _is_row_counter(series: pd.Series) -> bool:
    values = series.sort_values().to_numpy()
    return bool(len(values) > 1 and (values[1:] - values[:-1] == 1).all())


def is_datetime_like(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if column_dtype(series) != "string":
        return False
    sample = series.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}").mean() > 0.9:
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.9) or bool(_TIME_NAME.search(str(series.name)))


def feature_kind(col: ColumnSchema, override: str | None) -> str | None:
    """numeric, categorical, or None for a column that cannot be a feature (free text, datetime)."""
    if override:
        return override
    if col.kind == "numeric":
        return "numeric"
    if col.kind in ("bool", "categorical"):  # a bool feature is categorical with categories False, True
        return "categorical"
    return None


@dataclass(frozen=True)
class Dropped:
    column: str
    reason: str


def feature_specs(
    cfg: Config, frame: pd.DataFrame, schema: TableSchema
) -> tuple[list[FeatureSpec], list[Dropped]]:
    """The model's features in table order, and the columns left out with the reason."""
    data = cfg.data
    if data.target not in frame.columns:
        raise DataError(
            f"data.target: column {data.target!r} is not in the data (columns: {', '.join(frame.columns)})"
        )
    unknown = [c for c in [*data.exclude, *data.feature_types] if c not in frame.columns]
    if unknown:
        raise DataError(
            f"data.exclude / data.feature_types: unknown column(s) {', '.join(map(repr, unknown))}"
        )
    skip = {data.target: "target", **dict.fromkeys(data.exclude, "excluded in config")}
    if data.id_column:
        skip[data.id_column] = "id column"
    if data.timestamp_column:
        skip[data.timestamp_column] = "timestamp column"
    specs: list[FeatureSpec] = []
    dropped: list[Dropped] = []
    for col in schema.columns:
        if col.name in skip:
            dropped.append(Dropped(col.name, skip[col.name]))
            continue
        kind = feature_kind(col, data.feature_types.get(col.name))
        if kind is None:
            why = "datetime" if col.dtype == "datetime" else f"free text ({col.n_unique} distinct values)"
            dropped.append(Dropped(col.name, why))
            continue
        if kind == "numeric" and not col.numeric:
            raise DataError(
                f"data.feature_types.{col.name}: numeric, but the column holds {col.dtype} values"
            )
        categories: tuple[str, ...] = ()
        if kind == "categorical":
            categories = tuple(
                col.categories or sorted(_as_category(v) for v in frame[col.name].dropna().unique())
            )
        specs.append(
            FeatureSpec(
                name=col.name,
                kind=kind,  # type: ignore[arg-type]
                categories=categories,
                minimum=col.minimum,
                maximum=col.maximum,
                nullable=col.nullable,
            )
        )
    if not specs:
        raise DataError("no usable feature columns: every column is the target, excluded, text or a date")
    return specs, dropped


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so messages say 5.0, not np.float64(5.0)."""
    return value.item() if hasattr(value, "item") else value


def _as_category(value: object) -> str:
    try:
        return category_key(value)
    except ValueError:
        return str(value)
