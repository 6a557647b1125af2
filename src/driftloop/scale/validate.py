"""Checking one partition of a batch-scoring input against the model's spec, row by row, vectorised.

A row is rejected, with every reason, when a numeric feature holds something that is not a number, an
infinity, or a null the spec does not allow; or a categorical feature holds something that is not a
category (a string, an integer, an integral float) or a null the spec does not allow. Unseen categories
and values outside the training range are not errors: they are what drift monitoring is for.

The same rules as the HTTP request validation (`serve/validation.py`), applied to columns: CSV input
arrives as text, so numbers written as text are accepted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from driftloop.stores.models import FeatureSpec, ModelSpec

MAX_SHOWN_CHARS = 40


@dataclass
class CheckedPartition:
    """`ok[i]` says row i is valid; `reasons[i]` (None for valid rows) names each bad field of row i.

    `columns` holds the features of the valid rows as the model and the prediction log want them: float
    arrays (NaN = null) for numeric features, lists of str/None for categorical ones.
    """

    ok: np.ndarray
    reasons: np.ndarray
    columns: dict[str, Any]

    @property
    def n_rejected(self) -> int:
        return int((~self.ok).sum())


def check_partition(frame: pd.DataFrame, spec: ModelSpec) -> CheckedPartition:
    """Validate every feature column of `frame` (all must be present: checked once, before scoring)."""
    n = len(frame)
    problems: list[tuple[np.ndarray, np.ndarray]] = []  # (row mask, message per row) per check
    cleaned: dict[str, Any] = {}
    for feature in spec.features:
        col = frame[feature.name]
        if feature.kind == "numeric":
            values, checks = _numeric(col, feature)
        else:
            values, checks = _categorical(col, feature)
        cleaned[feature.name] = values
        problems += checks
    ok = np.ones(n, dtype=bool)
    for mask, _ in problems:
        ok &= ~mask
    reasons = np.full(n, None, dtype=object)
    if not ok.all():
        for i in np.flatnonzero(~ok):
            reasons[i] = "; ".join(str(msgs[i]) for mask, msgs in problems if mask[i])
    columns = {
        name: (vals[ok] if isinstance(vals, np.ndarray) and vals.dtype != object else list(vals[ok]))
        for name, vals in cleaned.items()
    }
    return CheckedPartition(ok=ok, reasons=reasons, columns=columns)


def _numeric(col: pd.Series, feature: FeatureSpec) -> tuple[np.ndarray, list[tuple[np.ndarray, Any]]]:
    name = feature.name
    checks: list[tuple[np.ndarray, Any]] = []
    null = col.isna().to_numpy()
    if pd.api.types.is_bool_dtype(col.dtype):
        wrong = ~null
        values = np.full(len(col), np.nan)
        checks.append((wrong, _messages(col, wrong, f"{name}: expected a number, got boolean {{}}")))
    elif pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        # Text such as "9.4" (all of a CSV) is a number; True is not, though to_numeric would read it as 1.
        if pd.api.types.is_object_dtype(col.dtype):
            raw = col.to_numpy(dtype=object)
            booleans = np.fromiter((isinstance(v, (bool, np.bool_)) for v in raw), dtype=bool, count=len(raw))
            col_numbers = col.mask(booleans) if booleans.any() else col
        else:
            col_numbers = col
        as_number = pd.to_numeric(col_numbers, errors="coerce")
        values = as_number.to_numpy(dtype=np.float64, na_value=np.nan)
        wrong = ~null & np.isnan(values)
        if wrong.any():
            checks.append((wrong, _messages(col, wrong, f"{name}: expected a number, got {{}}")))
    infinite = np.isinf(values)
    if infinite.any():
        checks.append((infinite, _messages(col, infinite, f"{name}: must be a finite number, got {{}}")))
    if not feature.nullable and null.any():
        checks.append((null, np.full(len(col), f"{name}: missing, and the model does not accept nulls")))
    return values, checks


def _categorical(col: pd.Series, feature: FeatureSpec) -> tuple[np.ndarray, list[tuple[np.ndarray, Any]]]:
    name = feature.name
    checks: list[tuple[np.ndarray, Any]] = []
    null = col.isna().to_numpy()
    dtype = col.dtype
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        values = col.astype(object).where(~null, None).to_numpy(dtype=object)
    elif pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        values = (
            col.astype(object).where(~null, None).map(_category, na_action="ignore").to_numpy(dtype=object)
        )
    else:  # float or object: decide per value, the way the Encoder reads them
        values = col.map(_category, na_action="ignore").to_numpy(dtype=object, copy=True)
        values[null] = None
        wrong = ~null & np.array([v is _BAD for v in values], dtype=bool)
        if wrong.any():
            checks.append((wrong, _messages(col, wrong, f"{name}: expected a category (text), got {{}}")))
            values[wrong] = None
    if not feature.nullable and null.any():
        checks.append((null, np.full(len(col), f"{name}: missing, and the model does not accept nulls")))
    return values, checks


_BAD = object()


def _category(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return _BAD


def _messages(col: pd.Series, mask: np.ndarray, template: str) -> np.ndarray:
    """One message per row (only rows in `mask` are filled), naming the offending value."""
    out = np.full(len(col), None, dtype=object)
    raw = col.to_numpy(dtype=object)
    for i in np.flatnonzero(mask):
        out[i] = template.format(_show(raw[i]))
    return out


def _show(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."
