"""MLflow's scoring protocol: the same registered model served by `mlflow models serve` (the oracle) and by
driftloop's /invocations, both on real sockets, answers the five body formats identically; the answers are
logged and counted as /v1/predict's, and bad bodies get a 4xx naming the problem."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pandas as pd
import pytest

from driftloop.stores.predlog import count_rows
from driftloop.stores.tracking import TrackingStore
from tests.integration import serve_support
from tests.integration.serve_support import FEATURES, ServerThread, WineModels, free_port

wine_models = serve_support.wine_models  # the session fixture
ROWS = 5


@pytest.fixture(scope="module")
def driftloop_server(wine_models: WineModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wine_models.deploy(champion=wine_models.versions[0], challenger=None, strategy="single")
    # Uncompiled, so both servers run the same LightGBM booster: the floats are then equal, not just close.
    cfg = wine_models.config(tmp_path_factory.mktemp("invocations-log"), compile_models=False)
    with ServerThread(cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def mlflow_server(wine_models: WineModels, driftloop_server: ServerThread) -> Iterator[str]:
    """`mlflow models serve` on the folder of the version driftloop serves, in this environment."""
    cfg = driftloop_server.service.cfg
    folder = TrackingStore.from_config(cfg).model_dir(wine_models.versions[0])
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # `mlflow models serve` starts uvicorn from PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        f"{bin_dir}/mlflow", "models", "serve", "-m", str(folder), "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 240  # generous: CI can be busy
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"mlflow models serve exited: {log.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("mlflow models serve did not answer /ping in 240 s")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(30)


def bodies(frame: pd.DataFrame) -> dict[str, tuple[str, bytes]]:
    """The same rows in MLflow's five formats. Two float columns travel as JSON integers in the records
    formats (the signature's doubles take them)."""
    records = frame.to_dict(orient="records")
    for r in records:
        r["free sulfur dioxide"] = int(r["free sulfur dioxide"])
        r["total sulfur dioxide"] = int(r["total sulfur dioxide"])
    split = frame.to_dict(orient="split")
    columns = {c: frame[c].tolist() for c in frame.columns}
    csv = io.StringIO()
    frame.to_csv(csv, index=False)
    as_json = "application/json"
    return {
        "dataframe_split": (as_json, json.dumps({"dataframe_split": split}).encode()),
        "dataframe_records": (as_json, json.dumps({"dataframe_records": records}).encode()),
        "instances": (as_json, json.dumps({"instances": records}).encode()),
        "inputs": (as_json, json.dumps({"inputs": columns}).encode()),
        "csv": ("text/csv", csv.getvalue().encode()),
    }


def test_the_five_formats_answer_as_mlflow_models_serve_does(
    wine_models: WineModels, driftloop_server: ServerThread, mlflow_server: str
) -> None:
    frame = wine_models.frame[FEATURES].iloc[100 : 100 + ROWS].reset_index(drop=True)
    for name, (ctype, body) in bodies(frame).items():
        theirs = httpx.post(f"{mlflow_server}/invocations", content=body, headers={"content-type": ctype})
        ours = httpx.post(
            f"{driftloop_server.base}/invocations", content=body, headers={"content-type": ctype}
        )
        assert theirs.status_code == 200, (name, theirs.text)
        assert ours.status_code == 200, (name, ours.text)
        assert ours.json() == theirs.json(), name
        predictions = ours.json()["predictions"]
        assert len(predictions) == ROWS and set(predictions[0]) == {
            "prediction",
            *(f"proba_{c}" for c in sorted(wine_models.frame.quality.unique())),
        }
        assert ours.headers["x-model-version"] == wine_models.versions[0]


def test_invocations_are_logged_counted_and_published_like_predict(
    wine_models: WineModels, driftloop_server: ServerThread
) -> None:
    client = httpx.Client(base_url=driftloop_server.base)
    frame = wine_models.frame[FEATURES].head(3)
    before = _answered(client)
    r = client.post("/invocations", json={"dataframe_split": frame.to_dict(orient="split")})
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    assert _answered(client) == before + 1
    log_dir = driftloop_server.service.cfg.stores.resolved_log_dir()
    deadline = time.monotonic() + 10
    while count_rows(log_dir, "predictions", where=f"request_id LIKE '{request_id}%'") < 3:
        assert time.monotonic() < deadline, "the three rows never reached the prediction log"
        time.sleep(0.1)
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/invocations"]["post"]
    assert {"application/json", "text/csv"} <= set(operation["requestBody"]["content"])
    for status, answer in ((200, r), (422, client.post("/invocations", json={"inputs": {"alcohol": ["x"]}}))):
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(answer.json())
    request = {
        **operation["requestBody"]["content"]["application/json"]["schema"],
        "components": spec["components"],
    }
    jsonschema.Draft202012Validator(request).validate({"dataframe_records": wine_models.records(2)})
    assert client.get("/ping").status_code == 200 and client.get("/health").json() == {"status": "ok"}
    assert client.get("/version").json()["champion"] == wine_models.versions[0]


def _answered(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("driftloop_requests_total{") and 'status="200"' in line
    )


@pytest.mark.parametrize(
    ("ctype", "body", "status", "named"),
    [
        ("application/json", b'{"dataframe_rows": []}', 400, "dataframe_rows"),
        ("application/json", b'{"inputs": {}, "instances": []}', 400, "instances"),
        (
            "application/json",
            b'{"dataframe_split": {"columns": ["alcohol"], "data": [[9.4]]}}',
            422,
            "columns.pH",
        ),
        ("application/json", b'{"dataframe_records": [{"alcohol": "strong"}]}', 422, "alcohol"),
        ("application/json", b'{"inputs": {"alcohol": [9.4, 9.5], "pH": [3.1]}}', 422, "different lengths"),
        ("application/json", b'{"dataframe_split": {"data": [[1]], "orient": 1}}', 422, "orient"),
        ("application/json", b'{"instances": [1, 2]}', 422, "list of records"),
        ("application/json", b"{not json", 400, "malformed JSON"),
        ("text/csv", b'alcohol,pH\n9.4,"3.1\n', 400, "CSV"),
        ("text/csv", b"alcohol,pH\n9.4,3.1,7\n", 400, "line 2"),
        ("text/csv", b"", 400, "empty body"),
        ("application/x-parquet", b"PAR1", 415, "text/csv"),
    ],
)
def test_bad_bodies_get_a_4xx_naming_the_problem(
    driftloop_server: ServerThread, ctype: str, body: bytes, status: int, named: str
) -> None:
    r = httpx.post(f"{driftloop_server.base}/invocations", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    answer = r.json()
    assert named in answer["message"] and answer["error_code"]


def test_csv_numbers_are_validated_per_cell(wine_models: WineModels, driftloop_server: ServerThread) -> None:
    frame = wine_models.frame[FEATURES].head(2).astype(object)
    frame.loc[1, "pH"] = "acidic"
    body = frame.to_csv(index=False).encode()
    r = httpx.post(f"{driftloop_server.base}/invocations", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"loc": "data[1].pH", "msg": "expected a number, got string 'acidic'"}]


def test_invocations_are_routed_like_predict(wine_models: WineModels, driftloop_server: ServerThread) -> None:
    """A/B: the routing key (top-level beside the format key, or the header) picks the arm, sticky."""
    v1, v2 = wine_models.versions
    wine_models.deploy(champion=v1, challenger=v2, strategy="ab", challenger_weight=0.5)
    client = httpx.Client(base_url=driftloop_server.base)
    deadline = time.monotonic() + 10
    while client.get("/v1/deployment").json()["challenger"] != v2:
        assert time.monotonic() < deadline, "the server never loaded the A/B deployment"
        time.sleep(0.1)
    records = wine_models.records(2)
    served = {}
    for i in range(30):
        body = {"dataframe_records": records, "routing_key": f"user-{i}"}
        first = client.post("/invocations", json=body)
        again = client.post(
            "/invocations", json={"dataframe_records": records}, headers={"x-routing-key": f"user-{i}"}
        )
        assert first.status_code == again.status_code == 200, first.text
        assert first.headers["x-model-version"] == again.headers["x-model-version"]
        served[first.headers["x-model-version"]] = first.json()
    assert set(served) == {v1, v2}
    assert served[v1] != served[v2]  # two models: 30 and 60 trees
    wine_models.deploy(champion=v1, challenger=None, strategy="single")
