"""AutoML benchmark: driftloop's search against PyCaret's compare_models and plain defaults on Wine Quality.

Every tool gets the same split: scikit-learn's `train_test_split(test_size=0.2, random_state=SEED,
stratify=quality)`, target `quality` as a multiclass label; figures are accuracy and macro-F1 on the 20 %
test rows, and wall time of the search (driftloop: search + refit, no MLflow logging; PyCaret: setup +
compare_models). PyCaret 3.3.2 pins old libraries, so it runs in its own virtual environment under
`.work/venv-pycaret`, created here with uv on first use.

    .venv/bin/python benchmarks/automl/run.py                     # red + white, five split seeds
    .venv/bin/python benchmarks/automl/run.py --seeds 42 --no-pycaret
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import mean, stdev

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
DATA = Path(os.environ.get("DRIFTLOOP_TEST_DATA", HERE.parents[2] / "shared" / "data"))
PYCARET_VENV = WORK / "venv-pycaret"
# anchor.py owns RESULTS.md between these markers (and its notes after them).
ANCHOR_START, ANCHOR_END = "<!-- anchor:start (written by anchor.py) -->", "<!-- anchor:end -->"


def split(
    frame: pd.DataFrame, seed: int, target: str = "quality", stratify: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The one split every tool gets: 20 % test rows, stratified on the target for classification."""
    return train_test_split(
        frame, test_size=0.2, random_state=seed, stratify=frame[target] if stratify else None
    )


def scores(truth: np.ndarray, labels: np.ndarray, task: str = "multiclass") -> dict[str, float]:
    """Accuracy and macro-F1 for classification; R² and RMSE for regression."""
    if task == "regression":
        return {
            "r2": float(r2_score(truth, labels)),
            "rmse": float(np.sqrt(mean_squared_error(truth, labels))),
        }
    return {
        "accuracy": float(accuracy_score(truth, labels)),
        "f1_macro": float(f1_score(truth, labels, average="macro")),
    }


def one_row_us(predict: Callable[[], object], calls: int = 300, seconds: float = 3.0) -> float:
    """Median wall time of one call in microseconds, after a warm-up (the first calls allocate).

    At most `calls` calls and about `seconds` of timing (at least 20 calls), so a slow model on a busy
    machine cannot stretch the run.
    """
    for _ in range(10):
        predict()
    times: list[int] = []
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    while len(times) < calls and (len(times) < 20 or time.perf_counter_ns() < deadline):
        started = time.perf_counter_ns()
        predict()
        times.append(time.perf_counter_ns() - started)
    return float(np.median(times)) / 1000.0


def run_driftloop(
    train: pd.DataFrame,
    test: pd.DataFrame,
    budget: float | None,
    trials: int,
    seed: int,
    ensemble: bool,
    target: str = "quality",
    task: str = "multiclass",
) -> dict:
    """driftloop's search (default families, folds grouped by row digest, ensemble selection,
    `max_predict_ms` and the non-negative objective for a target never below zero, as `train` runs it) on
    `train`, scored on `test`.

    `predict_us` is one row through the model in the form a server worker answers with it (`for_serving` in
    a `ModelBundle`, forests on GTIL by `served_form`, `predict_matrix` on the encoded row), without HTTP
    and without lleaves compilation.
    """
    from driftloop.compiled import served_form
    from driftloop.config import EnsembleConfig, TrainingConfig
    from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec
    from driftloop.train.candidates import Problem, for_serving, predict_scores
    from driftloop.train.cv import make_folds
    from driftloop.train.split import row_digests
    from driftloop.train.tuning import run_search

    defaults = TrainingConfig()
    features = [c for c in train.columns if c != target]
    X = train[features].to_numpy(np.float64)
    Xt = test[features].to_numpy(np.float64)
    regression = task == "regression"
    classes = np.unique(train[target]) if not regression else np.array([])
    y = (
        train[target].to_numpy(np.float64)
        if regression
        else np.searchsorted(classes, train[target].to_numpy())
    )
    nonnegative = regression and bool(y.min() >= 0 and y.max() > 0)  # as `train.prepare` decides
    problem = Problem(task, X.shape[1], (), seed=42, nonnegative=nonnegative)
    started = time.perf_counter()
    # Copies of a row share a fold, as in `train` (the digest covers the target).
    folds = make_folds(y, task, defaults.cv_folds, problem.seed, row_digests(train, [*features, target]))
    result = run_search(
        X, y, problem, len(classes), "r2" if regression else "accuracy",
        families=list(defaults.families), n_folds=defaults.cv_folds, trials=trials,
        seconds=budget, ensemble_config=EnsembleConfig(enabled=ensemble),
        max_predict_ms=defaults.max_predict_ms, folds=folds,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    predicted = predict_scores(result.estimator, Xt, problem, len(classes))
    out = scores(
        test[target].to_numpy(), predicted if regression else classes[predicted.argmax(axis=1)], task
    )
    spec = ModelSpec(
        task=task,  # type: ignore[arg-type]
        target=target,
        features=tuple(FeatureSpec(f, "numeric", nullable=False) for f in features),
        classes=tuple(classes.tolist()),
    )
    bundle = served_form(ModelBundle(spec, *for_serving(result.family, result.estimator)))  # type: ignore[arg-type]
    row = Xt[:1].copy()
    out["predict_us"] = one_row_us(lambda: bundle.predict_matrix(row))
    members = result.ensemble.describe() if result.ensemble_chosen else []  # type: ignore[union-attr]
    return out | {
        "tool": "driftloop" if ensemble else "driftloop, no ensemble",
        "model": result.family
        + (" (" + ", ".join(f"{m['family']} {m['weight']:.2f}" for m in members) + ")" if members else ""),
        "seconds": seconds,
        "trials": len(result.trials),
        "cv_accuracy": result.cv.mean,
        "best_single_cv_accuracy": result.best.cv.mean,  # type: ignore[union-attr]
        "members": members,
    }


def run_defaults(train: pd.DataFrame, test: pd.DataFrame) -> list[dict]:
    import lightgbm
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    X, y = train.drop(columns="quality").to_numpy(np.float64), train["quality"].to_numpy()
    Xt = test.drop(columns="quality").to_numpy(np.float64)
    models = {
        "random forest, defaults (100 trees)": RandomForestClassifier(n_jobs=-1, random_state=0),
        "random forest, 500 trees": RandomForestClassifier(500, n_jobs=-1, random_state=0),
        "extra trees, 500 trees": ExtraTreesClassifier(500, n_jobs=-1, random_state=0),
        "LightGBM, defaults": lightgbm.LGBMClassifier(verbose=-1, n_jobs=1, random_state=0),
    }
    out = []
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - started
        out.append(scores(test["quality"].to_numpy(), model.predict(Xt)) | {"tool": name, "seconds": seconds})
    return out


def ensure_venv(name: str, venv: Path, requirements: list[str]) -> Path | None:
    """A tool's own virtual environment (its pins clash with driftloop's), built once with uv; its python."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"venv-{name.lower()}.log"
    print(f"building {name}'s venv in {venv} (log {log})", flush=True)
    with log.open("w") as fh:
        ok = (
            subprocess.run(["uv", "venv", "--python", "3.11", str(venv)], stdout=fh, stderr=fh).returncode
            == 0
        )
        ok = ok and subprocess.run(
            ["uv", "pip", "install", "--python", str(python), *requirements], stdout=fh, stderr=fh
        ).returncode == 0  # fmt: skip
    if not ok:
        print(f"{name} could not be installed; see {log}", file=sys.stderr)
        return None
    return python


def ensure_pycaret() -> Path | None:
    # scikit-plot, which PyCaret imports, uses `six` without declaring it.
    return ensure_venv("PyCaret", PYCARET_VENV, ["pycaret==3.3.2", "six"])


def write_split(train: pd.DataFrame, test: pd.DataFrame, tag: str) -> tuple[Path, Path]:
    """The split as two CSV files (original row numbers kept), for the tools that run in their own venv."""
    WORK.mkdir(parents=True, exist_ok=True)
    paths = WORK / f"split-{tag}-train.csv", WORK / f"split-{tag}-test.csv"
    for frame, path in zip((train, test), paths, strict=True):
        frame.to_csv(path)
    return paths


def run_pycaret(
    python: Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    tag: str,
    target: str = "quality",
    task: str = "multiclass",
) -> dict | None:
    """PyCaret's setup + compare_models on this split, in its own venv; `tag` names the data set and seed."""
    out = WORK / f"pycaret-{tag}.json"
    if out.exists():  # PyCaret takes a minute or two a run; reuse a finished one
        return json.loads(out.read_text())
    train_csv, test_csv = write_split(train, test, tag)
    proc = subprocess.run(
        [str(python), str(HERE / "_pycaret_case.py"), str(train_csv), str(test_csv), target, task, str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        print(f"PyCaret failed on {tag}:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colors", default="red,white")
    ap.add_argument("--seeds", default="42,0,1,2,3")
    ap.add_argument(
        "--budget-red", type=float, default=18.0, help="driftloop seconds (search + refit) on red"
    )
    ap.add_argument("--budget-white", type=float, default=30.0, help="driftloop seconds on white")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument(
        "--no-seconds", action="store_true", help="no seconds budget: exactly --trials trials (reproducible)"
    )
    ap.add_argument(
        "--also-no-ensemble", action="store_true", help="also run driftloop without ensemble selection"
    )
    ap.add_argument("--no-pycaret", action="store_true")
    ap.add_argument(
        "--pycaret-seeds",
        default=None,
        help="split seeds PyCaret runs on (default: all); it takes minutes a run",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    python = None if args.no_pycaret else ensure_pycaret()
    rows = []
    load_before = os.getloadavg()
    for color in args.colors.split(","):
        frame = pd.read_csv(DATA / f"winequality-{color}.csv", sep=";")
        budget = args.budget_red if color == "red" else args.budget_white
        for seed in (int(s) for s in args.seeds.split(",")):
            train, test = split(frame, seed)
            budget_s = None if args.no_seconds else budget
            found = [run_driftloop(train, test, budget_s, args.trials, seed, ensemble=True)]
            if args.also_no_ensemble:
                found.append(run_driftloop(train, test, budget_s, args.trials, seed, ensemble=False))
            found += run_defaults(train, test)
            pycaret_seeds = args.pycaret_seeds.split(",") if args.pycaret_seeds else None
            if python is not None and (pycaret_seeds is None or str(seed) in pycaret_seeds):
                pc = run_pycaret(python, train, test, f"{color}-{seed}")
                if pc:
                    found.append(pc)
            for r in found:
                r |= {"color": color, "seed": seed, "load": os.getloadavg()[0]}
                rows.append(r)
                print(
                    f"{color:5s} seed {seed:2d}  {r['tool']:38s} acc {r['accuracy']:.4f}  "
                    f"F1 {r['f1_macro']:.4f}  {r['seconds']:6.1f}s  {r.get('model', '')}",
                    flush=True,
                )
    meta = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "budgets": {"red": args.budget_red, "white": args.budget_white, "trials": args.trials},
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    results = HERE / "RESULTS.md"
    old = results.read_text() if results.exists() else ""
    # From the anchor marker on, the file is anchor.py's tables and their notes: keep them.
    kept = "\n" + old[old.index(ANCHOR_START) :] if ANCHOR_START in old else ""
    tmp = results.with_name(".RESULTS.md.tmp")
    tmp.write_text(report(meta, rows) + kept)
    os.replace(tmp, results)
    print(f"wrote {args.out} and {HERE / 'RESULTS.md'}")


def report(meta: dict, rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    lines = [
        "# AutoML benchmark: Wine Quality (multiclass `quality`)",
        "",
        f"Machine: {meta['machine']}. Load average {meta['load_before'][0]:.1f} before, "
        f"{meta['load_after'][0]:.1f} after (the machine is shared; wall times move with it).",
        "",
        f"Command: `{meta['command']}`. driftloop budget: {meta['budgets']['red']:g} s search on red, "
        f"{meta['budgets']['white']:g} s on white (at most {meta['budgets']['trials']} trials), 5-fold stratified CV, "
        "all four families; time = search + refit of the chosen model, best trial or ensemble (no MLflow logging).",
        "",
        "Split: `train_test_split(test_size=0.2, random_state=SEED, stratify=quality)`; "
        "figures on the 20 % test rows.",
        "",
    ]
    for color in frame["color"].unique():
        part = frame[frame["color"] == color]
        lines += [f"## {color}", "", "Split seed 42:", "", "| tool | model | accuracy | macro-F1 | seconds |",
                  "|---|---|---:|---:|---:|"]  # fmt: skip
        for _, r in part[part["seed"] == 42].iterrows():
            lines.append(
                f"| {r['tool']} | {r.get('model') if isinstance(r.get('model'), str) else ''} | "
                f"{r['accuracy']:.4f} | {r['f1_macro']:.4f} | {r['seconds']:.1f} |"
            )
        seeds = sorted(part["seed"].unique())
        if len(seeds) > 1:
            lines += ["", f"Spread over split seeds {', '.join(map(str, seeds))} (mean ± sd, min–max):", "",
                      "| tool | accuracy | macro-F1 | seconds (mean) | runs |", "|---|---:|---:|---:|---:|"]  # fmt: skip
            for tool in part["tool"].unique():
                t = part[part["tool"] == tool]
                acc, f1 = t["accuracy"].tolist(), t["f1_macro"].tolist()
                sd = lambda v: stdev(v) if len(v) > 1 else 0.0  # noqa: E731
                lines.append(
                    f"| {tool} | {mean(acc):.4f} ± {sd(acc):.4f} ({min(acc):.4f}–{max(acc):.4f}) | "
                    f"{mean(f1):.4f} ± {sd(f1):.4f} | {t['seconds'].mean():.1f} | {len(t)} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
