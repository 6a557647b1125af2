"""Drift statistics with Evidently's names, defaults and verdict rules, on prepared samples.

Each test registers with its name, the column kinds it applies to, its default threshold and how a score
is turned into a verdict. The comparisons are Evidently's (0.7, `legacy/calculations/stattests/`), exactly,
because values that sit on a threshold do occur: KS drifts at p <= threshold, chi-square and the z-test at
p < threshold, distances (Wasserstein, Jensen-Shannon, PSI) at score >= threshold.

`default_stattest` is Evidently's `_get_default_stattest`: with a reference of at most 1,000 rows, KS for
numeric columns with more than 5 distinct values (reference and current together), otherwise chi-square
(more than 2 values) or the z-test; with a larger reference, the normed Wasserstein distance for numeric
columns with more than 5 values, otherwise Jensen-Shannon.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

from driftloop.monitor.samples import CATEGORICAL, NUMERIC, CategoricalSample, NumericSample, Sample

Score = Callable[[Sample, Sample], float]


@dataclass(frozen=True)
class StatTest:
    name: str
    kinds: frozenset[str]
    default_threshold: float
    score_kind: str
    """`p_value` (small means drift) or `distance` (large means drift)."""
    score: Score
    drifted: Callable[[float, float], bool]

    def __call__(
        self, reference: Sample, current: Sample, threshold: float | None = None
    ) -> tuple[float, bool]:
        limit = self.default_threshold if threshold is None else threshold
        value = float(self.score(reference, current))
        return value, self.decide(value, limit)

    def decide(self, value: float, threshold: float) -> bool:
        """The verdict on a score; ValueError for a non-finite one, which is a failed test, not "no drift".

        NaN compares false with every threshold, so without this check a 0/0 inside a test would read as
        a confident `drift: false`.
        """
        if not math.isfinite(value):
            raise ValueError(f"non-finite {self.score_kind} ({value}), no verdict")
        return bool(self.drifted(value, threshold))


REGISTRY: dict[str, StatTest] = {}


def register(
    name: str,
    kinds: tuple[str, ...],
    default_threshold: float,
    score_kind: str,
    drifted: Callable[[float, float], bool],
) -> Callable[[Score], Score]:
    def wrap(func: Score) -> Score:
        REGISTRY[name] = StatTest(name, frozenset(kinds), default_threshold, score_kind, func, drifted)
        return func

    return wrap


def get_stattest(name: str) -> StatTest:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown drift test {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def n_values_combined(reference: Sample, current: Sample, limit: int = 5) -> int:
    """Distinct non-null values of both samples together, exact up to `limit + 1` (all the selection needs)."""
    if reference.n_unique > limit or current.n_unique > limit:
        return max(reference.n_unique, current.n_unique)
    ref_keys, cur_keys = reference.counts[0], current.counts[0]
    return len(set(ref_keys.tolist()) | set(cur_keys.tolist()))


def default_stattest(kind: str, n_reference: int, n_values: int) -> StatTest:
    """Evidently's default test for a column: its kind, reference row count and distinct values in both samples."""
    if n_reference <= 1000:
        if kind == NUMERIC and n_values > 5:
            return REGISTRY["ks"]
        return REGISTRY["chisquare"] if n_values > 2 else REGISTRY["z"]
    if kind == NUMERIC and n_values > 5:
        return REGISTRY["wasserstein"]
    return REGISTRY["jensenshannon"]


# -- shared helpers ----------------------------------------------------------------------------------------


def aligned_counts(reference: Sample, current: Sample) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Counts of every value seen in either sample, in one key order (values in only one sample count 0)."""
    ref_keys, ref_counts = reference.counts
    cur_keys, cur_counts = current.counts
    if isinstance(reference, NumericSample):
        keys = np.union1d(ref_keys, cur_keys)
        ref = np.zeros(keys.size, dtype=np.int64)
        cur = np.zeros(keys.size, dtype=np.int64)
        ref[keys.searchsorted(ref_keys)] = ref_counts
        cur[keys.searchsorted(cur_keys)] = cur_counts
        return keys.tolist(), ref, cur
    index: dict[Any, int] = dict(reference.index) if isinstance(reference, CategoricalSample) else {}
    for key in cur_keys.tolist():
        index.setdefault(key, len(index))
    ref = np.zeros(len(index), dtype=np.int64)
    cur = np.zeros(len(index), dtype=np.int64)
    ref[[index[k] for k in ref_keys.tolist()]] = ref_counts
    cur[[index[k] for k in cur_keys.tolist()]] = cur_counts
    return list(index), ref, cur


def sturges_edges(reference: NumericSample, current: NumericSample) -> np.ndarray:
    """`np.histogram_bin_edges(concat(reference, current), bins="sturges")`, from the samples' extremes."""
    n = reference.n + current.n
    low = min(reference.minimum, current.minimum)
    high = max(reference.maximum, current.maximum)
    # NumPy measures the width on the data, then widens a zero range to +-0.5 for the edges.
    width = (high - low) / (math.log2(n) + 1.0)
    first, last = (low - 0.5, high + 0.5) if low == high else (low, high)
    if width:
        if reference.is_integer and current.is_integer and width < 1:
            width = 1
        n_bins = int(math.ceil((last - first) / width))
    else:
        n_bins = 1
    return np.linspace(first, last, n_bins + 1, endpoint=True)


def binned_shares(reference: Sample, current: Sample, fill_zeroes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's `get_binned_data`: a Sturges histogram over both samples for numeric columns whose reference has
    more than 20 values, value shares otherwise; zero shares optionally replaced by a tiny positive number."""
    if (
        isinstance(reference, NumericSample)
        and isinstance(current, NumericSample)
        and reference.n_unique > 20
    ):
        edges = sturges_edges(reference, current)
        ref = reference.histogram(edges) / reference.n
        cur = current.histogram(edges) / current.n
    else:
        _, ref_counts, cur_counts = aligned_counts(reference, current)
        ref = ref_counts / reference.n
        cur = cur_counts / current.n
    if fill_zeroes:
        ref, cur = _fill_zeroes(ref), _fill_zeroes(cur)
    return ref, cur


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    smallest = shares[shares != 0].min()
    out = shares.astype(np.float64, copy=True)
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


# -- the tests ---------------------------------------------------------------------------------------------


def _p_le(value: float, threshold: float) -> bool:
    return value <= threshold


def _p_lt(value: float, threshold: float) -> bool:
    return value < threshold


def _d_ge(value: float, threshold: float) -> bool:
    return value >= threshold


@register("ks", (NUMERIC,), 0.05, "p_value", _p_le)
def ks(reference: Sample, current: Sample) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p-value (scipy's `ks_2samp`, method `auto`)."""
    assert isinstance(reference, NumericSample) and isinstance(current, NumericSample)
    return float(stats.ks_2samp(reference.sorted, current.sorted).pvalue)


@register("chisquare", (CATEGORICAL, NUMERIC), 0.05, "p_value", _p_lt)
def chisquare(reference: Sample, current: Sample) -> float:
    """Pearson chi-square p-value of the current counts against the reference shares scaled to the current size.

    A value absent from the reference has an expected count of 0, so the statistic is infinite and p = 0:
    a new category is drift, as in Evidently.
    """
    _, ref_counts, cur_counts = aligned_counts(reference, current)
    expected = ref_counts * (current.n / reference.n)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.chisquare(cur_counts, expected).pvalue)


@register("z", (CATEGORICAL, NUMERIC), 0.05, "p_value", _p_lt)
def z_test(reference: Sample, current: Sample) -> float:
    """Two-sided z-test for a difference of proportions of the smallest value (for columns with two values)."""
    ref_map = dict(zip(*(a.tolist() for a in reference.counts), strict=True))
    cur_map = dict(zip(*(a.tolist() for a in current.counts), strict=True))
    if len(ref_map) == 1 and len(cur_map) == 1 and ref_map.keys() == cur_map.keys():
        return 1.0
    first = sorted(ref_map.keys() | cur_map.keys())[0]
    n1, n2 = reference.n, current.n
    # Share of rows that are NOT the first value, as Evidently codes them (first -> 0, other -> 1).
    p1 = float(n1 - ref_map.get(first, 0)) / n1
    p2 = float(n2 - cur_map.get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


@register("wasserstein", (NUMERIC,), 0.1, "distance", _d_ge)
def wasserstein(reference: Sample, current: Sample) -> float:
    """First Wasserstein distance divided by max(std of the reference, 0.001).

    Computes scipy's `wasserstein_distance` term by term from the two sorted samples: one linear merge
    instead of scipy's two argsorts, a merge sort and two searchsorted passes over both samples. Within a
    run of equal values the bin width is 0, so counting by merge position instead of by searchsorted gives
    the same non-zero terms, and the result is bit-identical.
    """
    assert isinstance(reference, NumericSample) and isinstance(current, NumericSample)
    u, v = reference.sorted, current.sorted
    n, m = u.size, v.size
    both = np.concatenate((u, v))
    # Two sorted runs: a stable argsort is a single linear merge (timsort), and says which side each came from.
    order = np.argsort(both, kind="stable")
    merged = both[order]
    del both
    is_v = order >= n
    del order
    deltas = np.diff(merged)
    del merged
    count_type = np.int32 if n + m < 2**31 else np.int64  # exact either way; int32 halves memory traffic
    v_count = np.cumsum(is_v[:-1], dtype=count_type)
    u_count = np.arange(1, n + m, dtype=count_type)
    u_count -= v_count  # type: ignore[misc]  # numpy stubs: int -= int is fine
    # Same operations, in the same order, as scipy's `_cdf_distance` (u_cdf - v_cdf), so the same bits.
    cdf_gap = u_count / n  # type: ignore[operator]
    cdf_gap -= v_count / m  # type: ignore[operator]
    np.abs(cdf_gap, out=cdf_gap)
    return float(np.vecdot(cdf_gap, deltas)) / max(reference.std, 0.001)


@register("jensenshannon", (CATEGORICAL, NUMERIC), 0.1, "distance", _d_ge)
def jensenshannon(reference: Sample, current: Sample) -> float:
    """Jensen-Shannon distance (natural log) between value shares, or Sturges-histogram shares for numeric
    columns whose reference has more than 20 distinct values."""
    ref, cur = binned_shares(reference, current, fill_zeroes=False)
    return float(distance.jensenshannon(ref, cur))


@register("psi", (CATEGORICAL, NUMERIC), 0.1, "distance", _d_ge)
def psi(reference: Sample, current: Sample) -> float:
    """Population stability index over the same bins as Jensen-Shannon, zero shares replaced as Evidently does."""
    ref, cur = binned_shares(reference, current, fill_zeroes=True)
    return float(np.sum((ref - cur) * np.log(ref / cur)))
