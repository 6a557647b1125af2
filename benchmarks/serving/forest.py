"""Forest serving benchmark: a 300-tree scikit-learn random forest served by `driftloop serve` as scikit-learn
(`serving.compile_models: false`) and through treelite's GTIL (the default), one worker, real HTTP.

One client on one connection sends requests one after another (no queueing in the figures): 1-row bodies and
100-row bodies, each a different slice of red wine; p50 and p99 of the round trip. Also the time from a
worker's first ready to the compiled forest being swapped in, with an empty cache (conversion in a child
process) and with the cache the first start left.

    .venv/bin/python benchmarks/serving/forest.py [--requests 200]

Writes its section of benchmarks/serving/RESULTS.md (between the `forest` markers; run.py keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DATA, HERE, _compiled, start_driftloop, stop  # noqa: E402

BEGIN, END = "<!-- forest:begin -->", "<!-- forest:end -->"
TREES = 300


def build(root: Path, compile_models: bool) -> tuple[Path, list[dict]]:
    """A 300-tree random forest on red wine registered as version 1 and made champion; the config file."""
    import mlflow
    from sklearn.ensemble import RandomForestClassifier

    from driftloop.stores.metadata import MetadataStore
    from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec, log_bundle
    from driftloop.stores.tracking import TrackingStore

    frame = pd.read_csv(DATA, sep=";")
    feats = [c for c in frame.columns if c != "quality"]
    classes = sorted(int(c) for c in frame.quality.unique())
    spec = ModelSpec(
        task="multiclass",
        target="quality",
        features=tuple(FeatureSpec(f, "numeric") for f in feats),
        classes=tuple(classes),
    )
    X = Encoder(spec).encode_frame(frame)
    y = np.searchsorted(classes, frame.quality)
    ts = TrackingStore(
        f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri(), "wine", root / "cache" / "models"
    )
    mlflow.set_tracking_uri(ts.tracking_uri)
    rf = RandomForestClassifier(n_estimators=TREES, n_jobs=1, random_state=0).fit(X, y)
    IN_PROCESS.extend(in_process(rf, X))
    with mlflow.start_run(experiment_id=ts.experiment_id()) as run:
        info = log_bundle(ModelBundle(spec, rf, "sklearn"))
    ts.register(info.model_uri, run.info.run_id)
    store = MetadataStore.connect(f"sqlite:///{root / 'driftloop.db'}")
    store.update_deployment(store.get_deployment("wine"), champion="1", reason="benchmark")
    store.close()
    ts.model_dir("1")
    records = [{k: float(v) for k, v in r.items()} for r in frame[feats].to_dict(orient="records")]
    return write_config(root, compile_models), records


IN_PROCESS: list[tuple[str, int, float, float]] = []


def in_process(rf: object, X: np.ndarray) -> list[tuple[str, int, float, float]]:
    """The model call alone, no HTTP: scikit-learn's predict_proba vs GTIL on the same rows (p50, p99 ms)."""
    import treelite.sklearn
    from treelite import gtil

    model = treelite.sklearn.import_model(rf)
    calls = {
        "scikit-learn predict_proba": rf.predict_proba,  # type: ignore[attr-defined]
        "treelite GTIL": lambda A: gtil.predict(model, A.astype(np.float32), nthread=1),
    }
    out = []
    for name, call in calls.items():
        for rows, n in ((1, 60), (100, 20)):
            times = []
            for i in range(n):
                A = np.ascontiguousarray(X[(i * rows) % (len(X) - rows) :][:rows])
                t0 = time.perf_counter()
                call(A)
                times.append((time.perf_counter() - t0) * 1e3)
            out.append((name, rows, float(np.percentile(times, 50)), float(np.percentile(times, 99))))
    return out


def write_config(root: Path, compile_models: bool) -> Path:
    config = root / f"driftloop-{'compiled' if compile_models else 'native'}.yaml"
    raw = {
        "project": {"name": "wine"},
        "data": {"target": "quality"},
        "stores": {"root": str(root), "log_dir": str(root / "logs")},
        "serving": {"compile_models": compile_models},
    }
    config.write_text(yaml.safe_dump(raw))
    return config


def latencies(base: str, records: list[dict], rows: int, n: int) -> tuple[float, float]:
    """p50, p99 in ms of n sequential requests of `rows` rows each (a different slice every time)."""
    times = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for i in range(n + 5):
            start = (i * rows) % (len(records) - rows)
            body = records[start] if rows == 1 else records[start : start + rows]
            t0 = time.perf_counter()
            r = client.post("/v1/predict", json=body)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            if i >= 5:  # the first few warm the connection
                times.append(elapsed * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def wait_compiled(base: str, timeout: float) -> float:
    t0 = time.monotonic()
    while not _compiled(base):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the forest was not compiled in time")
        time.sleep(0.2)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="1-row requests per server (100-row: a third)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    uptime = [os.popen("uptime").read().strip()]
    root = Path(tempfile.mkdtemp(prefix="forest-bench-"))
    try:
        native_cfg, records = build(root, compile_models=False)
        compiled_cfg = write_config(root, compile_models=True)
        rows = []
        proc, base, _ = start_driftloop(native_cfg, 1, compiled=False)
        try:
            for n_rows, n in ((1, args.requests), (100, max(10, args.requests // 3))):
                rows.append(("scikit-learn", n_rows, *latencies(base, records, n_rows, n)))
        finally:
            stop(proc)
        proc, base, _ = start_driftloop(compiled_cfg, 1, compiled=False)
        try:
            first = wait_compiled(base, 900)
            for n_rows, n in ((1, args.requests), (100, max(10, args.requests // 3))):
                rows.append(("treelite GTIL", n_rows, *latencies(base, records, n_rows, n)))
        finally:
            stop(proc)
        proc, base, _ = start_driftloop(compiled_cfg, 1, compiled=False)
        try:
            cached = wait_compiled(base, 900)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    uptime.append(os.popen("uptime").read().strip())
    write(args, rows, first, cached, uptime)


def write(args: argparse.Namespace, rows: list, first: float, cached: float, uptime: list[str]) -> None:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        platform.processor(),
    )
    lines = [
        BEGIN,
        "## A scikit-learn forest: served as scikit-learn vs through treelite (forest.py)",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, scikit-learn {version('scikit-learn')}, treelite "
        f"{version('treelite')}; shared with other jobs (`uptime` before: `{uptime[0]}`; after: `{uptime[-1]}`), so",
        "absolute figures are inflated and noisy; both servers ran in the same run, one after the other.",
        f"Model: RandomForestClassifier, {TREES} trees, red wine (6 classes), registered and served as champion by",
        "`driftloop serve` with 1 worker, prediction log on; one client, one connection, sequential requests.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/serving/forest.py --requests {args.requests}`",
        "",
        "The model call alone, in one process (no HTTP), different rows every call:",
        "",
        "| predictor | rows | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *[f"| {kind} | {n} | {p50:.2f} | {p99:.2f} |" for kind, n, p50, p99 in IN_PROCESS],
        "",
        "tl2cgen 1.0.0 (treelite to C, built by gcc) was measured by hand on the same forest: its gcc build ran",
        "over 25 minutes with the default -O3 and over 20 minutes with -O0 at nice 19 without finishing (both stopped), so",
        "GTIL, which needs no compiler, is what driftloop uses.",
        "",
        "Through `driftloop serve`:",
        "",
        "| served as | body | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {kind} | {n}-row | {p50:.2f} | {p99:.2f} |" for kind, n, p50, p99 in rows]
    lines += [
        "",
        f"Compiled forest swapped in {first:.1f} s after the worker was ready on a first start (conversion and",
        f"check in a child process), {cached:.1f} s on a restart that finds the cache. Until then the worker",
        "answers with scikit-learn. Batches over 128 rows are answered by scikit-learn even when compiled",
        "(GTIL walks a deep forest row by row and is slower there).",
        END,
    ]
    old = args.out.read_text() if args.out.exists() else ""
    if BEGIN in old and END in old:
        text = old[: old.index(BEGIN)] + "\n".join(lines) + old[old.index(END) + len(END) :]
    else:
        text = old.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    args.out.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
