"""One PyCaret 3.3.2 compare_models run on one split; runs inside PyCaret's own virtual environment.

Usage: _pycaret_case.py TRAIN.csv TEST.csv TARGET TASK OUT.json, TASK one of binary, multiclass, regression.
The split is made by the caller (`run.write_split`), so every tool sees the same rows. Writes the figures
as JSON: accuracy and macro-F1 (classification) or R² and RMSE (regression), seconds of setup +
compare_models, and the median microseconds of one-row `predict` of the best estimator.
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score


def main() -> None:
    train_csv, test_csv, target, task, out = sys.argv[1:6]
    # The original row numbers keep the two parts' indices distinct, as PyCaret requires.
    train, test = pd.read_csv(train_csv, index_col=0), pd.read_csv(test_csv, index_col=0)
    seed = 42
    if task == "regression":
        from pycaret.regression import compare_models, get_config, predict_model, setup
    else:
        from pycaret.classification import compare_models, get_config, predict_model, setup

    started = time.perf_counter()
    setup(data=train, test_data=test, target=target, session_id=seed, verbose=False, html=False, n_jobs=-1)
    best = compare_models(verbose=False)
    seconds = time.perf_counter() - started
    pred = predict_model(best, data=test.drop(columns=[target]).reset_index(drop=True), verbose=False)
    truth = test[target].to_numpy()
    if task == "regression":
        values = pred["prediction_label"].to_numpy(np.float64)
        result = {
            "r2": float(r2_score(truth, values)),
            "rmse": float(np.sqrt(mean_squared_error(truth, values))),
        }
    else:
        labels = pred["prediction_label"].astype(test[target].dtype).to_numpy()
        result = {
            "accuracy": float(accuracy_score(truth, labels)),
            "f1_macro": float(f1_score(truth, labels, average="macro")),
        }
    # One row through the best estimator alone, on PyCaret's transformed input (its pipeline adds more).
    row = get_config("X_test_transformed").iloc[:1]
    for _ in range(20):
        best.predict(row)
    times = []
    for _ in range(300):
        t0 = time.perf_counter_ns()
        best.predict(row)
        times.append(time.perf_counter_ns() - t0)
    result |= {
        "tool": "pycaret 3.3.2 compare_models",
        "model": type(best).__name__,
        "seconds": seconds,
        "predict_us": float(np.median(times)) / 1000.0,
    }
    with open(out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
