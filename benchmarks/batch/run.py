"""Batch scoring benchmark: `driftloop score` against `mlflow.pyfunc` predict of the same registered model.

The model is what a user gets: `driftloop init` on the red wine file, `driftloop data add` and the default
`driftloop train` with the config init wrote (budget, families, ensemble selection, max_predict_ms). The
input is N rows of red wine features (the 1,599 wines tiled, each value times a 1 % random factor so rows are
not repeats) in Parquet files of 250,000 rows.

In one run, on the same files, in this order:
    - mlflow.pyfunc: `mlflow.pyfunc.load_model("models:/<name>/<version>")`, then file by file `read_parquet`
      and `predict` in this one process (what a notebook or a batch job does with a registered model);
    - driftloop: `score_batch` (what `driftloop score` runs) on a local Dask cluster of 1 and then 2 worker
      processes (one thread each), with its defaults: per-row validation with rejects, compiled trees,
      predictions and probabilities written to Parquet, every row appended to the prediction log; then 2
      workers without the log, and 2 workers without compiled trees.
The cluster is started before the clock starts (as `--dask ADDRESS` would find it running); the compiled
trees are built once before the runs (`score` builds and caches them on first use).

    .venv/bin/python benchmarks/batch/run.py [--rows 2000000]

Writes benchmarks/batch/RESULTS.md and results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = Path(os.environ.get("DRIFTLOOP_TEST_DATA", REPO.parent / "shared" / "data")) / "winequality-red.csv"
VENV_BIN = Path(sys.executable).parent
FILE_ROWS = 250_000


def train_default(folder: Path, overrides: dict[str, str] | None = None) -> Path:
    """`driftloop init`, `data add` and `train` on red wine in `folder` (config overrides as DRIFTLOOP_*
    environment variables, e.g. the families); returns the config."""
    config = folder / "driftloop.yaml"
    if not config.exists():
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(overrides or {}), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        for args in (["init", str(DATA), "--target", "quality"], ["data", "add"], ["train", "--no-progress"]):
            print(f"driftloop {' '.join(args)}", flush=True)
            subprocess.run([str(VENV_BIN / "driftloop"), *args], cwd=folder, env=env, check=True)
    return config


def make_input(folder: Path, rows: int, features: list[str]) -> list[Path]:
    """`rows` perturbed red wines in Parquet files of FILE_ROWS rows (made once, reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("part-*.parquet"))
    if sum(len(pd.read_parquet(f, columns=features[:1])) for f in files) == rows:
        return files
    for f in files:
        f.unlink()
    red = pd.read_csv(DATA, sep=None, engine="python")[features]
    rng = np.random.default_rng(0)
    for i, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        part = red.iloc[np.arange(start, start + n) % len(red)].reset_index(drop=True)
        part = part * rng.normal(1.0, 0.01, size=part.shape)
        part.to_parquet(folder / f"part-{i:03d}.parquet", row_group_size=FILE_ROWS)
    return sorted(folder.glob("part-*.parquet"))


def load_avg() -> float:
    return os.getloadavg()[0]


def time_pyfunc(model_uri: str, files: list[Path], features: list[str]) -> dict:
    import mlflow

    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_uri)
    load_s = time.perf_counter() - t0
    rows = 0
    t0 = time.perf_counter()
    for f in files:
        frame = pd.read_parquet(f, columns=features)
        out = model.predict(frame)
        rows += len(out)
    seconds = time.perf_counter() - t0
    return {"run": "mlflow.pyfunc, 1 process", "rows": rows, "seconds": seconds, "load_s": load_s}


def time_driftloop(stores, files_dir: Path, out: Path, workers: int, *, log: bool, compiled: bool) -> dict:  # noqa: ANN001
    from driftloop.scale.cluster import dask_client
    from driftloop.scale.scoring import score_batch

    shutil.rmtree(out, ignore_errors=True)
    with dask_client(None, n_workers=workers, threads_per_worker=1, processes=True, memory_limit="2GiB") as c:
        t0 = time.perf_counter()
        summary = score_batch(
            stores, c, files_dir, out, partition_rows=FILE_ROWS, log_predictions=log, compile_trees=compiled
        )
        seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    what = f"driftloop score, {workers} worker{'s' if workers > 1 else ''}"
    what += "" if log else ", no log"
    what += "" if compiled else ", not compiled"
    assert summary.scored == summary.rows, summary
    return {"run": what, "rows": summary.rows, "seconds": seconds, "compiled": summary.compiled}


#: (case, DRIFTLOOP_* overrides for `train`): what `train` picks with the config init writes, and a tree model
#: (LightGBM only), where the model's own cost dominates and compiled trees apply.
CASES = [("default", {}), ("lightgbm", {"DRIFTLOOP_TRAINING__FAMILIES": "[lightgbm]"})]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/driftloop-batch-bench"))
    parser.add_argument("--fresh", action="store_true", help="retrain the model")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)

    import mlflow

    from driftloop.config import load_config
    from driftloop.scale.cluster import dask_client
    from driftloop.scale.scoring import score_batch
    from driftloop.stores import open_stores

    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results, models = [], []
    for case, overrides in CASES:
        config = train_default(args.work / case, overrides)
        stores = open_stores(load_config(config))
        champion = stores.metadata.get_deployment(stores.model_name).champion
        assert champion is not None, "train registered no champion"
        info = stores.tracking.get_version(champion)
        family = info.tags.get("family", "?")
        features = list(stores.tracking.load_bundle(champion).spec.feature_names)
        files = make_input(args.work / "input", args.rows, features)
        mlflow.set_tracking_uri(stores.tracking.tracking_uri)
        # Warm-up: builds and caches the compiled trees, pays the imports, checks the model scores at all.
        with dask_client(None, n_workers=1, processes=True) as c:
            warm = score_batch(stores, c, files[0], args.work / "warm", log_predictions=False)
        shutil.rmtree(args.work / "warm", ignore_errors=True)
        models.append({"case": case, "version": champion, "family": family, "compiled": warm.compiled})
        print(f"{case}: model v{champion} ({family}); compiled: {warm.compiled}", flush=True)
        plan: list[tuple[int, bool, bool] | None] = [None, (1, True, True), (2, True, True), (2, False, True)]
        if warm.compiled:
            plan.append((2, True, False))
        for opts in plan:
            before = load_avg()
            if opts is None:
                r = time_pyfunc(f"models:/{stores.model_name}/{champion}", files, features)
            else:
                workers, log, compiled = opts
                r = time_driftloop(
                    stores, args.work / "input", args.work / "out", workers, log=log, compiled=compiled
                )
            r |= {"case": case, "family": family, "rows_per_s": r["rows"] / r["seconds"]}
            r["load_avg"] = max(before, load_avg())
            print(
                f"{case} {r['run']}: {r['rows']:,} rows in {r['seconds']:.1f} s = {r['rows_per_s']:,.0f} rows/s"
            )
            results.append(r)
        stores.close()
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    (HERE / "results.json").write_text(json.dumps({"models": models, "results": results}, indent=2) + "\n")
    write_results(args, models, results, uptime_before, uptime_after)


def write_results(args, models: list[dict], results: list[dict], before: str, after: str) -> None:  # noqa: ANN001
    lines = [
        "# Batch scoring: `driftloop score` against `mlflow.pyfunc` on the same registered model (issue #18)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()}; mlflow {pkg_version('mlflow')}, dask "
        f"{pkg_version('dask')}, LightGBM {pkg_version('lightgbm')}, lleaves {pkg_version('lleaves')}.",
        f"`uptime` before: `{before}`; after: `{after}`.",
        "",
        f"Command: `.venv/bin/python benchmarks/batch/run.py --rows {args.rows}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        "Models: `driftloop init` + `data add` + `train` on red wine with the config init writes (**default**), "
        "and the same with `training.families: [lightgbm]` (**lightgbm**): "
        + "; ".join(
            f"{m['case']}: v{m['version']} {m['family']}, compiled trees: {m['compiled']}" for m in models
        )
        + ".",
        f"Input: {args.rows:,} rows (red wines tiled, each value times a 1 % random factor) in Parquet files of "
        f"{FILE_ROWS:,} rows. Each run reads the same files; driftloop also validates every row, writes "
        "predictions and class probabilities to Parquet and (unless `no log`) appends every row to the "
        "prediction log. mlflow.pyfunc only reads and predicts.",
        "",
        "| model | run | rows | seconds | rows/s | vs mlflow.pyfunc | load average |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in models:
        mine = [r for r in results if r["case"] == m["case"]]
        base = next(r for r in mine if r["run"].startswith("mlflow"))
        for r in mine:
            ratio = r["rows_per_s"] / base["rows_per_s"]
            lines.append(
                f"| {m['case']} ({m['family']}) | {r['run']} | {r['rows']:,} | {r['seconds']:.1f} | "
                f"{r['rows_per_s']:,.0f} | {ratio:.2f}x | {r['load_avg']:.1f} |"
            )
    lines.append("")
    for m in models:
        mine = {r["run"]: r for r in results if r["case"] == m["case"]}
        one, two = mine["driftloop score, 1 worker"], mine["driftloop score, 2 workers"]
        base = next(r for r in mine.values() if r["run"].startswith("mlflow"))
        lines.append(
            f"- {m['case']}: 1 -> 2 workers {two['rows_per_s'] / one['rows_per_s']:.2f}x; mlflow.pyfunc loaded "
            f"the model in {base['load_s']:.1f} s (not in its time)."
        )
    lines.append("")
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
