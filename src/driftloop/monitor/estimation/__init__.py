"""Label-free performance estimation: what a model's metrics are on a window whose labels have not arrived.

Two methods, after NannyML's, each fitted once on a labelled **reference** and then applied to any number
of unlabelled windows (plain arrays/frames in, an `EstimateResult` out, so a monitoring pass can call it
per window):

- **CBPE** (confidence-based performance estimation, classifiers). The model's class probabilities are
  calibrated on the reference by isotonic regression, one class against the rest (a multiclass row is
  renormalised to sum to 1), always. (A rule that kept the model's own scores when calibration did not
  lower the out-of-fold Brier score was worse on breast cancer, accuracy error 0.034 against 0.027, and on
  the synthetic set's ROC AUC, equal on digits and wine, better only on the synthetic set's accuracy, by
  0.0002: a score can be well calibrated on average and not per score level, which is what counts here.)
  With calibrated probabilities p and the model's own predicted class, the expected confusion matrix of a
  window follows row by row (a row predicted c is a true positive of c with probability p_c), and from it
  accuracy (exact expectation), F1 per class, macro-F1 (ratio of expectations, as NannyML does), and ROC
  AUC: the expected Mann-Whitney statistic, sum p_i (1 - p_j) [s_i > s_j] over sum p * sum (1 - p), with
  ties counted half (NannyML's expected TPR/FPR curve over every threshold of the model's scores).
- **DLE** (direct loss estimation, regression). Two LightGBM models learn, on the reference, the absolute
  and the squared error of the model's prediction from the features and the prediction itself. A window's
  MAE is the mean predicted absolute error, its RMSE the root of the mean predicted squared error.

**The reference must be out of sample for the model** (a holdout, or production rows the model never
trained on). On its training rows a model is overconfident and its errors too small: the calibration and
the loss models would learn that, and every estimate would be too optimistic.

**Confidence band.** The band answers "where will the realised metric fall once the labels come?":

- CBPE treats the window's labels as what the calibrated probabilities say they are: independent draws,
  row i being class c with probability p_ic (so a class count is Poisson-binomial). Each metric is a smooth
  function of sums over rows of the one-hot labels (accuracy: hits; F1 of class c: its true positives and
  false negatives, the predicted counts being known; ROC AUC: the positives' rank sum and count), so the
  delta method gives its variance in closed form: the sum over rows of the variance of each row's gradient
  term (4,000 simulated label vectors agree within 10 %, tests/unit/test_estimation.py), without the cost
  of drawing them for every window. To that it adds the calibration's own error: each isotonic block's value is the mean label of
  its m reference rows (error about q (1 - q) / m) and every window row in the block shares it, so a window
  gathered where the reference is thin gets a wider band. The band is the normal interval, clipped to
  [0, 1]. It depends on the window's size, class mix and place, unlike NannyML's band (the standard
  deviation of the metric over reference chunks of the window's size, times 3).
- DLE uses the predicted per-row moments: the realised MAE has variance sum(E[e^2] - E[|e|]^2) / n^2; the
  realised MSE has variance sum((k - 1) E[e^2]^2) / n^2, with k the kurtosis of the reference's errors
  (3 for normal errors). Both bands are normal intervals; RMSE's is the square root of MSE's. The loss
  models' own error is not in it: on small references (hundreds of rows) the DLE band is too narrow.

What neither band can include is the error of the method's assumption (below). Even under pure covariate
shift, P(y | score) is only invariant if the score captures all of x's information about y; an imperfect
model's calibration drifts a little as the inputs move, so expect the band to hold the realised metric in
somewhat fewer than 95 % of shifted windows (85-100 % for the classifiers on the benchmark's
covariate-shift cases).
`MIN_REFERENCE_ROWS` is a floor, not a recommendation: use thousands of reference rows.

**When the estimate is wrong.** Both methods assume that P(y | x) is the same on the window as on the
reference: only the inputs move (covariate shift). Under concept drift (the same inputs now mean other
labels) the estimate stays where the reference put it while the real metric falls; compare the estimate with
realised metrics whenever labels arrive (`monitor/performance.py`). A class the model predicts that never
occurs in the reference cannot be calibrated: fitting refuses it (or, with `rare="raw"`, keeps the model's
own scores for it: what the monitoring pass does).

Modules: `results.py` (what an estimate is), `cbpe.py`, `dle.py`; here `fit_estimator` picks the method and
`estimate_tables` scores two tables with a model and estimates (`driftloop estimate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from driftloop.errors import DataError
from driftloop.monitor.estimation.cbpe import CBPEEstimator
from driftloop.monitor.estimation.dle import DLEEstimator
from driftloop.monitor.estimation.results import (
    MIN_REFERENCE_ROWS,
    EstimateResult,
    MetricEstimate,
    PerformanceEstimator,
    Task,
)

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.stores.models import ModelBundle

__all__ = [
    "MIN_REFERENCE_ROWS",
    "CBPEEstimator",
    "DLEEstimator",
    "EstimateResult",
    "MetricEstimate",
    "PerformanceEstimator",
    "estimate_tables",
    "fit_estimator",
]


def fit_estimator(
    features: pd.DataFrame | np.ndarray | None,
    outputs: Any,
    labels: Any,
    task: Task,
    *,
    classes: Sequence[Any] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    rare: Literal["refuse", "raw"] = "refuse",
) -> PerformanceEstimator:
    """An estimator fitted on a labelled, out-of-sample reference (`rare`: see `CBPEEstimator.fit`).

    `outputs`: for a classifier its class probabilities, (n, k) in `classes` order (a binary model may give
    the second class's probability alone, shape (n,)); for a regression its predictions, (n,).
    `labels`: the true labels, as values of `classes` (default: class indices 0..k-1) or numbers.
    `features`: used by DLE (regression), ignored by CBPE; a DataFrame or a float matrix.
    """
    if task not in ("binary", "multiclass", "regression"):
        raise DataError(f"task must be binary, multiclass or regression, got {task!r}")
    if not 0 < confidence < 1:
        raise DataError(f"confidence must be in (0, 1), got {confidence}")
    if task == "regression":
        if features is None:
            raise DataError("regression estimation (DLE) needs the reference features")
        return DLEEstimator.fit(features, outputs, labels, confidence=confidence, seed=seed)
    return CBPEEstimator.fit(outputs, labels, task, classes=classes, confidence=confidence, rare=rare)


def estimate_tables(
    bundle: ModelBundle,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    reference_name: Path | str = "REF",
    current_name: Path | str = "CUR",
) -> tuple[EstimateResult, list[str]]:
    """Score both tables with the model, fit the estimator on the reference, estimate on the current table.

    Returns the `EstimateResult` and notes for the user (rows left out, why realised metrics are missing).
    """
    spec = bundle.spec
    notes: list[str] = []
    if spec.target not in reference.columns:
        raise DataError(
            f"{reference_name}: no column {spec.target!r} (the model's target): the reference must be labelled"
        )
    labelled = reference[spec.target].notna()
    if not labelled.all():
        notes.append(f"{reference_name}: {int((~labelled).sum())} row(s) without a label left out")
        reference = reference[labelled]

    def scored(frame: pd.DataFrame, name: Path | str) -> tuple[pd.DataFrame, Any]:
        try:
            X = bundle.encoder.encode_frame(frame)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from None
        out = bundle.predict_matrix(X)
        return pd.DataFrame(X, columns=spec.feature_names), (out.proba if spec.is_classifier else out.labels)

    ref_X, ref_out = scored(reference, reference_name)
    cur_X, cur_out = scored(current, current_name)
    labels = None
    if spec.target in current.columns:
        missing = int(current[spec.target].isna().sum())
        if missing:
            notes.append(
                f"{current_name}: {missing} of {len(current)} row(s) have no label: realised metrics not shown"
            )
        else:
            labels = current[spec.target].to_numpy()
    try:
        estimator = fit_estimator(
            ref_X,
            np.asarray(ref_out),
            reference[spec.target].to_numpy(),
            spec.task,
            classes=list(spec.classes) or None,
        )
    except DataError as exc:
        raise DataError(f"{reference_name}: {exc}") from None
    try:
        result = estimator.estimate(np.asarray(cur_out), cur_X, labels=labels)
    except DataError as exc:
        raise DataError(f"{current_name}: {exc}") from None
    return result, notes
