"""The auditor's answers: `explain` walks a logged prediction back to its model, run and data digest;
`history` says who served which share and why."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.errors import NotFoundError
from driftloop.loop.audit import explain, traffic_history
from driftloop.registry import deployments
from driftloop.stores.predlog import ErrorEntry, FeedbackEntry, LogWriter, PredictionEntry, now_us
from tests.conftest import RED
from tests.e2e.conftest import make_project, train_on


def test_explain_and_history(tmp_path: Path, red: pd.DataFrame) -> None:
    cfg, stores = make_project(tmp_path, RED)
    champion = train_on(cfg, stores, red, "red wines")
    challenger = train_on(cfg, stores, red.sample(frac=1.0, random_state=3), "reshuffled", force=True)
    deployments.start_canary(stores, challenger, weight=0.1, reason="test canary")
    deployments.rollback(stores, reason="test rollback")

    bundle = stores.tracking.load_bundle(champion)
    names = tuple(bundle.spec.feature_names)
    row = red.iloc[0]
    writer = LogWriter(stores.log_dir, "predictions").start()
    entry = (
        PredictionEntry(
            request_id="req-1", batch=False, ts_us=now_us(), model_name=cfg.project.name,
            model_version=champion, arm="champion", source="online", feature_names=names,
            feature_kinds=("numeric",) * len(names), columns=[np.array([row[n]]) for n in names],
            labels=[5], proba=np.full((1, len(bundle.spec.classes)), 1 / len(bundle.spec.classes)),
            classes=tuple(str(c) for c in bundle.spec.classes), latency_ms=1.0,
        )
    )  # fmt: skip
    writer.put(entry)
    writer.close()
    errors = LogWriter(stores.log_dir, "errors").start()
    errors.put(
        ErrorEntry(
            request_id="req-2", ts_us=now_us(), model_name=cfg.project.name, model_version=champion,
            arm="champion", source="online", status=500, error="ValueError", rows=1, latency_ms=2.0,
        )
    )  # fmt: skip
    errors.close()
    feedback = LogWriter(stores.log_dir, "feedback").start()
    feedback.put(FeedbackEntry(request_ids=["req-1"], labels=["6"], regression=False, ts_us=now_us()))
    feedback.close()

    answer = explain(stores, "req-1").to_dict()
    record = stores.metadata.get_dataset(answer["data"]["version"])
    assert answer["model"]["version"] == champion
    assert answer["model"]["run_id"] == stores.tracking.get_version(champion).run_id
    assert answer["data"]["digest"] == record.digest and record.source == "red wines"
    assert answer["feedback"]["label"] == "6" and answer["outcome"] == "answered"

    # A request the model failed (a 5xx) has no prediction row; explain says so and still names the model.
    failed = explain(stores, "req-2").to_dict()
    assert failed["outcome"] == "failed" and failed["model"]["version"] == champion
    assert failed["served"]["status"] == 500 and failed["served"]["error"] == "ValueError"
    assert failed["data"]["digest"] == record.digest and failed["feedback"] is None
    with pytest.raises(NotFoundError, match="neither the prediction log nor the error log"):
        explain(stores, "req-unknown")

    # explain reads the newest partitions first: a request from three days ago is found (and its label)...
    old_ts = datetime.now(UTC) - timedelta(days=3)
    writer = LogWriter(stores.log_dir, "predictions").start()
    writer.put(dataclasses.replace(entry, request_id="req-old", ts_us=int(old_ts.timestamp() * 1e6)))
    writer.close()
    feedback = LogWriter(stores.log_dir, "feedback").start()
    label_ts = int((old_ts + timedelta(minutes=5)).timestamp() * 1e6)
    feedback.put(FeedbackEntry(request_ids=["req-old"], labels=["7"], regression=False, ts_us=label_ts))
    feedback.close()
    old = explain(stores, "req-old").to_dict()
    assert old["outcome"] == "answered" and old["feedback"]["label"] == "7"
    # ... and a recent one never opens older files: months of history cost a question about today nothing.
    for kind in ("predictions", "errors", "feedback"):
        stale = stores.log_dir / kind / "date=2026-01-01" / "hour=00"
        stale.mkdir(parents=True)
        (stale / "unreadable.parquet").write_bytes(b"not parquet")
    assert explain(stores, "req-1").to_dict()["feedback"]["label"] == "6"
    assert explain(stores, "req-2").to_dict()["outcome"] == "failed"
    assert explain(stores, "req-old").to_dict()["feedback"]["label"] == "7"

    rows = traffic_history(stores)
    assert [r["strategy"] for r in rows] == ["single", "single", "canary", "single"]
    canary = rows[2]
    assert canary["challenger"] == challenger and canary["challenger_share"] == 0.1
    assert rows[-1]["reason"] == "test rollback" and rows[-1]["challenger"] is None
