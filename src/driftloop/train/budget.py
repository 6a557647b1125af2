"""The seconds budget of a training run: what a trial, the refit and saving the model are expected to cost.

`driftloop train --budget-seconds N` means N seconds for the whole run, refit and logging included. The
search gets what is left after loading and preparing the data, less a reserve for the steps after it; it
stops before a trial when that trial's expected cost plus the refit (and save) of the best model so far
would pass the deadline. The first trial always runs: a run with no model would waste the whole budget.

On a table too large to cross-validate within the budget (more than `MIN_SEARCH_ROWS` rows), the cost of
the first family is measured before the search: its default is fitted on two row counts, which gives a
fixed cost and a cost per row (`RowCost`). From it `plan_rows` predicts the refit on all rows, reserves
that time, and sizes a stratified sample the search cross-validates on so the first trial takes about
`FIRST_TRIAL_SHARE` of what is left. Later estimates scale measured trial times by rows (`growth`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "AFTER_SEARCH_SECONDS",
    "MIN_SEARCH_ROWS",
    "RELATIVE_COST",
    "RowCost",
    "RowPlan",
    "affords",
    "growth",
    "plan_rows",
    "refit_estimate",
    "search_seconds",
    "trial_estimate",
]

#: Seconds the steps after the search take whatever the model (holdout scores, MLflow model with signature
#: and input example, reference sample, registration, gate); measured 2-4 s on wine on a busy 2-core box.
AFTER_SEARCH_SECONDS = 4.0
#: Cost of one default trial of a family relative to LightGBM's, only to guess a family before its first
#: trial (after it, its own trials are timed). Measured on a busy 2-core box (single-thread fits of each
#: default): at 1,000 rows linear 0.3, extra trees 1.3, random forest 1.7; at 16,000 rows 0.1, 2.6 and 8.7
#: (LightGBM's per-tree overhead dominates small tables). The figures here are those of a sample of a few
#: thousand rows, where a search on a large table runs; a trial that runs longer than guessed is stopped
#: at the deadline (`tuning.run_search`), so a wrong guess costs at most one batch of folds.
RELATIVE_COST = {"lightgbm": 1.0, "linear": 0.2, "extra_trees": 2.0, "random_forest": 4.0}
#: Saving a forest (skops, every node) costs several times its fit; LightGBM and linear save in no time.
FOREST_SAVE_PER_FIT = 3.0
_FORESTS = ("random_forest", "extra_trees")
#: Tables up to this many rows are always searched whole: trials are cheap, and a sample would only add noise.
MIN_SEARCH_ROWS = 4000
#: The smallest search sample: fewer rows rank candidates by noise.
MIN_SAMPLE_ROWS = 1000
#: Row counts the first family's default is fitted on to measure its cost (`RowCost`), with a tenth of
#: its trees (`PROBE_TREE_SHARE`; a boosted or bagged tree costs about the same whatever its rank), which
#: keeps the probe to a few tenths of a second.
PROBE_ROWS = (1000, 4000)
PROBE_TREE_SHARE = 0.1
#: Bounds of a measured `RowCost.exponent`.
EXPONENT_RANGE = (0.4, 1.5)
#: The search sample is sized so the first trial takes about this share of the search time left after the
#: refit's reserve: room for the other families' defaults and some tuning.
FIRST_TRIAL_SHARE = 0.12
#: Margin on extrapolated costs: load moves, and more rows grow deeper trees.
SAFETY = 1.3
#: Seconds a trial spends besides fitting (predicting its folds, saving, loading and timing its model).
TRIAL_OVERHEAD = 0.5


class _Trial(Protocol):
    family: str
    state: str
    seconds: float


def trial_estimate(family: str, records: Sequence[_Trial]) -> float:
    """Expected seconds of a trial of `family`: the median of its complete trials so far; for a family not
    yet tried, the median of all trials scaled by `RELATIVE_COST`; 0 before any trial."""
    mine = [t.seconds for t in records if t.family == family and t.state == "complete"]
    if mine:
        return float(np.median(mine))
    timed = [t for t in records if t.state == "complete"]
    if not timed:
        return 0.0
    per_unit = np.median([t.seconds / RELATIVE_COST.get(t.family, 1.0) for t in timed])
    return float(per_unit * RELATIVE_COST.get(family, 1.0))


def refit_estimate(
    family: str, trial_seconds: float, n_folds: int, trees_ratio: float = 1.0, rows_ratio: float = 1.0
) -> float:
    """Refit and save: about one fold's fit scaled up for more rows (`rows_ratio`: how much more a fit on
    the refit's rows costs than one on the search's, see `growth`) and a forest's trees, plus a forest's
    serialisation."""
    fit = trial_seconds / max(1, n_folds) * 1.5 * rows_ratio
    if family in _FORESTS:
        return fit * trees_ratio * (1.0 + FOREST_SAVE_PER_FIT)
    return fit


def affords(next_cost: float, refit: float, elapsed: float, seconds: float) -> bool:
    """Whether a trial expected to take `next_cost`, then a refit of `refit`, still ends within budget."""
    return elapsed + next_cost + refit <= seconds


def search_seconds(total: float, elapsed: float) -> float:
    """The search's share of a run's budget: what is left after `elapsed`, less `AFTER_SEARCH_SECONDS`
    (never below a tenth of the budget, so the first trial and a refit still get time)."""
    return max(total * 0.1, total - elapsed - AFTER_SEARCH_SECONDS)


@dataclass(frozen=True)
class RowCost:
    """Measured seconds of one fit of a family's default: `seconds` on `rows` rows, growing as
    rows ** `exponent`. A power law, not a line: LightGBM's cost per row falls as tables grow (a fixed
    cost per tree and bin), so a line through two small fits overestimates a refit on 50,000 rows about
    twice, while the power law through 1,000 and 4,000 rows was within 10 % of it (measured on this
    project's 2-core box); forests grow a little faster than rows."""

    rows: int
    seconds_at: float
    exponent: float

    def seconds(self, rows: float) -> float:
        return self.seconds_at * (max(rows, 1.0) / self.rows) ** self.exponent

    def rows_for(self, seconds: float) -> float:
        """Rows one fit of `seconds` can take."""
        if seconds <= 0:
            return 0.0
        return self.rows * (seconds / self.seconds_at) ** (1.0 / self.exponent)

    @classmethod
    def through(cls, small: tuple[int, float], large: tuple[int, float]) -> RowCost:
        """Through two timed fits (rows, seconds); the exponent is kept within `EXPONENT_RANGE`, since
        two fits on a busy box are noisy."""
        (r0, t0), (r1, t1) = small, large
        exponent = math.log(max(t1, 1e-6) / max(t0, 1e-6)) / math.log(r1 / r0) if r1 > r0 else 1.0
        lo, hi = EXPONENT_RANGE
        return cls(r1, max(t1, 1e-6), min(hi, max(lo, exponent)))


@dataclass(frozen=True)
class RowPlan:
    """Rows the search cross-validates on and the refit uses, out of `total_rows`, and why."""

    search_rows: int
    refit_rows: int
    total_rows: int
    refit_seconds: float
    """The refit of the first family's default on `refit_rows`, predicted (with `SAFETY`)."""
    cost: RowCost | None = None
    family: str = ""
    """The family whose `cost` was measured."""

    @property
    def sampled(self) -> bool:
        return self.search_rows < self.total_rows

    def describe(self) -> str:
        if not self.sampled:
            return f"all {self.total_rows:,} rows"
        refit = "all rows" if self.refit_rows >= self.total_rows else f"{self.refit_rows:,} rows"
        return (
            f"a stratified sample of {self.search_rows:,} of {self.total_rows:,} rows "
            f"(refit on {refit}, predicted {self.refit_seconds:.1f} s)"
        )


def trial_seconds(cost: RowCost, rows: float, n_folds: int) -> float:
    """Predicted seconds of one trial on `rows` rows: its folds' fits plus overhead. Folds are counted one
    after another: they run side by side in threads, but on a loaded machine the threads share a core."""
    return SAFETY * n_folds * cost.seconds(rows * (n_folds - 1) / n_folds) + TRIAL_OVERHEAD


def plan_rows(total: int, seconds_left: float, cost: RowCost, n_folds: int) -> RowPlan:
    """How many rows to search on and to refit on, given `seconds_left` for search and refit.

    The refit on all rows is reserved first. If it would take more than half of what is left, the refit
    gets the largest row count that fits in that half instead (the leaderboard says so). The search sample
    then gets rows so its first trial takes about `FIRST_TRIAL_SHARE` of the rest, never fewer than
    `MIN_SAMPLE_ROWS`; when that covers the table, there is no sample.
    """
    refit_rows = total
    refit = SAFETY * cost.seconds(total)
    if refit > seconds_left / 2:
        refit_rows = int(min(total, max(MIN_SAMPLE_ROWS, cost.rows_for(seconds_left / 2 / SAFETY))))
        refit = SAFETY * cost.seconds(refit_rows)
    share = FIRST_TRIAL_SHARE * max(0.0, seconds_left - refit) - TRIAL_OVERHEAD
    fold_rows = cost.rows_for(share / SAFETY / n_folds)
    search_rows = int(min(refit_rows, max(MIN_SAMPLE_ROWS, fold_rows * n_folds / max(1, n_folds - 1))))
    return RowPlan(search_rows, refit_rows, total, refit, cost)


def growth(family: str, from_rows: int, to_rows: int, cost: RowCost | None = None) -> float:
    """How many times a fit on `to_rows` costs one on `from_rows`: from the measured `cost` (its family),
    else proportional to rows (forests: rows x log rows, their trees grow deeper)."""
    if to_rows <= from_rows or from_rows <= 0:
        return 1.0
    if cost is not None:
        return cost.seconds(to_rows) / max(cost.seconds(from_rows), 1e-9)
    ratio = to_rows / from_rows
    if family in _FORESTS:
        return ratio * math.log(max(to_rows, 2)) / math.log(max(from_rows, 2))
    return ratio
