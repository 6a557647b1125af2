"""Cross-validation of one candidate: grouped (stratified) or time-ordered folds, run side by side in threads.

Folds keep every copy of a row on one side: rows are grouped by the same row digest that picks the kept
holdout (`train.split`), so CV estimates what the holdout measures instead of rewarding models that
memorise duplicated rows. Time-ordered folds validate each chunk of rows on a model fitted only on rows
before it (`training.validation: time`).

The estimators release the GIL while they fit (scikit-learn's tree builders, LightGBM), so threads use every
core without copying the data into worker processes. Folds run in batches of `workers`; after each batch
the running mean is reported, and the search may prune the trial there.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from driftloop.metrics import score
from driftloop.train import candidates
from driftloop.train.candidates import Params, Problem


@dataclass
class CVResult:
    fold_scores: list[float]
    oof: np.ndarray | None
    """Out-of-fold predictions for every training row (None when the trial was pruned)."""
    fit_seconds: float
    pruned: bool = False
    model: Any = None
    """The last fold's fitted estimator, for timing its predict (`train.cost`); the search drops it then."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


Folds = list[tuple[np.ndarray, np.ndarray]]


def make_folds(y: np.ndarray, task: str, n_folds: int, seed: int, groups: np.ndarray | None = None) -> Folds:
    """Shuffled K folds, stratified by class for classification; rows of one group share a fold.

    The row digest covers the target, so every group is pure in its label: splitting the distinct groups
    (stratified by their label) and mapping rows back is StratifiedGroupKFold's guarantee at the cost of
    one StratifiedKFold, also on tables of millions of rows.
    """
    if groups is None:
        groups = np.arange(len(y))
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    splitter = (
        KFold(n_folds, shuffle=True, random_state=seed)
        if task == "regression"
        else StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    )
    with warnings.catch_warnings():
        # A class with fewer distinct rows than folds: prepare() already warned about it.
        warnings.simplefilter("ignore", UserWarning)
        group_folds = list(splitter.split(np.zeros(len(first)), y[first]))
    rows = np.arange(len(y))
    out = []
    for _, val_groups in group_folds:
        val = np.isin(inverse, val_groups)
        out.append((rows[~val], rows[val]))
    return out


def time_folds(
    n_rows: int, n_folds: int, groups: np.ndarray | None = None, start: int | None = None
) -> Folds:
    """Forward-chaining folds over rows in time order: rows [start, n) cut into `n_folds` consecutive chunks;
    each chunk is validated on a model fitted on the rows before it, less any copy of a validation row.

    `start` (default: the first 1/(n_folds+1) of the rows) is where validation begins; rows before it only
    ever train. Rows of the first chunk have no out-of-fold prediction and count in no fold score.
    """
    start = n_rows // (n_folds + 1) if start is None else start
    if not 0 < start <= n_rows - n_folds:
        raise ValueError(f"time-ordered folds need rows before and after row {start} of {n_rows}")
    rows = np.arange(n_rows)
    bounds = np.linspace(start, n_rows, n_folds + 1).round().astype(int)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        val = rows[lo:hi]
        train = rows[:lo]
        if groups is not None:
            train = train[~np.isin(groups[train], groups[val])]
        out.append((train, val))
    return out


def cross_validate(
    family: str,
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    problem: Problem,
    n_classes: int,
    metric: str,
    folds: list[tuple[np.ndarray, np.ndarray]],
    workers: int,
    report: Callable[[int, float], bool] | None = None,
) -> CVResult:
    """Fit and score the candidate on every fold. `report(step, running_mean)` returning True prunes."""
    spec = candidates.FAMILIES[family]
    oof = np.zeros((len(y), n_classes)) if problem.is_classifier else np.zeros(len(y))
    scores: list[float] = []
    started = time.perf_counter()
    model: Any = None

    def run(fold: tuple[np.ndarray, np.ndarray], threads: int) -> tuple[np.ndarray, np.ndarray, Any]:
        train_idx, val_idx = fold
        # LightGBM's result depends on its thread count; keep it fixed so CV is reproducible anywhere.
        est = spec.build(params, problem, 1 if family == "lightgbm" else threads)
        candidates.fit(family, est, X[train_idx], y[train_idx], problem)
        return val_idx, candidates.predict_scores(est, X[val_idx], problem, n_classes), est

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(folds), max(1, workers)):
            batch = folds[start : start + max(1, workers)]
            threads = max(1, workers // len(batch))
            for val_idx, pred, fitted in pool.map(lambda f, t=threads: run(f, t), batch):
                oof[val_idx], model = pred, fitted
                scores.append(score(metric, y[val_idx], pred, problem.task))
            more = start + len(batch) < len(folds)
            if report is not None and more and report(len(scores) - 1, float(np.mean(scores))):
                return CVResult(scores, None, time.perf_counter() - started, pruned=True)
    return CVResult(scores, oof, time.perf_counter() - started, model=model)
