"""Batch scoring and drift checking of a generated Parquet dataset larger than any worker's memory limit.

    .venv/bin/python benchmarks/scale/run.py                 # 20M rows, ~4 GB work folder, ~15 minutes
    .venv/bin/python benchmarks/scale/run.py --rows 400000   # a quick smoke run

Generates a training set and a drifted 'production' dataset (Parquet, 1M rows per file), trains and
registers a LightGBM model in a throwaway project, then, for 1 and 2 workers with a per-worker memory
limit well below the dataset's in-memory size: `score_batch` (validate, predict, write, log) and
`distributed_drift` against a 5,000-row reference (Wasserstein/Jensen-Shannon) and a 1,000-row one
(KS/chi-square). Peak memory per worker is sampled in each worker process. The reference points are the
in-process equivalents (whole dataset in one pandas frame): scoring with `ModelBundle.predict_frame`, and
the monitoring engine's exact `DriftDetector`, whose verdicts must equal the distributed ones on every
column. Writes RESULTS.md and results.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROWS_PER_FILE = 1_000_000
NUMERIC = [f"x{i}" for i in range(12)] + ["rooms"]
CATEGORICAL = ["region", "channel"]
REGIONS = np.array(["north", "south", "east", "west", "centre"], dtype=object)
CHANNELS = np.array(["web", "store", "phone"], dtype=object)
DRIFTED = {"x0": "mean +0.5 sd", "x3": "sd x1.5", "x11": "shifted", "region": "shares changed"}


def generate(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {}
    for i in range(12):
        cols[f"x{i}"] = rng.normal(i, 1.0 + i / 4, size=n)
    cols["x10"] = rng.lognormal(0, 0.7, size=n)
    cols["x11"] = rng.uniform(0, 10, size=n)
    cols["rooms"] = rng.integers(1, 9, size=n)
    region_p = [0.15, 0.2, 0.3, 0.2, 0.15] if drifted else [0.4, 0.3, 0.15, 0.1, 0.05]
    cols["region"] = REGIONS[rng.choice(5, size=n, p=region_p)]
    cols["channel"] = CHANNELS[rng.choice(3, size=n, p=[0.5, 0.3, 0.2])]
    if drifted:
        cols["x0"] = cols["x0"] + 0.5
        cols["x3"] = 3 + (cols["x3"] - 3) * 1.5
        cols["x11"] = cols["x11"] + 2.0
    frame = pd.DataFrame(cols)
    score = (
        frame["x0"] - frame["x1"] + 0.3 * frame["x10"] + (frame["region"] == "north") + rng.normal(0, 1, n)
    )
    frame["label"] = np.digitize(score, [-1.5, 0.5])
    return frame


def write_dataset(folder: Path, rows: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, rows - start)
        frame = generate(rng, n, drifted=True).drop(columns=["label"])
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False),
            folder / f"part-{i:03d}.parquet",
            row_group_size=125_000,
        )


def make_project(work: Path, train: pd.DataFrame):
    import lightgbm as lgb
    import mlflow
    import yaml

    from driftloop.config import load_config
    from driftloop.stores import open_stores
    from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec, log_bundle

    config = work / "driftloop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "project": {"name": "bench"},
                "data": {"target": "label"},
                "stores": {"root": str(work / ".driftloop")},
            }
        )
    )
    stores = open_stores(load_config(config))
    features = [FeatureSpec(n, "numeric") for n in NUMERIC]
    features += [
        FeatureSpec("region", "categorical", categories=tuple(REGIONS)),
        FeatureSpec("channel", "categorical", categories=tuple(CHANNELS)),
    ]
    spec = ModelSpec(task="multiclass", target="label", features=tuple(features), classes=(0, 1, 2))
    X = Encoder(spec).encode_frame(train)
    booster = lgb.LGBMClassifier(n_estimators=50, verbose=-1).fit(X, train["label"]).booster_
    bundle = ModelBundle(spec, booster, "lightgbm")
    mlflow.set_tracking_uri(stores.tracking.tracking_uri)
    with mlflow.start_run(experiment_id=stores.tracking.experiment_id()) as run:
        info = log_bundle(bundle, input_example=train[spec.feature_names].head(3))
    version = stores.tracking.register(info.model_uri, run.info.run_id)
    stores.metadata.update_deployment(stores.metadata.get_deployment("bench"), champion=version)
    return stores, spec


# -- per-worker peak memory, sampled inside each worker process -------------------------------------------


def _start_sampler(dask_worker) -> None:  # client.run passes the worker by this parameter name
    import psutil

    worker = dask_worker
    proc = psutil.Process()
    worker._bench_peak = proc.memory_info().rss
    worker._bench_stop = False

    def loop() -> None:
        while not worker._bench_stop:
            worker._bench_peak = max(worker._bench_peak, proc.memory_info().rss)
            time.sleep(0.1)

    threading.Thread(target=loop, daemon=True).start()


def _stop_sampler(dask_worker) -> int:
    worker = dask_worker
    worker._bench_stop = True
    return int(worker._bench_peak)


LOADS: list[float] = []
"""The machine's 1-minute load average at the end of each measured step (other jobs share the cores)."""


RESTARTS: list[int] = []
"""Workers that left during each measured step (a worker past its memory limit is restarted by Dask)."""


def sampled(client, func):
    client.run(_start_sampler)
    before = set(client.scheduler_info(n_workers=-1)["workers"])
    t0 = time.perf_counter()
    out = func()
    seconds = time.perf_counter() - t0
    RESTARTS.append(len(before - set(client.scheduler_info(n_workers=-1)["workers"])))
    peaks = client.run(_stop_sampler)
    LOADS.append(os.getloadavg()[0])
    return out, seconds, sorted(peaks.values())


# -- the in-process reference points, each in its own process so its peak memory is its own ----------------


def in_process_scoring(data: str, model_dir: str) -> dict:
    from driftloop.stores.models import load_bundle_dir

    t0 = time.perf_counter()
    frame = pd.read_parquet(data)
    bundle = load_bundle_dir(model_dir)
    pred = bundle.predict_frame(frame)
    out = frame.assign(prediction=pred.labels, **{f"proba_{i}": pred.proba[:, i] for i in range(3)})
    out.to_parquet(Path(data).parent / "inprocess-scored.parquet")
    seconds = time.perf_counter() - t0
    (Path(data).parent / "inprocess-scored.parquet").unlink()
    return {
        "seconds": seconds,
        "rows": len(frame),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def in_process_drift(data: str, reference: str, columns: list) -> dict:
    from driftloop.monitor.drift import ColumnSpec, DriftDetector

    specs = [ColumnSpec(n, k) for n, k in columns]
    t0 = time.perf_counter()
    frame = pd.read_parquet(data, columns=[n for n, _ in columns])
    result = DriftDetector(specs).fit(pd.read_parquet(reference)).evaluate(frame)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "columns": [c.to_dict(distributions=False) for c in result.columns],
        "dataset_drift": result.dataset_drift,
        "in_memory_bytes": int(frame.memory_usage(deep=True).sum()),
    }


def run_child(kind: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/driftloop-scale-bench"))
    parser.add_argument("--memory-limit", default="768MiB")
    parser.add_argument("--partition-rows", type=int, default=250_000)
    parser.add_argument("--score-workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--drift-workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument(
        "--reuse", action="store_true", help="keep the work folder's data and model; add to results.json"
    )
    parser.add_argument("--no-in-process-score", action="store_true")
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = (
            in_process_scoring(*rest)
            if kind == "score"
            else in_process_drift(rest[0], rest[1], json.loads(rest[2]))
        )
        print(json.dumps(result))
        return

    from driftloop.monitor.drift import ColumnSpec
    from driftloop.scale.cluster import dask_client
    from driftloop.scale.drift import distributed_drift
    from driftloop.scale.inputs import find_input, read_input
    from driftloop.scale.scoring import score_batch

    work = args.work
    data = work / "data"
    reuse = args.reuse and (work / "driftloop.yaml").is_file() and data.is_dir()
    if reuse:
        from driftloop.config import load_config
        from driftloop.stores import open_stores

        stores = open_stores(load_config(work / "driftloop.yaml"))
        spec = stores.tracking.load_bundle(stores.metadata.get_deployment("bench").champion).spec
        references = {n: work / f"reference-{n}.parquet" for n in (5000, 1000)}
        print(f"reusing {data} and the registered model", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t0 = time.perf_counter()
        write_dataset(data, args.rows, seed=1)
        print(f"generated {args.rows} rows in {time.perf_counter() - t0:.0f} s", flush=True)
        train = generate(np.random.default_rng(0), 200_000, drifted=False)
        stores, spec = make_project(work, train)
        references = {}
        for n in (5000, 1000):
            path = work / f"reference-{n}.parquet"
            train.sample(n, random_state=n).to_parquet(path)
            references[n] = path
    columns = [(f.name, f.kind) for f in spec.features]
    specs = [ColumnSpec(n, k) for n, k in columns]
    disk_bytes = sum(f.stat().st_size for f in data.glob("*.parquet"))

    previous = (
        json.loads((HERE / "results.json").read_text()) if reuse and (HERE / "results.json").is_file() else {}
    )
    if previous.get("rows") != args.rows:
        previous = {}
    runs = list(previous.get("runs", []))

    def record(run: dict) -> None:
        runs[:] = [r for r in runs if (r["task"], r["workers"]) != (run["task"], run["workers"])] + [run]

    for workers in sorted(set(args.score_workers) | set(args.drift_workers)):
        with dask_client(
            None, n_workers=workers, threads_per_worker=1, memory_limit=args.memory_limit
        ) as client:
            if workers in args.score_workers:
                out = work / f"scored-{workers}"
                summary, seconds, peaks = sampled(
                    client,
                    lambda out=out, client=client: score_batch(
                        stores, client, data, out, partition_rows=args.partition_rows
                    ),
                )
                print(
                    f"{workers} worker(s): scored {summary.rows} rows in {seconds:.1f} s, peaks {peaks}",
                    flush=True,
                )
                record(
                    {
                        "task": "score",
                        "workers": workers,
                        "seconds": seconds,
                        "rows": summary.rows,
                        "scored": summary.scored,
                        "rejected": summary.rejected,
                        "logged": summary.logged,
                        "partitions": summary.partitions,
                        "peak_rss": peaks,
                        "load": LOADS[-1],
                        "restarts": RESTARTS[-1],
                    }
                )
                shutil.rmtree(out)
            if workers not in args.drift_workers:
                continue
            ddf = read_input(find_input(data), args.partition_rows)
            for n, ref_path in references.items():
                reference = pd.read_parquet(ref_path)
                result, seconds, peaks = sampled(
                    client,
                    lambda reference=reference, ddf=ddf, client=client: distributed_drift(
                        client, ddf, reference, specs
                    ),
                )
                print(
                    f"{workers} worker(s): drift vs {n}-row reference in {seconds:.1f} s, peaks {peaks}",
                    flush=True,
                )
                record(
                    {
                        "task": f"drift-ref{n}",
                        "workers": workers,
                        "seconds": seconds,
                        "rows": args.rows,
                        "partitions": result.partitions,
                        "peak_rss": peaks,
                        "columns": [c.to_dict(distributions=False) for c in result.drift.columns],
                        "dataset_drift": result.drift.dataset_drift,
                        "error_bounds": result.error_bounds,
                        "uncertain": result.uncertain,
                        "load": LOADS[-1],
                        "restarts": RESTARTS[-1],
                    }
                )
    shutil.rmtree(stores.log_dir, ignore_errors=True)

    model_dir = str(stores.tracking.model_dir(stores.metadata.get_deployment("bench").champion))
    reference_runs = dict(previous.get("in_process", {}))
    if not args.no_in_process_score:
        reference_runs["score"] = run_child("score", str(data), model_dir)
        print(f"in process: scored in {reference_runs['score']['seconds']:.1f} s", flush=True)
    for n, ref_path in references.items():
        reference_runs[f"drift-ref{n}"] = run_child("drift", str(data), str(ref_path), json.dumps(columns))
        print(
            f"in process: drift vs {n}-row reference in {reference_runs[f'drift-ref{n}']['seconds']:.1f} s",
            flush=True,
        )

    results = {
        "machine": machine(),
        "command": " ".join([".venv/bin/python", "benchmarks/scale/run.py", *sys.argv[1:]]),
        "rows": args.rows,
        "files": len(list(data.glob("*.parquet"))),
        "disk_bytes": disk_bytes,
        "in_memory_bytes": reference_runs["drift-ref5000"]["in_memory_bytes"],
        "memory_limit": args.memory_limit,
        "partition_rows": args.partition_rows,
        "runs": runs,
        "in_process": reference_runs,
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (HERE / "RESULTS.md").write_text(report(results))
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    print((HERE / "RESULTS.md").read_text())


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dask
    import distributed
    import lightgbm

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "lightgbm": lightgbm.__version__,
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Scale-out benchmark: batch scoring and drift on Dask",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; Python {m['python']}, "
        f"dask {m['dask']}, distributed {m['distributed']}, LightGBM {m['lightgbm']}.",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Dataset: {r['rows']:,} rows x {len(NUMERIC) + len(CATEGORICAL)} features ({len(NUMERIC)} numeric, "
        f"{len(CATEGORICAL)} categorical) in {r['files']} Parquet files, {r['disk_bytes'] / 2**30:.2f} GiB on disk, "
        f"**{r['in_memory_bytes'] / 2**30:.2f} GiB in memory** as one pandas frame. Drifted columns: "
        + ", ".join(f"{k} ({v})" for k, v in DRIFTED.items())
        + ".",
        "",
        f"Workers: local Dask cluster, 1 thread per worker, **memory limit {r['memory_limit']} per worker**, "
        f"partitions of {r['partition_rows']:,} rows. Peak memory is the resident set size of each worker "
        "process, sampled every 0.1 s inside it. Worker restarts (Dask restarts a worker past 95% of its "
        f"limit): {sum(x.get('restarts', 0) for x in r['runs'])} in all the runs below.",
        "",
        "## Batch scoring (validate, predict, write Parquet, append to the prediction log)",
        "",
        "| run | seconds | rows/s | peak memory per worker | load average |",
        "|---|---:|---:|---|---:|",
    ]
    for run in sorted(r["runs"], key=lambda x: (x["task"], x["workers"])):
        if run["task"] == "score":
            lines.append(
                f"| Dask, {run['workers']} worker(s) | {run['seconds']:.1f} | {run['rows'] / run['seconds']:,.0f} | "
                + ", ".join(_mib(p) for p in run["peak_rss"])
                + f" | {run.get('load', float('nan')):.1f} |"
            )
    ip = r["in_process"].get("score")
    if ip:
        lines.append(
            f"| in process, whole frame (predict + write, no validation or log) | {ip['seconds']:.1f} | "
            f"{ip['rows'] / ip['seconds']:,.0f} | {_mib(ip['peak_rss'])} (one process) |"
        )
    score_runs = sorted((x for x in r["runs"] if x["task"] == "score"), key=lambda x: x["workers"])
    lines += [
        "",
        f"Every run scored {score_runs[0]['scored']:,} rows, rejected {score_runs[0]['rejected']}, and logged "
        f"{score_runs[0]['logged']:,} predictions (source=batch), in {score_runs[0]['partitions']} partitions.",
        "",
        "## Drift (two passes of mergeable summaries) vs the in-memory engine",
        "",
        "| reference | run | seconds | rows/s | peak memory per worker | load average | dataset drift | verdicts equal to in-memory |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]
    for key in ("drift-ref5000", "drift-ref1000"):
        exact = r["in_process"][key]
        want = {c["column"]: c["drift"] for c in exact["columns"]}
        for run in sorted((x for x in r["runs"] if x["task"] == key), key=lambda x: x["workers"]):
            got = {c["column"]: c["drift"] for c in run["columns"]}
            same = sum(got[k] == want[k] for k in want)
            lines.append(
                f"| {key[9:]} rows | Dask, {run['workers']} worker(s) | {run['seconds']:.1f} | "
                f"{run['rows'] / run['seconds']:,.0f} | "
                + ", ".join(_mib(p) for p in run["peak_rss"])
                + f" | {run.get('load', float('nan')):.1f} | {run['dataset_drift']} | {same}/{len(want)} columns |"
            )
        lines.append(
            f"| {key[9:]} rows | in process, exact engine | {exact['seconds']:.1f} | {r['rows'] / exact['seconds']:,.0f} "
            f"| {_mib(exact['peak_rss'])} (one process) | | {exact['dataset_drift']} | (the yardstick) |"
        )
    lines += ["", "Per column (2 workers vs the exact in-memory engine):", ""]
    for key in ("drift-ref5000", "drift-ref1000"):
        exact = {c["column"]: c for c in r["in_process"][key]["columns"]}
        run = max((x for x in r["runs"] if x["task"] == key), key=lambda x: x["workers"])
        lines += [
            f"Reference of {key[9:]} rows:",
            "",
            "| column | method | statistic (Dask) | statistic (exact) | error bound | threshold | drift (Dask) | drift (exact) |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        for c in run["columns"]:
            e = exact[c["column"]]
            bound = run["error_bounds"].get(c["column"])
            lines.append(
                f"| {c['column']} | {c['method']} | {c['statistic']:.6g} | {e['statistic']:.6g} | "
                f"{'' if bound is None else f'{bound:.1e}'} | {c['threshold']} | {c['drift']} | {e['drift']} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
