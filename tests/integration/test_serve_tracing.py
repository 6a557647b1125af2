"""Request identity through a real socket: the client's X-Request-ID is the id everywhere (answer, headers,
prediction log, feedback join), a W3C traceparent is continued, a bad id is a 400 naming the header, and
every request but probes and scrapes writes one JSON access-log line."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest

from driftloop.stores.predlog import read_log
from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))  # each line must be JSON on its own


@pytest.fixture
def access_lines() -> list[dict]:
    handler = _Lines()
    logger = logging.getLogger("driftloop.access")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def test_request_id_traceparent_and_access_log(
    wine_models: WineModels, tmp_path: Path, access_lines: list[dict]
) -> None:
    wine_models.deploy(champion="1")
    record = wine_models.records(1)[0]
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        headers = {"X-Request-ID": "order-17/a", "traceparent": f"00-{TRACE}-{PARENT}-01"}
        answer = client.post("/v1/predict", json=record, headers=headers)
        assert answer.status_code == 200 and answer.json()["request_id"] == "order-17/a"
        assert answer.headers["x-request-id"] == "order-17/a"
        assert answer.headers["x-model-version"] == answer.json()["model_version"] == "1"
        version, trace, span, flags = answer.headers["traceparent"].split("-")
        assert (version, trace, flags) == ("00", TRACE, "01") and re.fullmatch("[0-9a-f]{16}", span)
        assert span != PARENT  # our own span, child of the caller's

        # A batch under the client's id: rows are `<id>:<i>`, as with driftloop's own ids.
        batch = client.post("/v1/predict", json=wine_models.records(3), headers={"X-Request-ID": "batch-9"})
        assert batch.json()["request_id"] == "batch-9"

        # No header: a fresh id and a fresh trace; an invalid traceparent is ignored, not an error.
        fresh = client.post("/v1/predict", json=record, headers={"traceparent": f"00-{'0' * 32}-{PARENT}-01"})
        assert fresh.status_code == 200 and re.fullmatch("[0-9a-f]{32}", fresh.headers["x-request-id"])
        assert fresh.headers["x-request-id"] == fresh.json()["request_id"]
        new_trace = fresh.headers["traceparent"].split("-")[1]
        assert new_trace != "0" * 32 and new_trace != TRACE

        # An id driftloop could not log or join on is the client's mistake: 400 naming the header.
        for bad in ("has space", "x" * 201, "caf\u00e9".encode()):
            for path, body in (("/v1/predict", record), ("/v1/feedback", {"request_id": "a", "label": 5})):
                refused = client.post(path, json=body, headers={"X-Request-ID": bad})
                assert refused.status_code == 400, (path, bad, refused.text)
                assert "X-Request-ID" in refused.json()["detail"]

        # Feedback under the client's id joins the prediction it named.
        fb = client.post("/v1/feedback", json={"request_id": "order-17/a", "label": 6})
        assert fb.status_code == 200 and fb.headers["x-request-id"]
        assert client.get("/metrics").status_code == 200 and client.get("/readyz").status_code == 200

    logged = read_log(tmp_path, "predictions").to_pylist()
    assert {r["request_id"] for r in logged} >= {"order-17/a", "batch-9:0", "batch-9:1", "batch-9:2"}
    assert read_log(tmp_path, "feedback").to_pylist()[0]["request_id"] == "order-17/a"

    paths = [(line["method"], line["path"], line["status"]) for line in access_lines]
    assert ("GET", "/metrics", 200) not in paths and ("GET", "/readyz", 200) not in paths
    first = access_lines[0]
    assert first["request_id"] == "order-17/a" and first["trace_id"] == TRACE and first["status"] == 200
    assert first["model_version"] == "1" and first["arm"] == "champion" and first["rows"] == 1
    assert first["latency_ms"] > 0
    assert [p for p in paths if p[2] == 400] == [
        ("POST", "/v1/predict", 400),
        ("POST", "/v1/feedback", 400),
    ] * 3
    assert ("POST", "/v1/feedback", 200) in paths
