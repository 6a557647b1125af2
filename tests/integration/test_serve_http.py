"""The prediction service through a real socket: shapes, routing, shadow, hot swap, bad input, admin, logs."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import httpx
import pytest

from driftloop.stores.metadata import MetadataStore
from driftloop.stores.models import load_bundle_dir
from driftloop.stores.predlog import count_rows, read_log
from tests.conftest import backend, database_url, drop_database
from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture

TOKEN = "t0ken-for-tests"


def native_answers(models: WineModels, version: str, records: list[dict]) -> list:
    bundle = load_bundle_dir(models.root / "cache" / "models" / "wine" / version)
    return bundle.predict_records(records).labels.tolist()


def test_predict_shapes_answers_and_log(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    records = wine_models.records(5)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        one = client.post("/v1/predict", json=records[0]).json()
        assert one["arm"] == "champion" and one["model_version"] == "1" and len(one["request_id"]) == 32
        assert set(one["probabilities"]) == {"3", "4", "5", "6", "7", "8"}
        assert math.isclose(sum(one["probabilities"].values()), 1.0)
        many = client.post("/v1/predict", json=records).json()
        cols = list(records[0])
        columnar = client.post(
            "/v1/predict", json={"columns": cols, "data": [[r[c] for c in cols] for r in records]}
        ).json()
        wrapped = client.post("/v1/predict", json={"records": records, "routing_key": "u1"}).json()
        expected = native_answers(wine_models, "1", records)
        assert many["predictions"] == columnar["predictions"] == wrapped["predictions"] == expected
        assert one["prediction"] == expected[0]
        assert many["classes"] == [3, 4, 5, 6, 7, 8] and len(many["probabilities"]) == 5
        assert client.get("/healthz").json() == {"status": "ok"}
        dep = client.get("/v1/deployment").json()
        assert dep["champion"] == "1" and dep["strategy"] == "single" and dep["store"]["reachable"]
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
        assert "alcohol" in spec["components"]["schemas"]["Record"]["properties"]
        fb = client.post("/v1/feedback", json={"feedback": [{"request_id": one["request_id"], "label": 6}]})
        assert fb.json() == {"accepted": 1}
        assert (
            client.post(
                "/v1/feedback", json={"request_id": f"{many['request_id']}:0", "label": 5.0}
            ).status_code
            == 200
        )
    # Server stopped gracefully: everything answered is on disk, once.
    table = read_log(tmp_path, "predictions").to_pylist()
    assert len(table) == 1 + 5 * 3
    row = next(r for r in table if r["request_id"] == one["request_id"])
    assert row["features"]["alcohol"] == records[0]["alcohol"] and row["prediction"] == str(expected[0])
    assert json.loads(row["probabilities"]) == pytest.approx(one["probabilities"])
    assert {r["request_id"] for r in table if r["request_id"].startswith(many["request_id"])} == {
        f"{many['request_id']}:{i}" for i in range(5)
    }
    labels = {r["request_id"]: r["label"] for r in read_log(tmp_path, "feedback").to_pylist()}
    assert labels == {one["request_id"]: "6", f"{many['request_id']}:0": "5"}


BAD_BODIES = [
    # (content, content type, expected status, a location the message must name)
    (b'{"alcohol": ', "application/json", 400, None),
    (b"", "application/json", 400, None),
    (b'{"alcohol": 1}', "text/plain", 415, None),
    (b'{"alcohol": 1}', None, 415, None),
    (b'"just a string"', "application/json", 422, None),
    (b"[]", "application/json", 422, None),
    (b'{"alcohol": NaN}', "application/json", 422, "alcohol"),
    (b'{"alcohol": Infinity}', "application/json", 422, "alcohol"),
    (b'{"alcohol": "high"}', "application/json", 422, "alcohol"),
    (b'{"alcohol": true}', "application/json", 422, "alcohol"),
    (b'{"alcohol": null}', "application/json", 422, "alcohol"),
    (b'{"alcohol": 1e999}', "application/json", 422, "alcohol"),
    (b'{"colour": "red"}', "application/json", 422, "colour"),
    (b'[{"alcohol": 1}, 3]', "application/json", 422, "[1]"),
    (b'{"columns": ["alcohol"], "data": [[1, 2]]}', "application/json", 422, "data[0]"),
    (b'{"columns": "alcohol", "data": []}', "application/json", 422, "columns"),
    (b'{"records": {}, "routing_key": "a"}', "application/json", 422, "records"),
    (b'{"routing_key": [], "alcohol": 1}', "application/json", 422, "routing_key"),
    (b"\xff\xfe\x00", "application/json", 400, None),
    (b'{"a": ' * 5000, "application/json", 400, None),
    # Valid JSON that no model or log can take (once a 500, or a 200 that poisoned the log writer).
    (b'{"\\ud800": 1}', "application/json", 422, "\\ud800"),
    (b'{"alcohol": 1, "routing_key": "a\\udc00"}', "application/json", 422, "routing_key"),
    (b'{"alcohol": 1' + b"0" * 400 + b"}", "application/json", 422, "alcohol"),
    (b'[{"alcohol": -1' + b"0" * 400 + b"}]", "application/json", 422, "[0].alcohol"),
    (b'{"alcohol": 1e308}', "application/json", 422, "alcohol"),
    (b'{"alcohol": -1e50}', "application/json", 422, "alcohol"),
]
BAD_FEEDBACK = [
    b'{"request_id": "\\ud800", "label": 6}',
    b'{"feedback": [{"request_id": "r-1", "label": 6}, {"request_id": "r-\\udfff", "label": 6}]}',
    b'{"\\ud800": 1}',
    b'{"request_id": "r-2", "label": 1' + b"0" * 400 + b"}",
    b'{"request_id": "r-3", "label": "\\udc80"}',
]


def test_bad_input_suite_gets_4xx_naming_the_field(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    with ServerThread(wine_models.config(tmp_path, compile_models=False, max_body_bytes=50_000)) as server:
        client = httpx.Client(base_url=server.base)
        for content, ctype, status, loc in BAD_BODIES:
            headers = {"content-type": ctype} if ctype else {}
            r = client.post("/v1/predict", content=content, headers=headers)
            assert r.status_code == status, (content[:60], r.text)
            assert r.json()["detail"]
            if loc:
                assert any(loc in p["loc"] for p in r.json()["errors"]), r.text
        big = json.dumps(wine_models.records(400)).encode()
        assert (
            client.post("/v1/predict", content=big, headers={"content-type": "application/json"}).status_code
            == 413
        )

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for _ in range(100):
                yield b" " * 1000

        r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert client.post("/v1/feedback", json={"request_id": "", "label": None}).status_code == 422
        for content in BAD_FEEDBACK:
            r = client.post("/v1/feedback", content=content, headers={"content-type": "application/json"})
            assert r.status_code == 422, (content[:60], r.text)
        # The feedback log still writes (a lone surrogate once failed every flush after it).
        assert client.post("/v1/feedback", json={"request_id": "r-ok", "label": 6}).json() == {"accepted": 1}
        assert client.post("/v1/feedback", json=[{"request_id": "a", "label": 1, "x": 2}]).status_code == 422
        assert client.get("/v1/admin/deployment").status_code == 404  # no token configured: admin is off
        assert client.post("/v1/admin/rollback", json={}).status_code == 404
        metrics = client.get("/metrics").text
        assert 'driftloop_requests_total{arm="",model_name="wine",model_version="",status="422"}' in metrics
    assert count_rows(tmp_path, "predictions") == 0
    assert read_log(tmp_path, "feedback").column("request_id").to_pylist() == ["r-ok"]


def test_weights_are_honoured_and_assignment_is_sticky(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.2)
    record = wine_models.records(1)[0]
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        n = 1500
        arms = [client.post("/v1/predict", json=record).json() for _ in range(n)]
        share = sum(a["arm"] == "challenger" for a in arms) / n
        assert abs(share - 0.2) < 4.5 * math.sqrt(0.2 * 0.8 / n)
        assert all(a["model_version"] == ("2" if a["arm"] == "challenger" else "1") for a in arms)
        for key in ("user-1", "user-2", "user-3", "user-4", "user-5", "user-6"):
            by_field = {
                client.post("/v1/predict", json={**record, "routing_key": key}).json()["arm"]
                for _ in range(8)
            }
            by_header = {
                client.post("/v1/predict", json=[record], headers={"x-routing-key": key}).json()["arm"]
                for _ in range(8)
            }
            assert len(by_field) == 1 and by_field == by_header


def test_shadow_never_changes_the_answer(wine_models: WineModels, tmp_path: Path) -> None:
    records = wine_models.records(40, start=100)
    champion = native_answers(wine_models, "1", records)
    assert champion != native_answers(wine_models, "2", records)  # the two models do disagree somewhere
    wine_models.deploy(champion="1", challenger="2", strategy="shadow", challenger_weight=0.5)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        answers = [client.post("/v1/predict", json=r).json() for r in records]
    assert [a["prediction"] for a in answers] == champion
    assert {a["arm"] for a in answers} == {"champion"} and {a["model_version"] for a in answers} == {"1"}
    rows = read_log(tmp_path, "predictions").to_pylist()
    shadow = {r["request_id"]: r for r in rows if r["arm"] == "shadow"}
    served = {r["request_id"]: r for r in rows if r["arm"] == "champion"}
    assert set(shadow) == set(served) == {a["request_id"] for a in answers}
    assert {r["model_version"] for r in shadow.values()} == {"2"}


def test_hot_swap_under_concurrent_load_fails_no_request(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    record = wine_models.records(1)[0]
    failures: list[str] = []
    versions: list[str] = []
    ok_rows = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def hammer(base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/predict", json=[record, record])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                with lock:
                    versions.append(r.json()["model_version"])
                    ok_rows[0] += 2

    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        threads = [threading.Thread(target=hammer, args=(server.base,)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        steps = [
            {"champion": "1", "challenger": "2", "strategy": "canary", "challenger_weight": 0.5},
            {"champion": "2"},
            {"champion": "1", "challenger": "2", "strategy": "bluegreen", "challenger_weight": 1.0},
            {"champion": "2"},
        ]
        for step in steps:
            wine_models.deploy(**step)
            time.sleep(0.7)
        stop.set()
        for t in threads:
            t.join()
        assert server.service.pool.state.champion.version == "2"
    assert failures == []
    assert "1" in versions and versions[-1] == "2"
    assert count_rows(tmp_path, "predictions") == ok_rows[0]


def test_store_outage_keeps_serving_and_is_reported(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    # A metadata store of its own that this test can break. (Copying the shared database file instead would
    # close a descriptor of it in this process, which drops SQLite's POSIX locks on it: never do that.)
    url = database_url(tmp_path)
    store = MetadataStore.connect(url)
    store.update_deployment(store.get_deployment("wine"), champion="1", reason="test")
    with ServerThread(wine_models.config(tmp_path / "logs", compile_models=False)) as server:
        server.service.metadata = store
        server.service.pool._read_deployment = lambda: store.get_deployment("wine")
        client = httpx.Client(base_url=server.base)
        store.engine.dispose()
        if backend() == "postgres":
            drop_database(url)  # the database is gone: every read fails
        else:
            db = tmp_path / "driftloop.db"
            db.unlink()
            db.mkdir()  # a folder where the database file was: every read fails
        deadline = time.monotonic() + 5
        while client.get("/readyz").json()["store"]["reachable"] and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["store"]["reachable"] is False and body["store"]["error"]
        assert body["deployment"]["champion"] == "1"
        assert client.post("/v1/predict", json=wine_models.records(1)[0]).status_code == 200
        assert "driftloop_store_unreachable 1.0" in client.get("/metrics").text


def test_admin_endpoints_need_the_token(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.1)
    with ServerThread(wine_models.config(tmp_path, compile_models=False, admin_token=TOKEN)) as server:
        client = httpx.Client(base_url=server.base)
        change = {"strategy": "ab", "challenger_weight": 0.5, "reason": "more traffic"}
        r = client.post("/v1/admin/deployment", json=change)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert (
            client.post(
                "/v1/admin/deployment", json=change, headers={"authorization": "Basic abc"}
            ).status_code
            == 401
        )
        assert (
            client.post(
                "/v1/admin/deployment", json=change, headers={"authorization": "Bearer nope"}
            ).status_code
            == 403
        )
        # Authentication comes before reading the body: no token, no hint about the body.
        assert (
            client.post(
                "/v1/admin/deployment", content=b"{", headers={"content-type": "application/json"}
            ).status_code
            == 401
        )
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert (
            client.post("/v1/admin/deployment", json={"challenger_weight": 2}, headers=auth).status_code
            == 422
        )
        assert client.post("/v1/admin/deployment", json={"strategy": "yolo"}, headers=auth).status_code == 422
        r = client.post("/v1/admin/deployment", json=change, headers=auth)
        assert (
            r.status_code == 200
            and r.json()["challenger_weight"] == 0.5
            and r.json()["reason"] == "more traffic"
        )
        deadline = time.monotonic() + 5
        while client.get("/v1/deployment").json()["challenger_weight"] != 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/v1/deployment").json()["challenger_weight"] == 0.5
        r = client.post("/v1/admin/rollback", json={"reason": "bad canary"}, headers=auth)
        assert r.status_code == 200 and r.json()["challenger"] is None and r.json()["strategy"] == "single"
        assert (
            client.post("/v1/admin/rollback", json={}, headers=auth).status_code == 422
        )  # nothing left to roll back
        deadline = time.monotonic() + 5
        while client.get("/v1/deployment").json()["challenger"] is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post("/v1/predict", json=wine_models.records(1)[0]).json()["arm"] == "champion"


def test_admin_token_rotation_accepts_the_previous_token_until_it_is_dropped(
    wine_models: WineModels, tmp_path: Path
) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.1)
    change = {"strategy": "ab", "challenger_weight": 0.2}
    rotating = wine_models.config(
        tmp_path, compile_models=False, admin_token="new-token", admin_token_previous=TOKEN
    )
    with ServerThread(rotating) as server:
        client = httpx.Client(base_url=server.base)
        for token, status in ((TOKEN, 200), ("new-token", 200), ("other", 403), (f"{TOKEN}x", 403)):
            r = client.post("/v1/admin/deployment", json=change, headers={"authorization": f"Bearer {token}"})
            assert r.status_code == status, (token, r.text)
    rotated = wine_models.config(tmp_path, compile_models=False, admin_token="new-token")
    with ServerThread(rotated) as server:
        client = httpx.Client(base_url=server.base)
        old = client.post("/v1/admin/deployment", json=change, headers={"authorization": f"Bearer {TOKEN}"})
        assert old.status_code == 403
        assert "/v1/admin/rollback" in client.get("/openapi.json").json()["paths"]
