"""Serving cost per version and arm, from the server's own accounting: each micro-batch's predict CPU time,
shared by rows, in Prometheus and in the prediction log, read back by monitoring as CPU-ms per 1,000."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.monitor.cost import serving_cost
from driftloop.stores.predlog import read_log
from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture


def cpu_counter(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["model_version"], s.labels["arm"]): s.value
        for f in text_string_to_metric_families(text)
        if f.name == "driftloop_predict_cpu_seconds"
        for s in f.samples
        if s.name.endswith("_total")
    }


def predicted(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for f in text_string_to_metric_families(text):
        if f.name == "driftloop_predictions":
            for s in f.samples:
                if s.name.endswith("_total"):
                    key = (s.labels["model_version"], s.labels["arm"])
                    out[key] = out.get(key, 0) + s.value
    return out


def test_cost_per_version_and_arm_from_one_accounting(wine_models: WineModels, tmp_path: Path) -> None:
    # Shadow: both versions predict exactly the same rows, so their costs compare like for like. Version 2
    # has twice the trees of version 1 (60 vs 30 rounds, native LightGBM: compile_models off).
    wine_models.deploy(champion="1", challenger="2", strategy="shadow", challenger_weight=0.5)
    body = wine_models.records(100)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        for _ in range(30):
            assert client.post("/v1/predict", json=body).status_code == 200
        for record in body[:20]:
            assert client.post("/v1/predict", json=record).status_code == 200
        # Shadow scoring runs after the answer: wait until it has counted every row (its CPU is counted first).
        deadline = time.monotonic() + 30
        while predicted(client.get("/metrics").text).get(("2", "shadow"), 0) < 3020:
            assert time.monotonic() < deadline, "shadow scoring never counted every row"
            time.sleep(0.05)
        prometheus = cpu_counter(client.get("/metrics").text)
    rows = read_log(tmp_path, "predictions").to_pylist()
    assert rows and all(r["predict_cpu_ms"] is not None and r["predict_cpu_ms"] > 0 for r in rows)
    cost = {(c.model_version, c.arm): c for c in serving_cost(tmp_path, "wine", start=None, end=None)}
    assert set(cost) == {("1", "champion"), ("2", "shadow")}
    for key, c in cost.items():
        assert c.rows == c.measured_rows == 30 * 100 + 20 and c.source == "online"
        logged_ms = sum(r["predict_cpu_ms"] for r in rows if (r["model_version"], r["arm"]) == key)
        # The log and Prometheus carry the same figures: one accounting, two outlets.
        assert prometheus[key] * 1000.0 == pytest.approx(logged_ms, rel=1e-6)
        assert c.cpu_ms_per_1k == pytest.approx(logged_ms * 1000.0 / c.rows, rel=1e-9)
    assert cost["2", "shadow"].cpu_ms_per_1k > 1.2 * cost["1", "champion"].cpu_ms_per_1k  # type: ignore[operator]
