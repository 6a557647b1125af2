"""Paired comparison of ensemble-selection rules over many split seeds (issue #2).

One deterministic search per split (a trial budget and no seconds budget, so the trials do not depend on the
machine's load), then, on the same trials: the best single model, Caruana selection on CV accuracy
(driftloop's rule) and Caruana selection on CV log-loss. Each is refitted on the training split and scored
on the split's 20 % test rows. One JSON line per split goes to stdout; `--summary FILE...` prints the means
and the paired differences against the single model (mean +- standard error over splits).

    .venv/bin/python benchmarks/automl/ensemble_selection.py red,white 42,0,1,2,3 10 \
        >> benchmarks/automl/ensemble-selection.jsonl
    .venv/bin/python benchmarks/automl/ensemble_selection.py --summary benchmarks/automl/ensemble-selection.jsonl
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from run import DATA, split  # the benchmark's own split and data, beside this script

from driftloop.config import EnsembleConfig
from driftloop.metrics import score
from driftloop.train import tuning
from driftloop.train.candidates import Problem, predict_scores
from driftloop.train.cv import make_folds

FAMILIES = ["linear", "random_forest", "extra_trees", "lightgbm"]


def one_split(frame: pd.DataFrame, color: str, seed: int, trials: int) -> dict:
    train, test = split(frame, seed)
    X = train.drop(columns="quality").to_numpy(np.float64)
    classes = np.unique(train["quality"])
    y = np.searchsorted(classes, train["quality"].to_numpy())
    X_test, y_test = test.drop(columns="quality").to_numpy(np.float64), test["quality"].to_numpy()
    problem = Problem("multiclass", X.shape[1], (), seed=42)

    def test_accuracy(estimator: object) -> float:
        proba = predict_scores(estimator, X_test, problem, len(classes))
        return float(np.mean(classes[proba.argmax(axis=1)] == y_test))

    started = time.perf_counter()
    result = tuning.run_search(
        X, y, problem, len(classes), "accuracy", families=FAMILIES, n_folds=5, trials=trials, seconds=None,
        ensemble_config=EnsembleConfig(enabled=False),
    )  # fmt: skip
    row = {
        "color": color,
        "seed": seed,
        "search_s": time.perf_counter() - started,
        "single": test_accuracy(result.estimator),
        "single_cv": result.best.cv.mean,  # type: ignore[union-attr]
    }
    done = [t for t in result.trials if t.state == "complete"]
    folds = make_folds(y, "multiclass", 5, problem.seed)  # the folds run_search used
    for name, selection_metric in (("acc", "accuracy"), ("ll", "log_loss")):
        candidate = tuning.select_ensemble(done, y, folds, selection_metric, "multiclass", EnsembleConfig())
        if candidate is None:
            row[name] = row["single"]
            continue
        oofs = np.stack([m.cv.oof for m in candidate.members])  # type: ignore[union-attr]
        blend = np.tensordot(np.array(candidate.weights), oofs, axes=1)
        row[name + "_cv"] = float(
            np.mean([score("accuracy", y[v], blend[v], "multiclass") for _, v in folds])
        )
        fitted = tuning._fit_ensemble(candidate, X, y, problem, len(classes), tuning.resolve_workers(-1))
        row[name] = test_accuracy(fitted)
        row[name + "_m"] = [
            (m.family, round(w, 2)) for m, w in zip(candidate.members, candidate.weights, strict=True)
        ]
    return row


def summary(paths: list[str]) -> None:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.startswith("{")]
    for color in ("red", "white"):
        mine = [r for r in rows if r["color"] == color]
        if not mine:
            continue
        single = np.array([r["single"] for r in mine])
        parts = [f"{color}: {len(mine)} splits  single {single.mean():.4f}"]
        for key, label in (("acc", "accuracy-selected"), ("ll", "log-loss-selected")):
            diff = np.array([r[key] for r in mine]) - single
            se = diff.std(ddof=1) / np.sqrt(len(diff))
            parts.append(f"{label} {single.mean() + diff.mean():.4f} ({diff.mean():+.4f} +- {se:.4f})")
        print("  ".join(parts))


def main() -> None:
    if sys.argv[1] == "--summary":
        summary(sys.argv[2:])
        return
    warnings.filterwarnings("ignore")
    colors, seeds, trials = sys.argv[1].split(","), [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
    for color in colors:
        frame = pd.read_csv(DATA / f"winequality-{color}.csv", sep=";")
        for seed in seeds:
            print(json.dumps(one_split(frame, color, seed, trials)), flush=True)


if __name__ == "__main__":
    main()
