"""One PyCaret 3.3.2 compare_models run on one wine split; runs inside PyCaret's own virtual environment.

Usage: _pycaret_case.py DATA.csv SEED OUT.json. Prints nothing useful; writes the figures as JSON.
"""

import json
import sys
import time

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split


def main() -> None:
    path, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    frame = pd.read_csv(path, sep=";")
    train, test = train_test_split(frame, test_size=0.2, random_state=seed, stratify=frame["quality"])
    from pycaret.classification import compare_models, predict_model, setup

    started = time.perf_counter()
    setup(
        data=train,  # the original row numbers keep the two parts' indices distinct, as PyCaret requires
        test_data=test,
        target="quality",
        session_id=seed,
        verbose=False,
        html=False,
        n_jobs=-1,
    )
    best = compare_models(verbose=False)
    seconds = time.perf_counter() - started
    pred = predict_model(best, data=test.drop(columns=["quality"]).reset_index(drop=True), verbose=False)
    labels = pred["prediction_label"].astype(test["quality"].dtype).to_numpy()
    truth = test["quality"].to_numpy()
    result = {
        "tool": "pycaret 3.3.2 compare_models",
        "model": type(best).__name__,
        "accuracy": float(accuracy_score(truth, labels)),
        "f1_macro": float(f1_score(truth, labels, average="macro")),
        "seconds": seconds,
    }
    with open(out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
