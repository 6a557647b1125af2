"""The Open Inference Protocol (V2) with a real client, `tritonclient.http`, against a real server on a socket:
metadata, readiness, inference with named tensors (binary and JSON) agreeing with /v1/predict, a pinned
version, routing, the prediction log and metrics, and 4xx errors naming the tensor."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from driftloop.stores.predlog import read_log
from tests.integration import serve_support
from tests.integration.serve_support import FEATURES, ServerThread, WineModels

wine_models = serve_support.wine_models  # the session fixture


def client_for(server: ServerThread) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")


def feature_inputs(records: list[dict[str, float]], *, binary: bool = True, dtype: Any = np.float64) -> list:
    datatype = {np.float64: "FP64", np.float32: "FP32"}[dtype]
    inputs = []
    for name in FEATURES:
        values = np.array([[r[name]] for r in records], dtype=dtype)  # [n, 1]
        tensor = triton.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def errors_of(call: Any) -> tuple[int, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return int(caught.value.status()), caught.value.message()


def test_metadata_and_readiness(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="canary", challenger_weight=0.1)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = client_for(server)
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata()["name"] == "driftloop"
        meta = client.get_model_metadata("wine")
        assert meta["name"] == "wine" and meta["versions"] == ["1", "2"]
        assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
            (f, "FP64", [-1]) for f in FEATURES
        ]
        assert meta["outputs"] == [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 6]},
        ]
        assert client.get_model_metadata("wine", "2")["versions"] == ["1", "2"]
        assert client.is_model_ready("wine") and client.is_model_ready("wine", "2")
        assert not client.is_model_ready("wine", "3") and not client.is_model_ready("beer")
        status, message = errors_of(lambda: client.get_model_metadata("wine", "3"))
        assert status == 404 and "version '3'" in message and "served: 1, 2" in message
        status, message = errors_of(lambda: client.get_model_metadata("beer"))
        assert status == 404 and "'beer'" in message


def test_infer_agrees_with_v1_and_is_logged_and_counted(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    records = wine_models.records(7)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        v1 = httpx.post(f"{server.base}/v1/predict", json=records).json()
        client = client_for(server)
        answers = []
        for binary, dtype in ((True, np.float64), (False, np.float64), (True, np.float32)):
            result = client.infer(
                "wine", feature_inputs(records, binary=binary, dtype=dtype), request_id="a-1"
            )
            answers.append(result)
            response = result.get_response()
            assert response["id"] == "a-1" and response["model_name"] == "wine"
            assert response["model_version"] == "1" and response["parameters"]["arm"] == "champion"
        for result in answers[
            :2
        ]:  # float32 rounds the inputs, so only the float64 tensors must agree exactly
            assert result.as_numpy("predict").tolist() == v1["predictions"]
            np.testing.assert_allclose(result.as_numpy("predict_proba"), v1["probabilities"], rtol=1e-12)
        assert answers[2].as_numpy("predict").shape == (7,)
        proba = next(o for o in answers[0].get_response()["outputs"] if o["name"] == "predict_proba")
        assert json.loads(proba["parameters"]["classes"]) == ["3", "4", "5", "6", "7", "8"]

        # One [n, p] tensor with the features in the model's order, JSON in and out, only `predict` asked for.
        matrix = np.array([[r[f] for f in FEATURES] for r in records], dtype=np.float64)
        tensor = triton.InferInput("input-0", list(matrix.shape), "FP64")
        tensor.set_data_from_numpy(matrix, binary_data=False)
        only = client.infer(
            "wine", [tensor], outputs=[triton.InferRequestedOutput("predict", binary_data=False)]
        )
        assert only.as_numpy("predict").tolist() == v1["predictions"]
        assert [o["name"] for o in only.get_response()["outputs"]] == ["predict"]
        request_ids = [r.get_response()["parameters"]["request_id"] for r in (*answers, only)]
        metrics = httpx.get(f"{server.base}/metrics").text
    table = read_log(tmp_path, "predictions").to_pylist()
    logged = {r["request_id"].rsplit(":", 1)[0] for r in table}
    assert set(request_ids) <= logged and len(table) == 7 * 5
    row = next(r for r in table if r["request_id"] == f"{request_ids[0]}:0")
    assert row["features"]["alcohol"] == records[0]["alcohol"] and row["prediction"] == str(
        v1["predictions"][0]
    )
    line = 'driftloop_requests_total{arm="champion",model_name="wine",model_version="1",status="200"}'
    assert f"{line} 5.0" in metrics


class AccessLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def access() -> Any:
    handler = AccessLines()
    logging.getLogger("driftloop.access").addHandler(handler)
    yield handler
    logging.getLogger("driftloop.access").removeHandler(handler)


def test_pinned_version_and_routing(wine_models: WineModels, tmp_path: Path, access: AccessLines) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.5)
    records = wine_models.records(3, start=20)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = client_for(server)
        result = client.infer(
            "wine", feature_inputs(records), model_version="2", headers={"X-Request-ID": "pin-2"}
        )
        assert result.get_response()["parameters"]["request_id"] == "pin-2"
        by_version = {}
        for version in ("1", "2"):
            for _ in range(3):  # pinned: never routed elsewhere
                result = client.infer("wine", feature_inputs(records), model_version=version)
                assert result.get_response()["model_version"] == version
            by_version[version] = result.as_numpy("predict_proba")
        assert not np.allclose(by_version["1"], by_version["2"])  # two different models answered
        # Unpinned: routed by the routing key like /v1/predict, and the same key picks the same arm.
        seen = {}
        for key in [f"user-{i}" for i in range(40)]:
            result = client.infer("wine", feature_inputs(records), parameters={"routing_key": key})
            response = result.get_response()
            seen[key] = response["model_version"]
            np.testing.assert_allclose(result.as_numpy("predict_proba"), by_version[seen[key]], rtol=1e-12)
            v1 = httpx.post(f"{server.base}/v1/predict", json={"records": records, "routing_key": key}).json()
            assert v1["model_version"] == seen[key]
        assert set(seen.values()) == {"1", "2"}
        status, message = errors_of(lambda: client.infer("wine", feature_inputs(records), model_version="7"))
        assert status == 404 and "version '7'" in message
        status, message = errors_of(lambda: client.infer("beer", feature_inputs(records)))
        assert status == 404 and "'beer'" in message
    line = next(x for x in access.lines if x["request_id"] == "pin-2")
    assert (line["path"], line["status"], line["model_version"]) == (
        "/v2/models/wine/versions/2/infer",
        200,
        "2",
    )


def _one(name: str, values: list[Any], datatype: str, *, binary: bool = False) -> Any:
    tensor = triton.InferInput(name, [len(values)], datatype)
    array = np.array(values, dtype=object if datatype == "BYTES" else None)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_bad_tensors_are_400_naming_the_input(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1")
    records = wine_models.records(2)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = client_for(server)
        good = feature_inputs(records, binary=False)
        nan = [r["alcohol"] for r in records]
        nan[1] = float("nan")
        cases = [
            (good[:-1], "'alcohol' is required"),  # a feature missing
            (good[:-1] + [_one("alcohol", ["high", "low"], "BYTES")], "input 'alcohol': datatype BYTES"),
            (good[:-1] + [_one("alcohol", nan, "FP64", binary=True)], "input 'alcohol'[1] must not be null"),
            (good[:-1] + [_one("alcohol", [1e300, 2.0], "FP64")], "input 'alcohol'[0] must be within"),
            (good[:-1] + [_one("alcohol", [1.0], "FP64")], "input 'alcohol' has 1 rows"),
            (good + [_one("colour", ["red", "red"], "BYTES")], "input 'colour' is not a feature"),
        ]
        for inputs, expected in cases:
            status, message = errors_of(lambda inputs=inputs: client.infer("wine", inputs))
            assert status == 400 and expected in message, message
        status, message = errors_of(
            lambda: client.infer("wine", good, outputs=[triton.InferRequestedOutput("explain")])
        )
        assert status == 400 and "'explain'" in message
        # Raw bodies a hand-written client might send.
        url = f"{server.base}/v2/models/wine/infer"
        raw = [
            (b"{", "malformed JSON"),
            (b'{"inputs": []}', "'inputs' must be a non-empty list"),
            (
                b'{"inputs": [{"name": "alcohol", "shape": [2], "datatype": "FP64", "data": [1, "x"]}]}',
                "element 1",
            ),
            (
                b'{"inputs": [{"name": "alcohol", "shape": [3], "datatype": "FP64", "data": [1, 2]}]}',
                "2 values",
            ),
            (b'{"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP8", "data": [1]}]}', "datatype"),
        ]
        for body, expected in raw:
            r = httpx.post(url, content=body)
            assert r.status_code == 400 and expected in r.json()["error"], r.text
        binary = httpx.post(url, content=b'{"inputs": []}', headers={"Inference-Header-Content-Length": "99"})
        assert binary.status_code == 400 and "Inference-Header-Content-Length" in binary.json()["error"]
        metrics = httpx.get(f"{server.base}/metrics").text
    assert 'status="400"' in metrics and 'status="500"' not in metrics


def test_v2_answers_follow_the_published_schemas(wine_models: WineModels, tmp_path: Path) -> None:
    wine_models.deploy(champion="1", challenger="2", strategy="ab", challenger_weight=0.5)
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        http = httpx.Client(base_url=server.base)
        spec = http.get("/openapi.json").json()
        record = wine_models.records(1)[0]
        infer = {
            "id": "x",
            "inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [record[f]]} for f in FEATURES],
        }
        calls = [
            ("get", "/v2", "/v2", None, 200),
            ("get", "/v2/health/live", "/v2/health/live", None, 200),
            ("get", "/v2/health/ready", "/v2/health/ready", None, 200),
            ("get", "/v2/models/wine", "/v2/models/{model_name}", None, 200),
            ("get", "/v2/models/beer", "/v2/models/{model_name}", None, 404),
            ("get", "/v2/models/wine/versions/2", "/v2/models/{model_name}/versions/{version}", None, 200),
            ("get", "/v2/models/wine/ready", "/v2/models/{model_name}/ready", None, 200),
            ("get", "/v2/models/wine/versions/9/ready", "/v2/models/{model_name}/versions/{version}/ready", None, 404),
            ("post", "/v2/models/wine/infer", "/v2/models/{model_name}/infer", infer, 200),
            ("post", "/v2/models/wine/versions/2/infer", "/v2/models/{model_name}/versions/{version}/infer", infer, 200),
            ("post", "/v2/models/wine/infer", "/v2/models/{model_name}/infer", {"inputs": 1}, 400),
            ("post", "/v2/models/wine/versions/9/infer", "/v2/models/{model_name}/versions/{version}/infer", infer, 404),
        ]  # fmt: skip
        for method, url, path, body, status in calls:
            r = http.request(method, url, json=body)
            assert r.status_code == status, (url, r.text)
            op = spec["paths"][path][method]["responses"][str(status)]
            schema = {**op["content"]["application/json"]["schema"], "components": spec["components"]}
            jsonschema.Draft202012Validator(schema).validate(r.json())


def test_a_failing_model_is_a_counted_logged_v2_500(
    wine_models: WineModels, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from driftloop.stores.models import Encoder
    from driftloop.stores.tracking import TrackingStore
    from tests.faults.support import register_faulty, row_bucket

    tracking = TrackingStore.from_config(wine_models.config(tmp_path_factory.mktemp("faulty-v2")))
    spec = tracking.load_bundle(wine_models.versions[0]).spec
    version, est = register_faulty(tracking, spec, wine_models.frame, fail_percent=90)
    wine_models.deploy(champion="1", challenger=version, strategy="ab", challenger_weight=0.0)
    candidates = wine_models.records(40, start=100)
    encoded = Encoder(spec).encode_records(candidates)
    records = [r for r, x in zip(candidates, encoded, strict=True) if row_bucket(x, est.salt) < 90][:4]
    assert len(records) == 4  # rows the model raises on
    with ServerThread(wine_models.config(tmp_path, compile_models=False)) as server:
        client = client_for(server)
        status, message = errors_of(
            lambda: client.infer("wine", feature_inputs(records), model_version=version)
        )
        assert status == 500 and "InjectedFault" in message
        raw = httpx.post(
            f"{server.base}/v2/models/wine/versions/{version}/infer",
            json={
                "inputs": [
                    {"name": f, "shape": [1], "datatype": "FP64", "data": [records[0][f]]} for f in FEATURES
                ]
            },
        )
        assert raw.status_code == 500 and set(raw.json()) == {"error", "request_id"}
        assert (
            client.infer("wine", feature_inputs(records)).get_response()["model_version"] == "1"
        )  # weight 0
        metrics = httpx.get(f"{server.base}/metrics").text
    line = f'driftloop_requests_total{{arm="challenger",model_name="wine",model_version="{version}",status="500"}} 2.0'
    assert line in metrics
    errors = read_log(tmp_path, "errors").to_pylist()
    assert raw.json()["request_id"] in {r["request_id"] for r in errors}
    assert {(r["model_version"], r["arm"], r["rows"]) for r in errors} == {
        (version, "challenger", 4),
        (version, "challenger", 1),
    }
