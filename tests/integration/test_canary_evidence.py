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
from driftloop.stores.predlog import ErrorEntry, LogWriter, OutcomeEntry, PredictionEntry
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


def test_an_outcome_rule_reads_each_arms_reports_from_the_log_and_gates_full_traffic(
    tmp_path: Path, red: pd.DataFrame
) -> None:
    """With `rollout.outcome`, conversions reported for each arm's requests in the step decide: a challenger
    that converts clearly worse is rolled back; at the last split step, one that converts clearly better
    advances, and an unclear one holds there."""
    rollout = {"steps": [0.1, 0.5, 1.0], "min_requests": 150, "min_dwell_seconds": 0, "min_labels": 30}
    rollout |= {"require_labels": False, "outcome": {"name": "conversion", "require": "win"}}
    cfg, stores = make_project(tmp_path, RED, loop={"rollout": rollout})
    name = cfg.project.name
    champion = train_on(cfg, stores, red, "red wines")
    challenger = train_on(cfg, stores, red.sample(frac=1.0, random_state=3), "reshuffled", force=True)
    spec = stores.tracking.load_bundle(champion).spec
    names, classes = tuple(spec.feature_names), tuple(str(c) for c in spec.classes)
    row = red.iloc[0]
    rng = np.random.default_rng(0)

    def serve_and_convert(rates: dict[str, float], n: int, tag: str) -> None:
        """n answered requests per arm since the step began, and a conversion for a share of them."""
        dep = stores.metadata.get_deployment(name)
        assert dep.step_started_at is not None
        ts_us = int(dep.step_started_at.timestamp() * 1_000_000) + 1_000  # inside this step only
        preds, outcomes = LogWriter(stores.log_dir, "predictions"), LogWriter(stores.log_dir, "outcomes")
        for arm, version in (("champion", champion), ("challenger", challenger)):
            ids = [f"{tag}-{arm}-{i}" for i in range(n)]
            for rid in ids:
                assert preds.put(
                    PredictionEntry(
                        request_id=rid, batch=False, ts_us=ts_us, model_name=name, model_version=version,
                        arm=arm, source="online", feature_names=names, feature_kinds=("numeric",) * len(names),
                        columns=[np.array([row[f]]) for f in names], labels=[classes[0]],
                        proba=np.full((1, len(classes)), 1 / len(classes)), classes=classes, latency_ms=2.0,
                    )
                )  # fmt: skip
            won = [rid for rid in ids if rng.random() < rates[arm]]
            assert outcomes.put(
                OutcomeEntry(won, ["conversion"] * len(won), [1.0] * len(won), ts_us + 5_000_000)
            )
        preds.close()
        outcomes.close()

    def judge() -> steps.Decision:
        dep = stores.metadata.get_deployment(name)
        assert dep.step_started_at is not None
        return steps.rollout_step(stores, cfg, now=dep.step_started_at + timedelta(seconds=30))

    # Step 0 (10 %): the challenger converts a third as often: rolled back on the outcome alone.
    deployments.start_canary(stores, challenger, weight=0.1, reason="test canary")
    serve_and_convert({"champion": 0.30, "challenger": 0.10}, 600, "lost")
    lost = judge()
    assert lost.action == "rollback" and lost.reason.startswith("conversion ")
    assert lost.evidence["outcome"]["verdict"] == "champion wins"
    assert lost.evidence["challenger"]["outcome"]["requests"] == 600  # every request, reported or not (zero)
    # A new canary at the last split step (50 %): equal rates hold it there, a clear win moves it on.
    time.sleep(0.05)  # the next step begins after every row above
    deployments.set_challenger(stores, challenger, reason="test: the same challenger again")
    deployments.start_canary(stores, challenger, weight=0.1, reason="again")
    deployments.advance_canary(stores, step=1, weight=0.5, reason="test: last split step")
    serve_and_convert({"champion": 0.20, "challenger": 0.20}, 150, "even")
    held = judge()
    assert held.action == "hold" and "a significant win on conversion" in held.reason
    serve_and_convert({"champion": 0.10, "challenger": 0.40}, 600, "won")
    won = judge()
    assert won.action == "advance" and won.evidence["outcome"]["verdict"] == "challenger wins"
    assert stores.metadata.get_deployment(name).challenger_weight == 1.0
