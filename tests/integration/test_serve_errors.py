"""A model that raises inside the server, through a real socket: a JSON 500 naming the request, version and
arm, counted in /metrics with its version and arm, and written to the errors log; shadow failures are
logged without touching the answer; the 200s are logged exactly once as before."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.stores.models import Encoder, ModelSpec
from driftloop.stores.predlog import read_log
from driftloop.stores.tracking import TrackingStore
from tests.faults.support import FaultyClassifier, register_faulty, row_bucket
from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture


@dataclass
class Faulty:
    version: str
    estimator: FaultyClassifier
    spec: ModelSpec

    def fails(self, records: list[dict]) -> list[bool]:
        """Which records the model raises on (it decides by row, so this is known in advance)."""
        X = Encoder(self.spec).encode_records(records)
        est = self.estimator
        return [row_bucket(np.ascontiguousarray(x), est.salt) < est.fail_percent for x in X]


@pytest.fixture(scope="module")
def faulty(wine_models: WineModels, tmp_path_factory: pytest.TempPathFactory) -> Faulty:
    """A registered model version that raises on about half of its rows."""
    tracking = TrackingStore.from_config(wine_models.config(tmp_path_factory.mktemp("faulty-log")))
    spec = tracking.load_bundle(wine_models.versions[0]).spec
    version, est = register_faulty(tracking, spec, wine_models.frame, fail_percent=50)
    return Faulty(version, est, spec)


def requests_total(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["model_version"], s.labels["arm"], s.labels["status"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "driftloop_requests_total"
    }


def test_a_raising_model_answers_a_counted_logged_json_500(
    wine_models: WineModels, faulty: Faulty, tmp_path: Path
) -> None:
    version = faulty.version
    records = wine_models.records(40, start=200)
    expected = faulty.fails(records)
    assert any(expected) and not all(expected)
    batch = wine_models.records(8, start=300)
    assert any(faulty.fails(batch))
    wine_models.deploy(champion="1", challenger=version, strategy="bluegreen", challenger_weight=1.0)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        answers = [client.post("/v1/predict", json=r) for r in records]
        batch_answer = client.post("/v1/predict", json=batch)
        counted = requests_total(client.get("/metrics").text)

    assert [a.status_code == 500 for a in answers] == expected
    assert {a.headers["content-type"] for a in answers} == {"application/json"}
    failed = [a.json() for a in answers if a.status_code == 500] + [batch_answer.json()]
    assert batch_answer.status_code == 500
    assert {(b["model_version"], b["arm"]) for b in failed} == {(version, "challenger")}
    assert all("InjectedFault" in b["detail"] and len(b["request_id"]) == 32 for b in failed)
    assert counted[(version, "challenger", "500")] == len(failed)
    assert counted[(version, "challenger", "200")] == expected.count(False)

    errors = read_log(tmp_path, "errors").to_pylist()
    assert sorted((r["request_id"], r["rows"]) for r in errors) == sorted(
        [(b["request_id"], 1) for b in failed[:-1]] + [(failed[-1]["request_id"], len(batch))]
    )
    assert {(r["model_version"], r["arm"], r["status"], r["error"]) for r in errors} == {
        (version, "challenger", 500, "InjectedFault")
    }
    # Every 200 is logged once; no failed request is in the prediction log.
    logged = [r["request_id"] for r in read_log(tmp_path, "predictions").to_pylist()]
    assert sorted(logged) == sorted(a.json()["request_id"] for a in answers if a.status_code == 200)


def test_shadow_failures_are_logged_and_leave_the_answer_alone(
    wine_models: WineModels, faulty: Faulty, tmp_path: Path
) -> None:
    version = faulty.version
    records = wine_models.records(30, start=400)
    expected = faulty.fails(records)
    assert any(expected)
    wine_models.deploy(champion="1", challenger=version, strategy="shadow", challenger_weight=0.0)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        answers = [client.post("/v1/predict", json=r) for r in records]
        counted = requests_total(client.get("/metrics").text)
    assert {a.status_code for a in answers} == {200}
    assert not [k for k in counted if k[2] == "500"]
    ids = [a.json()["request_id"] for a in answers]
    errors = read_log(tmp_path, "errors").to_pylist()
    failed = {r["request_id"] for r in errors}
    # Each shadow scoring is either logged as an answer or as a failure. Scorings that shared a batch with
    # a failing row fail with it (the shadow batcher coalesces), so the failures include the failing rows.
    scored = {r["request_id"] for r in read_log(tmp_path, "predictions").to_pylist() if r["arm"] == "shadow"}
    assert not failed & scored and failed | scored == set(ids) and len(errors) == len(failed)
    assert {i for i, f in zip(ids, expected, strict=True) if f} <= failed
    assert {(r["model_version"], r["arm"], r["status"], r["rows"]) for r in errors} == {
        (version, "shadow", None, 1)
    }


def test_an_unexpected_failure_outside_predict_is_a_counted_json_500(
    wine_models: WineModels, tmp_path: Path
) -> None:
    """Feedback (and every route besides predict) goes through FastAPI: a fault there is a JSON 500 too."""
    wine_models.deploy(champion="1")
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:

        def broken(_entry: object) -> bool:
            raise OSError("injected: the feedback log cannot take rows")

        server.service.writers["feedback"].put = broken
        client = httpx.Client(base_url=server.base)
        answer = client.post("/v1/feedback", json={"request_id": "abc", "label": 5})
        counted = requests_total(client.get("/metrics").text)
        still = client.post("/v1/predict", json=wine_models.records(1)[0])

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["detail"] == "internal error: OSError" and len(body["request_id"]) == 32
    assert counted[("", "", "500")] == 1
    assert still.status_code == 200  # the server goes on


def test_feedback_labels_must_be_of_the_models_classes_and_unknown_ids_are_counted_by_monitoring(
    wine_models: WineModels, tmp_path: Path
) -> None:
    """A label no wine quality can be is a 422 naming the item; a quality the model never predicted (9) is
    accepted, as retraining needs it; an unknown request id is accepted (no log lookup on this route) and
    the monitoring pass counts it as unmatched."""
    from driftloop.monitor.logwindow import read_labeled

    wine_models.deploy(champion="1")  # wine quality: classes 3..8
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        served = client.post("/v1/predict", json=wine_models.records(1)[0]).json()["request_id"]
        bad = [
            ({"request_id": served, "label": "cat"}, "label", 'got "cat"'),
            ({"request_id": served, "label": 6.5}, "label", "got 6.5"),
            ({"request_id": served, "label": True}, "label", "got true"),
            ({"feedback": [{"request_id": served, "label": 6}, {"request_id": "x", "label": "nine"}]},
             "feedback[1].label", 'got "nine"'),
        ]  # fmt: skip
        for body, loc, shown in bad:
            r = client.post("/v1/feedback", json=body)
            assert r.status_code == 422, (body, r.text)
            (problem,) = r.json()["errors"]
            assert problem["loc"] == loc and "3, 4, 5, 6, 7, 8" in problem["msg"] and shown in problem["msg"]
        assert client.post("/v1/feedback", json={"request_id": served, "label": 6}).json() == {"accepted": 1}
        assert client.post("/v1/feedback", json={"request_id": served, "label": "5"}).json() == {
            "accepted": 1
        }
        unknown = client.post("/v1/feedback", json={"request_id": "never-served", "label": 9.0})
        assert unknown.json() == {"accepted": 1}
    assert sorted(read_log(tmp_path, "feedback").column("label").to_pylist()) == ["5", "6", "9"]
    labeled, unmatched = read_labeled(tmp_path, "wine", start=None, end=None)
    assert unmatched == 1 and labeled["label"].tolist() == ["5"]  # the latest label of the served request
