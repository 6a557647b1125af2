"""Drift and data quality of a monitoring window of any size, from per-partition summaries merged on the client.

    result = distributed_drift(client, window_ddf, reference_df, columns)
    result.drift.to_dict()        # the monitoring engine's DriftResult: same tests, thresholds, verdicts

The reference is the model's reference sample (a few thousand rows) and is prepared in memory by the
monitoring engine's own `DriftDetector.fit`; only the current window is summarised. How each statistic
is obtained from the summaries (`scale/summaries.py`):

- chi-square, z-test, Jensen-Shannon, PSI and the chart shares: from exact value counts or exact counts
  on the engine's own histogram edges, fed to the engine's own test functions. Exact.
- Kolmogorov-Smirnov: the statistic D = sup |F_ref - F_cur| is attained at a data point; between two
  neighbouring distinct reference values F_ref is constant and F_cur is monotone, so the supremum is
  reached at a reference value or just below one. The grid holds every distinct reference value, so D is
  computed from exact counts, bit for bit as scipy does. With more than 10,000 rows scipy's `auto` method
  takes the asymptotic p-value of D (`kstwo.sf(D, round(n*m/(n+m)))`), which is what is computed here;
  windows of at most 10,000 rows are small enough to gather, and get scipy's exact p-value. Exact.
- Wasserstein: the integral of |F_ref - F_cur| between grid points is exact wherever the two CDFs do not
  cross inside the interval (both are monotone and F_ref is constant there; the integral of F_cur follows
  from the count and sum of the values inside). Where they cross, the integral is bounded by the interval
  width times the CDF gap; the reported value is the middle of those bounds and `error_bounds[column]`
  the largest possible error, in the same (std-normalised) units. The fine grid (`fine_bins` points
  across the range) keeps the bound small; a verdict whose threshold lies within the bound of the
  statistic is listed in `uncertain`.

With `multivariate=True` the joint distribution is tested too (`monitor.multivariate`: a domain classifier
and PCA reconstruction error). Those methods fit models on rows, not on summaries, and use at most
`MAX_ROWS` rows of a side whatever its size, so each partition is sampled at the same rate on its worker
and only a uniform sample of about that many rows travels to the client: the verdict is the in-memory
engine's on a sample of the window, which is what the engine itself does above `MAX_ROWS` rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import distributions

from driftloop.monitor.drift import (
    CHART_CATEGORIES,
    COLUMN_ERRORS,
    ColumnDrift,
    ColumnOverride,
    ColumnSpec,
    DriftDetector,
    DriftResult,
    chart_distribution,
    failed_column,
    mixed_types_error,
)
from driftloop.monitor.multivariate import MAX_ROWS, MultivariateResult, multivariate_drift
from driftloop.monitor.samples import CATEGORICAL, NUMERIC, CategoricalSample, NumericSample, numeric_sample
from driftloop.monitor.stattests import REGISTRY, default_stattest, n_values_combined, sturges_edges
from driftloop.scale.summaries import (
    ColumnPass1,
    GridCounts,
    Pass1Plan,
    SummarySample,
    merge_grids,
    merge_pass1,
    summarize_grid,
    summarize_pass1,
)

if TYPE_CHECKING:
    from distributed import Client

SCIPY_EXACT_KS_ROWS = 10_000
"""scipy's `ks_2samp(method="auto")` is exact up to this many rows per sample, asymptotic above."""
FINE_BINS = 4096


@dataclass
class ColumnQuality:
    column: str
    rows: int
    nulls: int
    non_finite: int = 0
    below_reference: int = 0
    above_reference: int = 0
    new_categories: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScaleDriftResult:
    drift: DriftResult
    quality: list[ColumnQuality]
    error_bounds: dict[str, float] = field(default_factory=dict)
    """Largest possible error of each approximated statistic (Wasserstein), in its own units."""
    partitions: int = 0
    seconds: float = 0.0
    multivariate: list[MultivariateResult] = field(default_factory=list)
    """The joint-distribution methods' results on a uniform sample of the window (when asked for)."""

    @property
    def uncertain(self) -> list[str]:
        """Columns whose threshold lies within the error bound of their statistic."""
        out = []
        for col in self.drift.columns:
            bound = self.error_bounds.get(col.column, 0.0)
            if (
                bound
                and col.statistic is not None
                and col.threshold is not None
                and abs(col.statistic - col.threshold) <= bound
            ):
                out.append(col.column)
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.drift.to_dict(distributions=False) | {
            "quality": [q.to_dict() for q in self.quality],
            "error_bounds": self.error_bounds,
            "uncertain": self.uncertain,
            "partitions": self.partitions,
            "seconds": self.seconds,
            "multivariate": [m.to_dict() for m in self.multivariate],
        }


def _pass1_frame(frame: pd.DataFrame, plan: Pass1Plan) -> pd.DataFrame:
    return pd.DataFrame({"s": [summarize_pass1(frame, plan)]})


def _grid_frame(frame: pd.DataFrame, grids: dict[str, np.ndarray], gather: tuple[str, ...]) -> pd.DataFrame:
    values = {}
    for name in gather:
        arr = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        values[name] = arr[np.isfinite(arr)]
    return pd.DataFrame({"g": [summarize_grid(frame, grids)], "v": [values]})


def distributed_drift(
    client: Client,
    current: Any,
    reference: pd.DataFrame,
    columns: Sequence[ColumnSpec],
    *,
    drift_share: float = 0.5,
    overrides: Mapping[str, ColumnOverride] | None = None,
    fine_bins: int = FINE_BINS,
    multivariate: bool = False,
    seed: int = 0,
) -> ScaleDriftResult:
    """Drift verdicts of a Dask DataFrame window against an in-memory reference; see the module docstring.
    `multivariate`: also the joint-distribution methods, on a uniform sample (`seed`) of the window."""
    start = time.perf_counter()
    detector = DriftDetector(columns, drift_share=drift_share, overrides=overrides, n_threads=1).fit(
        reference
    )
    refs = detector.reference_
    errors: dict[str, str] = {}
    for spec in columns:
        if spec.name not in current.columns:
            errors[spec.name] = "column missing from the current data"
        elif spec.kind == NUMERIC and not pd.api.types.is_numeric_dtype(current.dtypes[spec.name]):
            errors[spec.name] = (
                f"column is not numeric in the current data (dtype {current.dtypes[spec.name]})"
            )
    present = [s for s in columns if s.name not in errors]
    window = current[[s.name for s in present]]
    plan = Pass1Plan(
        kinds={s.name: s.kind for s in present},
        ranges={
            s.name: (r.minimum, r.maximum)
            for s in present
            if isinstance(r := refs[s.name], NumericSample) and r.n
        },
        categories={
            s.name: frozenset(r.keys.tolist())
            for s in present
            if isinstance(r := refs[s.name], CategoricalSample)
        },
    )
    parts1 = list(_gather_parts(client, window.map_partitions(_pass1_frame, plan, meta={"s": object})))
    merged = merge_pass1([p["s"].iloc[0] for p in parts1])

    # Plan pass 2: a grid per numeric column under test, and the values of small KS windows.
    grids: dict[str, np.ndarray] = {}
    gather: list[str] = []
    for spec in present:
        ref, cur = refs[spec.name], merged[spec.name]
        if spec.kind != NUMERIC or isinstance(ref, str) or cur.n == 0:
            continue
        assert isinstance(ref, NumericSample)
        probe = SummarySample(cur, _holds_integers(current, spec.name, cur))
        grids[spec.name] = _grid(ref, probe, fine_bins)
        if _test_name(detector, spec, ref, probe) == "ks" and max(ref.n, cur.n) <= SCIPY_EXACT_KS_ROWS:
            gather.append(spec.name)
    second: dict[str, dict[str, Any]] = {"g": {}, "v": {}}
    if grids:
        graph = window.map_partitions(_grid_frame, grids, tuple(gather), meta={"g": object, "v": object})
        merged_grid: dict[str, GridCounts] = {}
        values: dict[str, list[np.ndarray]] = {name: [] for name in gather}
        for part in _gather_parts(client, graph):
            merged_grid = merge_grids([merged_grid, part["g"].iloc[0]])
            for name in gather:
                values[name].append(part["v"].iloc[0][name])
        second["g"] = merged_grid
        second["v"] = {name: np.concatenate(chunks) for name, chunks in values.items()}

    result_columns, bounds = [], {}
    for spec in columns:
        col, bound = _column(
            spec, detector, refs[spec.name], merged.get(spec.name), errors.get(spec.name), second, current
        )
        result_columns.append(col)
        if bound is not None:
            bounds[spec.name] = bound
    quality = [
        ColumnQuality(
            column=name,
            rows=s.rows,
            nulls=s.nulls,
            non_finite=s.non_finite,
            below_reference=s.below_reference,
            above_reference=s.above_reference,
            new_categories=s.new_categories,
        )
        for name, s in merged.items()
    ]
    n_current = next(iter(merged.values())).rows if merged else 0
    drift = DriftResult(
        columns=result_columns,
        drift_share=drift_share,
        n_reference=detector.n_reference_,
        n_current=n_current,
    )
    joint: list[MultivariateResult] = []
    if multivariate and n_current:
        sample = _uniform_sample(client, window, n_current, MAX_ROWS, seed)
        joint = multivariate_drift(reference, sample, present, seed=seed)
    return ScaleDriftResult(
        drift=drift,
        quality=quality,
        error_bounds=bounds,
        partitions=len(parts1),
        seconds=time.perf_counter() - start,
        multivariate=joint,
    )


def _uniform_sample(client: Client, window: Any, n_rows: int, rows: int, seed: int) -> pd.DataFrame:
    """About `rows` rows of the window, each drawn with the same probability: every partition is sampled at
    one rate on its worker (a 10 % margin, then cut to `rows` here), in partition order, so the same window
    and seed give the same sample."""
    frac = min(1.0, 1.1 * rows / n_rows)
    sample = client.compute(window.sample(frac=frac, random_state=seed)).result()
    sample = sample.reset_index(drop=True)
    return sample if len(sample) <= rows else sample.sample(rows, random_state=seed)


def _test_name(detector: DriftDetector, spec: ColumnSpec, ref: NumericSample, probe: SummarySample) -> str:
    override = detector.overrides.get(spec.name, ColumnOverride())
    if override.method:
        return override.method
    try:
        return default_stattest(spec.kind, ref.n, n_values_combined(ref, probe)).name
    except ValueError:
        return ""


def _holds_integers(current: Any, name: str, first: ColumnPass1) -> bool:
    """An integer dtype without missing values (integers with gaps are floats, as in `numeric_sample`)."""
    dtype = current.dtypes[name]
    return pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) and first.nulls == 0


def _gather_parts(client: Client, frame: Any) -> Iterator[pd.DataFrame]:
    """Each partition's one-row result, fetched to the client as it completes and released on the worker.

    Computing the Dask DataFrame itself would concatenate every partition's summaries in one task on
    one worker: megabytes per partition, times thousands of partitions, past any worker memory limit.
    """
    from distributed import as_completed

    for future in as_completed(client.compute(frame.to_delayed())):
        yield future.result()
        future.release()


def _grid(ref: NumericSample, cur: SummarySample, fine_bins: int) -> np.ndarray:
    """Every point a statistic will ask about: reference values, Sturges and chart edges, a fine grid."""
    low, high = min(ref.minimum, cur.minimum), max(ref.maximum, cur.maximum)
    parts = [ref.counts[0], sturges_edges(ref, cur), np.linspace(low, high, fine_bins + 1)]
    if ref.n_unique > CHART_CATEGORIES:
        parts.append(np.linspace(low, high if high > low else low + 1.0, 31))
    return np.unique(np.concatenate(parts))


def _column(
    spec: ColumnSpec,
    detector: DriftDetector,
    ref: Any,
    first: ColumnPass1 | None,
    error: str | None,
    second: dict[str, dict[str, Any]],
    current: Any,
) -> tuple[ColumnDrift, float | None]:
    out = ColumnDrift(column=spec.name, kind=spec.kind)
    if isinstance(ref, str):
        out.error = ref
        return out, None
    out.n_reference = ref.n
    if error is not None or first is None:
        out.error = error
        return out, None
    out.n_current = first.n
    if first.n == 0:
        out.error = "no non-null values in the current data"
        return out, None
    if spec.kind == CATEGORICAL:
        keys = list(first.values)
        cur: Any = CategoricalSample(
            keys=np.array(keys + [None], dtype=object)[:-1],
            key_counts=np.array([first.values[k] for k in keys], dtype=np.int64),
            n_missing=first.nulls,
        )
    elif spec.name in second["v"]:  # small window: the engine's exact path on the gathered values
        cur = numeric_sample(second["v"][spec.name])
        cur.is_integer = _holds_integers(current, spec.name, first)  # gathered as float64
    else:
        cur = SummarySample(first, _holds_integers(current, spec.name, first), second["g"][spec.name])
    out.error = mixed_types_error(ref, cur)  # the engine's rules, so both paths give one answer
    if out.error is not None:
        return out, None
    override = detector.overrides.get(spec.name, ColumnOverride())
    try:
        test = (
            REGISTRY[override.method]
            if override.method
            else default_stattest(spec.kind, ref.n, n_values_combined(ref, cur))
        )
        out.method, out.score_kind = test.name, test.score_kind
        out.threshold = test.default_threshold if override.threshold is None else override.threshold
        bound = None
        if isinstance(cur, SummarySample) and cur.grid is not None and test.name == "ks":
            out.statistic = ks_pvalue(ref, cur.grid, cur.n)
            out.drift = test.decide(out.statistic, out.threshold)
        elif isinstance(cur, SummarySample) and cur.grid is not None and test.name == "wasserstein":
            out.statistic, bound = wasserstein_bounded(ref, cur.grid, cur.n)
            out.drift = test.decide(out.statistic, out.threshold)
        else:
            out.statistic, out.drift = test(ref, cur, out.threshold)
        out.psi = REGISTRY["psi"].score(ref, cur) if test.name != "psi" else out.statistic
        out.psi_drift = bool(out.psi >= detector.psi_threshold) if np.isfinite(out.psi) else None
        out.distribution = chart_distribution(ref, cur)
    except COLUMN_ERRORS as exc:  # e.g. a count-based test on a window with too many distinct values
        return failed_column(out, exc), None
    return out, bound


def ks_statistic(ref: NumericSample, grid: GridCounts, n_cur: int) -> float:
    """sup |F_ref - F_cur| from counts at the distinct reference values (exact; see the module docstring)."""
    keys, counts = ref.counts
    idx = grid.index(keys)
    f_ref = np.cumsum(counts) / ref.n
    le = grid.count_le()[idx] / n_cur
    lt = grid.count_lt()[idx] / n_cur
    f_ref_before = np.concatenate(([0.0], f_ref[:-1]))
    return float(max(np.abs(f_ref - le).max(), np.abs(f_ref_before - lt).max()))


def ks_pvalue(ref: NumericSample, grid: GridCounts, n_cur: int) -> float:
    """scipy's asymptotic two-sided p-value for D (its `auto` method above 10,000 rows)."""
    d = ks_statistic(ref, grid, n_cur)
    m, n = sorted([float(ref.n), float(n_cur)], reverse=True)
    return float(np.clip(distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


def wasserstein_bounded(ref: NumericSample, grid: GridCounts, n_cur: int) -> tuple[float, float]:
    """(normalised W1 estimate, largest possible error) from grid counts; exact where the CDFs do not cross."""
    g = grid.grid
    widths = np.diff(g)
    f_ref = (
        ref.sorted.searchsorted(g[:-1], "right") / ref.n
    )  # constant on [g_i, g_i+1): g holds every ref value
    at_start = grid.count_le()[:-1] / n_cur  # F_cur(g_i)
    inside_n = grid.between[1:-1]
    inside_sum = grid.between_sum[1:-1]
    at_end = at_start + inside_n / n_cur  # F_cur just below g_i+1
    # Integral of F_cur over [g_i, g_i+1): F_cur(g_i) * width + sum over inner values of (g_i+1 - v) / n.
    integral_cur = at_start * widths + (inside_n * g[1:] - inside_sum) / n_cur
    signed = f_ref * widths - integral_cur
    exact = np.abs(signed)
    crossing = (at_start < f_ref) & (f_ref < at_end)
    low = exact[crossing]
    gap_below = (f_ref - at_start)[crossing] * widths[crossing]
    gap_above = (at_end - f_ref)[crossing] * widths[crossing]
    high = np.minimum(np.maximum(gap_below, gap_above), low + 2 * np.minimum(gap_below, gap_above))
    scale = max(ref.std, 0.001)
    total = exact[~crossing].sum() + ((low + high) / 2).sum()
    return float(total / scale), float(((high - low) / 2).sum() / scale)
