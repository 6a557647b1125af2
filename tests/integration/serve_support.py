"""Shared pieces of the serving tests: real wine models in a real MLflow (on this run's backend: SQLite, or
PostgreSQL with the metadata), real servers on sockets.

`wine_models` trains two small LightGBM models once per session and registers them as versions 1 and 2.
`ServerThread` runs one uvicorn server in a thread on a free port (fast: no process start-up);
`ServerProcess` runs `python -m driftloop.cli.serve` for tests about workers and signals.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from driftloop.config import Config, StoresConfig, config_from_dict
from driftloop.stores.metadata import MetadataStore

FEATURES = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
]


@dataclass
class WineModels:
    root: Path
    frame: pd.DataFrame
    versions: list[str]
    database_url: str

    def raw(self, **serving: Any) -> dict[str, Any]:
        return {
            "project": {"name": "wine"},
            "data": {"target": "quality"},
            "stores": {"root": str(self.root), "database_url": self.database_url},
            "serving": {"poll_seconds": 0.2, "log_flush_seconds": 0.2, **serving},
        }

    def config(self, log_dir: Path, **serving: Any) -> Config:
        raw = self.raw(**serving)
        raw["stores"]["log_dir"] = str(log_dir)
        return config_from_dict(raw, base_dir=self.root, environ={})

    def config_file(self, folder: Path, log_dir: Path, **serving: Any) -> Path:
        raw = self.raw(**serving)
        raw["stores"]["log_dir"] = str(log_dir)
        path = folder / "driftloop.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def records(self, n: int, start: int = 0) -> list[dict[str, float]]:
        rows = self.frame[FEATURES].iloc[start : start + n]
        return [{k: float(v) for k, v in r.items()} for r in rows.to_dict(orient="records")]

    def register(self, bundle: Any, input_example: pd.DataFrame) -> str:
        """Log and register another model version of "wine" (any flavor or spec); returns its version."""
        return register_bundle(self.root, self.database_url, bundle, input_example)

    def deploy(self, **changes: Any) -> None:
        """Set the deployment row (compare-and-swap on the current revision)."""
        store = MetadataStore.connect(self.database_url)
        try:
            current = store.get_deployment("wine")
            full = {
                "champion": self.versions[0],
                "challenger": None,
                "strategy": "single",
                "challenger_weight": 0.0,
            }
            store.update_deployment(current, **{**full, **changes}, reason="test")
        finally:
            store.close()


def register_bundle(root: Path, url: str, bundle: Any, input_example: pd.DataFrame) -> str:
    """Log `bundle` to the "wine" model's MLflow (under `root`, backend `url`) and register it."""
    import mlflow

    from driftloop.stores.models import log_bundle
    from driftloop.stores.tracking import TrackingStore

    tracking_uri = StoresConfig(
        root=root, database_url=url
    ).resolved_tracking_uri()  # PostgreSQL: the same one
    ts = TrackingStore(tracking_uri, (root / "mlartifacts").as_uri(), "wine", root / "cache" / "models")
    mlflow.set_tracking_uri(ts.tracking_uri)
    with mlflow.start_run(experiment_id=ts.experiment_id()) as run:
        info = log_bundle(bundle, input_example=input_example)
    return ts.register(info.model_uri, run.info.run_id)


def train_wine_models(root: Path, red: pd.DataFrame) -> WineModels:
    import lightgbm as lgb

    from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec
    from tests.conftest import database_url

    classes = sorted(red.quality.unique().tolist())
    spec = ModelSpec(
        task="multiclass",
        target="quality",
        features=tuple(FeatureSpec(f, "numeric", nullable=False) for f in FEATURES),
        classes=tuple(int(c) for c in classes),
    )
    X = Encoder(spec).encode_frame(red)
    y = np.searchsorted(classes, red.quality)
    url = database_url(root)
    versions = []
    for n_estimators, seed in ((30, 1), (60, 2)):
        est = lgb.LGBMClassifier(n_estimators=n_estimators, random_state=seed, verbose=-1).fit(X, y)
        bundle = ModelBundle(spec, est.booster_, "lightgbm")
        versions.append(register_bundle(root, url, bundle, red[FEATURES].head(3)))
    MetadataStore.connect(url).close()  # creates the tables
    return WineModels(root=root, frame=red, versions=versions, database_url=url)


_TRAINED: list[WineModels] = []


@pytest.fixture(scope="session")
def wine_models(tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame) -> WineModels:
    # Each test module imports this fixture, which pytest registers once per module: train once per session.
    if not _TRAINED:
        _TRAINED.append(train_wine_models(tmp_path_factory.mktemp("serve-stores"), red))
    return _TRAINED[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(
    base: str, timeout: float = 30.0, proc: subprocess.Popen | None = None, output: Any = None
) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {output() if output else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{base} not ready after {timeout} s")


class ServerThread:
    """uvicorn in a thread, serving `create_app(cfg)` on a free 127.0.0.1 port."""

    def __init__(self, cfg: Config) -> None:
        import uvicorn

        from driftloop.serve.app import create_app

        self.app = create_app(cfg)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def service(self) -> Any:
        return self.app.state.service

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_ready(self.base)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class ServerProcess:
    """`python -m driftloop.cli.serve` as a subprocess (real workers, real signals)."""

    def __init__(self, config_path: Path, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "driftloop.cli.serve",
            "--config",
            str(config_path),
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        # A file, not a pipe: the server writes an access-log line per request, and a pipe nobody reads fills
        # up (64 KiB) and blocks the server mid-test.
        self.log = tempfile.NamedTemporaryFile(prefix="driftloop-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=self.log, text=True
        )

    def output(self) -> str:
        """What the server wrote to stderr so far (logs, access lines, tracebacks)."""
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        try:
            wait_ready(self.base, timeout=240, proc=self.proc, output=self.output)  # generous: CI can be busy
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
