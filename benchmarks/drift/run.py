"""Drift benchmark: Evidently 0.7's default data-drift preset versus driftloop's drift engine, same inputs.

    .venv/bin/python benchmarks/drift/run.py [--rows 1000000] [--cases wine,halves,synthetic]

Cases: (a) red versus white wine, (b) the two halves of white wine (no drift expected), (c) a synthetic
reference and current of `--rows` rows each, 20 numeric and 5 categorical columns, drift injected into a
known subset. Each tool runs each case in its own fresh process (reading the same Parquet files), which
reports its wall times and its own peak RSS; Evidently runs in a virtual environment of its own
(`.venv-evidently`, created here with uv: Evidently 0.7 does not import with pandas 3). Writes
RESULTS.md and results.json beside this script.
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

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_SPEC = ["evidently==0.7.23", "pandas<3"]
DATA = HERE / ".data"
WINE = Path(os.environ.get("DRIFTLOOP_WINE_DIR", ROOT.parent / "shared" / "data"))

#: Columns of the synthetic case that get drift injected, so the expected verdicts are known.
SYNTHETIC_DRIFTED = ["num_00", "num_01", "num_02", "num_12", "num_17", "cat_0", "cat_3"]


def ensure_evidently() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["uv", "venv", "-q", "--python", "3.11", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(python), *EVIDENTLY_SPEC], check=True)
    return python


def synthetic(rows: int, seed: int, drifted: bool) -> pd.DataFrame:
    """20 numeric columns of varied shapes (some integer-valued, one with 4 values) and 5 categorical ones."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    shift = {"num_00": 0.5, "num_02": 0.25, "num_12": 0.3} if drifted else {}
    for i in range(16):
        name = f"num_{i:02d}"
        kind = i % 4
        if kind == 0:
            x = rng.normal(10.0 * i, 1.0 + i, rows)
            scale = 1.0 + i
        elif kind == 1:
            s = 1.5 if (drifted and name == "num_01") else 1.0
            x = rng.normal(0.0, 2.0 * s, rows)
            scale = 2.0
        elif kind == 2:
            x = rng.lognormal(0.0, 0.6, rows)
            scale = 0.7
        else:
            x = rng.exponential(3.0, rows)
            scale = 3.0
        cols[name] = x + shift.get(name, 0.0) * scale
    # Integer-valued counts (integer dtype, many distinct values): NumPy's integer histogram rules apply.
    cols["num_16"] = rng.poisson(30, rows).astype(np.int64)
    cols["num_17"] = rng.poisson(36 if drifted else 30, rows).astype(np.int64)
    # A numeric column with 4 distinct values: Jensen-Shannon over value shares.
    cols["num_18"] = rng.choice([0.0, 0.5, 1.0, 1.5], rows, p=[0.4, 0.3, 0.2, 0.1])
    cols["num_19"] = rng.uniform(-1.0, 1.0, rows)
    letters = np.array(list("ABCDE"))
    p0 = [0.35, 0.25, 0.2, 0.15, 0.05] if drifted else [0.3, 0.25, 0.2, 0.15, 0.1]
    cols["cat_0"] = letters[rng.choice(5, rows, p=p0)]
    cols["cat_1"] = np.where(rng.random(rows) < 0.3, "yes", "no")
    cols["cat_2"] = np.array([f"c{i:02d}" for i in range(30)])[rng.integers(0, 30, rows)]
    # cat_3: a category the reference never saw appears in the current data.
    cat3 = np.array(["red", "green", "blue", "new"])
    cols["cat_3"] = cat3[rng.choice(4, rows, p=[0.4, 0.35, 0.15, 0.1] if drifted else [0.45, 0.35, 0.2, 0.0])]
    cols["cat_4"] = np.array(["x", "y", "z"])[rng.choice(3, rows, p=[0.5, 0.3, 0.2])]
    return pd.DataFrame(cols)


def prepare(rows: int, cases: list[str]) -> dict[str, tuple[Path, Path]]:
    DATA.mkdir(exist_ok=True)
    out: dict[str, tuple[Path, Path]] = {}
    if "wine" in cases or "halves" in cases:
        red = pd.read_csv(WINE / "winequality-red.csv", sep=";")
        white = pd.read_csv(WINE / "winequality-white.csv", sep=";")
        red.to_parquet(DATA / "red.parquet")
        white.to_parquet(DATA / "white.parquet")
        half = len(white) // 2
        white.iloc[:half].to_parquet(DATA / "white-1.parquet")
        white.iloc[half:].reset_index(drop=True).to_parquet(DATA / "white-2.parquet")
        out["wine"] = (DATA / "red.parquet", DATA / "white.parquet")
        out["halves"] = (DATA / "white-1.parquet", DATA / "white-2.parquet")
    if "synthetic" in cases:
        ref, cur = DATA / f"synthetic-ref-{rows}.parquet", DATA / f"synthetic-cur-{rows}.parquet"
        if not (ref.exists() and cur.exists()):
            synthetic(rows, 1, drifted=False).to_parquet(ref)
            synthetic(rows, 2, drifted=True).to_parquet(cur)
        out["synthetic"] = (ref, cur)
    return {k: v for k, v in out.items() if k in cases}


def run_case(python: Path, script: str, ref: Path, cur: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [str(python), str(HERE / script), str(ref), str(cur)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed on {ref.name}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024**2:.1f} GiB"
    except OSError:
        memory = "?"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": memory, "os": platform.platform()}


def write_results(rows: int, results: dict, info: dict) -> None:
    (HERE / "results.json").write_text(
        json.dumps({"machine": info, "rows": rows, "cases": results}, indent=2)
    )
    lines = [
        "# Drift benchmark: driftloop vs Evidently 0.7 (default data-drift preset)",
        "",
        f"Command: `.venv/bin/python benchmarks/drift/run.py --rows {rows}` (from the repository root)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM; {info['os']}; "
        f"driftloop on {info['driftloop_stack']}; Evidently {info['evidently_stack']}. Load: {info['load']}.",
        "",
        "Each tool runs each case in a fresh process reading the same Parquet files (driftloop: median of",
        "`--repeat` runs; Evidently: one run, which takes minutes at 1M rows). *Drift* is the time from",
        "loaded DataFrames to per-column verdicts (for Evidently: `Report([DataDriftPreset()]).run`; for driftloop:",
        "column kinds, `DriftDetector.fit(reference)` and `.evaluate(current)`); *total* adds interpreter start-up,",
        "imports and reading the files; *drift CPU* is the process's CPU time (all threads) over the drift phase,",
        "which depends less on other load on the machine. Peak memory is the process's own maximum RSS.",
        "",
        "| case | rows (ref / cur) | columns | Evidently drift s | driftloop drift s | speed-up | Evidently total s"
        " | driftloop total s | Evidently drift CPU s | driftloop drift CPU s | Evidently peak MB | driftloop peak MB"
        " | verdicts agree |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ev, dl = r["evidently"], r["driftloop"]
        lines.append(
            f"| {name} | {r['rows']} | {len(ev['verdicts'])} | {ev['seconds_drift']:.2f} | {dl['seconds_drift']:.3f} "
            f"| {ev['seconds_drift'] / dl['seconds_drift']:.0f}x | {ev['seconds_total']:.2f} | {dl['seconds_total']:.2f} "
            f"| {ev['cpu_seconds_drift']:.1f} | {dl['cpu_seconds_drift']:.2f} | {ev['peak_rss_mb']:.0f} | {dl['peak_rss_mb']:.0f} "
            f"| {r['agree']}/{len(ev['verdicts'])} columns, dataset {'yes' if r['dataset_agree'] else 'NO'} |"
        )
    lines += ["", "## Per-column verdicts", ""]
    for name, r in results.items():
        ev, dl = r["evidently"], r["driftloop"]
        lines += [
            f"### {name}",
            "",
            "| column | Evidently method | Evidently score | Evidently drift | driftloop method | driftloop score "
            "| driftloop drift |",
            "|---|---|---|---|---|---|---|",
        ]
        for col in ev["verdicts"]:
            lines.append(
                f"| {col} | {ev['methods'][col]} | {ev['scores'][col]:.6g} | {ev['verdicts'][col]} "
                f"| {dl['methods'].get(col)} | {_fmt(dl['scores'].get(col))} | {dl['verdicts'].get(col)} |"
            )
        lines += ["", f"Dataset drift: Evidently {ev['dataset_drift']}, driftloop {dl['dataset_drift']}.", ""]
    if "synthetic" in results:
        lines += [
            f"Synthetic drift was injected into: {', '.join(SYNTHETIC_DRIFTED)}. The change to cat_0 (two shares"
            " moved by 5 points) is deliberately small: its Jensen-Shannon distance stays under 0.1.",
            "",
        ]
    (HERE / "RESULTS.md").write_text("\n".join(lines))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cases", default="wine,halves,synthetic")
    parser.add_argument(
        "--repeat", type=int, default=3, help="driftloop runs per case (median reported); Evidently runs once"
    )
    args = parser.parse_args()
    cases = args.cases.split(",")
    ev_python = ensure_evidently()
    paths = prepare(args.rows, cases)
    load_before = os.getloadavg()
    results = {}
    for name, (ref, cur) in paths.items():
        t = time.perf_counter()
        runs = sorted(
            (run_case(Path(sys.executable), "_driftloop_case.py", ref, cur) for _ in range(args.repeat)),
            key=lambda r: r["seconds_drift"],
        )
        dl = runs[len(runs) // 2]
        dl["seconds_drift_all"] = [r["seconds_drift"] for r in runs]
        ev = run_case(ev_python, "_evidently_case.py", ref, cur)
        agree = sum(dl["verdicts"].get(c) == v for c, v in ev["verdicts"].items())
        rows = f"{pq.ParquetFile(ref).metadata.num_rows:,} / {pq.ParquetFile(cur).metadata.num_rows:,}"
        results[name] = {
            "rows": rows,
            "driftloop": dl,
            "evidently": ev,
            "agree": agree,
            "dataset_agree": dl["dataset_drift"] == ev["dataset_drift"],
            "missing_in_driftloop": sorted(set(ev["verdicts"]) - set(dl["verdicts"])),
        }
        print(
            f"{name}: evidently {ev['seconds_drift']:.2f}s, driftloop {dl['seconds_drift']:.3f}s, "
            f"agree {agree}/{len(ev['verdicts'])} ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
    info = machine()
    # Other work on the machine slows both tools: the load average says how busy it was.
    info["load"] = (
        f"{load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1-minute load average)"
    )
    info["driftloop_stack"] = _versions(Path(sys.executable))
    info["evidently_stack"] = _versions(ev_python, evidently=True)
    write_results(args.rows, results, info)


def _versions(python: Path, evidently: bool = False) -> str:
    mods = ["evidently", "pandas", "numpy", "scipy"] if evidently else ["pandas", "numpy", "scipy"]
    code = f"import importlib;print(', '.join(m + ' ' + importlib.import_module(m).__version__ for m in {mods!r}))"
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"Python {platform.python_version()}, {out}"


if __name__ == "__main__":
    main()
