"""Multivariate drift: changes in how features move together, which per-column tests cannot see.

Two methods, each with the features that drive its verdict:

- **Domain classifier.** A small LightGBM model learns to tell reference rows from current rows; its
  out-of-fold ROC AUC is the statistic (0.5: the tables cannot be told apart). Under no drift the fold
  scores are independent of the side, so the AUC is the Mann-Whitney statistic of exchangeable samples,
  about normal with mean 0.5 and variance (n1 + n2 + 1) / (12 n1 n2): the threshold is its
  1 - `alpha` quantile, and never below `min_auc`, so a huge window does not flag a trivial difference.
  Drivers: the classifier's gain per feature, as shares.
- **PCA reconstruction error** (as NannyML's): standardize on the reference, keep the principal components
  that explain `variance` of it, and measure how far each row lies from its reconstruction. The mean over
  the current rows is compared with the means over reference chunks of the same size: drift when it leaves
  their mean +- 3 standard deviations. Drivers: each feature's share of the rise in squared residual.

Both encode a categorical column by its category's frequency in the reference (unseen categories: 0) and
fill a missing numeric value with the reference median (plus a missing-indicator column for the classifier,
so a change in missingness is visible).

A change that keeps every marginal (two correlated features whose correlation flips sign) moves both
methods while each per-column test says no drift (tests/unit/test_multivariate_drift.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from driftloop.monitor.drift import NUMERIC, ColumnSpec

__all__ = ["MultivariateResult", "domain_classifier", "multivariate_drift", "pca_reconstruction"]

MAX_ROWS = 5_000
"""Rows used from each side (a seeded sample beyond that): the verdict needs no more, the time stays ~1 s."""


@dataclass
class MultivariateResult:
    method: str
    """`domain_classifier` (statistic: ROC AUC) or `pca_reconstruction` (statistic: mean error)."""
    statistic: float
    threshold: float
    """The value past which the statistic means drift (upper threshold; PCA's lower one is in detail)."""
    drift: bool
    drivers: list[dict[str, Any]] = field(default_factory=list)
    """Features by their share of the difference, largest first: [{"feature", "share"}]."""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _encode(
    reference: pd.DataFrame, current: pd.DataFrame, specs: Sequence[ColumnSpec], *, indicators: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both tables as float matrices, encoded the same way (fitted on the reference)."""
    ref_cols, cur_cols, names = [], [], []
    for spec in specs:
        ref, cur = reference[spec.name], current[spec.name]
        if spec.kind == NUMERIC:
            r = pd.to_numeric(ref, errors="coerce").astype(float).to_numpy()
            c = pd.to_numeric(cur, errors="coerce").astype(float).to_numpy()
            fill = float(np.nanmedian(r)) if np.isfinite(r).any() else 0.0
            if indicators and (np.isnan(r).any() or np.isnan(c).any()):
                ref_cols.append(np.isnan(r).astype(float))
                cur_cols.append(np.isnan(c).astype(float))
                names.append(f"{spec.name} (missing)")
            r = np.where(np.isfinite(r), r, fill)
            c = np.where(np.isfinite(c), c, fill)
        else:
            keys_r = ref.astype(object).where(ref.notna(), None).map(str)
            keys_c = cur.astype(object).where(cur.notna(), None).map(str)
            freq = keys_r.value_counts(normalize=True)
            r = keys_r.map(freq).astype(float).to_numpy()
            c = keys_c.map(freq).fillna(0.0).astype(float).to_numpy()
        ref_cols.append(r)
        cur_cols.append(c)
        names.append(spec.name)
    return np.column_stack(ref_cols), np.column_stack(cur_cols), names


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


def _shares(values: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    total = float(np.sum(values))
    if total <= 0:
        return []
    order = np.argsort(-values)
    return [{"feature": names[i], "share": float(values[i] / total)} for i in order if values[i] > 0]


def domain_classifier(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    specs: Sequence[ColumnSpec],
    *,
    alpha: float = 0.01,
    min_auc: float = 0.55,
    folds: int = 5,
    seed: int = 0,
) -> MultivariateResult:
    """Can a classifier tell current rows from reference rows? See the module docstring."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    ref, cur = _sample(reference, MAX_ROWS, seed), _sample(current, MAX_ROWS, seed + 1)
    X_ref, X_cur, names = _encode(ref, cur, specs, indicators=True)
    X = np.vstack([X_ref, X_cur])
    y = np.r_[np.zeros(len(X_ref)), np.ones(len(X_cur))]
    params: dict[str, Any] = {
        "n_estimators": 100,
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_child_samples": 20,
        "subsample": 0.8,
        "subsample_freq": 1,
        "n_jobs": 1,
        "random_state": seed,
        "verbose": -1,
    }
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        model = lgb.LGBMClassifier(**params).fit(X[train], y[train])
        scores[test] = np.asarray(model.predict_proba(X[test]))[:, 1]
    auc = float(roc_auc_score(y, scores))
    n1, n2 = len(X_ref), len(X_cur)
    sd = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    threshold = max(0.5 + float(sps.norm.isf(alpha)) * sd, min_auc)
    full = lgb.LGBMClassifier(**params, importance_type="gain").fit(X, y)
    return MultivariateResult(
        method="domain_classifier",
        statistic=auc,
        threshold=threshold,
        drift=auc > threshold,
        drivers=_shares(np.asarray(full.feature_importances_, dtype=float), names),
        detail={"reference_rows": n1, "current_rows": n2, "folds": folds, "null_sd": sd, "alpha": alpha},
    )


def pca_reconstruction(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    specs: Sequence[ColumnSpec],
    *,
    variance: float = 0.65,
    chunks: int = 10,
    seed: int = 0,
) -> MultivariateResult:
    """Mean PCA reconstruction error of the current rows against reference chunks of the same size."""
    from sklearn.decomposition import PCA

    X_ref, X_cur, names = _encode(reference, current, specs, indicators=False)
    mean, sd = X_ref.mean(axis=0), X_ref.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Z_ref, Z_cur = (X_ref - mean) / sd, (X_cur - mean) / sd
    pca = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(Z_ref)

    def residuals(Z: np.ndarray) -> np.ndarray:
        return Z - pca.inverse_transform(pca.transform(Z))

    r_ref, r_cur = residuals(Z_ref), residuals(Z_cur)
    err_ref, err_cur = np.linalg.norm(r_ref, axis=1), np.linalg.norm(r_cur, axis=1)
    # Reference chunks as large as the current window (at most `chunks` of them, at least 2 rows each).
    size = max(2, min(len(err_cur), len(err_ref) // max(chunks, 2)))
    order = np.random.default_rng(seed).permutation(len(err_ref))
    means = np.array([err_ref[order[i : i + size]].mean() for i in range(0, len(order) - size + 1, size)])
    centre, spread = float(means.mean()), float(means.std(ddof=1)) if len(means) > 1 else 0.0
    upper, lower = centre + 3 * spread, centre - 3 * spread
    statistic = float(err_cur.mean())
    rise = np.clip((r_cur**2).mean(axis=0) - (r_ref**2).mean(axis=0), 0, None)
    return MultivariateResult(
        method="pca_reconstruction",
        statistic=statistic,
        threshold=upper,
        drift=not lower <= statistic <= upper,
        drivers=_shares(rise, names),
        detail={
            "components": int(pca.n_components_),
            "explained_variance": float(pca.explained_variance_ratio_.sum()),
            "reference_mean": centre,
            "lower_threshold": lower,
            "chunk_rows": size,
            "chunks": len(means),
        },
    )


def multivariate_drift(
    reference: pd.DataFrame, current: pd.DataFrame, specs: Sequence[ColumnSpec], *, seed: int = 0
) -> list[MultivariateResult]:
    """Both methods over the columns in `specs` (at least two: one column has no joint distribution)."""
    if len(specs) < 2:
        return []
    return [
        domain_classifier(reference, current, specs, seed=seed),
        pca_reconstruction(reference, current, specs, seed=seed),
    ]
