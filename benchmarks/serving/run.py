"""Serving benchmark: `driftloop serve` against `mlflow models serve` on the same LightGBM wine model.

Same machine, same worker count, same load generators, 127.0.0.1 only, every run bounded in time:
    - wrk (2 threads, 16 connections, Lua script) for req/s and p50/p99 at saturation, 1-row and 100-row bodies,
    - hey at a held rate (default 1,000 req/s) for the p99 a service level objective would be about,
    - the time from process start to ready (/readyz 200 on every worker; MLflow: /ping 200).
driftloop runs with routing on (A/B, challenger weight 10%) and the prediction log on, as in production.

    .venv/bin/python benchmarks/serving/run.py [--seconds 10] [--rate 1000] [--workers 1 2]

Needs Debian's `wrk` and `hey` (apt-get install -y wrk hey). Writes benchmarks/serving/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = Path(os.environ.get("DRIFTLOOP_TEST_DATA", REPO.parent / "shared" / "data")) / "winequality-red.csv"
VENV_BIN = Path(sys.executable).parent
LUA = HERE / "post.lua"


@dataclass
class Load:
    server: str
    workers: int
    body: str
    rows: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    load_avg: float

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_models(root: Path) -> tuple[Path, Path, list[dict]]:
    """Two LightGBM wine models (champion, challenger) registered in an MLflow on SQLite; the config file."""
    import lightgbm as lgb
    import mlflow

    from driftloop.stores.metadata import MetadataStore
    from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec, log_bundle
    from driftloop.stores.tracking import TrackingStore

    frame = pd.read_csv(DATA, sep=";")
    feats = [c for c in frame.columns if c != "quality"]
    classes = sorted(int(c) for c in frame.quality.unique())
    spec = ModelSpec(
        task="multiclass",
        target="quality",
        features=tuple(FeatureSpec(f, "numeric", nullable=False) for f in feats),
        classes=tuple(classes),
    )
    X = Encoder(spec).encode_frame(frame)
    y = np.searchsorted(classes, frame.quality)
    ts = TrackingStore(
        f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri(), "wine", root / "cache" / "models"
    )
    mlflow.set_tracking_uri(ts.tracking_uri)
    for seed in (1, 2):
        est = lgb.LGBMClassifier(n_estimators=100, random_state=seed, verbose=-1).fit(X, y)
        with mlflow.start_run(experiment_id=ts.experiment_id()) as run:
            info = log_bundle(ModelBundle(spec, est.booster_, "lightgbm"), input_example=frame[feats].head(3))
        ts.register(info.model_uri, run.info.run_id)
    store = MetadataStore.connect(f"sqlite:///{root / 'driftloop.db'}")
    store.update_deployment(
        store.get_deployment("wine"),
        champion="1",
        challenger="2",
        strategy="ab",
        challenger_weight=0.1,
        reason="benchmark",
    )
    store.close()
    config = root / "driftloop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "project": {"name": "wine"},
                "data": {"target": "quality"},
                "stores": {"root": str(root), "log_dir": str(root / "logs")},
            }
        )
    )
    model_dir = ts.model_dir("1")
    ts.model_dir("2")
    records = [{k: float(v) for k, v in r.items()} for r in frame[feats].head(100).to_dict(orient="records")]
    return config, model_dir, records


def reuse_models(root: Path) -> tuple[Path, Path, list[dict]]:
    frame = pd.read_csv(DATA, sep=";")
    feats = [c for c in frame.columns if c != "quality"]
    records = [{k: float(v) for k, v in r.items()} for r in frame[feats].head(100).to_dict(orient="records")]
    return root / "driftloop.yaml", root / "cache" / "models" / "wine" / "1", records


def start_driftloop(config: Path, workers: int) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftloop.cli_serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Ready = /readyz answers 200 and driftloop_model_ready, the minimum over the live workers, is 1.
        wait(lambda: _driftloop_ready(base), proc, 120)
        ready = time.monotonic() - t0
        # Let the background compile finish (the first run on a machine compiles; later runs load the cache).
        wait(lambda: _compiled(base), proc, 900)
    except BaseException:
        stop(proc)
        raise
    return proc, base, ready


def _driftloop_ready(base: str) -> bool:
    if httpx.get(f"{base}/readyz", timeout=2).status_code != 200:
        return False
    text = httpx.get(f"{base}/metrics", timeout=2).text
    return "driftloop_model_ready 1.0" in text


def _compiled(base: str) -> bool:
    for _ in range(8):  # ask several times: any worker may answer
        body = httpx.get(f"{base}/readyz", timeout=2).json()
        if not all(body.get("deployment", {}).get("compiled", {"?": False}).values()):
            return False
    return True


def start_mlflow(model_dir: Path, root: Path, workers: int) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait(lambda: httpx.get(f"{base}/ping", timeout=2).status_code == 200, proc, 180)
    except BaseException:
        stop(proc)
        raise
    return proc, base, time.monotonic() - t0


def wait(check: object, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError("server not ready in time")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (MLflow's uvicorn runs as a child of the mlflow command)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_wrk(url: str, body: Path, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), url],
        env={**os.environ, "BODY_FILE": str(body)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    fields = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    fields["errors"] = sum(fields[k] for k in ("errors_status", "errors_connect", "errors_timeout")) + (
        int(non2xx.group(1)) if non2xx else 0
    )
    fields["rps"] = fields["requests"] / (fields["duration_us"] / 1e6)
    return fields


def run_hey(url: str, body: Path, seconds: int, rate: int) -> dict[str, float]:
    conns = 10
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(conns),
            "-q",
            str(rate / conns),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    ).stdout
    pct = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    errors = sum(int(n) for c, n in codes.items() if c != "200") + len(re.findall(r"Error distribution", out))
    return {"rps": rps, "p50": pct.get(50, float("nan")), "p99": pct.get(99, float("nan")), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--fresh", action="store_true", help="retrain the models and recompile")
    args = parser.parse_args()
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y wrk hey")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # The work folder is kept (unless --fresh): the models, and driftloop's compiled-model cache, are
    # reused by the next run, as a restarted production server would.
    root = args.workdir
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    if (root / "driftloop.yaml").exists():
        config, model_dir, records = reuse_models(root)
    else:
        config, model_dir, records = build_models(root)
    shutil.rmtree(root / "logs", ignore_errors=True)
    try:
        bodies = {
            ("driftloop", 1): orjson.dumps(records[0]),
            ("driftloop", 100): orjson.dumps(records),
            ("mlflow", 1): orjson.dumps({"dataframe_records": records[:1]}),
            ("mlflow", 100): orjson.dumps({"dataframe_records": records}),
        }
        files = {}
        for (server, rows), content in bodies.items():
            files[server, rows] = root / f"{server}-{rows}.json"
            files[server, rows].write_bytes(content)
        path = {"driftloop": "/v1/predict", "mlflow": "/invocations"}
        loads: list[Load] = []
        held: list[tuple[str, int, dict[str, float]]] = []
        ready: list[tuple[str, int, float]] = []
        for workers in args.workers:
            # A first start on a machine has no compiled trees yet (workers serve with the LightGBM booster
            # and compile in the background); every later start loads the cached binary.
            print(f"driftloop, {workers} worker(s): first start, no compiled-tree cache", flush=True)
            for cached in (root / "cache").rglob(".model.*.o"):
                cached.unlink()
            proc, _, ready_s = start_driftloop(config, workers)
            stop(proc)
            ready.append(("driftloop (first start: no compiled cache)", workers, ready_s))
            for server in ("mlflow", "driftloop"):
                print(f"{server}, {workers} worker(s): starting", flush=True)
                proc, base, ready_s = (
                    start_mlflow(model_dir, root, workers)
                    if server == "mlflow"
                    else start_driftloop(config, workers)
                )
                ready.append((server, workers, ready_s))
                try:
                    url = base + path[server]
                    for rows in (1, 100):
                        os.environ["REQ_PATH"] = path[server]
                        load = os.getloadavg()[0]
                        r = run_wrk(base, files[server, rows], args.seconds)
                        loads.append(
                            Load(
                                server,
                                workers,
                                f"{rows}-row",
                                rows,
                                r["rps"],
                                r["p50_us"] / 1000,
                                r["p99_us"] / 1000,
                                int(r["errors"]),
                                load,
                            )
                        )
                        print(
                            f"  wrk {rows}-row: {r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms",
                            flush=True,
                        )
                    h = run_hey(url, files[server, 1], args.seconds, args.rate)
                    held.append((server, workers, h))
                    print(
                        f"  hey {args.rate} req/s held: {h['rps']:.0f} req/s, p50 {h['p50']:.2f} ms, p99 {h['p99']:.2f} ms",
                        flush=True,
                    )
                finally:
                    stop(proc)
        logged = _count_logged(root / "logs")
        write_results(args, loads, held, ready, logged)
    finally:
        shutil.rmtree(root / "logs", ignore_errors=True)


def _count_logged(log_dir: Path) -> int:
    from driftloop.stores.predlog import count_rows

    return count_rows(log_dir, "predictions", where="arm <> 'shadow'")


def write_results(args: argparse.Namespace, loads: list[Load], held: list, ready: list, logged: int) -> None:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# Serving benchmark: driftloop serve vs mlflow models serve",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"MLflow {version('mlflow')}, LightGBM {version('lightgbm')}, lleaves {version('lleaves')}, uvicorn {version('uvicorn')}.",
        "Model: LightGBM multiclass (6 classes x 100 trees) on red wine, the same model folder for both servers.",
        "driftloop: A/B routing (challenger 10%), prediction log on, compiled trees (lleaves); MLflow: `--env-manager local`.",
        "Load generators on the same machine (they take CPU from the servers too): "
        f"wrk 2 threads, 16 connections, {args.seconds} s; hey 10 connections at a held {args.rate} req/s, {args.seconds} s.",
        "",
        "Reproduce: `apt-get install -y wrk hey && .venv/bin/python benchmarks/serving/run.py"
        + (f" --seconds {args.seconds}" if args.seconds != 10 else "")
        + "`",
        "",
        "## Throughput and latency at saturation (wrk)",
        "",
        "| server | workers | body | req/s | rows/s | p50 ms | p99 ms | errors | load avg before |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ld in loads:
        lines.append(
            f"| {ld.server} | {ld.workers} | {ld.body} | {ld.rps:,.0f} | {ld.rows_per_s:,.0f} | {ld.p50_ms:.2f} | {ld.p99_ms:.2f} | {ld.errors} | {ld.load_avg:.1f} |"
        )
    lines += ["", "Ratios (driftloop / MLflow, same workers and body):", ""]
    for workers in args.workers:
        for rows in (1, 100):
            d = next(
                (x for x in loads if x.server == "driftloop" and x.workers == workers and x.rows == rows),
                None,
            )
            m = next(
                (x for x in loads if x.server == "mlflow" and x.workers == workers and x.rows == rows), None
            )
            if d and m and m.rps:
                what = "req/s" if rows == 1 else "rows/s"
                lines.append(f"- {workers} worker(s), {rows}-row: **{d.rps / m.rps:.1f}x** {what}")
    lines += [
        "",
        f"## Latency at a held {args.rate} req/s, 1-row bodies (hey)",
        "",
        "| server | workers | achieved req/s | p50 ms | p99 ms | non-200 |",
        "|---|---|---|---|---|---|",
    ]
    for server, workers, h in held:
        lines.append(
            f"| {server} | {workers} | {h['rps']:,.0f} | {h['p50']:.2f} | {h['p99']:.2f} | {h['errors']} |"
        )
    lines += ["", "## Start to ready", "", "| server | workers | seconds |", "|---|---|---|"]
    for server, workers, seconds in ready:
        lines.append(f"| {server} | {workers} | {seconds:.2f} |")
    lines += [
        "",
        "Ready = the first /readyz 200 with every live worker's model loaded (driftloop), /ping 200 (MLflow).",
        "On its first start on a machine driftloop has no compiled trees: workers serve with the LightGBM booster",
        "(importing LightGBM is most of that start) and swap the compiled trees in when the background compile",
        "(once per version and machine, then cached) is done. Every later start, like a restart or a scale-out,",
        "loads the cached binary and does not import LightGBM. The load runs above start after the swap.",
        "",
        f"Prediction-log rows written by driftloop during the runs (champion + challenger arms): {logged:,}.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
