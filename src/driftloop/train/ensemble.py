"""Ensemble selection over the search's out-of-fold predictions (Caruana et al. 2004, as auto-sklearn does it).

Every complete trial leaves out-of-fold (OOF) predictions for all training rows. Greedy forward selection
with replacement builds a weighted average of them: start empty; each round adds the candidate whose
addition gives the best CV score of the averaged predictions (the mean of the per-fold scores, exactly as a
trial's CV score is computed), ties going to the better-ranked candidate. The result is the best prefix of
the rounds, so it is never worse on the OOF predictions than the best single candidate, which the first
round picks. A weight is the share of rounds that picked the candidate. Once `max_members` distinct
candidates are in, only they can be picked again: each distinct member costs a refit and serving time.

Scoring is vectorised over all candidates at once (one numpy pass per round, no scikit-learn calls), so a
selection over 30 candidates costs milliseconds; `fold_scores` equals `driftloop.metrics.score` per fold.
Nothing here looks at the holdout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from driftloop.metrics import higher_is_better, score

_EPS = 1e-15
#: A later round must beat the best score so far by more than this to count (float noise is no gain).
MIN_GAIN = 1e-12


@dataclass(frozen=True)
class Selection:
    """Chosen candidates (indices into the list passed in) with weights summing to 1, and their CV scores."""

    indices: tuple[int, ...]
    weights: tuple[float, ...]
    fold_scores: tuple[float, ...]
    rounds: int
    """Rounds in the chosen prefix (the sum of the picks)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


def select(
    oofs: Sequence[np.ndarray],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    metric: str,
    task: str,
    *,
    rounds: int = 25,
    max_members: int = 5,
) -> Selection:
    """Greedy ensemble selection with replacement. `oofs[i]`: candidate i's OOF predictions, best first."""
    if not oofs:
        raise ValueError("ensemble selection needs at least one candidate")
    P = np.stack([np.asarray(o, dtype=np.float64) for o in oofs])
    fold_means = fold_scorer(metric, task, y, folds)
    sign = 1.0 if higher_is_better(metric) else -1.0
    counts = np.zeros(len(P), dtype=np.int64)
    total = np.zeros_like(P[0])
    best_value, best_counts = -np.inf, counts
    for step in range(1, max(1, rounds) + 1):
        allowed = np.ones(len(P), dtype=bool) if np.count_nonzero(counts) < max_members else counts > 0
        choices = np.flatnonzero(allowed)
        values = sign * fold_means((total[None] + P[choices]) / step)
        pick = int(choices[int(np.argmax(values))])  # argmax: the first (best-ranked) of equals
        counts = counts.copy()
        counts[pick] += 1
        total = total + P[pick]
        if values.max() > best_value + MIN_GAIN:
            best_value, best_counts = float(values.max()), counts
    chosen = np.flatnonzero(best_counts)
    n = int(best_counts.sum())
    blend = np.tensordot(best_counts[chosen] / n, P[chosen], axes=1)
    return Selection(
        indices=tuple(int(i) for i in chosen),
        weights=tuple(float(c) / n for c in best_counts[chosen]),
        fold_scores=tuple(score(metric, y[val], blend[val], task) for _, val in folds),
        rounds=n,
    )


def fold_scorer(
    metric: str, task: str, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> Callable[[np.ndarray], np.ndarray]:
    """`f(P)` for stacked predictions P (c, n[, k]) -> (c,) mean over folds of the metric, vectorised."""
    per_fold = [(_scorer(metric, task, y[val]), val) for _, val in folds]

    def mean_over_folds(P: np.ndarray) -> np.ndarray:
        return np.mean([f(P[:, val]) for f, val in per_fold], axis=0)

    return mean_over_folds


def _scorer(metric: str, task: str, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The metric for many prediction sets on the same rows: (c, n[, k]) -> (c,)."""
    if task == "regression":
        t = np.asarray(y, dtype=np.float64)
        if metric == "rmse":
            return lambda P: np.sqrt(np.mean((P - t) ** 2, axis=1))
        if metric == "mae":
            return lambda P: np.mean(np.abs(P - t), axis=1)
        if metric == "r2":
            ss_tot = float(np.sum((t - t.mean()) ** 2))
            return lambda P: 1.0 - np.sum((t - P) ** 2, axis=1) / (ss_tot if ss_tot else np.nan)
        raise ValueError(f"metric {metric!r} does not apply to regression")
    t = np.asarray(y, dtype=np.int64)
    if metric == "accuracy":
        return lambda P: np.mean(P.argmax(axis=2) == t, axis=1)
    if metric == "log_loss":
        rows = np.arange(len(t))
        safe = np.clip(t, 0, None)

        def log_loss(P: np.ndarray) -> np.ndarray:
            picked = np.where(t >= 0, P[:, rows, safe], 0.0)
            return np.mean(-np.log(np.clip(picked, _EPS, 1.0)), axis=1)

        return log_loss
    if metric == "f1_macro":
        return lambda P: _f1_macro(t, P)
    if metric == "roc_auc":
        return lambda P: _roc_auc(t, P, task)
    raise ValueError(f"metric {metric!r} does not apply to classification")


def _f1_macro(t: np.ndarray, P: np.ndarray) -> np.ndarray:
    k = P.shape[2]
    pred = P.argmax(axis=2)  # (c, n)
    labels = np.arange(k)
    is_pred = pred[:, :, None] == labels  # (c, n, k)
    is_true = (t[:, None] == labels)[None]  # (1, n, k)
    tp = np.sum(is_pred & is_true, axis=1)
    fp = np.sum(is_pred & ~is_true, axis=1)
    fn = np.sum(~is_pred & is_true, axis=1)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)
    return f1.mean(axis=1)


def _auc(positive: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of scores s (c, n) for the boolean labels `positive` (n,), ties averaged."""
    ranks = rankdata(s, axis=1)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return (ranks[:, positive].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _roc_auc(t: np.ndarray, P: np.ndarray, task: str) -> np.ndarray:
    known = t >= 0
    t, P = t[known], P[:, known]
    present = np.unique(t)
    if len(present) < 2:
        return np.full(P.shape[0], np.nan)
    if task == "binary":
        return _auc(t == 1, P[:, :, 1])
    return np.mean([_auc(t == c, P[:, :, c]) for c in present], axis=0)
