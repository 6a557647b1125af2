"""Row samples for a search on a large table: stratified, reproducible, and cut by the run's own CV folds.

A seconds budget that cannot afford cross-validating every row searches on a sample sized from the budget
(`train.budget.plan_rows`); the chosen model is then refitted on all rows. The sample keeps each class's
share (regression: each decile of the target), so CV on it ranks candidates as CV on the whole table
would, and a rare class keeps at least a few rows per fold. Folds over the sample are the run's folds
restricted to the sampled rows, so grouping by row digest (or time order) still holds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["restrict_folds", "stratified_sample"]

#: Regression targets are stratified by this many quantile bins.
TARGET_BINS = 10


def stratified_sample(y: np.ndarray, task: str, rows: int, seed: int, min_per_stratum: int = 5) -> np.ndarray:
    """Sorted positions of `rows` rows of y (all rows when rows >= len(y)), each stratum in proportion.

    Strata: the classes, or for regression the target's deciles. A stratum keeps at least
    `min_per_stratum` rows (all of a smaller one), so the sample may be a few rows larger than asked.
    """
    n = len(y)
    if rows >= n:
        return np.arange(n)
    if task == "regression":
        edges = np.unique(np.quantile(y, np.linspace(0, 1, TARGET_BINS + 1)[1:-1]))
        strata = np.searchsorted(edges, y, side="right")
    else:
        strata = np.asarray(y)
    rng = np.random.default_rng(seed)
    picked = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        take = min(len(members), max(min_per_stratum, round(rows * len(members) / n)))
        picked.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def restrict_folds(
    folds: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds over the sampled `rows` (sorted positions), renumbered to positions within the sample."""
    total = max((int(max(t.max(initial=-1), v.max(initial=-1))) for t, v in folds), default=-1) + 1
    position = np.full(max(total, int(rows.max(initial=-1)) + 1), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    out = []
    for train, val in folds:
        t, v = position[train], position[val]
        out.append((t[t >= 0], v[v >= 0]))
    return out
