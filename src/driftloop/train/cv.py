"""Cross-validation of one candidate: stratified folds for classification, folds run side by side in threads.

The estimators release the GIL while they fit (scikit-learn's tree builders, LightGBM), so threads use every
core without copying the data into worker processes. Folds run in batches of `workers`; after each batch
the running mean is reported, and the search may prune the trial there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


def make_folds(y: np.ndarray, task: str, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = (
        KFold(n_folds, shuffle=True, random_state=seed)
        if task == "regression"
        else StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    )
    return list(splitter.split(np.zeros(len(y)), y))


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

    def run(fold: tuple[np.ndarray, np.ndarray], threads: int) -> tuple[np.ndarray, np.ndarray]:
        train_idx, val_idx = fold
        # LightGBM's result depends on its thread count; keep it fixed so CV is reproducible anywhere.
        est = spec.build(params, problem, 1 if family == "lightgbm" else threads)
        candidates.fit(family, est, X[train_idx], y[train_idx], problem)
        return val_idx, candidates.predict_scores(est, X[val_idx], problem, n_classes)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(folds), max(1, workers)):
            batch = folds[start : start + max(1, workers)]
            threads = max(1, workers // len(batch))
            for val_idx, pred in pool.map(lambda f, t=threads: run(f, t), batch):
                oof[val_idx] = pred
                scores.append(score(metric, y[val_idx], pred, problem.task))
            more = start + len(batch) < len(folds)
            if report is not None and more and report(len(scores) - 1, float(np.mean(scores))):
                return CVResult(scores, None, time.perf_counter() - started, pruned=True)
    return CVResult(scores, oof, time.perf_counter() - started)
