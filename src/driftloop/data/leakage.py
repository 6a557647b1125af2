"""Target leakage: a column, or a sum or difference of two, that predicts the target almost perfectly alone.

Such a column is usually computed from the target (a "total" that includes it, a status set after the
outcome) and will not exist, or not mean the same, at prediction time. A model that leans on it looks
perfect in validation and fails in production, so `init` excludes it (both columns of a pair) and training
warns.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import cross_val_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

#: Cross-validated score of one column alone at or above which it is flagged.
LEAK_SCORE = 0.98
MAX_ROWS = 5000
MAX_PAIR_COLUMNS = 40


@dataclass(frozen=True)
class Leak:
    columns: tuple[str, ...]
    score: float
    reason: str


def _single_score(x: np.ndarray, y: np.ndarray, task: str, seed: int) -> float:
    """CV accuracy (classification) or R² (regression) of a shallow tree on one input column."""
    if task == "regression":
        model = DecisionTreeRegressor(max_depth=6, random_state=seed)
        scoring = "r2"
    else:
        model = DecisionTreeClassifier(max_depth=6, random_state=seed)
        scoring = "accuracy"
    mask = ~np.isnan(x)
    if mask.sum() < 20:
        return 0.0
    folds = 3 if task == "regression" else min(3, int(pd.Series(y[mask]).value_counts().min()))
    if folds < 2:
        return 0.0
    return float(np.mean(cross_val_score(model, x[mask].reshape(-1, 1), y[mask], cv=folds, scoring=scoring)))


def _association(values: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Fast screen over many candidate columns: r² (regression) or correlation ratio η² (classification)."""
    values = np.where(np.isnan(values), np.nanmean(values, axis=0), values)
    centred = values - values.mean(axis=0)
    total = (centred**2).sum(axis=0)
    total[total == 0] = np.inf
    if task == "regression":
        yc = y - y.mean()
        cov = yc @ centred
        return cov**2 / (total * (yc @ yc))
    between = np.zeros(values.shape[1])
    for cls in np.unique(y):
        group = centred[y == cls]
        between += len(group) * group.mean(axis=0) ** 2
    return between / total


def find_leaks(frame: pd.DataFrame, target: str, task: str, features: list[str], seed: int = 0) -> list[Leak]:
    """Columns among `features` (and pairwise sums/differences of numeric ones) that nearly determine the target."""
    data = frame[[*features, target]].dropna(subset=[target])
    if len(data) > MAX_ROWS:
        data = data.sample(MAX_ROWS, random_state=seed)
    if task == "regression":
        y = pd.to_numeric(data[target], errors="coerce").to_numpy(dtype=float)
    else:
        y = pd.factorize(data[target].astype(str))[0]
    metric = "R²" if task == "regression" else "accuracy"
    leaks: list[Leak] = []
    numeric: list[str] = []
    for name in features:
        col = data[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            x = col.to_numpy(dtype=float)
            numeric.append(name)
        else:
            x = pd.factorize(col.astype(str))[0].astype(float)
        score = _single_score(x, y, task, seed)
        if score >= LEAK_SCORE:
            leaks.append(Leak((name,), score, f"alone predicts {target!r} with {metric} {score:.3f}"))
    leaky = {leak.columns[0] for leak in leaks}
    candidates = [c for c in numeric if c not in leaky][:MAX_PAIR_COLUMNS]
    if len(candidates) >= 2:
        values = data[candidates].to_numpy(dtype=float)
        pairs = list(itertools.combinations(range(len(candidates)), 2))
        i, j = np.array(pairs).T
        for op, combined in (("+", values[:, i] + values[:, j]), ("-", values[:, i] - values[:, j])):
            strength = _association(combined, y.astype(float), task)
            for k in np.flatnonzero(strength >= LEAK_SCORE):
                a, b = candidates[i[k]], candidates[j[k]]
                score = _single_score(combined[:, k], y, task, seed)
                if score >= LEAK_SCORE:
                    leaks.append(
                        Leak((a, b), score, f"{a} {op} {b} predicts {target!r} with {metric} {score:.3f}")
                    )
    return leaks
