"""A/B on a business outcome end to end: clients report conversions and revenue with their feedback through
a real socket, and `driftloop experiment` reads the arms back and says which one wins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from typer.testing import CliRunner

from driftloop.cli.app import app
from driftloop.stores.predlog import read_log
from tests.integration import serve_support
from tests.integration.serve_support import ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture

RATES = {"champion": 0.10, "challenger": 0.30}


def test_outcomes_flow_from_feedback_to_a_sequential_verdict(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.5)
    rng = np.random.default_rng(0)
    records = wine_models.records(400)
    served: list[dict] = []
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = httpx.Client(base_url=server.base)
        for i in range(1200):
            served.append(client.post("/v1/predict", json=records[i % len(records)]).json())
        converted = [a for a in served if rng.random() < RATES[a["arm"]]]
        items = [
            {"request_id": a["request_id"], "outcomes": {"conversion": 1, "revenue": 20.0}} for a in converted
        ]
        items[0]["label"] = 6  # a label and outcomes in one item
        for start in range(0, len(items), 200):
            answer = client.post("/v1/feedback", json={"feedback": items[start : start + 200]})
            assert answer.status_code == 200, answer.text
        bad = client.post(
            "/v1/feedback", json={"feedback": [{"request_id": "x", "outcomes": {"conversion": "yes"}}]}
        )
        assert bad.status_code == 422
        assert bad.json()["errors"] == [
            {"loc": "feedback[0].outcomes.conversion", "msg": "must be a finite number, got 'yes'"}
        ]
    # Only the one item with a label wrote a label row; every outcome is in the outcomes log.
    assert read_log(tmp_path, "feedback").num_rows == 1
    assert read_log(tmp_path, "outcomes").num_rows == 2 * len(converted)

    config = wine_models.config_file(tmp_path, tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "conversion",
            "--config",
            str(config),
            "--min-lift",
            "0.05",
            "--json",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    arms = {a["arm"]: a for a in report["arms"]}
    for arm in ("champion", "challenger"):
        n = sum(a["arm"] == arm for a in served)
        conversions = sum(a["arm"] == arm for a in converted)
        assert (arms[arm]["requests"], arms[arm]["reported"]) == (n, conversions)
        assert arms[arm]["mean"] == conversions / n
    comparison = report["comparison"]
    assert comparison["verdict"] == "challenger wins", comparison
    assert "challenger wins" in result.output and "requests per arm" in result.output

    revenue = CliRunner().invoke(app, ["experiment", "revenue", "--config", str(config), "--missing", "skip"])
    assert revenue.exit_code == 0 and "no decision yet" in revenue.output  # every reported revenue is 20
    usage = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftloop.cli",
            "experiment",
            "conversion",
            "-c",
            str(config),
            "--missing",
            "maybe",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert usage.returncode == 2 and "--missing must be zero or skip" in usage.stderr + usage.stdout
