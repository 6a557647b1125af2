"""Two `driftloop serve` replicas against one PostgreSQL (MLflow and metadata in the same database): both see a
deployment change within the poll interval, send a routing key to the same arm, and write their prediction
logs side by side, which one monitoring pass reads together."""

import re
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from driftloop.demo import _free_port, _spawn, _stop, _wait_ready
from driftloop.monitor.check import run_check
from driftloop.registry import deployments
from driftloop.stores.predlog import log_files
from tests.conftest import RED
from tests.e2e.conftest import make_project, train_on

POLL = 0.3


@pytest.mark.postgres
def test_two_replicas_share_one_postgresql(tmp_path: Path, red: pd.DataFrame, pg_fresh_url: str) -> None:
    cfg, stores = make_project(
        tmp_path,
        RED,
        stores={"database_url": pg_fresh_url},
        serving={"poll_seconds": POLL, "compile_models": False},
    )
    assert cfg.stores.resolved_tracking_uri() == pg_fresh_url  # one setting: MLflow on PostgreSQL too
    champion = train_on(cfg, stores, red, "red wines")
    challenger = train_on(
        cfg, stores, red.sample(frac=1.0, random_state=3), "red wines, reshuffled", force=True
    )
    deployments.start_strategy(
        stores, "ab", version=challenger, weight=0.5, reason="test: a/b across replicas"
    )

    config = str(tmp_path / "driftloop.yaml")
    urls, servers = [], []
    for i in range(2):
        port = _free_port()
        urls.append(f"http://127.0.0.1:{port}")
        servers.append(
            _spawn(["--config", config, "serve", "--port", str(port)], tmp_path / f"serve-{i}.log", tmp_path)
        )
    records = red.drop(columns=["quality"]).head(60).to_dict("records")
    answered = 0
    try:
        for url, proc in zip(urls, servers, strict=True):
            _wait_ready(url, proc)
        with httpx.Client(timeout=10) as client:
            arms = set()
            for k, record in enumerate(records):
                key = {"X-Routing-Key": f"customer-{k}"}
                first, second = (
                    client.post(f"{url}/v1/predict", json=record, headers=key).json() for url in urls
                )
                answered += 2
                assert first["arm"] == second["arm"], f"routing key customer-{k} went to two arms"
                assert first["model_version"] == second["model_version"]
                arms.add(first["arm"])
            assert arms == {"champion", "challenger"}

            changed_at = time.monotonic()
            deployments.rollback(stores, reason="test: both replicas must follow")
            seen: dict[str, float] = {}
            while len(seen) < 2 and time.monotonic() - changed_at < 10 * POLL + 5:
                for url in urls:
                    if url not in seen and client.get(f"{url}/v1/deployment").json()["challenger"] is None:
                        seen[url] = time.monotonic() - changed_at
                time.sleep(0.05)
            assert len(seen) == 2, "a replica never saw the rollback"
            for record in records[:20]:
                for url in urls:
                    body = client.post(f"{url}/v1/predict", json=record).json()
                    answered += 1
                    assert body["arm"] == "champion" and body["model_version"] == champion
    finally:
        for proc in servers:
            _stop(proc)
    files = log_files(stores.log_dir, "predictions")
    # pred-<host>-<pid>-<start-ms>-<writer>-<seq>.parquet: one file series per process (one writer of a kind)
    writers = {re.fullmatch(r"pred-.+-(\d+)-\d{13}-\d+-\d{6}\.parquet", f.name).group(1) for f in files}
    assert len(writers) >= 2, f"expected files from both replicas, got {[f.name for f in files]}"
    check = run_check(stores, cfg, last=10_000, record=False)
    assert check.n_rows == answered
    stores.close()
