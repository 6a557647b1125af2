"""The canary judges each arm from one source: the prediction log every replica writes (answered rows and
failed requests), counted over the current step only, for the arm's own model version."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.loop import steps
from driftloop.registry import deployments
from driftloop.stores.predlog import ErrorEntry, LogWriter, PredictionEntry
from tests.conftest import RED
from tests.e2e.conftest import make_project, train_on


def test_error_rate_counts_every_replica_over_the_step_only(tmp_path: Path, red: pd.DataFrame) -> None:
    cfg, stores = make_project(tmp_path, RED)
    name = cfg.project.name
    champion = train_on(cfg, stores, red, "red wines")
    challenger = train_on(cfg, stores, red.sample(frac=1.0, random_state=3), "reshuffled", force=True)
    dep = deployments.start_canary(stores, challenger, weight=0.1, reason="test canary")
    assert dep.step_started_at is not None
    step_us = int(dep.step_started_at.timestamp() * 1_000_000)
    spec = stores.tracking.load_bundle(champion).spec
    names, classes = tuple(spec.feature_names), tuple(str(c) for c in spec.classes)
    row = red.iloc[0]

    def answered(version: str, arm: str, n: int, ts_us: int) -> list[PredictionEntry]:
        return [
            PredictionEntry(
                request_id=f"{arm}-{ts_us}-{i}", batch=False, ts_us=ts_us, model_name=name,
                model_version=version, arm=arm, source="online", feature_names=names,
                feature_kinds=("numeric",) * len(names), columns=[np.array([row[f]]) for f in names],
                labels=[classes[0]], proba=np.full((1, len(classes)), 1 / len(classes)), classes=classes,
                latency_ms=2.0,
            )
            for i in range(n)
        ]  # fmt: skip

    def failed(version: str, arm: str, n: int, ts_us: int, rows: int = 1) -> list[ErrorEntry]:
        return [
            ErrorEntry(
                request_id=f"err-{arm}-{version}-{ts_us}-{i}", ts_us=ts_us, model_name=name,
                model_version=version, arm=arm, source="online", status=500, error="RuntimeError",
                rows=rows, latency_ms=2.0,
            )
            for i in range(n)
        ]  # fmt: skip

    now = step_us + 1_000_000
    before = step_us - 60_000_000
    replicas = {
        # replica A: the champion failed a lot before this step (its lifetime counters would say so)
        "a": answered(champion, "champion", 100, now)
        + answered(challenger, "challenger", 10, now)
        + failed(champion, "champion", 50, before)
        + failed(challenger, "challenger", 3, now),
        # replica B: two one-row failures and a failed batch of 4 rows; a failure of an earlier
        # challenger version under the same arm is not this canary's
        "b": answered(champion, "champion", 100, now)
        + answered(challenger, "challenger", 10, now)
        + failed(challenger, "challenger", 2, now)
        + failed(challenger, "challenger", 1, now, rows=4)
        + failed("99", "challenger", 20, now),
    }
    for entries in replicas.values():
        writers = {k: LogWriter(stores.log_dir, k) for k in ("predictions", "errors")}  # type: ignore[misc]
        for entry in entries:
            assert writers["errors" if isinstance(entry, ErrorEntry) else "predictions"].put(entry)
        for writer in writers.values():
            writer.close()
        time.sleep(0.002)  # a writer's file series is named by its start millisecond: one series per replica

    decision = steps.rollout_step(stores, cfg, now=dep.step_started_at + timedelta(seconds=5))

    ev = decision.evidence
    assert (ev["champion"]["requests"], ev["champion"]["errors"]) == (200, 0)
    assert (ev["challenger"]["requests"], ev["challenger"]["errors"]) == (20 + 9, 9)
    assert decision.action == "rollback" and "error rate" in decision.reason
    after = stores.metadata.get_deployment(name)
    assert after.champion == champion and after.challenger is None
