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


def score_resamples(metric: str, y: np.ndarray, scores: np.ndarray, task: str, idx: np.ndarray) -> np.ndarray:
    """The metric on each row resample `idx` (shape (B, n)), vectorised: equal to `score` on `y[i], scores[i]`.

    The gate bootstraps thousands of resamples; a per-resample call into scikit-learn would take seconds.
    """
    losses = row_losses(metric, y, scores, task)
    if losses is not None:
        means = losses[idx].mean(axis=1)
        return np.sqrt(means) if metric == "rmse" else means
    if task == "regression":  # r2
        yt, yp = np.asarray(y, dtype=np.float64)[idx], np.asarray(scores, dtype=np.float64)[idx]
        ss_res = ((yt - yp) ** 2).sum(axis=1)
        ss_tot = ((yt - yt.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        return 1.0 - ss_res / np.where(ss_tot == 0, np.nan, ss_tot)
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(scores, dtype=np.float64)
    k = proba.shape[1]
    yt = y[idx]
    if metric == "f1_macro":
        pred = proba.argmax(axis=1)[idx]
        f1 = np.zeros((len(idx), k))
        for c in range(k):
            tp = ((pred == c) & (yt == c)).sum(axis=1)
            fp = ((pred == c) & (yt != c)).sum(axis=1)
            fn = ((pred != c) & (yt == c)).sum(axis=1)
            denom = 2 * tp + fp + fn
            f1[:, c] = np.where(denom > 0, 2 * tp / np.where(denom == 0, 1, denom), 0.0)
        return f1.mean(axis=1)
    if metric == "roc_auc" and (y >= 0).all():
        from scipy.stats import rankdata

        classes = [1] if task == "binary" else range(k)
        aucs = np.full((len(idx), len(classes)), np.nan)
        for j, c in enumerate(classes):
            ranks = rankdata(proba[:, c][idx], axis=1)
            pos = yt == c
            n_pos = pos.sum(axis=1)
            n_neg = yt.shape[1] - n_pos
            u = (ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
            with np.errstate(invalid="ignore", divide="ignore"):
                aucs[:, j] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
        if task != "binary":
            # Like `score`: a class absent from the resample has no AUC and is left out of the mean.
            present = np.stack([(yt == c).any(axis=1) for c in range(k)], axis=1)
            aucs = np.where(present, aucs, np.nan)
        with np.errstate(invalid="ignore"):
            return np.nanmean(aucs, axis=1) if task != "binary" else aucs[:, 0]
    return np.array([score(metric, y[i], proba[i], task) for i in idx])
