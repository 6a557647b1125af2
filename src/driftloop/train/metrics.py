"""The metrics models are chosen and gated by, computed from class probabilities or predicted values.

Classification targets are class indices into `spec.classes` (-1 for a label the model never saw, which
counts as wrong); `scores` is the (n, k) probability matrix. Regression targets and `scores` are floats.
One definition serves cross-validation, the holdout and the gate, so they cannot disagree.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from driftloop.config import LOWER_IS_BETTER

_EPS = 1e-15


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def metrics_for(task: str) -> list[str]:
    """Every metric reported for a task (the optimised one is among them)."""
    if task == "regression":
        return ["rmse", "mae", "r2"]
    if task == "binary":
        return ["roc_auc", "accuracy", "f1_macro", "log_loss"]
    return ["accuracy", "f1_macro", "log_loss", "roc_auc"]


def score(metric: str, y: np.ndarray, scores: np.ndarray, task: str) -> float:
    """The metric of predictions `scores` against truth `y`."""
    if task == "regression":
        err = np.asarray(scores, dtype=np.float64) - np.asarray(y, dtype=np.float64)
        if metric == "rmse":
            return float(np.sqrt(np.mean(err**2)))
        if metric == "mae":
            return float(np.mean(np.abs(err)))
        if metric == "r2":
            return float(skm.r2_score(y, scores))
        raise ValueError(f"metric {metric!r} does not apply to regression")
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(scores, dtype=np.float64)
    k = proba.shape[1]
    if metric == "accuracy":
        return float(np.mean(proba.argmax(axis=1) == y))
    if metric == "f1_macro":
        return float(
            skm.f1_score(y, proba.argmax(axis=1), average="macro", labels=np.arange(k), zero_division=0)
        )
    if metric == "log_loss":
        return float(np.mean(row_log_loss(y, proba)))
    if metric == "roc_auc":
        return _roc_auc(y, proba, task)
    raise ValueError(f"metric {metric!r} does not apply to classification")


def row_log_loss(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-row negative log probability of the true class (a never-seen class gets the floor probability)."""
    picked = np.where(y >= 0, proba[np.arange(len(y)), np.clip(y, 0, None)], 0.0)
    return -np.log(np.clip(picked, _EPS, 1.0))


def row_losses(metric: str, y: np.ndarray, scores: np.ndarray, task: str) -> np.ndarray | None:
    """Per-row contributions whose mean is the metric (accuracy, log_loss, mae, squared error), else None.

    The gate's paired bootstrap uses them to resample thousands of times without recomputing from scratch.
    """
    if task == "regression":
        err = np.asarray(scores, dtype=np.float64) - np.asarray(y, dtype=np.float64)
        if metric == "mae":
            return np.abs(err)
        if metric == "rmse":
            return err**2  # rmse = sqrt(mean); the caller takes the root
        return None
    y = np.asarray(y, dtype=np.int64)
    if metric == "accuracy":
        return (np.asarray(scores).argmax(axis=1) == y).astype(np.float64)
    if metric == "log_loss":
        return row_log_loss(y, np.asarray(scores, dtype=np.float64))
    return None


def _roc_auc(y: np.ndarray, proba: np.ndarray, task: str) -> float:
    known = y >= 0
    y, proba = y[known], proba[known]
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if task == "binary":
        return float(skm.roc_auc_score(y, proba[:, 1]))
    # One-vs-rest macro average over the classes present (a class absent from y has no AUC).
    aucs = [skm.roc_auc_score(y == c, proba[:, c]) for c in present]
    return float(np.mean(aucs))


def all_scores(task: str, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {m: score(m, y, scores, task) for m in metrics_for(task)}
