"""Faults at the serving door, against a real `driftloop serve` process on a loopback socket.

- A seeded fuzz of 10,000 hostile and valid bodies, sent concurrently so micro-batches mix good and bad
  rows: no answer is a 5xx, the server still answers, and the prediction and feedback logs still take rows
  (nothing poisoned them: the quarantine stays empty). Complements the schema-driven fuzz in
  tests/integration/test_serve_fuzz.py, which explores the OpenAPI document one request at a time.
- SIGTERM under load: the log holds exactly the rows of the 200 answers, by request id.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from driftloop.stores.predlog import read_log
from tests.faults.bodies import fuzz_bodies
from tests.integration.serve_support import FEATURES, ServerProcess, WineModels

FUZZ_BODIES = 10_000
QUARANTINE = "quarantine"  # <log_dir>/quarantine/, the contract in docs/contracts.md
CONCURRENCY = 48


def logged_ids(log_dir: Path, kind: str, where: str | None = None) -> list[str]:
    table = read_log(log_dir, kind, where=where)  # type: ignore[arg-type]
    return table.column("request_id").to_pylist() if table.num_rows else []


def row_ids(answer: dict[str, Any]) -> list[str]:
    """The log's request ids of one 200 answer: the id itself, or `<id>:<row>` for each row of a batch."""
    rid = answer["request_id"]
    return [f"{rid}:{i}" for i in range(len(answer["predictions"]))] if "predictions" in answer else [rid]


async def send_all(base: str, bodies: list[tuple[str, bytes]]) -> list[tuple[str, int, bytes, bytes]]:
    """Every body, CONCURRENCY at a time -> (path, status, response body, request body)."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one(path: str, body: bytes) -> tuple[str, int, bytes, bytes]:
            async with gate:
                try:
                    r = await client.post(path, content=body, headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:  # no answer at all counts as a server failure (599)
                    return path, 599, repr(exc).encode(), body
                return path, r.status_code, r.content, body

        return await asyncio.gather(*(one(p, b) for p, b in bodies))


def wait_for_id(log_dir: Path, kind: str, rid: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rid in logged_ids(log_dir, kind):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_fuzz_gets_no_5xx_and_leaves_the_log_writing(
    wine_models: WineModels, mixed_version: str, tmp_path: Path
) -> None:
    # The mixed model serves; the LightGBM one scores the same bodies in shadow (it ignores the colour).
    wine_models.deploy(champion=mixed_version, challenger=wine_models.versions[0], strategy="shadow")
    logs = tmp_path / "logs"
    config = wine_models.config_file(tmp_path, logs, compile_models=False, unknown_fields="ignore")
    records = wine_models.records(200)
    bodies = list(fuzz_bodies(FUZZ_BODIES, 20261203, records, FEATURES, "colour"))
    valid = {**records[0], "colour": "white"}
    with ServerProcess(config, workers=1) as server:
        results = asyncio.run(send_all(server.base, bodies))
        statuses = Counter((path, status) for path, status, _, _ in results)
        errors = [(p, s, a[:200], b[:300]) for p, s, a, b in results if s >= 500]
        assert not errors, (statuses, errors[:5])
        # The mix did what it is for: valid and poisoned bodies alike were answered, in the same batches.
        assert statuses["/v1/predict", 200] > 2000 and statuses["/v1/predict", 422] > 2000, statuses
        assert statuses["/v1/feedback", 200] > 200 and statuses["/v1/feedback", 422] > 200, statuses
        # Still serving, and both logs still writing: a row sent now reaches its Parquet file.
        after = httpx.post(f"{server.base}/v1/predict", json=valid, timeout=30)
        assert after.status_code == 200
        assert wait_for_id(logs, "predictions", after.json()["request_id"])
        fb_id = uuid.uuid4().hex
        fb = httpx.post(f"{server.base}/v1/feedback", json={"request_id": fb_id, "label": 6}, timeout=30)
        assert fb.status_code == 200 and wait_for_id(logs, "feedback", fb_id)
        metrics = httpx.get(f"{server.base}/metrics", timeout=30).text
        assert not re.search(r'status="5\d\d"', metrics)
        # One worker: uvicorn shuts down gracefully, then re-raises the signal (exit -15) as it should.
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    # Every 200 answer is in the log exactly once; nothing was held back or quarantined.
    answered = [
        rid
        for path, status, answer, _ in results
        if path == "/v1/predict" and status == 200
        for rid in row_ids(httpx.Response(200, content=answer).json())
    ]
    answered += row_ids(after.json())
    assert Counter(logged_ids(logs, "predictions", where="arm <> 'shadow'")) == Counter(answered)
    assert not list((logs / QUARANTINE).glob("*"))


def post_until(
    base: str, stop: threading.Event, answers: list[dict[str, Any]], seed: int, records: list
) -> None:
    """Valid one-row and 3-row bodies until told to stop (or refused): every 200 answer is kept."""
    with httpx.Client(base_url=base, timeout=60) as client:
        i = seed
        while not stop.is_set():
            body = records[i % len(records)] if i % 2 else records[i % 17 : i % 17 + 3]
            i += 1
            try:
                r = client.post("/v1/predict", json=body)
            except httpx.HTTPError:
                return  # the server closed its socket: the load is over
            if r.status_code == 200:
                answers.append(r.json())


def test_sigterm_under_load_logs_exactly_the_answered_rows(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion=wine_models.versions[0])
    logs = tmp_path / "logs"
    # A flush interval longer than the test: the rows on disk are those the shutdown drained.
    config = wine_models.config_file(tmp_path, logs, compile_models=False, log_flush_seconds=600.0)
    records = wine_models.records(40)
    answers: list[list[dict[str, Any]]] = [[] for _ in range(6)]
    stop = threading.Event()
    with ServerProcess(config, workers=2) as server:
        threads = [
            threading.Thread(target=post_until, args=(server.base, stop, answers[k], k, records))
            for k in range(len(answers))
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while sum(map(len, answers)) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(map(len, answers)) >= 300  # mid-load: requests are in flight on every thread
        assert server.stop(signal.SIGTERM) == 0
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    expected = Counter(rid for batch in answers for answer in batch for rid in row_ids(answer))
    assert Counter(logged_ids(logs, "predictions")) == expected
