"""Serving benchmark: `driftloop serve` against `mlflow models serve` on the same wine models.

Two models, each served by both servers:
    - hand-picked: a LightGBM model (6 classes x 100 trees) registered directly,
    - trained: what a user gets, `driftloop init` on the red wine file, then `driftloop data add` and the
      default `driftloop train` with the config init wrote (its budget, families, ensemble selection and
      `training.max_predict_ms`); the family it chose and its predict time are in the results.

Same machine, same worker count, same load generators, 127.0.0.1 only, every run bounded in time:
    - wrk (2 threads, 16 connections, Lua script) for req/s and p50/p99 at saturation, 1-row and 100-row bodies,
    - hey at a held rate (default 1,000 req/s) for the p99 a service level objective would be about,
    - the time from process start to ready (/readyz 200 on every worker; MLflow: /ping 200).
driftloop runs the hand-picked model with routing on (A/B, challenger weight 10%) and the prediction log on,
as in production; the trained model is the champion of its own project (single strategy, log on).

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
    model: str
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


def train_default(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """`driftloop init`, `data add` and the default `train` on red wine in root/trained, as a user runs them."""
    from mlflow import MlflowClient

    from driftloop.config import load_config
    from driftloop.stores import open_stores

    folder = root / "trained"
    config = folder / "driftloop.yaml"
    if not config.exists():
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        for args in (["init", str(DATA), "--target", "quality"], ["data", "add"], ["train", "--no-progress"]):
            print(f"driftloop {' '.join(args)}", flush=True)
            subprocess.run([str(VENV_BIN / "driftloop"), *args], cwd=folder, env=env, check=True)
    stores = open_stores(load_config(config))
    version = stores.metadata.get_deployment(stores.model_name).champion
    assert version is not None, "the default train registered no champion"
    run = MlflowClient(stores.tracking.tracking_uri).get_run(stores.tracking.get_version(version).run_id)
    about = {
        "family": run.data.params.get("best_family", "?"),
        "predict_ms_1row": f"{run.data.metrics.get('predict_ms_1row', float('nan')):.3f}",
        "predict_ms_100rows": f"{run.data.metrics.get('predict_ms_100rows', float('nan')):.3f}",
        "n_trials": f"{run.data.metrics.get('n_trials', float('nan')):.0f}",
        "params": run.data.params.get("best.members", "")[:400],
        "max_predict_ms": str(stores.cfg.training.max_predict_ms),
        "budget": f"{stores.cfg.training.budget.trials} trials / {stores.cfg.training.budget.seconds} s",
    }
    return config, stores.tracking.model_dir(version), about


def reuse_models(root: Path) -> tuple[Path, Path, list[dict]]:
    frame = pd.read_csv(DATA, sep=";")
    feats = [c for c in frame.columns if c != "quality"]
    records = [{k: float(v) for k, v in r.items()} for r in frame[feats].head(100).to_dict(orient="records")]
    return root / "driftloop.yaml", root / "cache" / "models" / "wine" / "1", records


def compilable(model_dir: Path) -> bool:
    """driftloop compiles LightGBM (lleaves) and scikit-learn forests (treelite), an ensemble member by member;
    other models (a linear one) are served as loaded."""
    from driftloop.compiled import forest
    from driftloop.stores.models import load_bundle_dir

    bundle = load_bundle_dir(model_dir)
    if bundle.flavor == "ensemble":
        members = bundle.estimator.members
        return any(m.flavor == "lightgbm" or forest.is_forest(m.estimator) for m in members)
    return bundle.flavor == "lightgbm" or forest.is_forest(bundle.estimator)


def start_driftloop(
    config: Path, workers: int, *, compiled: bool = True
) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftloop.cli.serve",
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
        if compiled:
            wait(lambda: _compiled(base), proc, 900)
    except BaseException:
        stop(proc)
        raise
    return proc, base, ready


def _driftloop_ready(base: str) -> bool:
    if httpx.get(f"{base}/readyz", timeout=2).status_code != 200:
        return False
    text = httpx.get(f"{base}/metrics", timeout=2).text
    return re.search(r"^driftloop_model_ready(\{[^}]*\})? 1\.0$", text, re.M) is not None  # any model_name


def _compiled(base: str) -> bool:
    for _ in range(8):  # ask several times: any worker may answer
        body = httpx.get(f"{base}/readyz", timeout=2).json()
        if not all(body.get("deployment", {}).get("compiled", {"?": False}).values()):
            return False
    return True


def start_mlflow(model_dir: Path, workers: int) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
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
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    if (root / "driftloop.yaml").exists():
        config, model_dir, records = reuse_models(root)
    else:
        config, model_dir, records = build_models(root)
    trained_config, trained_dir, trained = train_default(root)
    cases = [("hand-picked", config, model_dir), ("trained", trained_config, trained_dir)]
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
        held: list[tuple[str, str, int, dict[str, float]]] = []
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
            for model, cfg_path, folder in cases:
                for server in ("mlflow", "driftloop"):
                    print(f"{model} model, {server}, {workers} worker(s): starting", flush=True)
                    proc, base, ready_s = (
                        start_mlflow(folder, workers)
                        if server == "mlflow"
                        else start_driftloop(cfg_path, workers, compiled=compilable(folder))
                    )
                    ready.append((f"{server} ({model} model)", workers, ready_s))
                    try:
                        url = base + path[server]
                        for rows in (1, 100):
                            os.environ["REQ_PATH"] = path[server]
                            load = os.getloadavg()[0]
                            r = run_wrk(base, files[server, rows], args.seconds)
                            loads.append(
                                Load(
                                    model,
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
                                f"  wrk {rows}-row: {r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.2f} ms, "
                                f"p99 {r['p99_us'] / 1000:.2f} ms",
                                flush=True,
                            )
                        h = run_hey(url, files[server, 1], args.seconds, args.rate)
                        held.append((model, server, workers, h))
                        print(
                            f"  hey {args.rate} req/s held: {h['rps']:.0f} req/s, p50 {h['p50']:.2f} ms, "
                            f"p99 {h['p99']:.2f} ms",
                            flush=True,
                        )
                    finally:
                        stop(proc)
        logged = _count_logged(root / "logs")
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        write_results(args, loads, held, ready, logged, trained, uptime)
    finally:
        shutil.rmtree(root / "logs", ignore_errors=True)


def _count_logged(log_dir: Path) -> int:
    from driftloop.stores.predlog import count_rows

    return count_rows(log_dir, "predictions", where="arm <> 'shadow'")


def write_results(
    args: argparse.Namespace,
    loads: list[Load],
    held: list,
    ready: list,
    logged: int,
    trained: dict[str, str],
    uptime: list[str],
) -> None:
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
        "Models, each served by both servers from the same model folder:",
        "- hand-picked: LightGBM multiclass (6 classes x 100 trees) on red wine, registered directly;",
        f"- trained: `driftloop init` + `data add` + `train` with the config init writes (budget {trained['budget']},",
        f"  training.max_predict_ms {trained['max_predict_ms']}): it chose **{trained['family']}** after "
        f"{trained['n_trials']} trials, predict time on the serving path {trained['predict_ms_1row']} ms for one row,",
        f"  {trained['predict_ms_100rows']} ms for 100 rows"
        + (f"; members {trained['params']}" if trained["params"] else "")
        + ".",
        f"`uptime` before: `{uptime[0]}`; after: `{uptime[-1]}`.",
        "driftloop, hand-picked model: A/B routing (challenger 10%), prediction log on, compiled trees (lleaves);",
        "trained model: the champion of its own project (single strategy, log on), compiled if it is LightGBM, a",
        "scikit-learn forest or an ensemble of them (lleaves, treelite). MLflow: `--env-manager local`.",
        "Load generators on the same machine (they take CPU from the servers too): "
        f"wrk 2 threads, 16 connections, {args.seconds} s; hey 10 connections at a held {args.rate} req/s, {args.seconds} s.",
        "",
        "Reproduce: `apt-get install -y wrk hey && .venv/bin/python benchmarks/serving/run.py"
        + (f" --seconds {args.seconds}" if args.seconds != 10 else "")
        + "`",
        "",
        "## Throughput and latency at saturation (wrk)",
        "",
        "| model | server | workers | body | req/s | rows/s | p50 ms | p99 ms | errors | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ld in loads:
        lines.append(
            f"| {ld.model} | {ld.server} | {ld.workers} | {ld.body} | {ld.rps:,.0f} | {ld.rows_per_s:,.0f} | "
            f"{ld.p50_ms:.2f} | {ld.p99_ms:.2f} | {ld.errors} | {ld.load_avg:.1f} |"
        )
    lines += ["", "Ratios (driftloop / MLflow, same model, workers and body):", ""]
    for model in dict.fromkeys(ld.model for ld in loads):
        for workers in args.workers:
            for rows in (1, 100):
                pick = {x.server: x for x in loads if (x.model, x.workers, x.rows) == (model, workers, rows)}
                d, m = pick.get("driftloop"), pick.get("mlflow")
                if d and m and m.rps:
                    what = "req/s" if rows == 1 else "rows/s"
                    lines.append(
                        f"- {model} model, {workers} worker(s), {rows}-row: **{d.rps / m.rps:.1f}x** {what}"
                    )
    lines += [
        "",
        f"## Latency at a held {args.rate} req/s, 1-row bodies (hey)",
        "",
        "| model | server | workers | achieved req/s | p50 ms | p99 ms | non-200 |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, server, workers, h in held:
        lines.append(
            f"| {model} | {server} | {workers} | {h['rps']:,.0f} | {h['p50']:.2f} | {h['p99']:.2f} | "
            f"{h['errors']} |"
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
        f"Prediction-log rows written by driftloop for the hand-picked model (champion + challenger arms): {logged:,}.",
        "",
    ]
    old = args.out.read_text() if args.out.exists() else ""
    begin, end = "<!-- forest:begin -->", "<!-- forest:end -->"
    if begin in old and end in old:  # forest.py's section, measured by its own command
        lines += [old[old.index(begin) : old.index(end) + len(end)], ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
