"""A project with a scripted loop history for the loop page's tests, served on a real socket.

Two small trained versions (red wines; the challenger on red wines again, gate forced), a canary started and
advanced one step (a two-step staircase), real predictions and feedback through the server's own /v1/predict
and /v1/feedback (red wines, then white ones, so the monitoring pass finds drift), and one real monitoring pass
stored. The training budget is two LightGBM trials.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from driftloop.config import Config
from driftloop.registry import deployments
from driftloop.stores import Stores
from tests.conftest import RED
from tests.e2e.conftest import make_project, train_on
from tests.integration.serve_support import FEATURES, free_port, wait_ready

TOKEN = "ui-test-token"


@dataclass
class LoopHistory:
    cfg: Config
    stores: Stores
    champion: str
    challenger: str
    request_ids: list[str]


@contextmanager
def serving(cfg: Config) -> Iterator[str]:
    """The prediction service with the loop page (what `driftloop serve` runs) on a free port; yields its URL."""
    import uvicorn

    from driftloop.serve.app import create_app
    from driftloop.ui.server import with_ui

    app = with_ui(create_app(cfg))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=120)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def page_only(cfg: Config) -> Iterator[str]:
    """`driftloop ui`'s app (no model, no admin API) on a free port."""
    import uvicorn

    from driftloop.ui.server import create_ui_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_ui_app(cfg), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the page-only server did not start"
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: float(v) for k, v in r.items()} for r in frame[FEATURES].to_dict(orient="records")]


_BUILT: list[LoopHistory] = []


@pytest.fixture(scope="session")
def loop_history(
    tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame, white: pd.DataFrame
) -> LoopHistory:
    """Built once per session (the routes' and the browser's tests share it; neither changes the stores,
    except the browser's rollback, which runs last in its own module)."""
    if not _BUILT:
        _BUILT.append(build_history(tmp_path_factory.mktemp("ui-loop"), red, white))
    return _BUILT[0]


def build_history(root: Path, red: pd.DataFrame, white: pd.DataFrame) -> LoopHistory:
    # Two trials and no ensemble refits: the page needs versions, not good ones.
    cfg, stores = make_project(
        root, RED, serving={"admin_token": TOKEN}, training={"ensemble": {"enabled": False}}
    )
    champion = train_on(cfg, stores, red, "red wines")
    challenger = train_on(cfg, stores, red.sample(frac=1.0, random_state=3), "reshuffled", force=True)
    deployments.start_canary(stores, challenger, weight=cfg.loop.rollout.steps[0], reason="scripted canary")
    ids: list[str] = []
    with serving(cfg) as base, httpx.Client(base_url=base, timeout=30) as http:
        for frame in (red.head(60), white.head(60)):
            for record in _records(frame):
                r = http.post("/v1/predict", json=record)
                assert r.status_code == 200, r.text
                ids.append(r.json()["request_id"])
        labels = [*red.head(60).quality, *white.head(60).quality]
        fb = http.post(
            "/v1/feedback",
            json=[{"request_id": i, "label": int(q)} for i, q in zip(ids, labels, strict=True)],
        )
        assert fb.status_code == 200, fb.text
    # The server flushed its logs on shutdown: one real monitoring pass over them, stored like `watch` does.
    from driftloop.monitor.check import run_check

    run_check(stores, cfg, window="1h")
    deployments.advance_canary(
        stores, step=1, weight=cfg.loop.rollout.steps[1], reason="scripted canary step"
    )
    return LoopHistory(cfg, stores, champion, challenger, ids)
