"""The published OpenAPI document against the real server: every route's answers have a JSON schema, real answers
(2xx and errors) validate against it, and Swagger UI and ReDoc render offline in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest

from driftloop.config import config_from_dict
from tests.e2e.test_drift_cli_report import CHROMIUM_FLAGS as HEADLESS
from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture
TOKEN = "openapi-admin-token"


def answer_schema(spec: dict[str, Any], path: str, method: str, status: int, media: str) -> dict[str, Any]:
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path}: {status} is not documented"
    content = responses[str(status)].get("content", {})
    assert media in content, f"{method.upper()} {path} {status}: no {media} schema"
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; the refs point into the document's components.
    return {**content[media]["schema"], "components": spec["components"]}


def check(spec: dict[str, Any], r: httpx.Response, path: str, method: str = "get") -> dict[str, Any]:
    schema = answer_schema(spec, path, method, r.status_code, "application/json")
    body = r.json()
    jsonschema.Draft202012Validator(schema).validate(body)
    return body


@pytest.fixture
def server(wine_models: WineModels, tmp_path: Path) -> Any:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.5)
    cfg = wine_models.config(tmp_path, compile_models=False, admin_token=TOKEN)
    with ServerThread(cfg) as srv:
        yield srv


def test_every_route_documents_a_schema_for_each_answer(server: ServerThread) -> None:
    spec = httpx.get(f"{server.base}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    jsonschema.Draft202012Validator.check_schema({"components": spec["components"]})
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                assert response.get("content"), f"{method.upper()} {path} {status}: no schema"
                for media, body in response["content"].items():
                    assert body.get("schema"), f"{method.upper()} {path} {status} {media}: no schema"
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert {
        ("/v1/predict", "post"),
        ("/v1/feedback", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/deployment", "get"),
        ("/v1/admin/deployment", "post"),
        ("/v1/admin/rollback", "post"),
    } <= documented


def test_real_answers_follow_the_published_schemas(server: ServerThread, wine_models: WineModels) -> None:
    client = httpx.Client(base_url=server.base)
    spec = client.get("/openapi.json").json()
    records = wine_models.records(3)
    one = check(spec, client.post("/v1/predict", json=records[0]), "/v1/predict", "post")
    assert set(one["probabilities"]) and one["arm"] in {"champion", "challenger"}
    many = check(spec, client.post("/v1/predict", json=records), "/v1/predict", "post")
    assert len(many["predictions"]) == 3 and len(many["probabilities"][0]) == len(many["classes"])
    columns = {"columns": list(records[0]), "data": [list(r.values()) for r in records]}
    check(spec, client.post("/v1/predict", json=columns), "/v1/predict", "post")
    bad = [
        client.post("/v1/predict", content=b"{", headers={"content-type": "application/json"}),
        client.post("/v1/predict", content=b"{}", headers={"content-type": "text/plain"}),
        client.post("/v1/predict", json={"alcohol": "x"}),
        client.post("/v1/predict", json=records[0], headers={"x-request-id": "has space"}),
    ]
    assert [r.status_code for r in bad] == [400, 415, 422, 400]
    for r in bad:
        check(spec, r, "/v1/predict", "post")

    fb = {"request_id": one["request_id"], "label": 6}
    assert check(spec, client.post("/v1/feedback", json=fb), "/v1/feedback", "post") == {"accepted": 1}
    check(spec, client.post("/v1/feedback", json={"label": 6}), "/v1/feedback", "post")
    assert check(spec, client.get("/healthz"), "/healthz") == {"status": "ok"}
    assert check(spec, client.get("/readyz"), "/readyz")["deployment"]["challenger"] == "2"
    assert check(spec, client.get("/v1/deployment"), "/v1/deployment")["strategy"] == "ab"
    metrics = client.get("/metrics")
    assert answer_schema(spec, "/metrics", "get", 200, "text/plain") and metrics.status_code == 200

    auth = {"authorization": f"Bearer {TOKEN}"}
    admin = "/v1/admin/deployment"
    assert check(spec, client.post(admin, json={"strategy": "ab"}), admin, "post")["detail"]  # 401
    assert check(spec, client.post(admin, json={}, headers={"authorization": "Bearer no"}), admin, "post")
    check(spec, client.post(admin, json={"strategy": "yolo"}, headers=auth), admin, "post")  # 422
    change = {"strategy": "canary", "challenger_weight": 0.25, "reason": "schema test"}
    changed = check(spec, client.post(admin, json=change, headers=auth), admin, "post")
    assert changed["strategy"] == "canary" and changed["challenger_weight"] == 0.25
    rollback = "/v1/admin/rollback"
    back = check(spec, client.post(rollback, json={"reason": "done"}, headers=auth), rollback, "post")
    assert back["challenger"] is None and back["strategy"] == "single"


# -- Swagger UI and ReDoc, offline ------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    *HEADLESS,
    "--disable-features=AutofillServerCommunication",  # the browser's own request, on the page's behalf
    # Offline: every host name but the server's fails to resolve, so a CDN asset cannot load.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def render(url: str, folder: Path) -> tuple[str, set[str]]:
    """The page's DOM after its scripts ran, and every URL the page asked for (from Chromium's net log)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed: install the Debian package `chromium` (scripts/install-tools)"
    netlog = folder / "netlog.json"
    run = subprocess.run(
        [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={folder / 'profile'}",
            f"--log-net-log={netlog}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, page_requests(json.loads(netlog.read_text()), urlsplit(url).hostname or "")


def page_requests(log: dict[str, Any], host: str) -> set[str]:
    """URLs of the requests made for the page on `host` (its network isolation key names the page's site).

    The browser's own background requests (component updates, accounts) carry another key and are left out:
    they are Chromium's, not the page's, and the resolver rules stop them anyway.
    """
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls: set[str] = set()
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start_job and params.get("network_isolation_key", "").startswith(
            f"http://{host} "
        ):
            urls.add(params["url"])
    return urls


@pytest.mark.parametrize(
    ("page", "rendered"),
    [
        # Swagger UI: one block per operation, its path in a span; ReDoc: the operation's summary as a heading.
        ("/docs", 'data-path="/v1/predict"'),
        ("/redoc", "Predict one record, a list of records or columnar data"),
    ],
)
def test_docs_pages_render_offline_in_headless_chromium(
    server: ServerThread, page: str, rendered: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.monotonic()
        dom, urls = render(f"{server.base}{page}", Path(folder))
    assert rendered in dom, (
        f"{page} did not render the operations in {time.monotonic() - t0:.0f} s: {dom[:2000]}"
    )
    assert f"{server.base}/openapi.json" in urls
    assert f"{server.base}{page}" in urls  # the filter does see the page's own requests
    elsewhere = {u for u in urls if not u.startswith(f"{server.base}/")}
    assert not elsewhere, f"{page} asked for {sorted(elsewhere)}"


def test_not_ready_answers_follow_the_published_schemas(wine_models: WineModels, tmp_path: Path) -> None:
    raw = wine_models.raw(startup_wait_seconds=0)
    raw["project"]["name"] = "unregistered"  # no model of that name: the server starts and stays not ready
    raw["stores"]["log_dir"] = str(tmp_path)
    server = ServerThread(config_from_dict(raw, base_dir=wine_models.root, environ={}))
    server.thread.start()
    try:
        client = httpx.Client(base_url=server.base)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        spec = client.get("/openapi.json").json()
        ready = client.get("/readyz")
        body = check(spec, ready, "/readyz")
        assert ready.status_code == 503 and body["ready"] is False and body["status"] == "not_ready"
        dep = client.get("/v1/deployment")
        assert dep.status_code == 503 and check(spec, dep, "/v1/deployment")["ready"] is False
        answer = client.post("/v1/predict", json=wine_models.records(1)[0])
        assert (
            answer.status_code == 503 and "no model" in check(spec, answer, "/v1/predict", "post")["detail"]
        )
    finally:
        server.__exit__(None, None, None)
