"""Fault injection: a real `driftloop serve` process and a real `driftloop watch` controller, and a challenger
that fails — it raises on a fifth of its rows, or answers 50 times slower than the champion. The canary must
see it on its own and roll it back; the champion's traffic must not notice.

The faulty challengers are real model versions (tests/faults/support.py): scikit-learn estimators saved in
driftloop's model format, registered in MLflow and started as a canary through the state machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.stores.predlog import read_log
from tests.conftest import RED
from tests.e2e.conftest import make_project, running, train_on
from tests.faults.support import deploy_faulty_challenger

REPO = Path(__file__).resolve().parents[2]
#: The champion (LightGBM, booster on numpy) answers a one-row request in about 1-2 ms server-side.
SLOW_SECONDS = 0.1


@pytest.fixture(autouse=True)
def _importable_models(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server and the controller load the faulty models' class from this repository, as a user's own
    # estimator package would be installed next to driftloop.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


def hammer(url: str, frame: pd.DataFrame, until: Callable[[], bool], timeout: float = 90.0) -> list[Answer]:
    """One request at a time, cycling through the rows, until `until()` (checked every 10 requests)."""
    records = frame.drop(columns=["quality"]).to_dict("records")
    answers: list[Answer] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.monotonic() < deadline and not (len(answers) % 10 == 0 and until()):
            resp = client.post("/v1/predict", json=records[len(answers) % len(records)])
            ctype = resp.headers.get("content-type", "")
            assert ctype == "application/json", f"{resp.status_code} answered as {ctype!r}: {resp.text[:80]}"
            answers.append(Answer(resp.status_code, resp.json()))
    return answers


def requests_total(metrics_text: str) -> dict[tuple[str, str, str], float]:
    """(model_version, arm, status) -> driftloop_requests_total, as the server exposes it."""
    out = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "driftloop_requests_total":
                out[(s.labels["model_version"], s.labels["arm"], s.labels["status"])] = s.value
    return out


@pytest.mark.slow
def test_challenger_raising_on_a_fifth_of_rows_is_counted_and_rolled_back(
    tmp_path: Path, red: pd.DataFrame
) -> None:
    cfg, stores = make_project(tmp_path, RED)
    name = cfg.project.name
    champion = train_on(cfg, stores, red, "red wines")
    faulty = deploy_faulty_challenger(stores, red, weight=cfg.loop.rollout.steps[0], fail_percent=20)

    def rolled_back() -> bool:
        return stores.metadata.get_deployment(name).challenger is None

    with running(cfg, tmp_path) as (url, _controller, _start):
        answers = hammer(url, red, rolled_back)
        counted = requests_total(httpx.get(f"{url}/metrics", timeout=10).text)
    # (the server has flushed its logs on the way out)

    dep = stores.metadata.get_deployment(name)
    assert dep.champion == champion and dep.challenger is None, "the failing challenger was not rolled back"
    rollbacks = [e for e in stores.metadata.list_events(name) if e.kind == "rolled_back"]
    assert len(rollbacks) == 1 and "error rate" in rollbacks[0].message, rollbacks[0].message

    failed = [a for a in answers if a.status != 200]
    assert failed, "the challenger never failed"
    # Every failure is a JSON 500 naming the request, the version and the arm; none on the champion.
    assert {(a.status, a.body["model_version"], a.body["arm"]) for a in failed} == {
        (500, faulty, "challenger")
    }
    assert all(a.status == 200 for a in answers if a.body["arm"] == "champion")
    assert any(a.body["arm"] == "champion" for a in answers)
    failed_ids = {a.body["request_id"] for a in failed}
    assert len(failed_ids) == len(failed)

    # Counted per version and arm in /metrics (the scrape came after the last request)...
    assert counted.get((faulty, "challenger", "500")) == len(failed)
    assert not [k for k in counted if k[2].startswith("5") and k != (faulty, "challenger", "500")]
    # ... and logged, one row per failed request, in the errors log the canary reads.
    errors = read_log(stores.log_dir, "errors").to_pylist()
    assert {r["request_id"] for r in errors} == failed_ids and len(errors) == len(failed)
    assert {(r["model_version"], r["arm"], r["status"], r["error"], r["rows"]) for r in errors} == {
        (faulty, "challenger", 500, "InjectedFault", 1)
    }
    # The rollback's evidence counts failures from that log (all of them, if judged after the last one).
    evidence = rollbacks[0].evidence
    assert 0 < evidence["challenger"]["errors"] <= len(failed)
    assert evidence["champion"]["errors"] == 0


@pytest.mark.slow
def test_challenger_fifty_times_slower_is_rolled_back_on_latency(tmp_path: Path, red: pd.DataFrame) -> None:
    cfg, stores = make_project(tmp_path, RED)
    name = cfg.project.name
    champion = train_on(cfg, stores, red, "red wines")
    slow = deploy_faulty_challenger(stores, red, weight=cfg.loop.rollout.steps[0], sleep_seconds=SLOW_SECONDS)

    def rolled_back() -> bool:
        return stores.metadata.get_deployment(name).challenger is None

    with running(cfg, tmp_path) as (url, _controller, _start):
        answers = hammer(url, red, rolled_back)

    dep = stores.metadata.get_deployment(name)
    assert dep.champion == champion and dep.challenger is None, "the slow challenger was not rolled back"
    rollbacks = [e for e in stores.metadata.list_events(name) if e.kind == "rolled_back"]
    assert len(rollbacks) == 1 and "p95 latency" in rollbacks[0].message, rollbacks[0].message
    assert rollbacks[0].evidence["p95_ratio"] > cfg.loop.rollout.max_p95_latency_ratio
    assert all(a.status == 200 for a in answers), "a slow challenger must not fail requests"
    assert {a.body["model_version"] for a in answers if a.body["arm"] == "challenger"} == {slow}
