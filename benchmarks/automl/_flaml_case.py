"""One FLAML AutoML run on one split; runs inside FLAML's own virtual environment (`.work/venv-flaml`).

Usage: _flaml_case.py TRAIN.csv TEST.csv TARGET TASK BUDGET_SECONDS OUT.json, TASK one of binary,
multiclass, regression. The split is made by the caller (`run.write_split`), so every tool sees the same rows.
FLAML runs as users run it: `AutoML().fit(time_budget=BUDGET, metric=accuracy|r2)`, its default estimators,
evaluation method and final retrain. Writes accuracy and macro-F1 (classification) or R² and RMSE
(regression), wall seconds of `fit`, and the median microseconds of one row through the best estimator's
`predict` (and through `AutoML.predict`, which adds FLAML's data transform).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import one_row_us, scores  # noqa: E402  (numpy, pandas and scikit-learn only: in this venv too)


def main() -> None:
    train_csv, test_csv, target, task, budget, out = sys.argv[1:7]
    from flaml import AutoML, __version__

    train, test = pd.read_csv(train_csv, index_col=0), pd.read_csv(test_csv, index_col=0)
    X, y = train.drop(columns=[target]), train[target]
    Xt = test.drop(columns=[target])
    regression = task == "regression"
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        X,
        y,
        task="regression" if regression else "classification",
        metric="r2" if regression else "accuracy",
        time_budget=float(budget),
        seed=42,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    result = scores(test[target].to_numpy(), np.asarray(automl.predict(Xt)), task)
    frame_row = Xt.iloc[:1]
    model = automl.model.estimator  # the best estimator, fitted, as FLAML keeps it
    # The row as the best estimator sees it: FLAML's task-level transform (it drops constant columns, as in
    # digits), then the estimator wrapper's own; timing starts after both, at the native model's predict.
    row = automl.model._preprocess(automl.preprocess(frame_row))
    result |= {
        "tool": f"flaml {__version__}",
        "model": automl.best_estimator,
        "seconds": seconds,
        "predict_us": one_row_us(lambda: model.predict(row)),
        "automl_predict_us": one_row_us(lambda: automl.predict(frame_row)),
    }
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
