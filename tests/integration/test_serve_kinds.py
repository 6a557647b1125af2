"""Column kinds at the HTTP door, through a real socket: a bool feature takes JSON booleans and their usual
spellings (the same prediction as the table's value), anything else is a 422 naming the field, and raw rows
replayed with their id and timestamp columns are answered and keep those columns in the log for joins."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from driftloop.config import config_from_dict
from driftloop.stores.metadata import MetadataStore
from driftloop.stores.models import Encoder, FeatureSpec, ModelBundle, ModelSpec
from tests.conftest import database_url
from tests.integration.serve_support import ServerThread, register_bundle

SPEC = ModelSpec(
    task="binary",
    target="churned",
    features=(
        FeatureSpec("visits", "numeric", minimum=0, maximum=9, nullable=False),
        FeatureSpec("premium", "categorical", categories=("False", "True"), nullable=False),
        FeatureSpec("plan", "categorical", categories=("basic", "pro"), nullable=True),
    ),
    classes=(0, 1),
)
"""No id or timestamp column in the spec (as a model trained before specs recorded them): the server takes
them from its config's `data` section."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import lightgbm as lgb

    root = tmp_path_factory.mktemp("kinds-serve")
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "visits": rng.integers(0, 10, n),
            "premium": rng.random(n) < 0.5,
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    y = (frame["premium"] ^ (rng.random(n) < 0.1)).astype(int)  # premium customers stay: a strong signal
    est = lgb.LGBMClassifier(n_estimators=20, min_child_samples=5, verbose=-1)
    est.fit(Encoder(SPEC).encode_frame(frame), y)
    url = database_url(root)
    version = register_bundle(root, url, ModelBundle(SPEC, est.booster_, "lightgbm"), frame.head(3))
    store = MetadataStore.connect(url)
    try:
        store.update_deployment(store.get_deployment("wine"), champion=version, reason="test")
    finally:
        store.close()
    log_dir = root / "logs"
    cfg = config_from_dict(
        {
            "project": {"name": "wine"},
            "data": {"target": "churned", "id_column": "customer_id", "timestamp_column": "seen_at"},
            "stores": {"root": str(root), "database_url": url, "log_dir": str(log_dir)},
            "serving": {"poll_seconds": 0.2, "log_flush_seconds": 0.1, "compile_models": False},
        },
        base_dir=root,
        environ={},
    )
    with ServerThread(cfg) as running:
        yield running, log_dir


def proba(client: httpx.Client, **record: Any) -> float:
    answer = client.post("/v1/predict", json={"visits": 3, "plan": "pro", **record})
    assert answer.status_code == 200, answer.text
    return answer.json()["probabilities"]["1"]


def test_a_bool_feature_takes_json_booleans_and_their_spellings(server: Any) -> None:
    running, _ = server
    client = httpx.Client(base_url=running.base)
    yes, no = proba(client, premium="True"), proba(client, premium="False")
    assert yes != no  # the feature matters: an unseen category would silently give a third answer
    assert [proba(client, premium=v) for v in (True, "true", "TRUE", 1, "1")] == [yes] * 5
    assert [proba(client, premium=v) for v in (False, "false", "FALSE", 0, "0")] == [no] * 5
    for bad in ("yes", 2, None):
        answer = client.post("/v1/predict", json={"visits": 3, "plan": "pro", "premium": bad})
        assert answer.status_code == 422, bad
        assert [e["loc"] for e in answer.json()["errors"]] == ["premium"]


def test_raw_rows_with_id_and_timestamp_are_answered_and_logged_for_joins(server: Any) -> None:
    running, log_dir = server
    client = httpx.Client(base_url=running.base)
    rows = [
        {
            "customer_id": "c-17",
            "seen_at": "2024-05-01T10:30:00+02:00",
            "visits": 3,
            "premium": True,
            "plan": "pro",
        },
        {"customer_id": 18, "seen_at": "2024-05-02", "visits": 1, "premium": False, "plan": None},
    ]
    answer = client.post("/v1/predict", json=rows)
    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]
    bad = client.post("/v1/predict", json={**rows[0], "seen_at": 1714552200})
    assert bad.status_code == 422 and [e["loc"] for e in bad.json()["errors"]] == ["seen_at"]
    deadline = time.monotonic() + 20
    logged = pd.DataFrame()
    while time.monotonic() < deadline:
        files = list((log_dir / "predictions").rglob("*.parquet"))
        if files:
            table = ds.dataset(files, format="parquet").to_table().to_pandas()
            logged = table[table["request_id"].str.startswith(request_id)]
            if len(logged) == 2:
                break
        time.sleep(0.1)
    assert len(logged) == 2
    keys = logged.sort_values("request_id")["join_keys"].tolist()
    assert [k["customer_id"] for k in keys] == ["c-17", "18"]
    assert [pd.Timestamp(k["seen_at"]) for k in keys] == [
        pd.Timestamp("2024-05-01 08:30", tz="UTC"),
        pd.Timestamp("2024-05-02", tz="UTC"),
    ]
    features = logged.sort_values("request_id")["features"].tolist()
    assert [f["premium"] for f in features] == ["True", "False"]  # logged as the table's value
    assert "customer_id" not in features[0]  # never a feature: not tested for drift
    record = client.get("/openapi.json").json()["components"]["schemas"]["Record"]
    assert record["properties"]["premium"]["type"] == ["boolean", "string", "integer"]
    assert {"customer_id", "seen_at"} <= set(record["properties"]) and "seen_at" not in record["required"]
