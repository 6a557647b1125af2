"""Data quality of a window of production inputs against what the model was trained on.

Per feature: null rate (against the reference's), share of numeric values outside the training range,
share of categorical values never seen in training, values of the wrong type. A feature missing from the
window is a quality failure with a message, never an exception. Limits live in `monitoring.*`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftloop.monitor.samples import NUMERIC

MAX_UNSEEN_LISTED = 10


@dataclass(frozen=True)
class QualityLimits:
    max_null_increase: float = 0.1
    """A null rate this much above the reference's is a problem."""
    max_out_of_range_share: float = 0.05
    max_unseen_share: float = 0.05


@dataclass(frozen=True)
class FeatureProfile:
    """What training looked like for one feature: its kind, range or categories, and null rate."""

    name: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    categories: frozenset[str] = frozenset()
    null_rate: float = 0.0


@dataclass
class ColumnQuality:
    present: bool = True
    null_rate: float | None = None
    out_of_range_share: float | None = None
    unseen_share: float | None = None
    unseen_values: list[str] = field(default_factory=list)
    type_violations: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "null_rate": self.null_rate,
            "out_of_range_share": self.out_of_range_share,
            "unseen_share": self.unseen_share,
            "unseen_values": self.unseen_values,
            "type_violations": self.type_violations,
            "problems": self.problems,
        }


@dataclass
class QualityResult:
    rows: int
    columns: dict[str, ColumnQuality]
    extra_columns: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [f"{name}: {p}" for name, col in self.columns.items() for p in col.problems]
        if self.extra_columns:
            out.append(f"columns the model does not know: {', '.join(self.extra_columns)}")
        return out

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "passed": self.passed,
            "problems": self.problems,
            "extra_columns": self.extra_columns,
            "columns": {k: v.to_dict() for k, v in self.columns.items()},
        }


def profile_features(specs: Sequence[Any], reference: pd.DataFrame | None) -> list[FeatureProfile]:
    """Profiles from feature specs (kind, categories, minimum/maximum when the spec has them), completed
    from the reference sample (range, categories and null rate of what the model was trained on)."""
    out = []
    for spec in specs:
        ref = reference[spec.name] if reference is not None and spec.name in reference else None
        minimum = getattr(spec, "minimum", None)
        maximum = getattr(spec, "maximum", None)
        categories = frozenset(str(c) for c in (getattr(spec, "categories", None) or ()))
        null_rate = 0.0
        if ref is not None and len(ref):
            null_rate = float(ref.isna().mean())
            if spec.kind == NUMERIC:
                values = pd.to_numeric(ref, errors="coerce")
                minimum = float(values.min()) if minimum is None else minimum
                maximum = float(values.max()) if maximum is None else maximum
            elif not categories:
                categories = frozenset(str(v) for v in ref.dropna().unique())
        out.append(FeatureProfile(spec.name, spec.kind, minimum, maximum, categories, null_rate))
    return out


def check_quality(
    window: pd.DataFrame, profiles: Sequence[FeatureProfile], limits: QualityLimits = QualityLimits()
) -> QualityResult:
    known = {p.name for p in profiles}
    result = QualityResult(
        rows=len(window), columns={}, extra_columns=sorted(str(c) for c in window.columns if c not in known)
    )
    for prof in profiles:
        col = ColumnQuality()
        result.columns[prof.name] = col
        if prof.name not in window.columns:
            col.present = False
            col.problems.append("column missing from the prediction log")
            continue
        series = window[prof.name]
        if len(series) == 0:
            continue
        nulls = series.isna()
        col.null_rate = float(nulls.mean())
        if col.null_rate > prof.null_rate + limits.max_null_increase:
            col.problems.append(f"null rate {col.null_rate:.1%} (training: {prof.null_rate:.1%})")
        present = series[~nulls]
        if prof.kind == NUMERIC:
            _numeric(col, present, prof, limits)
        else:
            _categorical(col, present, prof, limits)
    return result


def _numeric(col: ColumnQuality, present: pd.Series, prof: FeatureProfile, limits: QualityLimits) -> None:
    values = pd.to_numeric(present, errors="coerce")
    bad = values.isna()
    col.type_violations = int(bad.sum())
    if col.type_violations:
        col.problems.append(f"{col.type_violations} non-numeric values")
    finite = values[~bad].to_numpy(dtype=np.float64)
    if finite.size and prof.minimum is not None and prof.maximum is not None:
        outside = (finite < prof.minimum) | (finite > prof.maximum)
        col.out_of_range_share = float(outside.mean())
        if col.out_of_range_share > limits.max_out_of_range_share:
            col.problems.append(
                f"{col.out_of_range_share:.1%} of values outside the training range "
                f"[{prof.minimum:g}, {prof.maximum:g}]"
            )


def _categorical(col: ColumnQuality, present: pd.Series, prof: FeatureProfile, limits: QualityLimits) -> None:
    if not prof.categories or present.empty:
        return
    counts = present.astype(str).value_counts()
    unseen = counts[~counts.index.isin(list(prof.categories))]
    col.unseen_share = float(unseen.sum() / len(present))
    col.unseen_values = [str(v) for v in unseen.index[:MAX_UNSEEN_LISTED]]
    if col.unseen_share > limits.max_unseen_share:
        col.problems.append(
            f"{col.unseen_share:.1%} of values are categories unseen in training ({', '.join(col.unseen_values)})"
        )
