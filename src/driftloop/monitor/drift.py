"""Data drift of a current table against a reference, per column and for the dataset, with Evidently's verdicts.

    detector = DriftDetector(columns, drift_share=0.5).fit(reference)   # reference prepared once
    result = detector.evaluate(current)                                 # costs only the current table
    result.to_dict()

Each column gets Evidently's default test (see `stattests.default_stattest`) unless an override names a
test or a threshold, plus PSI beside it. The dataset drifts when the share of drifted columns reaches
`drift_share` (>=, as Evidently). Columns are evaluated in a small thread pool: sorting, merging and
histogramming in NumPy release the GIL.

A column that cannot be tested (missing, empty, values of more than one type, a test that raises or gives
a non-finite score) gets `drift: None` and an `error`, and does not count in the share; the others are
tested as usual. One bad column never stops the run nor reads as "no drift".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftloop.monitor.samples import (
    CATEGORICAL,
    NUMERIC,
    CategoricalSample,
    NumericSample,
    Sample,
    comparable,
    make_sample,
    value_types,
)
from driftloop.monitor.stattests import (
    REGISTRY,
    aligned_counts,
    default_stattest,
    get_stattest,
    n_values_combined,
)

PSI_THRESHOLD = 0.1
CHART_BINS = 30
CHART_CATEGORIES = 20


@dataclass(frozen=True)
class ColumnSpec:
    """A column to watch and how to read it: `numeric` or `categorical`."""

    name: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"column {self.name!r}: kind must be numeric or categorical, got {self.kind!r}")


@dataclass(frozen=True)
class ColumnOverride:
    method: str | None = None
    threshold: float | None = None


@dataclass
class ColumnDrift:
    column: str
    kind: str
    method: str | None = None
    statistic: float | None = None
    threshold: float | None = None
    drift: bool | None = None
    """None when the column could not be tested (see `error`); such columns do not count in the share."""
    score_kind: str | None = None
    psi: float | None = None
    psi_drift: bool | None = None
    """PSI at or above the detector's `psi_threshold` (reported only; the verdict is `drift`)."""
    n_reference: int = 0
    n_current: int = 0
    error: str | None = None
    distribution: dict[str, Any] = field(default_factory=dict)
    """Reference and current shares on common bins, for charts."""

    def to_dict(self, *, distributions: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "statistic": _finite_or_none(self.statistic),
            "threshold": self.threshold,
            "drift": self.drift,
            "score_kind": self.score_kind,
            "psi": _finite_or_none(self.psi),
            "psi_drift": self.psi_drift,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "error": self.error,
        }
        if distributions:
            out["distribution"] = self.distribution
        return out


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    drift_share: float
    n_reference: int
    n_current: int

    @property
    def tested(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drift is not None]

    @property
    def n_drifted(self) -> int:
        return sum(1 for c in self.tested if c.drift)

    @property
    def share(self) -> float | None:
        return self.n_drifted / len(self.tested) if self.tested else None

    @property
    def dataset_drift(self) -> bool | None:
        share = self.share
        return None if share is None else bool(share >= self.drift_share)

    def column(self, name: str) -> ColumnDrift:
        for col in self.columns:
            if col.column == name:
                return col
        raise KeyError(name)

    def to_dict(self, *, distributions: bool = True) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "drift_share": self.share,
            "drift_share_threshold": self.drift_share,
            "n_columns": len(self.columns),
            "n_tested": len(self.tested),
            "n_drifted": self.n_drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "columns": {c.column: c.to_dict(distributions=distributions) for c in self.columns},
        }


class DriftDetector:
    """Fit on a reference table once, then evaluate any number of current tables against it."""

    def __init__(
        self,
        columns: Sequence[ColumnSpec],
        *,
        drift_share: float = 0.5,
        overrides: Mapping[str, ColumnOverride] | None = None,
        psi_threshold: float = PSI_THRESHOLD,
        n_threads: int | None = None,
    ) -> None:
        self.columns = list(columns)
        self.drift_share = drift_share
        self.overrides = dict(overrides or {})
        self.psi_threshold = psi_threshold
        self.n_threads = n_threads

    def _check_overrides(self) -> None:
        kinds = {c.name: c.kind for c in self.columns}
        for name, override in self.overrides.items():
            if override.method is None:
                continue
            test = get_stattest(override.method)
            if name in kinds and kinds[name] not in test.kinds:
                raise ValueError(
                    f"column {name!r}: test {override.method!r} does not apply to {kinds[name]} columns"
                )

    def fit(self, reference: Any) -> DriftDetector:
        """Prepare every column of the reference (a pandas DataFrame or an Arrow table)."""
        self._check_overrides()
        self.n_reference_ = _n_rows(reference)
        self.reference_: dict[str, Sample | str] = dict(
            self._map(lambda spec: _prepare(reference, spec, "reference"), self.columns)
        )
        return self

    def evaluate(self, current: Any) -> DriftResult:
        if not hasattr(self, "reference_"):
            raise RuntimeError("call fit(reference) before evaluate(current)")
        results = self._map(lambda spec: self._column(spec, current), self.columns)
        return DriftResult(
            columns=[r for _, r in results],
            drift_share=self.drift_share,
            n_reference=self.n_reference_,
            n_current=_n_rows(current),
        )

    def _map(self, func: Any, specs: list[ColumnSpec]) -> list[tuple[str, Any]]:
        workers = self.n_threads or min(4, os.cpu_count() or 1)
        if workers <= 1 or len(specs) <= 1:
            return [(s.name, func(s)) for s in specs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(zip((s.name for s in specs), pool.map(func, specs), strict=True))

    def _column(self, spec: ColumnSpec, current: Any) -> ColumnDrift:
        out = ColumnDrift(column=spec.name, kind=spec.kind)
        ref = self.reference_[spec.name]
        if isinstance(ref, str):
            out.error = ref
            return out
        cur = _prepare(current, spec, "current")
        out.n_reference = ref.n
        if isinstance(cur, str):
            out.error = cur
            return out
        out.n_current = cur.n
        if cur.n == 0:
            out.error = "no non-null values in the current data"
            return out
        out.error = mixed_types_error(ref, cur)
        if out.error is not None:
            return out
        override = self.overrides.get(spec.name, ColumnOverride())
        try:
            if override.method:
                test = REGISTRY[override.method]
            else:
                test = default_stattest(spec.kind, ref.n, n_values_combined(ref, cur))
            out.method = test.name
            out.score_kind = test.score_kind
            out.threshold = test.default_threshold if override.threshold is None else override.threshold
            out.statistic, out.drift = test(ref, cur, out.threshold)
            out.psi = REGISTRY["psi"].score(ref, cur) if test.name != "psi" else out.statistic
            out.psi_drift = bool(out.psi >= self.psi_threshold) if np.isfinite(out.psi) else None
            out.distribution = chart_distribution(ref, cur)
        except COLUMN_ERRORS as exc:
            return failed_column(out, exc)
        return out


def _prepare(table: Any, spec: ColumnSpec, side: str) -> Sample | str:
    """A prepared sample, or the reason the column cannot be tested."""
    if spec.name not in _column_names(table):
        return f"column missing from the {side} data"
    series = _series(table, spec.name)
    if spec.kind == NUMERIC and not (pd.api.types.is_numeric_dtype(series.dtype) or series.isna().all()):
        return f"column is not numeric in the {side} data (dtype {series.dtype})"
    sample = make_sample(series, spec.kind, reference=side == "reference")
    if side == "reference" and sample.n == 0:
        return "no non-null values in the reference data"
    return sample


COLUMN_ERRORS = (ValueError, TypeError, ArithmeticError)
"""What one column's data can make a test raise; it becomes that column's error and the run goes on."""


def failed_column(out: ColumnDrift, exc: Exception) -> ColumnDrift:
    """The column without a verdict (so it does not count in the share), the reason in `error`."""
    out.statistic = out.drift = out.psi = out.psi_drift = None
    out.distribution = {}
    out.error = f"{out.method or 'drift'} test failed: {exc}"
    return out


def mixed_types_error(ref: Sample, cur: Sample) -> str | None:
    """Why a categorical column cannot be compared: values of more than one type across the two tables."""
    if not isinstance(ref, CategoricalSample) or not isinstance(cur, CategoricalSample):
        return None
    ref_types, cur_types = value_types(ref.keys), value_types(cur.keys)
    if comparable(set(ref_types) | set(cur_types)):
        return None
    return (
        f"values of more than one type (reference: {', '.join(ref_types) or 'none'}; current: "
        f"{', '.join(cur_types) or 'none'}): cast the column to one type in both tables"
    )


def chart_distribution(ref: Sample, cur: Sample) -> dict[str, Any]:
    """Shares of both samples on common bins: 30 equal-width bins, or the most frequent categories."""
    if isinstance(ref, NumericSample) and isinstance(cur, NumericSample) and ref.n_unique > CHART_CATEGORIES:
        low, high = min(ref.minimum, cur.minimum), max(ref.maximum, cur.maximum)
        edges = np.linspace(low, high if high > low else low + 1.0, CHART_BINS + 1)
        return {
            "type": "histogram",
            "edges": edges.tolist(),
            "reference": (ref.histogram(edges) / ref.n).tolist(),
            "current": (cur.histogram(edges) / cur.n).tolist(),
        }
    keys, ref_counts, cur_counts = aligned_counts(ref, cur)
    order = np.argsort(-(ref_counts / max(ref.n, 1) + cur_counts / max(cur.n, 1)), kind="stable")
    top = order[:CHART_CATEGORIES]
    return {
        "type": "categories",
        "keys": [_jsonable(keys[i]) for i in top],
        "reference": (ref_counts[top] / max(ref.n, 1)).tolist(),
        "current": (cur_counts[top] / max(cur.n, 1)).tolist(),
        "other_keys": int(max(len(keys) - CHART_CATEGORIES, 0)),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    # JSON has no infinity; a non-finite score is reported as null (a p-value never is non-finite).
    return float(value) if np.isfinite(value) else None


def _column_names(table: Any) -> list[str]:
    return list(table.column_names) if hasattr(table, "column_names") else list(table.columns)


def _series(table: Any, name: str) -> pd.Series:
    col = table[name]
    return col if isinstance(col, pd.Series) else col.to_pandas()


def _n_rows(table: Any) -> int:
    return int(table.num_rows) if hasattr(table, "num_rows") else len(table)


__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "CategoricalSample",
    "ColumnDrift",
    "ColumnOverride",
    "ColumnSpec",
    "DriftDetector",
    "DriftResult",
    "NumericSample",
]
