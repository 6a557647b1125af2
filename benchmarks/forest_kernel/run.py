"""Can a hand-written forest walk beat scikit-learn enough for issue #18's 3x? The default model's forests,
one thread, rows per CPU second.

`benchmarks/batch` shows `driftloop score` on two workers bounded near 2x `mlflow.pyfunc` on the default model
(a forest ensemble), because both run scikit-learn's forest walk and this machine has two cores. 3x on two
cores needs a forest walk over 1.5x scikit-learn's on one core even if the pipeline cost nothing; with its
~8 us a row (validation, Parquet, the log), about 3.4x. This script measures the best walk we found against
scikit-learn on the same trees and rows:

    - scikit-learn: each forest member's `predict_proba`, weighted as the ensemble weights it (what pyfunc,
      the server and `score` all run on a batch);
    - `walk_rows` (walk.c): scikit-learn's loop (one row through one tree, then the next row), without
      branches, so each step waits for the one before;
    - `walk_lanes` (walk.c): eight such walks of one tree in flight, a lane taking the next row when its walk
      ends, the next tree prefetched while one is walked.

Both walk compact 8-byte preorder nodes with float32 thresholds and pre-weighted leaf values, every tree over
a block of rows and then the next block. (The two keep their own copies of the block loop: folding them into
one driver cost the lanes walk about 1.4x -> 1.26x when measured.)
Both are checked against scikit-learn (largest difference in any probability). The model is the default
champion `benchmarks/batch/run.py` trained (run that first); the rows are its first input file.

    .venv/bin/python benchmarks/forest_kernel/run.py [--rows 250000]

Writes benchmarks/forest_kernel/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NODE = np.dtype([("thr", "<f4"), ("feat", "<u2"), ("right", "<u2")])
BLOCK = 4096  # rows per tree pass: the block's features and sums stay in L2 (1 MB here)


def float32_floor(t: float) -> np.float32:
    """The largest float32 <= t: for a float32 input x, x <= floor(t) exactly when x <= t, as in
    scikit-learn, which compares float32 inputs with float64 thresholds."""
    f = np.float32(t)
    return np.nextafter(f, np.float32(-np.inf)) if float(f) > t else f


def pack_tree(tree, scale: float, nodes: list, leaves: list) -> int:  # noqa: ANN001
    """Append one scikit-learn tree in preorder; returns its leaf count."""
    left, right, feature, threshold = tree.children_left, tree.children_right, tree.feature, tree.threshold
    missing_left = tree.missing_go_to_left
    value = tree.value[:, 0, :]
    if value.shape[1] > 1:  # a classifier: class fractions, as predict_proba averages them
        value = value / value.sum(axis=1, keepdims=True)
    order, where, stack = [], {}, [0]
    while stack:
        i = stack.pop()
        where[i] = len(order)
        order.append(i)
        if left[i] != -1:
            stack += [right[i], left[i]]
    packed = np.zeros(len(order), NODE)
    n_leaves = 0
    for pos, i in enumerate(order):
        if left[i] == -1:
            packed[pos] = (np.inf, 0xC000, n_leaves)
            leaves.append(value[i] * scale)
            n_leaves += 1
        else:
            offset = where[right[i]] - pos
            if offset >= 1 << 16 or feature[i] >= 1 << 14:
                raise ValueError("tree too large for the 8-byte node")
            packed[pos] = (
                float32_floor(threshold[i]),
                feature[i] | (0x4000 if missing_left[i] else 0),
                offset,
            )
    nodes.append(packed)
    return n_leaves


def pack(forests: list[tuple[object, float]]) -> tuple[np.ndarray, ...]:
    nodes: list[np.ndarray] = []
    leaves: list[np.ndarray] = []
    roots, leafbase = [0], [0]
    for forest, weight in forests:
        trees = forest.estimators_  # type: ignore[attr-defined]
        for est in trees:
            leafbase.append(leafbase[-1] + pack_tree(est.tree_, weight / len(trees), nodes, leaves))
            roots.append(roots[-1] + len(nodes[-1]))
    return (
        np.concatenate(nodes),
        np.asarray(roots, np.int64),
        np.asarray(leafbase, np.int64),
        np.ascontiguousarray(np.asarray(leaves, np.float64)),
    )


def build(flags: list[str], folder: Path) -> ctypes.CDLL:
    lib = folder / f"walk{''.join(flags).replace('=', '').replace('-', '_')}.so"
    subprocess.run(["gcc", *flags, "-shared", "-fPIC", str(HERE / "walk.c"), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def cpu_seconds(fn):  # noqa: ANN001, ANN201
    """(CPU seconds fn took, what it returned)."""
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/driftloop-batch-bench"))
    args = parser.parse_args()

    from driftloop.compiled.forest import is_forest
    from driftloop.config import load_config
    from driftloop.stores import open_stores

    stores = open_stores(load_config(args.work / "default" / "driftloop.yaml"))
    version = stores.metadata.get_deployment(stores.model_name).champion
    bundle = stores.tracking.load_bundle(version)
    stores.close()
    members = (
        [
            (m.estimator, float(w))
            for m, w in zip(bundle.estimator.members, bundle.estimator.weights, strict=True)
        ]
        if bundle.flavor == "ensemble"
        else [(bundle.estimator, 1.0)]
    )
    forests = [(e, w) for e, w in members if is_forest(e)]
    if not forests:
        raise SystemExit(f"the default champion v{version} has no forest: nothing to measure")
    for forest, _ in forests:
        forest.n_jobs = 1  # one thread: rows per CPU second of one core
    frame = pd.read_parquet(sorted((args.work / "input").glob("*.parquet"))[0]).head(args.rows)
    X = bundle.encoder.encode_frame(frame)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    n_trees = sum(len(f.estimators_) for f, _ in forests)

    uptime_before = _uptime()
    seconds, reference = cpu_seconds(lambda: sum(w * f.predict_proba(X) for f, w in forests))
    rows = [("scikit-learn predict_proba", "", seconds, 0.0)]
    nodes, roots, leafbase, leaves = pack(forests)
    ptr = ctypes.c_void_p
    with tempfile.TemporaryDirectory() as tmp:
        for flags in (["-O3", "-march=native"], ["-O2"]):
            lib = build(flags, Path(tmp))
            for name in ("walk_rows", "walk_lanes"):
                out = np.zeros((len(X32), leaves.shape[1]))
                fn = getattr(lib, name)
                fn.restype = None
                call = functools.partial(
                    fn,
                    ptr(X32.ctypes.data), ctypes.c_int64(len(X32)), ctypes.c_int(X32.shape[1]),
                    ptr(nodes.ctypes.data), ptr(roots.ctypes.data), ptr(leafbase.ctypes.data),
                    ctypes.c_int(n_trees), ptr(leaves.ctypes.data), ctypes.c_int(leaves.shape[1]),
                    ptr(out.ctypes.data), ctypes.c_int(BLOCK),
                )  # fmt: skip
                seconds, _ = cpu_seconds(call)
                rows.append((name, " ".join(flags), seconds, float(np.abs(out - reference).max())))
    uptimes = (uptime_before, _uptime())
    write(args, version, forests, n_trees, len(nodes), len(X32), rows, uptimes)


def write(args, version, forests, n_trees, n_nodes, n_rows, rows, uptimes) -> None:  # noqa: ANN001
    base = rows[0][2]
    lines = [
        "# A hand-written forest walk against scikit-learn on the default model's forests (issue #18)",
        "",
        f"Machine: {platform.machine()}, {_cpu()}, Python {platform.python_version()}, {platform.system()}; "
        f"gcc {_gcc()}.",
        f"Command: `.venv/bin/python benchmarks/forest_kernel/run.py --rows {args.rows}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). One thread, CPU seconds.",
        f"`uptime` before: `{uptimes[0]}`; after: `{uptimes[1]}`.",
        "",
        f"Model: the default champion v{version} of `benchmarks/batch/run.py`: its forests "
        + ", ".join(f"{type(f).__name__} ({len(f.estimators_)} trees, weight {w:.3f})" for f, w in forests)
        + f"; {n_trees} trees, {n_nodes:,} nodes. Rows: {n_rows:,} (the batch benchmark's first input file).",
        "",
        "| walk | gcc flags | CPU s | us a row | rows per CPU s | vs scikit-learn | largest difference |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, flags, seconds, diff in rows:
        lines.append(
            f"| {name} | {flags or '-'} | {seconds:.2f} | {seconds / n_rows * 1e6:.1f} | {n_rows / seconds:,.0f} "
            f"| {base / seconds:.2f}x | {diff:.1e} |"
        )
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    return platform.processor()


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _gcc() -> str:
    return subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
