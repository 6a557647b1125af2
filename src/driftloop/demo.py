"""`driftloop demo`: the wine story end to end on the embedded default, with no servers to install.

A model is trained on red wines and served over HTTP. Traffic replays red wines, then white wines, and the
true quality of each wine arrives as feedback a little later. The controller (`driftloop watch`, its own
process, talking to the server only through the stores) sees the drift, retrains on what production taught
it, gates the challenger, rolls it out as a canary and promotes it. The demo prints the timeline as the
events land and a summary at the end.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from rich.console import Console

from driftloop.config import load_config
from driftloop.data.datasets import add_file
from driftloop.data.io import read_table
from driftloop.stores import open_stores

TARGET = "quality"
#: Tuned so the whole story fits in a few minutes on a 2-core laptop; every key is an ordinary config key.
DEMO_CONFIG: dict[str, Any] = {
    "project": {"name": "wine-quality"},
    "data": {"path": "winequality-red.csv", "target": TARGET, "task": "multiclass"},
    # LightGBM only: the quickest to search and, compiled, the fastest to serve on a busy laptop.
    "training": {"families": ["lightgbm"], "budget": {"trials": 12, "seconds": 20}, "cv_folds": 3, "seed": 7},
    "gate": {"recent_rows": 300, "bootstrap_resamples": 1000},
    # At the demo's rate the booster is plenty; compiling trees would take CPU from the story on 2 cores.
    "serving": {"poll_seconds": 0.5, "log_flush_seconds": 0.5, "compile_models": False},
    # Evidently's Wasserstein test is noisy on small windows: 400+ rows keep red wines from looking drifted.
    "monitoring": {"window": None, "last_rows": 500, "min_rows": 400},
    "loop": {
        "interval_seconds": 2,
        "lease_seconds": 10,
        # A short cool-down: if the first challenger fails the gate, the next try has seen more white wine.
        "triggers": [{"kind": "dataset_drift", "cooldown_seconds": 15}],
        # 800 labeled white wines before the first retrain: 300 go to the gate, 500 to training. With 300 (200
        # to train on) the challenger passed the gate by +0.035 and the loop then settled on a model only ~4
        # points better on white wines than the red one.
        "retrain": {"min_labeled_rows": 800},
        "rollout": {
            "steps": [0.1, 0.5, 1.0],
            "min_requests": 200,
            "min_dwell_seconds": 3,
            "min_labels": 30,
        },
    },
}


@dataclass
class Served:
    phase: str
    label: int
    status: int
    version: str = ""
    arm: str = ""
    prediction: str = ""
    request_id: str = ""
    at: float = 0.0


@dataclass
class DemoSummary:
    folder: Path
    first_version: str
    final_version: str
    accuracy_before: float | None
    accuracy_after: float | None
    drift_to_promotion_seconds: float | None
    requests: int
    failed: int
    promoted: bool
    report: Path | None
    served: list[Served] = field(default_factory=list, repr=False)

    @property
    def mlflow_ui(self) -> str:
        return f"uv run mlflow ui --backend-store-uri sqlite:///{self.folder / '.driftloop' / 'mlflow.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(folder: Path) -> Path:
    """A fresh demo project in `folder` (its earlier store is removed, so the demo can run again)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / ".driftloop", ignore_errors=True)
    data = resources.files("driftloop.demodata")
    for name in ("winequality-red.csv", "winequality-white.csv"):
        (folder / name).write_bytes(data.joinpath(name).read_bytes())
    config = folder / "driftloop.yaml"
    config.write_text(
        "# The demo's config: ordinary keys, tuned for a short story.\n" + yaml.safe_dump(DEMO_CONFIG)
    )
    return config


class Traffic:
    """Replays wines through POST /v1/predict at a steady rate and sends their labels after a delay."""

    def __init__(self, base_url: str, rate: float, feedback_delay: float) -> None:
        self.base_url = base_url
        self.interval = 1.0 / rate
        self.delay = feedback_delay
        self.served: list[Served] = []
        self._labels: queue.Queue[tuple[float, str, int]] = queue.Queue()
        self._stop = threading.Event()
        self._feedback = threading.Thread(target=self._send_feedback, name="feedback", daemon=True)
        self.feedback_failures = 0

    def start(self) -> Traffic:
        self._feedback.start()
        return self

    def send(self, frame: pd.DataFrame, phase: str, until: Any = None) -> None:
        """Send each row once (cycling if `until` asks for more), pacing to the rate."""
        records = frame.drop(columns=[TARGET]).to_dict("records")
        labels = frame[TARGET].tolist()
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            i = 0
            next_at = time.monotonic()
            while True:
                if until is None and i >= len(records):
                    return
                if until is not None and until():
                    return
                j = i % len(records)
                self._one(client, records[j], int(labels[j]), phase)
                i += 1
                next_at += self.interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    def _one(self, client: httpx.Client, record: dict[str, Any], label: int, phase: str) -> None:
        item = Served(phase=phase, label=label, status=0, at=time.time())
        try:
            resp = client.post("/v1/predict", json=record)
            item.status = resp.status_code
            if resp.status_code == 200:
                body = resp.json()
                item.version = str(body["model_version"])
                item.arm = body["arm"]
                item.prediction = str(body["prediction"])
                item.request_id = body["request_id"]
                self._labels.put((time.monotonic() + self.delay, item.request_id, label))
        except httpx.HTTPError:
            item.status = -1
        self.served.append(item)

    def _send_feedback(self) -> None:
        pending: list[tuple[float, str, int]] = []
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not (self._stop.is_set() and self._labels.empty() and not pending):
                with contextlib.suppress(queue.Empty):
                    while True:
                        pending.append(self._labels.get_nowait())
                now = time.monotonic()
                due = [p for p in pending if p[0] <= now or self._stop.is_set()]
                pending = [p for p in pending if p[0] > now and not self._stop.is_set()]
                if due:
                    body = {"feedback": [{"request_id": rid, "label": lab} for _, rid, lab in due]}
                    try:
                        if client.post("/v1/feedback", json=body).status_code != 200:
                            self.feedback_failures += 1
                    except httpx.HTTPError:
                        self.feedback_failures += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._feedback.join(timeout=30)


class Timeline:
    """Prints loop events from the metadata store as they land, with the time since the demo started."""

    def __init__(self, stores: Any, console: Console, t0: float) -> None:
        self.stores = stores
        self.console = console
        self.t0 = t0
        self.seen = 0
        self.events: list[Any] = []

    def poll(self) -> list[Any]:
        new = [e for e in self.stores.metadata.list_events(self.stores.model_name) if e.id > self.seen]
        for ev in new:
            self.seen = ev.id
            self.events.append(ev)
            stamp = ev.ts.timestamp() - self.t0
            version = f" v{ev.model_version}" if ev.model_version else ""
            self.console.print(f"[dim]{stamp:6.1f}s[/] [bold cyan]{ev.kind:<18}[/]{version} {ev.message}")
        return new

    def has(self, kind: str, after: float = 0.0) -> bool:
        return any(e.kind == kind and e.ts.timestamp() >= after for e in self.events)


def _spawn(args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server at {url} was not ready after {timeout:.0f}s")


def _accuracy(rows: list[Served]) -> float | None:
    return sum(r.prediction == str(r.label) for r in rows) / len(rows) if rows else None


def run_demo(
    folder: Path,
    *,
    console: Console | None = None,
    rate: float = 120.0,
    red_requests: int = 800,
    after_promotion: int = 400,
    timeout: float = 240.0,
    train_budget_seconds: float | None = None,
) -> DemoSummary:
    """Run the whole story in `folder`; returns the summary (also printed)."""
    from driftloop.train.search import train

    console = console or Console()
    t0 = time.time()
    config_path = prepare(folder)
    cfg = load_config(config_path)
    stores = open_stores(cfg)
    console.rule("[bold]driftloop demo: red wines today, white wines tomorrow")
    console.print(f"project folder {folder}")
    red = read_table(folder / "winequality-red.csv").sample(frac=1.0, random_state=1)
    white = read_table(folder / "winequality-white.csv").sample(frac=1.0, random_state=2)
    record, _ = add_file(stores.metadata, stores.datasets_dir, folder / "winequality-red.csv")
    console.print(f"data version [bold]{record.version}[/] (red wines, {record.n_rows} rows)")
    result = train(cfg, data_version=record.version, budget_seconds=train_budget_seconds, stores=stores)
    first = result.version
    timeline = Timeline(stores, console, t0)
    timeline.poll()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logs = folder / "logs"
    server = _spawn(["--config", str(config_path), "serve", "--port", str(port)], logs / "server.log", folder)
    controller = None
    traffic = Traffic(url, rate=rate, feedback_delay=1.0)
    promoted_at: float | None = None
    drift_started: float | None = None
    try:
        _wait_ready(url, server)
        console.print(f"server ready at {url} after {time.time() - t0:.1f}s; champion v{first}")
        console.print(f"watch the loop happen: [bold]{url}/ui[/] (the loop page, while the demo runs)")
        controller = _spawn(
            ["--config", str(config_path), "watch"],
            logs / "controller.log",
            folder,
        )
        traffic.start()
        stop_polling = threading.Event()

        def poll_events() -> None:
            while not stop_polling.is_set():
                timeline.poll()
                time.sleep(0.3)

        poller = threading.Thread(target=poll_events, daemon=True)
        poller.start()
        console.print(f"[bold]red wines[/]: {red_requests} requests at {rate:.0f}/s, labels 1s later")
        traffic.send(red.head(red_requests), "red")
        drift_started = time.time()
        console.print("[bold]white wines[/] from now on")
        deadline = time.monotonic() + timeout
        # The last `after_promotion` white wines are held back: never served before the promotion, so never in
        # a retraining set, they measure the new champion honestly.
        stream, held_back = white.iloc[:-after_promotion], white.iloc[-after_promotion:]

        def promoted() -> bool:
            nonlocal promoted_at
            if promoted_at is None and timeline.has("promoted", after=drift_started or 0):
                promoted_at = time.time()
            return promoted_at is not None or time.monotonic() > deadline

        traffic.send(stream, "white", until=promoted)
        if promoted_at is not None:
            console.print(f"[bold]{len(held_back)} white wines held back until now[/], for an honest 'after'")
            traffic.send(held_back, "held-back")
        stop_polling.set()
        poller.join()
    finally:
        traffic.stop()
        if controller is not None:
            _stop(controller)
        _stop(server)
    timeline.poll()

    final = stores.metadata.get_deployment(cfg.project.name).champion or first
    ok = [r for r in traffic.served if r.status == 200]
    before = [r for r in ok if r.phase == "white" and r.version == first]
    after = [r for r in ok if r.phase == "held-back" and r.version == final]
    report = _final_report(stores, cfg, folder)
    summary = DemoSummary(
        folder=folder,
        first_version=first,
        final_version=final,
        accuracy_before=_accuracy(before),
        accuracy_after=_accuracy(after),
        drift_to_promotion_seconds=(promoted_at - drift_started) if promoted_at and drift_started else None,
        requests=len(traffic.served),
        failed=sum(r.status != 200 for r in traffic.served),
        promoted=promoted_at is not None,
        report=report,
        served=traffic.served,
    )
    _print_summary(console, summary, time.time() - t0)
    stores.close()
    return summary


def _final_report(stores: Any, cfg: Any, folder: Path) -> Path:
    """An HTML monitoring report over the last stretch of traffic (white wines), for people to look at."""
    from driftloop.monitor.check import run_check
    from driftloop.monitor.report import write_html

    check = run_check(stores, cfg, last=2000, record=False)
    history = [
        {"ts": row["ts"].isoformat(), "performance": row["result"].get("performance")}
        for row in stores.metadata.list_monitoring_results(cfg.project.name, limit=500)
    ]
    return write_html(folder / "report.html", check.report(history=history))


def _print_summary(console: Console, s: DemoSummary, elapsed: float) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1%}"

    console.rule("[bold]summary")
    console.print(
        f"model v{s.first_version} (red wines) -> v{s.final_version}"
        + ("" if s.promoted else " [red](no promotion)[/]")
    )
    console.print(
        f"accuracy on white wines: before {pct(s.accuracy_before)} (old champion), "
        f"after {pct(s.accuracy_after)} (new champion, on white wines it never saw)"
    )
    if s.drift_to_promotion_seconds is not None:
        console.print(
            f"time from the first white wine to full promotion: {s.drift_to_promotion_seconds:.1f}s"
        )
    console.print(f"requests served: {s.requests}, failed: {s.failed}")
    if s.report:
        console.print(f"HTML report: {s.report}")
    console.print(f"MLflow UI: {s.mlflow_ui}  (then open http://127.0.0.1:5000)")
    console.print(f"events: driftloop --config {s.folder / 'driftloop.yaml'} events")
    console.print(
        f"the loop page: driftloop --config {s.folder / 'driftloop.yaml'} ui  (then open http://127.0.0.1:8050/ui)"
    )
    console.print(f"demo finished in {elapsed:.0f}s")
