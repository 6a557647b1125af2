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
from pathlib import Path
from statistics import mean, stdev

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
DATA = Path(os.environ.get("DRIFTLOOP_TEST_DATA", HERE.parents[2] / "shared" / "data"))
PYCARET_VENV = WORK / "venv-pycaret"


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return train_test_split(frame, test_size=0.2, random_state=seed, stratify=frame["quality"])


def scores(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(truth, labels)),
        "f1_macro": float(f1_score(truth, labels, average="macro")),
    }


def run_driftloop(
    train: pd.DataFrame, test: pd.DataFrame, budget: float | None, trials: int, seed: int, ensemble: bool
) -> dict:
    from driftloop.config import EnsembleConfig
    from driftloop.train.candidates import Problem, predict_scores
    from driftloop.train.tuning import run_search

    X = train.drop(columns="quality").to_numpy(np.float64)
    classes = np.unique(train["quality"])
    y = np.searchsorted(classes, train["quality"].to_numpy())
    problem = Problem("multiclass", X.shape[1], (), seed=42)
    started = time.perf_counter()
    result = run_search(
        X, y, problem, len(classes), "accuracy",
        families=["linear", "random_forest", "extra_trees", "lightgbm"], n_folds=5, trials=trials,
        seconds=budget, ensemble_config=EnsembleConfig(enabled=ensemble),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    proba = predict_scores(
        result.estimator, test.drop(columns="quality").to_numpy(np.float64), problem, len(classes)
    )
    out = scores(test["quality"].to_numpy(), classes[proba.argmax(axis=1)])
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


def ensure_pycaret() -> Path | None:
    python = PYCARET_VENV / "bin" / "python"
    if python.exists():
        return python
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "venv-pycaret.log"
    with log.open("w") as fh:
        ok = (
            subprocess.run(
                ["uv", "venv", "--python", "3.11", str(PYCARET_VENV)], stdout=fh, stderr=fh
            ).returncode
            == 0
        )
        ok = ok and subprocess.run(
            # scikit-plot, which PyCaret imports, uses `six` without declaring it.
            ["uv", "pip", "install", "--python", str(python), "pycaret==3.3.2", "six"], stdout=fh, stderr=fh
        ).returncode == 0  # fmt: skip
    if not ok:
        print(f"PyCaret could not be installed; see {log}", file=sys.stderr)
        return None
    return python


def run_pycaret(python: Path, color: str, seed: int) -> dict | None:
    out = WORK / f"pycaret-{color}-{seed}.json"
    if out.exists():  # PyCaret takes a minute a run; reuse a finished one
        return json.loads(out.read_text())
    proc = subprocess.run(
        [str(python), str(HERE / "_pycaret_case.py"), str(DATA / f"winequality-{color}.csv"), str(seed), str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        print(f"PyCaret failed on {color}/{seed}:\n{proc.stderr[-3000:]}", file=sys.stderr)
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
                pc = run_pycaret(python, color, seed)
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
    (HERE / "RESULTS.md").write_text(report(meta, rows))
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
