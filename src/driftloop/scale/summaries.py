"""Mergeable per-partition summaries of a monitoring window: what each drift statistic and quality count needs.

Two passes over the window, each a task per partition whose small result is merged on the client:

1. `ColumnPass1`: rows, nulls, non-finite values, min/max, integer dtype, exact value counts while a
   column has at most `MAX_COUNTED_VALUES` distinct values, and the data-quality counts (values outside
   the reference range, categories the reference never had).
2. `GridCounts` for numeric columns: on a sorted grid of points (every distinct reference value, the
   histogram edges the tests will ask for, and a fine uniform grid), the count of values equal to each
   point and the count and sum of values strictly between neighbouring points.

From (2), any CDF value at a grid point and any histogram on grid edges is exact, and integrals of the
current CDF between grid points are exact; see `scale/drift.py` for how the statistics use them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftloop.monitor.samples import NumericSample

MAX_COUNTED_VALUES = 1000
"""Distinct values counted exactly per column; beyond it a numeric column is summarised by its grid only."""


@dataclass
class ColumnPass1:
    kind: str
    rows: int = 0
    nulls: int = 0
    non_finite: int = 0
    minimum: float = np.inf
    maximum: float = -np.inf
    values: Counter = field(default_factory=Counter)
    overflow: bool = False
    """More than MAX_COUNTED_VALUES distinct values: `values` is incomplete and not used."""
    below_reference: int = 0
    above_reference: int = 0
    new_categories: int = 0

    @property
    def n(self) -> int:
        """Values the drift tests use: non-null and finite (as the in-memory engine drops the rest)."""
        return self.rows - self.nulls - self.non_finite

    def merge(self, other: ColumnPass1) -> ColumnPass1:
        self.rows += other.rows
        self.nulls += other.nulls
        self.non_finite += other.non_finite
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.below_reference += other.below_reference
        self.above_reference += other.above_reference
        self.new_categories += other.new_categories
        self.overflow = self.overflow or other.overflow
        if not self.overflow:
            self.values.update(other.values)
            self.overflow = len(self.values) > MAX_COUNTED_VALUES
        if self.overflow:
            self.values = Counter()
        return self


@dataclass(frozen=True)
class Pass1Plan:
    """What pass 1 needs to know per column: its kind, and the reference range/categories for quality."""

    kinds: dict[str, str]
    ranges: dict[str, tuple[float, float]]
    categories: dict[str, frozenset]


def summarize_pass1(frame: pd.DataFrame, plan: Pass1Plan) -> dict[str, ColumnPass1]:
    out: dict[str, ColumnPass1] = {}
    for name, kind in plan.kinds.items():
        series = frame[name]
        summary = ColumnPass1(kind=kind, rows=len(series))
        if kind == "numeric":
            arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
            null = np.isnan(arr)
            finite = np.isfinite(arr)
            summary.nulls = int(null.sum())
            summary.non_finite = int((~finite & ~null).sum())
            values = arr[finite]
            if values.size:
                summary.minimum, summary.maximum = float(values.min()), float(values.max())
                low, high = plan.ranges.get(name, (-np.inf, np.inf))
                summary.below_reference = int((values < low).sum())
                summary.above_reference = int((values > high).sum())
                _count_values(summary, pd.Series(values))
        else:
            summary.nulls = int(series.isna().sum())
            counts = series.value_counts(dropna=True, sort=False)
            counts = counts[counts.to_numpy() > 0]  # a category dtype's unused categories are no values
            summary.values = Counter(dict(zip(counts.index.tolist(), counts.tolist(), strict=True)))
            known = plan.categories.get(name)
            if known is not None:
                summary.new_categories = int(sum(c for k, c in summary.values.items() if k not in known))
        out[name] = summary
    return out


def _count_values(summary: ColumnPass1, values: pd.Series) -> None:
    # A cheap early exit for continuous columns: a partition with many distinct values overflows anyway.
    head = values.iloc[: 4 * MAX_COUNTED_VALUES]
    if head.nunique() > MAX_COUNTED_VALUES:
        summary.overflow = True
        return
    counts = values.value_counts(sort=False)
    if len(counts) > MAX_COUNTED_VALUES:
        summary.overflow = True
        return
    summary.values = Counter(dict(zip(counts.index.tolist(), counts.tolist(), strict=True)))


def merge_pass1(parts: list[dict[str, ColumnPass1]]) -> dict[str, ColumnPass1]:
    merged: dict[str, ColumnPass1] = {}
    for part in parts:
        for name, summary in part.items():
            if name in merged:
                merged[name].merge(summary)
            else:
                merged[name] = summary
    return merged


@dataclass
class GridCounts:
    """Counts on a sorted grid g[0..k-1]: `at[i]` values equal to g[i]; `between[i]` values in (g[i-1], g[i])
    with `between[0]` below g[0] and `between[k]` above g[k-1]; `between_sum` their sums."""

    grid: np.ndarray
    at: np.ndarray
    between: np.ndarray
    between_sum: np.ndarray

    @classmethod
    def of(cls, grid: np.ndarray, values: np.ndarray) -> GridCounts:
        k = grid.size
        left = grid.searchsorted(values, "left")
        # A value sits on a grid point exactly when the point at its left insertion index equals it.
        on_point = grid[np.minimum(left, k - 1)] == values
        at = np.bincount(left[on_point], minlength=k).astype(np.int64)
        inside = left[~on_point]
        between = np.bincount(inside, minlength=k + 1).astype(np.int64)
        between_sum = np.bincount(inside, weights=values[~on_point], minlength=k + 1).astype(np.float64)
        return cls(grid, at, between, between_sum)

    def merge(self, other: GridCounts) -> GridCounts:
        self.at += other.at
        self.between += other.between
        self.between_sum += other.between_sum
        return self

    @property
    def n(self) -> int:
        return int(self.at.sum() + self.between.sum())

    def count_lt(self) -> np.ndarray:
        """Values < g[i], for every grid point."""
        return np.cumsum(self.between[:-1]) + np.concatenate(([0], np.cumsum(self.at)[:-1]))

    def count_le(self) -> np.ndarray:
        """Values <= g[i], for every grid point."""
        return self.count_lt() + self.at

    def index(self, points: np.ndarray) -> np.ndarray:
        idx = self.grid.searchsorted(points)
        if (idx >= self.grid.size).any() or (self.grid[np.minimum(idx, self.grid.size - 1)] != points).any():
            raise ValueError("asked for counts at points that are not on the grid")
        return idx


def summarize_grid(frame: pd.DataFrame, grids: dict[str, np.ndarray]) -> dict[str, GridCounts]:
    out = {}
    for name, grid in grids.items():
        arr = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        out[name] = GridCounts.of(grid, arr[np.isfinite(arr)])
    return out


def merge_grids(parts: list[dict[str, GridCounts]]) -> dict[str, GridCounts]:
    merged: dict[str, GridCounts] = {}
    for part in parts:
        for name, counts in part.items():
            if name in merged:
                merged[name].merge(counts)
            else:
                merged[name] = counts
    return merged


class SummarySample(NumericSample):
    """A numeric current sample known only through its summaries, for the engine's count-based tests.

    It answers what `stattests` asks of a current sample (n, extremes, distinct values and counts,
    histograms on grid edges) exactly; asking for the sorted values themselves is an error.
    """

    def __init__(self, first: ColumnPass1, is_integer: bool, grid: GridCounts | None = None) -> None:
        super().__init__(sorted=np.empty(0), is_integer=is_integer, n_missing=first.nulls + first.non_finite)
        self.first = first
        self.grid = grid

    @property
    def n(self) -> int:  # type: ignore[override]
        return self.first.n

    @property
    def n_unique(self) -> int:  # type: ignore[override]
        return MAX_COUNTED_VALUES + 1 if self.first.overflow else len(self.first.values)

    @property
    def counts(self) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        if self.first.overflow:
            raise ValueError(
                f"the current window has more than {MAX_COUNTED_VALUES} distinct values; "
                "a test on value counts needs every one"
            )
        keys = np.array(sorted(self.first.values), dtype=np.float64)
        return keys, np.array([self.first.values[k] for k in keys.tolist()], dtype=np.int64)

    @property
    def minimum(self) -> float:  # type: ignore[override]
        return self.first.minimum

    @property
    def maximum(self) -> float:  # type: ignore[override]
        return self.first.maximum

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        if self.grid is None:
            raise ValueError("no grid counts for this column")
        idx = self.grid.index(edges)
        cum = np.concatenate((self.grid.count_lt()[idx[:-1]], self.grid.count_le()[idx[-1:]]))
        return np.diff(cum)

    def __getattribute__(self, name: str) -> Any:
        if name == "sorted":
            raise AttributeError("a summarised sample has no sorted values")
        return super().__getattribute__(name)
