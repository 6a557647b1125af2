"""Model performance on production rows once their labels arrive, per model version and arm.

Input is the prediction log joined with feedback on `request_id` (the latest label wins). Metrics follow
the definitions the gate uses, so a live metric can be compared with the champion's holdout score:
accuracy, macro-F1 over the model's classes (an absent class scores 0) and ROC-AUC (binary: the second
class's probability; multiclass: one-vs-rest mean over the classes present) for classification; RMSE, MAE
and R² for regression. Each metric has a bootstrap percentile confidence interval (vectorised resamples).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "GroupPerformance",
    "MetricValue",
    "PerformanceResult",
    "evaluate_performance",
    "probability_matrix",
]

CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")


@dataclass(frozen=True)
class MetricValue:
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass
class GroupPerformance:
    model_version: str
    arm: str
    n_labeled: int
    metrics: dict[str, MetricValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "arm": self.arm,
            "n_labeled": self.n_labeled,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
        }


@dataclass
class PerformanceResult:
    task: str
    groups: list[GroupPerformance]
    unknown_labels: int = 0
    """Feedback rows whose request id matches no logged prediction."""

    def group(self, model_version: str, arm: str) -> GroupPerformance | None:
        for g in self.groups:
            if g.model_version == model_version and g.arm == arm:
                return g
        return None

    @property
    def n_labeled(self) -> int:
        return sum(g.n_labeled for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "unknown_labels": self.unknown_labels,
            "n_labeled": self.n_labeled,
            "groups": [g.to_dict() for g in self.groups],
        }


def evaluate_performance(
    joined: pd.DataFrame,
    *,
    task: str,
    classes: Sequence[str] = (),
    unknown_labels: int = 0,
    confidence: float = 0.95,
    resamples: int = 300,
    seed: int = 0,
) -> PerformanceResult:
    """Metrics per (model_version, arm) of `joined`: columns model_version, arm, prediction, label and, for
    classification, probabilities (JSON object label -> probability)."""
    groups = []
    if len(joined):
        for (version, arm), rows in joined.groupby(["model_version", "arm"], sort=True, observed=True):
            groups.append(
                GroupPerformance(
                    model_version=str(version),
                    arm=str(arm),
                    n_labeled=len(rows),
                    metrics=_metrics(rows, task, [str(c) for c in classes], confidence, resamples, seed),
                )
            )
    return PerformanceResult(task=task, groups=groups, unknown_labels=unknown_labels)


def _metrics(
    rows: pd.DataFrame, task: str, classes: list[str], confidence: float, resamples: int, seed: int
) -> dict[str, MetricValue]:
    n = len(rows)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n)) if n >= 2 and resamples > 0 else None
    alpha = (1 - confidence) / 2
    out: dict[str, MetricValue] = {}
    if task == "regression":
        y = rows["label"].to_numpy(dtype=np.float64)
        p = rows["prediction"].to_numpy(dtype=np.float64)
        funcs = {"rmse": _rmse, "mae": _mae, "r2": _r2}
        for name, func in funcs.items():
            out[name] = _with_ci(func, (y, p), idx, alpha)
        return out
    y = rows["label"].astype(str).to_numpy()
    pred = rows["prediction"].astype(str).to_numpy()
    labels = classes or sorted(set(y) | set(pred))
    code = {c: i for i, c in enumerate(labels)}
    yc = np.array([code.get(v, -1) for v in y], dtype=np.int64)
    pc = np.array([code.get(v, -1) for v in pred], dtype=np.int64)
    out["accuracy"] = _with_ci(_accuracy, (yc, pc), idx, alpha)
    out["f1_macro"] = _with_ci(lambda a, b: _f1_macro(a, b, len(labels)), (yc, pc), idx, alpha)
    column = rows.get("probabilities")
    proba = None if column is None or column.isna().any() else probability_matrix(column, labels)
    if proba is not None and len(labels) >= 2:
        known = yc >= 0
        yk, pk = yc[known], proba[known]
        # Resampling copies the (n, k) probabilities per resample: bound the memory to ~24 MB.
        n_sub = min(resamples, max(20, 3_000_000 // max(1, len(yk) * len(labels))))
        sub = rng.integers(0, len(yk), size=(n_sub, len(yk))) if len(yk) >= 2 and resamples > 0 else None
        targets = [1] if len(labels) == 2 else list(range(len(labels)))
        out["roc_auc"] = _with_ci(lambda a, b: _roc_auc(a, b, targets), (yk, pk), sub, alpha)
    return out


def _with_ci(func: Any, arrays: tuple[np.ndarray, ...], idx: np.ndarray | None, alpha: float) -> MetricValue:
    value = _clean(func(*(a[None, ...] for a in arrays))[0]) if len(arrays[0]) else None
    if idx is None or value is None:
        return MetricValue(value)
    samples = func(*(a[idx] for a in arrays))
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return MetricValue(value)
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return MetricValue(value, float(low), float(high))


def _clean(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# Each metric takes arrays with a leading resample axis (B, n) and returns B values.


def _rmse(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((p - y) ** 2, axis=-1))


def _mae(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(p - y), axis=-1)


def _r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    ss_res = ((y - p) ** 2).sum(axis=-1)
    ss_tot = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def _accuracy(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.mean((y == p) & (y >= 0), axis=-1)


def _f1_macro(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    f1 = np.zeros((y.shape[0], k))
    for c in range(k):
        tp = ((p == c) & (y == c)).sum(axis=-1)
        fp = ((p == c) & (y != c)).sum(axis=-1)
        fn = ((p != c) & (y == c)).sum(axis=-1)
        denom = 2 * tp + fp + fn
        f1[:, c] = np.where(denom > 0, 2 * tp / np.where(denom == 0, 1, denom), 0.0)
    return f1.mean(axis=-1)


def _roc_auc(y: np.ndarray, proba: np.ndarray, targets: list[int]) -> np.ndarray:
    """Mann-Whitney AUC per resample and target class, averaged over the classes present in each resample."""
    aucs = np.full((y.shape[0], len(targets)), np.nan)
    for j, c in enumerate(targets):
        ranks = rankdata(proba[..., c], axis=-1)
        pos = y == c
        n_pos = pos.sum(axis=-1)
        n_neg = y.shape[-1] - n_pos
        u = (ranks * pos).sum(axis=-1) - n_pos * (n_pos + 1) / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs[:, j] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(aucs)
        return np.where(valid.any(axis=1), np.nansum(aucs, axis=1) / np.maximum(valid.sum(axis=1), 1), np.nan)


def probability_matrix(column: pd.Series, labels: list[str]) -> np.ndarray:
    """(n, k) probability matrix from the log's JSON column (every row has one), in `labels` order."""
    out = np.zeros((len(column), len(labels)))
    for i, text in enumerate(column.tolist()):
        probs = json.loads(text)
        for j, label in enumerate(labels):
            out[i, j] = float(probs.get(label, 0.0))
    return out
