"""`driftloop serve` as real processes: graceful restarts lose no log row, metrics add up across workers,
and the compiled models answer exactly like the LightGBM boosters they replace."""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from driftloop.serve.pool import ModelPool, compile_loaded, load_model
from driftloop.stores.metadata import Deployment
from driftloop.stores.predlog import count_rows, log_files
from tests.integration import serve_support
from tests.integration.serve_support import ServerProcess, WineModels

wine_models = serve_support.wine_models  # the session fixture


def load(base: str, records: list[dict], stop: threading.Event, tally: dict, lock: threading.Lock) -> None:
    """Post one-row and 3-row bodies until told to stop; count the rows of every 200 answer."""
    with httpx.Client(base_url=base, timeout=30) as client:
        i = 0
        while not stop.is_set():
            body = records[i % len(records)] if i % 2 else records[:3]
            i += 1
            try:
                r = client.post("/v1/predict", json=body)
            except httpx.HTTPError:
                with lock:
                    tally["errors"] += 1
                time.sleep(0.01)
                continue
            with lock:
                if r.status_code == 200:
                    tally["rows"] += 3 if isinstance(body, list) else 1
                else:
                    tally["other"] += 1


def test_graceful_restarts_log_every_answered_row_once(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.3)
    logs = tmp_path / "logs"
    # Workers accept connections once their models are loaded; on a busy machine that took over the default
    # 15 s and the early requests met a worker still loading (503). Startup is not what this test is about.
    config = wine_models.config_file(
        tmp_path, logs, compile_models=False, log_flush_seconds=5.0, startup_wait_seconds=180.0
    )
    records = wine_models.records(20)
    tally = {"rows": 0, "errors": 0, "other": 0}
    lock = threading.Lock()
    for _round in range(2):
        server = ServerProcess(config, workers=2)
        with server:
            stop = threading.Event()
            threads = [
                threading.Thread(target=load, args=(server.base, records, stop, tally, lock))
                for _ in range(4)
            ]
            for t in threads:
                t.start()
            time.sleep(1.5)
            # SIGTERM while requests are in flight; the flush interval (5 s) is longer than the test's load,
            # so the rows on disk are those the shutdown drained, not those a timer happened to write.
            assert server.stop(signal.SIGTERM) == 0
            stop.set()
            for t in threads:
                t.join()
    assert tally["rows"] > 100 and tally["other"] == 0
    assert count_rows(logs, "predictions", where="arm <> 'shadow'") == tally["rows"]
    assert count_rows(logs, "predictions", where="request_id IS NULL OR model_version IS NULL") == 0
    pids = {
        re.fullmatch(r"pred-.+-(\d+)-\d{13}-\d+-\d{6}\.parquet", p.name).group(1)
        for p in log_files(logs, "predictions")
    }
    assert len(pids) >= 2  # one file series per worker process


def test_one_worker_process_exposes_its_metrics(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    config = wine_models.config_file(tmp_path, tmp_path / "logs", compile_models=False)
    with ServerProcess(config, workers=1) as server:
        assert httpx.post(f"{server.base}/v1/predict", json=wine_models.records(1)[0]).status_code == 200
        text = httpx.get(f"{server.base}/metrics").text
    assert 'driftloop_model_ready{model_name="wine"} 1.0' in text
    assert (
        'driftloop_requests_total{arm="champion",model_name="wine",model_version="1",status="200"} 1.0'
        in text
    )


def test_metrics_add_up_across_two_workers(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    config = wine_models.config_file(tmp_path, tmp_path / "logs", compile_models=False)
    record = wine_models.records(1)[0]
    with ServerProcess(config, workers=2) as server:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # both workers ready: the gauge is the minimum over live workers
            if 'driftloop_model_ready{model_name="wine"} 1.0' in httpx.get(f"{server.base}/metrics").text:
                break
            time.sleep(0.1)
        assert 'driftloop_model_ready{model_name="wine"} 1.0' in httpx.get(f"{server.base}/metrics").text

        def post(_: int) -> int:
            return httpx.post(f"{server.base}/v1/predict", json=record, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(300))) == {200}
        for _ in range(6):  # whichever worker answers /metrics, it reports all of them
            text = httpx.get(f"{server.base}/metrics").text
            served = sum(
                float(v)
                for v in re.findall(
                    r'driftloop_requests_total\{arm="champion",model_name="wine",model_version="1",status="200"\} (\S+)',
                    text,
                )
            )
            assert served == 300
            assert re.search(
                r'driftloop_predictions_total\{arm="champion",model_name="wine",model_version="1",outcome="5"\} \d+',
                text,
            )
            assert "driftloop_request_latency_seconds_bucket" in text
            assert "driftloop_store_unreachable 0.0" in text
            # Process figures merged over the workers, with no pid label (multiprocess mode has none of its own).
            assert "driftloop_workers 2.0" in text and "pid=" not in text
            assert float(re.search(r"^driftloop_process_cpu_seconds_total (\S+)", text, re.M).group(1)) > 0
            rss = float(re.search(r"^driftloop_process_resident_memory_bytes (\S+)", text, re.M).group(1))
            assert rss > 2 * 50e6  # two workers, each with numpy, LightGBM and a model loaded
    pids = {
        re.fullmatch(r"pred-.+-(\d+)-\d{13}-\d+-\d{6}\.parquet", p.name).group(1)
        for p in log_files(tmp_path / "logs", "predictions")
    }
    assert len(pids) == 2  # both workers answered some of them


@pytest.mark.slow
@pytest.mark.no_database  # model folders only
def test_compiled_model_answers_like_the_booster(wine_models: WineModels, tmp_path: Path) -> None:
    from driftloop.stores.tracking import TrackingStore

    folder = TrackingStore.from_config(wine_models.config(tmp_path / "logs")).model_dir("1")
    native = load_model("1", folder, unknown_fields="reject", max_rows=10_000)
    fast = compile_loaded(native)
    assert fast is not None and fast.compiled and not native.compiled
    X = np.asarray([list(r.values()) for r in wine_models.records(500)], dtype=np.float64)
    X[::5, 3] = np.nan
    want, got = native.bundle.predict_matrix(X), fast.bundle.predict_matrix(X)
    np.testing.assert_allclose(got.proba, want.proba, rtol=1e-9, atol=1e-12)
    assert got.labels.tolist() == want.labels.tolist()
    # A restarted worker loads the verified binary straight from the cache, without LightGBM.
    again = load_model("1", folder, unknown_fields="reject", max_rows=10_000, use_compiled=True)
    assert again.compiled
    np.testing.assert_allclose(again.bundle.predict_matrix(X).proba, want.proba, rtol=1e-9, atol=1e-12)
    # So does the pool of a (re)started worker: its first state already predicts with compiled trees.
    pool = ModelPool(
        "wine", lambda: Deployment("wine", revision=1, champion="1"), lambda _: folder, compile_models=True
    )
    assert pool.refresh() and pool.state is not None and pool.state.champion.compiled
