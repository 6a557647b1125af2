"""The loop page's JSON routes through a real socket, over a scripted loop history: each answer follows the
schema /openapi.json publishes for it and says what the stores hold; bad input is a 4xx naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jsonschema

from tests.integration import serve_support
from tests.integration.serve_support import ServerProcess, WineModels
from tests.integration.ui_support import LoopHistory, loop_history, page_only, serving

history = loop_history
wine_models = serve_support.wine_models  # the session fixture


def _valid(spec: dict[str, Any], path: str, body: Any, status: str = "200") -> None:
    schema = spec["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(schema).validate(body)


def test_routes_answer_from_the_stores(history: LoopHistory) -> None:
    steps = history.cfg.loop.rollout.steps
    with serving(history.cfg) as base, httpx.Client(base_url=base, timeout=60) as http:
        spec = http.get("/openapi.json").json()
        answers = {p: http.get(p) for p in ("/ui/api/now", "/ui/api/history", "/ui/api/monitoring",
                                            "/ui/api/traffic", "/ui/api/events")}  # fmt: skip
        for path, r in answers.items():
            assert r.status_code == 200, (path, r.text)
            _valid(spec, path, r.json())

        now = answers["/ui/api/now"].json()
        dep = now["deployment"]
        assert (dep["champion"], dep["challenger"], dep["strategy"]) == (
            history.champion,
            history.challenger,
            "canary",
        )
        tags = history.stores.tracking.get_version(history.champion).tags
        assert now["champion"]["version"] == history.champion and now["champion"]["family"] == tags["family"]
        assert now["challenger"]["data_version"] != now["champion"]["data_version"]
        canary = now["canary"]
        assert canary["step"] == 1 and canary["steps"] == steps and canary["weight"] == steps[1]
        # The step began after the scripted traffic: its evidence counts nothing yet, and the decision waits.
        assert canary["arms"]["challenger"]["requests"] == 0 and canary["decision"]["action"] == "hold"
        assert now["pool"]["ready"] is True and now["admin"] is True

        shares = [c["challenger_share"] for c in answers["/ui/api/history"].json()["changes"]]
        assert shares[-2:] == steps[:2]  # the staircase: first step, then the second

        windows = answers["/ui/api/monitoring"].json()["windows"]
        assert len(windows) == 1
        w = windows[0]
        assert w["rows"] == len(history.request_ids) and set(w["features"]) >= {"alcohol", "residual sugar"}
        assert w["drift_share"] is not None and w["dataset_drift"] is True  # white wines after red ones
        groups = {(g["model_version"], g["arm"]): g for g in w["performance"]}
        assert sum(g["n_labeled"] for g in groups.values()) == len(history.request_ids)

        series = answers["/ui/api/traffic"].json()["series"]
        assert sum(b["answered"] for b in series) == len(history.request_ids)
        assert all(b["p99_latency_ms"] > 0 for b in series if b["answered"])

        kinds = [e["kind"] for e in answers["/ui/api/events"].json()["events"]]
        assert "canary_started" in kinds and "model_registered" in kinds

        lineage = http.get(f"/ui/api/versions/{history.challenger}")
        assert lineage.status_code == 200
        _valid(spec, "/ui/api/versions/{version}", lineage.json())
        assert lineage.json()["gate"]["decision"] and lineage.json()["data"]["digest"]

        rid = history.request_ids[-1]
        explained = http.get("/ui/api/explain", params={"request_id": rid})
        assert explained.status_code == 200
        _valid(spec, "/ui/api/explain", explained.json())
        assert explained.json()["outcome"] == "answered" and explained.json()["feedback"] is not None

        # Bad input: 4xx naming what is wrong, never a 500.
        assert http.get("/ui/api/versions/99").status_code == 404
        bad = http.get("/ui/api/versions/x1")
        assert bad.status_code == 422 and "version" in bad.json()["detail"]
        unknown = http.get("/ui/api/explain", params={"request_id": "no-such-request"})
        assert unknown.status_code == 404 and "no-such-request" in unknown.json()["detail"]
        spaced = http.get("/ui/api/explain", params={"request_id": "has space"})
        assert spaced.status_code == 422 and "request_id" in spaced.json()["detail"]

        page = http.get("/ui")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        assert 'src="/ui/assets/plotly.min.js"' in page.text
        js = http.get("/ui/assets/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000
        assert http.get("/ui/assets/ui.js").status_code == 200


def test_page_alone_reads_the_same_stores(history: LoopHistory, tmp_path: Path) -> None:
    """`driftloop ui`: the same answers without a server; no pool, no admin API on that origin."""
    with page_only(history.cfg) as base, httpx.Client(base_url=base, timeout=60) as http:
        now = http.get("/ui/api/now").json()
        assert now["deployment"]["challenger"] == history.challenger
        assert now["pool"] is None and now["admin"] is False
        assert http.post("/v1/admin/rollback", json={}).status_code == 404
        assert http.get("/ui").status_code == 200


def test_driftloop_serve_carries_the_page(wine_models: WineModels, tmp_path: Path) -> None:
    """The `driftloop serve` process (its uvicorn factory) serves the page and its routes beside predict."""
    wine_models.deploy(champion=wine_models.versions[0])
    config = wine_models.config_file(tmp_path, tmp_path / "logs", compile_models=False)
    with ServerProcess(config, workers=1) as server:
        assert httpx.get(f"{server.base}/ui").status_code == 200
        now = httpx.get(f"{server.base}/ui/api/now", timeout=60).json()
    assert now["deployment"]["champion"] == wine_models.versions[0] and now["pool"]["ready"] is True
    assert now["admin"] is False  # no serving.admin_token: no admin API, and the page says so
