"""Helpers for end-to-end runs: a trained project, a real server and a real controller as subprocesses."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from driftloop.config import Config, load_config
from driftloop.data.datasets import add_frame
from driftloop.demo import Traffic, _free_port, _spawn, _stop, _wait_ready
from driftloop.stores import Stores, open_stores
from driftloop.train.search import train
from tests.conftest import write_project

FAST = {
    "training": {"budget": {"trials": 2, "seconds": None}, "cv_folds": 3, "families": ["lightgbm"]},
    "serving": {"poll_seconds": 0.3, "log_flush_seconds": 0.3, "compile_models": False},
    "loop": {
        "interval_seconds": 1,
        "lease_seconds": 4,
        "rollout": {"steps": [0.1, 0.5, 1.0], "min_requests": 150, "min_dwell_seconds": 2, "min_labels": 30},
    },
}


def make_project(root: Path, data_file: Path, **sections: dict) -> tuple[Config, Stores]:
    merged = {k: dict(v) for k, v in FAST.items()}
    for key, value in sections.items():
        merged.setdefault(key, {}).update(value)
    path = write_project(root, data_file, **merged)
    cfg = load_config(path)
    return cfg, open_stores(cfg)


def train_on(cfg: Config, stores: Stores, frame: pd.DataFrame, note: str, **kwargs) -> str:
    record, _ = add_frame(stores.metadata, stores.datasets_dir, frame, source=note, note=note)
    return train(cfg, data_version=record.version, stores=stores, progress=False, **kwargs).version


@contextmanager
def running(
    cfg: Config, root: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes], Callable[[], subprocess.Popen[bytes]]]]:
    """A server and a controller for the project; yields (url, controller, start_controller)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = str(root / "driftloop.yaml")
    server = _spawn(["--config", config, "serve", "--port", str(port)], root / "logs" / "server.log", root)
    procs: list[subprocess.Popen[bytes]] = []

    def start_controller() -> subprocess.Popen[bytes]:
        proc = _spawn(
            ["--config", config, "watch"],
            root / "logs" / f"controller-{len(procs)}.log",
            root,
        )
        procs.append(proc)
        return proc

    try:
        _wait_ready(url, server)
        yield url, start_controller(), start_controller
    finally:
        for proc in procs:
            _stop(proc)
        _stop(server)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def drive(
    url: str,
    frame: pd.DataFrame,
    until: Callable[[], bool] | None = None,
    rate: float = 150.0,
    timeout: float = 150.0,
) -> Traffic:
    """Send rows with labels 0.5 s later: each row once, or cycling until `until()` or the timeout."""
    traffic = Traffic(url, rate=rate, feedback_delay=0.5).start()
    deadline = time.monotonic() + timeout
    try:
        if until is None:
            traffic.send(frame, "test")
        else:
            traffic.send(frame, "test", until=lambda: until() or time.monotonic() > deadline)
    finally:
        traffic.stop()
    return traffic
