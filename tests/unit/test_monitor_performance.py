"""Live performance numbers against a hand computation (and scikit-learn), per model version and arm."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from driftloop.monitor.performance import evaluate_performance


def test_classification_metrics_match_a_hand_computation() -> None:
    # 6 rows of v1/champion: labels a a b b c c, predictions a b b b c a -> 4 of 6 right.
    joined = pd.DataFrame(
        {
            "model_version": ["1"] * 6 + ["2"] * 2,
            "arm": ["champion"] * 6 + ["challenger"] * 2,
            "label": ["a", "a", "b", "b", "c", "c", "a", "b"],
            "prediction": ["a", "b", "b", "b", "c", "a", "a", "b"],
        }
    )
    result = evaluate_performance(joined, task="multiclass", classes=["a", "b", "c"], unknown_labels=3)
    v1 = result.group("1", "champion")
    assert v1 is not None and v1.n_labeled == 6
    assert v1.metrics["accuracy"].value == pytest.approx(4 / 6)
    # F1 per class: a: tp1 fp1 fn1 -> 0.5; b: tp2 fp1 fn0 -> 0.8; c: tp1 fp0 fn1 -> 2/3.
    assert v1.metrics["f1_macro"].value == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    low, high = v1.metrics["accuracy"].ci_low, v1.metrics["accuracy"].ci_high
    assert low is not None and high is not None and low <= 4 / 6 <= high
    v2 = result.group("2", "challenger")
    assert v2 is not None and v2.metrics["accuracy"].value == 1.0
    assert v2.metrics["f1_macro"].value == pytest.approx(
        (1 + 1 + 0) / 3
    )  # absent class c scores 0, as the gate
    assert result.unknown_labels == 3 and result.n_labeled == 8


def test_binary_roc_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    joined = pd.DataFrame(
        {
            "model_version": "1",
            "arm": "champion",
            "label": [str(v) for v in y],
            "prediction": ["1" if p > 0.5 else "0" for p in p1],
            "probabilities": [json.dumps({"0": 1 - p, "1": p}) for p in p1],
        }
    )
    g = evaluate_performance(joined, task="binary", classes=["0", "1"]).groups[0]
    assert g.metrics["roc_auc"].value == pytest.approx(roc_auc_score(y, p1))
    assert g.metrics["roc_auc"].ci_low < g.metrics["roc_auc"].value < g.metrics["roc_auc"].ci_high


def test_regression_metrics_match_a_hand_computation() -> None:
    joined = pd.DataFrame(
        {
            "model_version": "3",
            "arm": "champion",
            "label": [1.0, 2.0, 3.0, 4.0],
            "prediction": [1.5, 2.0, 2.0, 5.0],
        }
    )
    m = evaluate_performance(joined, task="regression").groups[0].metrics
    errors = np.array([0.5, 0.0, -1.0, 1.0])
    assert m["rmse"].value == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert m["mae"].value == pytest.approx(2.5 / 4)
    assert m["r2"].value == pytest.approx(1 - 2.25 / 5.0)  # ss_res 2.25, ss_tot 5


def test_no_labels_gives_no_groups() -> None:
    empty = pd.DataFrame({"model_version": [], "arm": [], "label": [], "prediction": []})
    assert evaluate_performance(empty, task="binary", unknown_labels=2).to_dict() == {
        "task": "binary",
        "unknown_labels": 2,
        "n_labeled": 0,
        "groups": [],
    }
