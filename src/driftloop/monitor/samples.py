"""One column of one table, prepared once for every drift statistic: sorted numbers or category counts.

A reference column is prepared when a detector is fitted and kept for as long as the model version
lives, so a monitoring pass only pays for preparing the window. Everything a statistic needs (sorted
values, distinct values and their counts, standard deviation, Sturges histogram shares) is derived from
the sorted array in linear time or less, never by sorting the reference again.

Nulls and infinities are dropped first, as Evidently does before it runs a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(eq=False)
class NumericSample:
    """Finite values of a numeric column, sorted ascending."""

    sorted: np.ndarray
    is_integer: bool = False
    """The column's dtype was integer: NumPy then never makes histogram bins narrower than 1."""
    n_missing: int = 0

    @property
    def n(self) -> int:
        return int(self.sorted.size)

    @cached_property
    def _boundaries(self) -> np.ndarray:
        # Indices where a new distinct value starts; sorted input makes this a single linear pass.
        if self.sorted.size == 0:
            return np.empty(0, dtype=np.intp)
        return np.concatenate(([0], np.flatnonzero(self.sorted[1:] != self.sorted[:-1]) + 1))

    @cached_property
    def n_unique(self) -> int:
        if self.sorted.size == 0:
            return 0
        return 1 + int(np.count_nonzero(self.sorted[1:] != self.sorted[:-1]))

    @cached_property
    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct values (ascending) and how often each occurs."""
        starts = self._boundaries
        ends = np.append(starts[1:], self.sorted.size)
        return self.sorted[starts], ends - starts

    std: float = float("nan")
    """Population standard deviation (ddof=0), summed in the table's row order as pandas does (see below)."""

    @property
    def minimum(self) -> float:
        return float(self.sorted[0])

    @property
    def maximum(self) -> float:
        return float(self.sorted[-1])

    def histogram(self, edges: np.ndarray) -> np.ndarray:
        """Counts per bin exactly as `np.histogram(values, edges)`: bins closed on the left, the last on both sides."""
        cum = np.concatenate(
            (self.sorted.searchsorted(edges[:-1], "left"), self.sorted.searchsorted(edges[-1:], "right"))
        )
        return np.diff(cum)


@dataclass(eq=False)
class CategoricalSample:
    """Counts of each non-null value of a categorical column."""

    keys: np.ndarray
    """Distinct values, as the table holds them (str, int, bool...)."""
    key_counts: np.ndarray
    n_missing: int = 0
    index: dict[Any, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {k: i for i, k in enumerate(self.keys.tolist())}

    @property
    def n(self) -> int:
        return int(self.key_counts.sum())

    @property
    def n_unique(self) -> int:
        return int(self.keys.size)

    @property
    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keys, self.key_counts


Sample = NumericSample | CategoricalSample


def numeric_sample(values: Any, *, with_std: bool = True) -> NumericSample:
    """Prepare a numeric column (pandas Series, Arrow array or array-like); nulls and +-inf are dropped.

    `with_std` is only needed on the reference side (Wasserstein is normed by the reference's spread).
    """
    series = _series(values)
    integer_dtype = pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )
    if isinstance(series.dtype, np.dtype):  # NumPy-backed: NaN already marks missing values, no masking pass
        arr = np.asarray(series.to_numpy(), dtype=np.float64)
    else:  # nullable / Arrow-backed
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(arr)
    if finite.all():
        # Sorting happens in place: never on the caller's memory.
        kept = arr.copy() if np.shares_memory(arr, np.asarray(series.to_numpy())) else arr
    else:
        kept = arr[finite]
    std = _pandas_std(kept) if with_std else float("nan")
    kept.sort()
    n_missing = int(arr.size - kept.size)
    # Integers with gaps (nullable Int64) are what NumPy-backed pandas holds as float: no integer bins.
    is_integer = integer_dtype and n_missing == 0
    return NumericSample(sorted=kept, is_integer=is_integer, n_missing=n_missing, std=std)


def _pandas_std(values: np.ndarray) -> float:
    """`np.std` of a pandas Series (what Evidently normalises Wasserstein by), to the last bit.

    pandas' nanvar sums in row order, (mean - x) squared; NumPy's pairwise sums give a different last bit
    on sorted data, which can flip a verdict that sits on the threshold.
    """
    if values.size == 0:
        return float("nan")
    mean = values.sum(dtype=np.float64) / values.size
    return float(np.sqrt(((mean - values) ** 2).sum(dtype=np.float64) / values.size))


def categorical_sample(values: Any) -> CategoricalSample:
    """Prepare a categorical column: a hash-based count of each value, nulls dropped.

    A pandas category dtype counts every declared category, used or not (`pd.cut` bands, filtered frames,
    categories written to Parquet); a value with no row is not a value of the column, so zero counts are
    dropped. Kept, they would pick chi-square for a two-valued column and give it a 0/0 term.
    """
    series = _series(values)
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts.to_numpy() > 0]
    keys = np.asarray(counts.index.to_numpy(dtype=object), dtype=object)
    return CategoricalSample(
        keys=keys,
        key_counts=counts.to_numpy(dtype=np.int64),
        n_missing=int(series.isna().sum()),
    )


def value_types(keys: Any) -> list[str]:
    """The types of value a categorical column holds, sorted: `bool`, `number` (int, float), `str`, or a type name.

    Values of more than one type (an object column of str and int, or a column that is int in one table
    and str in the other) cannot be ordered, and `1` and `"1"` would count as two categories. Booleans
    and numbers compare and hash alike (`True == 1`), so they mix safely: see `comparable`.
    """
    types = set()
    for key in keys:
        if isinstance(key, str):
            types.add("str")
        elif isinstance(key, (bool, np.bool_)):
            types.add("bool")
        elif isinstance(key, (int, float, np.number)):
            types.add("number")
        else:
            types.add(type(key).__name__)
    return sorted(types)


def comparable(types: Any) -> bool:
    """Whether values of these types (from `value_types`) can be counted and ordered together."""
    return len({"number" if t == "bool" else t for t in types}) <= 1


def make_sample(values: Any, kind: str, *, reference: bool = True) -> Sample:
    return numeric_sample(values, with_std=reference) if kind == NUMERIC else categorical_sample(values)


def _series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if hasattr(values, "to_pandas"):  # pyarrow Array / ChunkedArray
        return values.to_pandas()
    return pd.Series(values)
