"""Prediction-log benchmark: one monitoring pass over the last hour, with 1 day and with 30 days of history.

    .venv/bin/python benchmarks/log/run.py [--days 30] [--workers 2] [--flush-seconds 60] [--rows-per-second 1]

Simulates what servers write: `--workers` processes, each flushing one prediction file every
`--flush-seconds` (one file per flush per worker, `--rows-per-second` requests a second each, 11 numeric wine
features) and one feedback file every 15 minutes labelling 20% of its predictions about 30 minutes after
them. The history is generated once in the hourly layout, then linked (hard links, no copy) into:

- `hourly-1d`, `hourly-30d`: the layout of this version, before compaction;
- the same after `compact` (closed hours merged into one file each, inputs deleted);
- `flat-1d`, `flat-30d`: the layout before hourly partitions (one folder per day, files straight in it).

A pass is what `driftloop monitor` reads (`monitor.check.run_check`): the window (`read_window`, last hour)
and the labelled predictions with their labels (`read_labeled`), with `monitoring.performance_window`
null (the window only) and with its default, 7 days. The drift statistics after the read cost the same
whatever the history (they see the window's rows only), so they are left out. "old code" is the reader
of the previous version (one glob over every file of the log, as `git show 856ace4:src/driftloop/monitor/
logwindow.py` does), timed on the flat layout. Each figure is the median of `--repeats` passes after one
warm-up (the files are in the page cache: the machine's RAM holds them); a case slower than a minute is
timed once after its warm-up. Writes results.json beside this script (RESULTS.md is written from it); the
generated logs go to benchmarks/log/.data (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.monitor.logwindow import read_labeled, read_window
from driftloop.stores.logfiles import log_files
from driftloop.stores.logmaint import compact
from driftloop.stores.predlog import feature_struct_type, feedback_schema, prediction_schema

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
FEATURES = [
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
]
CLASSES = ["5", "6", "7"]
END = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
"""The end of the generated history: the pass reads [END - 1h, END)."""


def generate_day(args: tuple[Path, int, int, float, float]) -> tuple[int, int]:
    """One day of history (day 0 is the last) in the hourly layout; returns (prediction files, rows)."""
    root, day, workers, flush_seconds, rate = args
    rng = np.random.default_rng(day)
    ftype = feature_struct_type(FEATURES, ["numeric"] * len(FEATURES))
    pschema = prediction_schema(ftype, regression=False)
    fschema = feedback_schema(regression=False)
    rows_per_file = max(1, round(rate * flush_seconds))
    day_start = END - timedelta(days=day + 1)
    flushes = int(86_400 / flush_seconds)
    files = rows = 0
    for w in range(workers):
        series = f"pred-bench{w}-{1000 + w}-1764700000000"
        labelled: list[tuple[float, str]] = []
        for k in range(flushes):
            t0 = day_start + timedelta(seconds=k * flush_seconds)
            offsets = np.sort(rng.uniform(0, flush_seconds, rows_per_file))
            ts = [int((t0.timestamp() + o) * 1_000_000) for o in offsets]
            ids = [f"d{day}-w{w}-{k}-{i}" for i in range(rows_per_file)]
            proba = rng.dirichlet([2, 3, 1], rows_per_file)
            features = pa.StructArray.from_arrays(
                [pa.array(rng.normal(5, 1, rows_per_file)) for _ in FEATURES], fields=list(ftype)
            )
            table = pa.Table.from_arrays(
                [
                    pa.array(ids),
                    pa.array(ts, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    pa.array(["wine"] * rows_per_file),
                    pa.array(["3"] * rows_per_file),
                    pa.array(["champion"] * rows_per_file),
                    pa.array(["online"] * rows_per_file),
                    features,
                    pa.array([CLASSES[i] for i in proba.argmax(axis=1)]),
                    pa.array(
                        [json.dumps(dict(zip(CLASSES, p.round(4).tolist(), strict=True))) for p in proba]
                    ),
                    pa.array(rng.gamma(2, 2, rows_per_file)),
                ],
                schema=pschema,
            )
            # Files go to the hour of their flush time (a flush spanning an hour writes two files, rare here).
            write(root / "predictions", t0, f"{series}-{k:06d}.parquet", table)
            files += 1
            rows += rows_per_file
            pick = rng.random(rows_per_file) < 0.2
            labelled += [(t + 1_800_000_000, i) for t, i, p in zip(ts, ids, pick, strict=True) if p]
        # Feedback: one file every 15 minutes per worker, labels about 30 minutes after the prediction.
        labelled.sort()
        step = 900 * 1_000_000
        by_slot: dict[int, list[tuple[float, str]]] = {}
        for t, i in labelled:
            by_slot.setdefault(int(t // step), []).append((t, i))
        for slot, items in by_slot.items():
            moment = datetime.fromtimestamp(slot * 900, UTC)
            if moment >= END:
                continue
            fb = pa.Table.from_arrays(
                [
                    pa.array([i for _, i in items]),
                    pa.array([int(t) for t, _ in items], type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    pa.array(rng.choice(CLASSES, len(items)).tolist()),
                ],
                schema=fschema,
            )
            write(root / "feedback", moment, f"fb-bench{w}-{1000 + w}-1764700000000-{slot:09d}.parquet", fb)
    return files, rows


def write(kind_root: Path, moment: datetime, name: str, table: pa.Table) -> None:
    folder = kind_root / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name, compression="zstd")


def link_tree(source: Path, target: Path, *, days: int, flat: bool) -> None:
    """Hard-link the last `days` days of `source` (hourly) into `target`, flattened to day folders if `flat`."""
    first = END - timedelta(days=days)
    for kind in ("predictions", "feedback"):
        for hour_dir in sorted((source / kind).glob("date=*/hour=*")):
            start = datetime.strptime(f"{hour_dir.parent.name[5:]} {hour_dir.name[5:]}", "%Y-%m-%d %H")
            if start.replace(tzinfo=UTC) < first:
                continue
            for file in hour_dir.glob("*.parquet"):
                rel = Path(kind) / hour_dir.parent.name / ("" if flat else hour_dir.name) / file.name
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(file, target / rel)


def new_pass(log_dir: Path, performance: timedelta | None) -> int:
    start, end = END - timedelta(hours=1), END
    window = read_window(log_dir, "wine", start=start, end=end)
    labeled, _ = read_labeled(log_dir, "wine", start=end - performance if performance else start, end=end)
    return len(window.rows) + len(labeled)


def old_pass(log_dir: Path, performance: timedelta | None) -> int:
    """The previous version's reads: one glob over every file of each log (hive_partitioning off)."""
    import duckdb

    def src(kind: str) -> str:
        glob = (log_dir / kind / "date=*" / "*.parquet").as_posix()
        return f"read_parquet('{glob}', hive_partitioning=false, union_by_name=true)"

    start, end = END - timedelta(hours=1), END
    perf_start = end - performance if performance else start
    labels = f"SELECT request_id, arg_max(label, ts) AS label FROM {src('feedback')} GROUP BY request_id"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        window = con.execute(
            "SELECT request_id, ts, model_version, arm, prediction, probabilities, unnest(features) "
            f"FROM {src('predictions')} WHERE model_name = ? AND arm <> 'shadow' AND ts >= ? AND ts < ?",
            ["wine", start, end],
        ).df()
        labeled = con.execute(
            f"""WITH p AS (SELECT request_id, model_version, arm, prediction, probabilities FROM {src("predictions")}
                           WHERE model_name = ? AND ts >= ? AND ts < ?),
                     f AS ({labels})
                SELECT p.*, f.label FROM p JOIN f USING (request_id)""",
            ["wine", perf_start, end],
        ).df()
        con.execute(
            f"SELECT count(*) FROM {src('feedback')} WHERE ts >= ? AND ts < ? "
            f"AND request_id NOT IN (SELECT request_id FROM {src('predictions')})",
            [perf_start, end],
        ).fetchall()
    return len(window) + len(labeled)


def timed(fn: Any, repeats: int) -> tuple[float, int]:
    rows = fn()  # warm-up: page cache, DuckDB extension loading
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        assert fn() == rows
        times.append(time.perf_counter() - t)
        if sum(times) > 60:  # the slow cases: enough to see the order of magnitude
            break
    return statistics.median(times), rows


def count_files(log_dir: Path) -> int:
    return sum(1 for _ in log_dir.rglob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--flush-seconds", type=float, default=300.0)
    ap.add_argument("--rows-per-second", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reuse", action="store_true", help="Keep an already generated history.")
    args = ap.parse_args()

    source = DATA / "generated"
    if not args.reuse or not source.exists():
        shutil.rmtree(DATA, ignore_errors=True)
        t = time.perf_counter()
        jobs = [(source, d, args.workers, args.flush_seconds, args.rows_per_second) for d in range(args.days)]
        with ProcessPoolExecutor(2) as pool:
            made = list(pool.map(generate_day, jobs))
        print(
            f"generated {sum(f for f, _ in made):,} prediction files, {sum(r for _, r in made):,} rows "
            f"in {time.perf_counter() - t:.0f}s",
            flush=True,
        )
    trees: dict[str, Path] = {}
    for name, days, flat in [
        ("hourly-1d", 1, False),
        ("hourly-30d", args.days, False),
        ("flat-1d", 1, True),
        ("flat-30d", args.days, True),
    ]:
        trees[name] = DATA / name
        shutil.rmtree(trees[name], ignore_errors=True)
        link_tree(source, trees[name], days=days, flat=flat)
    compaction: dict[str, dict[str, Any]] = {}
    for name in ("hourly-1d", "hourly-30d"):
        target = DATA / f"{name}-compacted"
        shutil.rmtree(target, ignore_errors=True)
        link_tree(source, target, days=1 if name.endswith("1d") else args.days, flat=False)
        t = time.perf_counter()
        done = compact(target, now=END, delete_after=timedelta(0))
        seconds = time.perf_counter() - t
        compact(target, now=END, delete_after=timedelta(0))  # the next run deletes the replaced inputs
        compaction[name] = {"seconds": round(seconds, 1), **done.to_dict()}
        trees[f"{name}-compacted"] = target
        print(f"compacted {name}: {compaction[name]}", flush=True)

    window_files = {
        name: len(log_files(path, "predictions", start=END - timedelta(hours=1), end=END))
        for name, path in trees.items()
    }
    results: list[dict[str, Any]] = []
    cases = [
        ("hourly-1d", "new"),
        ("hourly-30d", "new"),
        ("hourly-1d-compacted", "new"),
        ("hourly-30d-compacted", "new"),
        ("flat-1d", "new"),
        ("flat-30d", "new"),
        ("flat-1d", "old"),
        ("flat-30d", "old"),
    ]
    for perf_label, perf in [("window only", None), ("performance_window 7d", timedelta(days=7))]:
        for tree, code in cases:
            run = (
                (lambda t=trees[tree], p=perf: new_pass(t, p))
                if code == "new"
                else (lambda t=trees[tree], p=perf: old_pass(t, p))
            )
            seconds, rows = timed(run, args.repeats)
            row = {
                "performance": perf_label,
                "history": tree,
                "code": "this version" if code == "new" else "old code (glob everything)",
                "log_files": count_files(trees[tree]),
                "files_opened_for_window": window_files[tree] if code == "new" else count_files(trees[tree]),
                "seconds": round(seconds, 4),
                "rows_read": rows,
            }
            results.append(row)
            print(row, flush=True)
    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "command": "benchmarks/log/run.py " + " ".join(sys.argv[1:]),
        "load_average": os.getloadavg(),
        "workers": args.workers,
        "flush_seconds": args.flush_seconds,
        "rows_per_second_per_worker": args.rows_per_second,
        "days": args.days,
        "compaction": compaction,
    }
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    print(json.dumps(meta, default=str))


if __name__ == "__main__":
    main()
