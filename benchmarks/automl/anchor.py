"""AutoML anchor: driftloop's default search against FLAML at the same time budget, and PyCaret, side by side.

Data sets: red and white Wine Quality (multiclass `quality`), scikit-learn's breast cancer (binary), iris and
digits (multiclass), diabetes (regression) and a generated Friedman #1 regression (2,000 rows, noise 1).
Every tool gets the same split of each data set for each split seed (`run.split`: 20 % test rows,
stratified for classification), written once as CSV for the tools in their own virtual environments.
Figures: accuracy (classification) or R² (regression) on the test rows; wall seconds against the budget;
median microseconds of a one-row predict (driftloop: the model in the form the server loads it; FLAML and
PyCaret: their best estimator's `predict`).

- driftloop: `TrainingConfig()` defaults (families, folds, ensemble selection), searching on accuracy or R²,
  `seconds` = the budget (search + refit inside it).
- FLAML: `AutoML().fit(time_budget=budget, metric=accuracy|r2)` with its defaults, in `.work/venv-flaml`
  (built here with uv on first use, so the project's uv.lock is untouched).
- PyCaret 3.3.2: `setup` + `compare_models` with no budget (as users run it), in `.work/venv-pycaret`;
  by default on the first split seed only (minutes a run; none with `--quick` unless `--pycaret-seeds` is
  given); `--pycaret-seeds all` for every seed.

Writes `anchor.jsonl` (one line per tool, data set and seed) and the anchor section of `RESULTS.md`
(between its `anchor` markers; the rest of the file is left as it is), both by temp file and rename.

    .venv/bin/python benchmarks/automl/anchor.py            # 7 data sets x 5 split seeds (about 60 minutes)
    .venv/bin/python benchmarks/automl/anchor.py --quick    # smoke run: 1 seed, a third of the budgets, no PyCaret
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev

import pandas as pd
from run import (  # the benchmark's own split, data path and PyCaret runner, beside this script
    ANCHOR_END,
    ANCHOR_START,
    DATA,
    HERE,
    WORK,
    ensure_pycaret,
    ensure_venv,
    machine,
    run_driftloop,
    run_pycaret,
    split,
    write_split,
)

FLAML_VENV = WORK / "venv-flaml"
FLAML_REQUIREMENT = "flaml[automl]==2.7.0"
RESULTS = HERE / "RESULTS.md"
START, END = ANCHOR_START, ANCHOR_END


@dataclass(frozen=True)
class DataSet:
    name: str
    target: str
    task: str  # binary, multiclass, regression
    budget: float  # seconds, the same for driftloop and FLAML

    @property
    def metric(self) -> str:
        return "r2" if self.task == "regression" else "accuracy"


DATASETS = {
    d.name: d
    for d in (
        DataSet("red", "quality", "multiclass", 18.0),
        DataSet("white", "quality", "multiclass", 30.0),
        DataSet("breast_cancer", "target", "binary", 10.0),
        DataSet("diabetes", "target", "regression", 10.0),
        DataSet("iris", "target", "multiclass", 10.0),
        DataSet("digits", "target", "multiclass", 30.0),
        DataSet("friedman1", "y", "regression", 15.0),
    )
}


def load(d: DataSet) -> pd.DataFrame:
    from sklearn import datasets

    if d.name in ("red", "white"):
        return pd.read_csv(DATA / f"winequality-{d.name}.csv", sep=";")
    if d.name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=2000, noise=1.0, random_state=0)
        return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(y=y)
    loader = {
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
    }[d.name]
    frame = loader(as_frame=True).frame
    # Plain column names: PyCaret and LightGBM both reject some punctuation in feature names.
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def ensure_flaml() -> Path | None:
    return ensure_venv("FLAML", FLAML_VENV, [FLAML_REQUIREMENT])


def run_flaml(
    python: Path, train: pd.DataFrame, test: pd.DataFrame, tag: str, d: DataSet, budget: float
) -> dict | None:
    out = WORK / f"flaml-{tag}.json"
    out.unlink(missing_ok=True)  # budgets change between runs: never reuse an old figure
    train_csv, test_csv = write_split(train, test, tag)
    proc = subprocess.run(
        [str(python), str(HERE / "_flaml_case.py"), str(train_csv), str(test_csv), d.target, d.task, str(budget), str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        print(f"FLAML failed on {tag}:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def warm_up() -> None:
    """One tiny driftloop search before the clock runs: driftloop runs in this process, so its first run
    would otherwise pay the imports (LightGBM, the model store, MLflow: 10+ s on a loaded box) inside its
    budget, which a CLI run pays before its search and FLAML's subprocess pays before `fit`."""
    from sklearn.datasets import make_regression

    X, y = make_regression(200, 5, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)]).assign(y=y)
    run_driftloop(frame, frame.head(20), None, 1, 0, True, "y", "regression")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all seven)")
    ap.add_argument("--seeds", default="42,0,1,2,3", help="split seeds (default: 42,0,1,2,3)")
    ap.add_argument(
        "--budget-scale", type=float, default=1.0, help="multiply every data set's budget (seconds)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: seed 42 only, budgets x 1/3, no PyCaret")
    ap.add_argument(
        "--trials", type=int, default=1000, help="driftloop trial cap (the seconds budget binds first)"
    )
    ap.add_argument("--no-flaml", action="store_true")
    ap.add_argument("--no-pycaret", action="store_true")
    ap.add_argument(
        "--pycaret-seeds",
        default=None,
        help="split seeds PyCaret runs on: 'all', or a list (default: the first)",
    )
    ap.add_argument(
        "--out", type=Path, default=HERE / "anchor.jsonl", help="raw lines (default: anchor.jsonl)"
    )
    args = ap.parse_args()
    seeds = [42] if args.quick else [int(s) for s in args.seeds.split(",")]
    scale = args.budget_scale / 3 if args.quick else args.budget_scale
    unknown = [n for n in args.datasets.split(",") if n not in DATASETS]
    if unknown:
        ap.error(f"--datasets: unknown {', '.join(unknown)} (known: {', '.join(DATASETS)})")
    chosen = [DATASETS[n] for n in args.datasets.split(",")]
    if args.pycaret_seeds == "all":
        pycaret_seeds = seeds
    else:
        pycaret_seeds = [int(s) for s in args.pycaret_seeds.split(",")] if args.pycaret_seeds else seeds[:1]
    flaml = None if args.no_flaml else ensure_flaml()
    no_pycaret = args.no_pycaret or (args.quick and args.pycaret_seeds is None)
    pycaret = None if no_pycaret else ensure_pycaret()
    warm_up()
    started, load_before = time.time(), os.getloadavg()
    rows: list[dict] = []
    total, done = len(chosen) * len(seeds), 0
    for d in chosen:
        frame = load(d)
        budget = round(d.budget * scale, 1)
        for seed in seeds:
            done += 1
            print(
                f"[{done}/{total}] {d.name} seed {seed}: {len(frame)} rows, budget {budget:g} s", flush=True
            )
            train, test = split(frame, seed, d.target, stratify=d.task != "regression")
            tag = f"{d.name}-{seed}"
            found = [run_driftloop(train, test, budget, args.trials, seed, True, d.target, d.task)]
            if flaml is not None:
                found.append(run_flaml(flaml, train, test, tag, d, budget))
            if pycaret is not None and seed in pycaret_seeds:
                found.append(run_pycaret(pycaret, train, test, tag, d.target, d.task))
            for r in filter(None, found):
                r = {
                    "dataset": d.name,
                    "task": d.task,
                    "seed": seed,
                    "budget": budget,
                    "score": r[d.metric],
                } | r
                r |= {"metric": d.metric, "load": os.getloadavg()[0]}
                rows.append(r)
                print(
                    f"    {r['tool']:30s} {d.metric} {r['score']:.4f}  {r['seconds']:6.1f} s  "
                    f"predict {r['predict_us']:8.1f} us  {r.get('model', '')}",
                    flush=True,
                )
    meta = {
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "minutes": (time.time() - started) / 60,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    write_atomic(args.out, "".join(json.dumps(r | {"meta": meta}) + "\n" for r in rows))
    section = report(meta | {"raw": args.out.name}, rows)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_atomic(RESULTS, text)
    print(f"wrote {args.out} and the anchor section of {RESULTS}")


def report(meta: dict, rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    lines = [
        START,
        "## Anchor: driftloop against FLAML (same budget) and PyCaret, seven data sets",
        "",
        f"Machine: {meta['machine']}. `uptime` at the end: {meta['uptime']}. Load average "
        f"{meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after; the machine was shared with "
        "other engineers' work, so seconds and microseconds move with it. "
        f"Run took {meta['minutes']:.0f} minutes.",
        "",
        f"Command: `{meta['command']}` (raw lines in `{meta['raw']}`).",
        "",
        "Score: accuracy (classification) or R² (regression) on the 20 % test rows of "
        "`train_test_split(random_state=SEED)`, stratified for classification; the same rows for every tool. "
        "Seconds: wall time of the search (driftloop: search + refit; FLAML: `fit`; PyCaret: setup + "
        "compare_models, no budget). Predict: median µs of one row (driftloop: the served form, "
        "`ModelBundle.predict_matrix` on the encoded row, forests on GTIL, LightGBM without lleaves; FLAML and "
        "PyCaret: the best estimator's `predict` on one row; FLAML's `AutoML.predict` in the raw lines as `automl_predict_us`).",
        "",
        "| data set | task | metric | budget s | tool | score mean ± sd (min–max) | runs | seconds mean (max) "
        "| predict µs (median) | best models |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    verdicts = []
    for name in frame["dataset"].unique():
        part = frame[frame["dataset"] == name]
        means = {}
        for tool in part["tool"].unique():
            t = part[part["tool"] == tool]
            v = t["score"].tolist()
            means[tool] = mean(v)
            sd = stdev(v) if len(v) > 1 else 0.0
            models = ", ".join(sorted({str(m).split(" (")[0] for m in t["model"]}))
            lines.append(
                f"| {name} | {t['task'].iloc[0]} | {t['metric'].iloc[0]} | {t['budget'].iloc[0]:g} | {tool} | "
                f"{mean(v):.4f} ± {sd:.4f} ({min(v):.4f}–{max(v):.4f}) | {len(v)} | "
                f"{t['seconds'].mean():.1f} ({t['seconds'].max():.1f}) | {t['predict_us'].median():.0f} | {models} |"
            )
        flaml = [t for t in means if t.startswith("flaml")]
        if "driftloop" in means and flaml:
            diff = means["driftloop"] - means[flaml[0]]
            verdicts.append(f"{name} {'≥' if diff >= 0 else '<'} FLAML ({diff:+.4f})")
    lines += ["", "driftloop's mean against FLAML's, per data set: " + "; ".join(verdicts) + ".", "", END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
