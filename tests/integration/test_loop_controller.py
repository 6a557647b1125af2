"""The controller's safety net on this run's backend: the fenced lease, the gate's compare-and-swap, what
retraining reads from the log, and the reference a retrained champion is monitored against."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from driftloop.errors import LeaseLostError
from driftloop.loop.controller import Heartbeat
from driftloop.loop.retrain import assemble, drift_reference, labeled_production_rows
from driftloop.monitor.check import run_check
from driftloop.registry import deployments
from driftloop.stores import Stores
from driftloop.stores.metadata import MetadataStore, utcnow
from tests.conftest import RED, database_url
from tests.e2e.conftest import make_project, train_on


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    st = MetadataStore.connect(database_url(tmp_path))
    yield st
    st.close()


# -- the lease: a fencing token, renewals, fenced writes ----------------------------------------------------


def test_a_takeover_fences_out_the_old_holder(store: MetadataStore) -> None:
    old = store.acquire_lease("controller:wine", "a", 60)
    assert old is not None and old.epoch == 1
    assert store.acquire_lease("controller:wine", "a", 60).epoch == 1  # a renewal keeps the token
    assert store.acquire_lease("controller:wine", "b", 60) is None
    # a's lease lapses (it was paused, say) and b takes over: a new token.
    store.acquire_lease("controller:wine", "a", -1)
    new = store.acquire_lease("controller:wine", "b", 60)
    assert new is not None and new.epoch > old.epoch
    dep = store.get_deployment("wine")
    with pytest.raises(LeaseLostError):
        store.update_deployment(dep, champion="1", reason="stale controller", fence=old)
    with pytest.raises(LeaseLostError):
        store.add_event("wine", "trigger_fired", "stale controller", fence=old)
    assert store.renew_lease(old, 60) is None
    assert store.get_deployment("wine").revision == 0 and store.list_events("wine") == []
    # The holder of the current token writes.
    assert store.update_deployment(dep, champion="1", reason="controller", fence=new).revision == 1
    store.add_event("wine", "trigger_fired", "controller", fence=new)
    # Released and taken again: the token still only grows (the row is kept, not deleted).
    store.release_lease("controller:wine", "b")
    again = store.acquire_lease("controller:wine", "a", 60)
    assert again is not None and again.epoch > new.epoch


def test_a_lapsed_lease_fences_its_holder_even_without_a_takeover(store: MetadataStore) -> None:
    lease = store.acquire_lease("controller:wine", "a", 0.2)
    time.sleep(0.3)
    with pytest.raises(LeaseLostError):
        store.update_deployment(store.get_deployment("wine"), champion="1", reason="x", fence=lease)


def test_the_heartbeat_keeps_the_lease_through_a_long_pass(store: MetadataStore) -> None:
    """A pass that outlasts the lease several times over keeps it, and no one else can take it meanwhile."""
    seconds = 1.0
    lease = store.acquire_lease("controller:wine", "a", seconds)
    with Heartbeat(store, lease, seconds) as beat:
        deadline = time.monotonic() + 4 * seconds
        while time.monotonic() < deadline:
            assert store.acquire_lease("controller:wine", "b", seconds) is None
            time.sleep(0.2)
        beat.check()
    store.update_deployment(store.get_deployment("wine"), champion="1", reason="x", fence=lease)


def test_the_heartbeat_notices_a_lost_lease(store: MetadataStore) -> None:
    lease = store.acquire_lease("controller:wine", "a", 60)
    store.acquire_lease("controller:wine", "a", -1)  # lapses...
    assert store.acquire_lease("controller:wine", "b", 60) is not None  # ...and b takes it over
    with Heartbeat(store, lease, 0.3) as beat:
        deadline = time.monotonic() + 10
        while beat.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLostError):
            beat.check()


# -- the gate's verdict is a compare-and-swap ----------------------------------------------------------------


class _AdminPromotesAfterTheGate(MetadataStore):
    """The race, injected at its worst moment: right after the gate's verdict is recorded and before the model
    is named challenger, an admin (another connection, as another process would) promotes the challenger."""

    stores: Stores | None = None

    def add_event(self, model_name: str, kind: str, message: str, **kwargs) -> int:
        out = super().add_event(model_name, kind, message, **kwargs)
        if kind == "gate_passed" and self.stores is not None:
            admin = Stores(self.stores.cfg, MetadataStore(self.engine), self.stores.tracking)
            self.stores = None
            deployments.promote(admin, reason="admin promotes meanwhile", actor="admin")
        return out


def test_a_gate_verdict_is_not_applied_to_a_champion_that_changed(tmp_path: Path, red: pd.DataFrame) -> None:
    cfg, stores = make_project(tmp_path, RED)
    first = train_on(cfg, stores, red, "red wines")
    second = train_on(cfg, stores, red.sample(frac=1.0, random_state=3), "reshuffled", force=True)
    assert stores.metadata.get_deployment(cfg.project.name).challenger == second
    racing = _AdminPromotesAfterTheGate(stores.metadata.engine)
    racing.stores = stores
    stores.metadata = racing
    third = train_on(cfg, stores, red.sample(frac=1.0, random_state=4), "judged against v1", force=True)
    dep = stores.metadata.get_deployment(cfg.project.name)
    assert dep.champion == second != first
    # The third model was judged against the first champion only: it must not challenge the second.
    assert dep.challenger is None, (
        f"v{third} became the challenger of v{second} without being gated against it"
    )
    skipped = stores.metadata.list_events(cfg.project.name, kinds=["challenger_skipped"])
    assert [e.model_version for e in skipped] == [third] and "changed" in skipped[0].message


# -- retraining data -------------------------------------------------------------------------------------------


def test_shadow_rows_do_not_hide_labeled_rows_from_retraining(tmp_path: Path) -> None:
    """In shadow mode every request is logged twice with one id and one timestamp (served and shadow). Rows
    with one timestamp have no order in the log (several files, flushes, DuckDB's parallel scan), so here the
    shadow row comes first: each labeled request must still reach retraining, once, with its served row."""
    import numpy as np

    from driftloop.stores.models import FeatureSpec, ModelSpec
    from driftloop.stores.predlog import FeedbackEntry, LogWriter, PredictionEntry, now_us

    spec = ModelSpec(task="binary", target="y", features=(FeatureSpec("x", "numeric"),), classes=(0, 1))
    preds = LogWriter(tmp_path, "predictions").start()
    n = 50
    for i in range(n):
        ts = now_us()
        for arm, version, x in (("shadow", "2", -1.0), ("champion", "1", float(i))):
            preds.put(
                PredictionEntry(
                    request_id=f"r{i}", batch=False, ts_us=ts, model_name="wine", model_version=version,
                    arm=arm, source="online", feature_names=("x",), feature_kinds=("numeric",),
                    columns=[np.array([x])], labels=[1], proba=np.array([[0.4, 0.6]]), classes=("0", "1"),
                    latency_ms=1.0,
                )
            )  # fmt: skip
    preds.close()
    feedback = LogWriter(tmp_path, "feedback").start()
    ids = [f"r{i}" for i in range(n)]
    feedback.put(FeedbackEntry(request_ids=ids, labels=["1"] * n, regression=False, ts_us=now_us()))
    feedback.close()
    rows = labeled_production_rows(tmp_path, spec)
    assert len(rows) == n, f"{n - len(rows)} of {n} labeled rows lost"
    assert rows["x"].tolist() == [float(i) for i in range(n)]  # the served rows' features, not the shadow's


# -- a loop that settles --------------------------------------------------------------------------------------


def test_a_retrained_model_is_monitored_against_the_world_it_was_retrained_for(
    tmp_path: Path, red: pd.DataFrame, white: pd.DataFrame
) -> None:
    """After red wines turned white and a model retrained on them took over, white wines are not drift."""
    cfg, stores = make_project(
        tmp_path,
        RED,
        monitoring={"window": None, "last_rows": 300, "min_rows": 200},
        loop={"retrain": {"min_labeled_rows": 100}},
    )
    champion = train_on(cfg, stores, red, "red wines")
    spec = stores.tracking.load_bundle(champion).spec
    features = spec.feature_names
    served_white = white.iloc[:600]
    _log_served(stores, champion, served_white, features, ts=utcnow() - timedelta(minutes=5))
    production = labeled_production_rows(stores.log_dir, spec)
    assert len(production) == len(served_white)
    base = stores.tracking.get_version(champion).tags["data_version"]
    training_set = assemble(stores, cfg, spec, base, production=production)
    # The reference is the newest monitoring window of production, not the red-dominated training table.
    assert training_set.reference is not None and len(training_set.reference) == 300
    assert training_set.reference["alcohol"].tolist() == served_white["alcohol"].iloc[-300:].tolist()
    from driftloop.train.search import train

    retrained = train(
        cfg, data_version=training_set.record.version, stores=stores, recent=training_set.recent,
        progress=False, force=True, drift_reference=training_set.reference,
    ).version  # fmt: skip
    deployments.promote(stores, version=retrained, reason="test: the retrained model takes over")
    # Rows the old champion served before the promotion are not the new champion's window...
    before = run_check(stores, cfg, record=False)
    assert before.no_data and before.n_rows == 0
    # ...and fresh white wines it serves are what it was retrained for: no dataset drift.
    _log_served(stores, retrained, white.iloc[1000:1300], features, ts=utcnow())
    after = run_check(stores, cfg, record=False)
    assert not after.no_data and after.n_rows == 300
    assert after.drift is not None and not after.drift.dataset_drift, after.drift.share


def _log_served(stores: Stores, version: str, frame: pd.DataFrame, features: list[str], *, ts) -> None:
    """Write served predictions (and their labels) of `frame` to the log, as the server does."""
    import numpy as np

    from driftloop.stores.predlog import FeedbackEntry, LogWriter, PredictionEntry

    bundle = stores.tracking.load_bundle(version)
    classes = tuple(str(c) for c in bundle.spec.classes)
    preds = LogWriter(stores.log_dir, "predictions").start()
    feedback = LogWriter(stores.log_dir, "feedback").start()
    start_us = int(ts.timestamp() * 1e6)
    for i, (_, row) in enumerate(frame.iterrows()):
        rid = f"{version}-{start_us}-{i}"
        preds.put(
            PredictionEntry(
                request_id=rid, batch=False, ts_us=start_us + i * 1000, model_name=stores.model_name,
                model_version=version, arm="champion", source="online", feature_names=tuple(features),
                feature_kinds=("numeric",) * len(features), columns=[np.array([row[n]]) for n in features],
                labels=[int(row["quality"])], proba=np.full((1, len(classes)), 1 / len(classes)),
                classes=classes, latency_ms=1.0,
            )
        )  # fmt: skip
        feedback.put(
            FeedbackEntry(
                request_ids=[rid], labels=[str(int(row["quality"]))], regression=False,
                ts_us=start_us + i * 1000,
            )
        )  # fmt: skip
    preds.close()
    feedback.close()


def test_drift_reference_needs_a_full_window(tmp_path: Path) -> None:
    from driftloop.config import config_from_dict

    cfg = config_from_dict({"data": {"target": "y"}, "monitoring": {"window": None, "last_rows": 50}})
    prod = pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=20, freq="s", tz="UTC"), "x": range(20)})
    assert drift_reference(prod, cfg) is None  # fewer than min_rows (30): keep the training sample
    prod = pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=80, freq="s", tz="UTC"), "x": range(80)})
    assert drift_reference(prod, cfg)["x"].tolist() == list(range(30, 80))


# -- resuming after a kill --------------------------------------------------------------------------------------


def test_a_new_controller_closes_what_a_killed_one_left(tmp_path: Path, red: pd.DataFrame) -> None:
    """Killed after its retrain named the challenger and before the canary: the next lease holder records the
    retrain as interrupted (no cool-down for its trigger) and starts the canary, once."""
    from driftloop.loop.steps import last_fired, recover_step

    cfg, stores = make_project(tmp_path, RED)
    name = cfg.project.name
    train_on(cfg, stores, red, "red wines")
    stores.metadata.add_event(name, "trigger_fired", "drift", evidence={"trigger": "dataset_drift"})
    stores.metadata.add_event(name, "retrain_started", "drift")
    retrained = train_on(cfg, stores, red.sample(frac=1.0, random_state=3), "retrained", force=True)
    assert "dataset_drift" in last_fired(stores)  # the trigger cools down while its retrain looks alive
    lease = stores.metadata.acquire_lease(f"controller:{name}", "the-next-controller", 60)
    done = recover_step(stores, cfg, fence=lease)
    assert len(done) == 2, done
    dep = stores.metadata.get_deployment(name)
    assert dep.challenger == retrained and dep.strategy == "canary"
    assert dep.challenger_weight == cfg.loop.rollout.steps[0]
    failed = stores.metadata.list_events(name, kinds=["retrain_failed"])
    assert len(failed) == 1 and failed[0].evidence["interrupted"] is True
    assert "dataset_drift" not in last_fired(stores)  # retried at once, not after the cool-down
    assert recover_step(stores, cfg, fence=lease) == []  # nothing left to close


def test_a_second_retrain_does_not_count_production_rows_twice(tmp_path: Path, red: pd.DataFrame) -> None:
    """Rows a retrain snapshot already holds are not added again when the next retrain starts from it."""
    from driftloop.data.datasets import add_frame
    from driftloop.loop.retrain import production_rows

    cfg, stores = make_project(tmp_path, RED)
    champion = train_on(cfg, stores, red, "red wines")
    spec = stores.tracking.load_bundle(champion).spec
    features = spec.feature_names
    base = stores.tracking.get_version(champion).tags["data_version"]
    _log_served(stores, champion, red.iloc[:200], features, ts=utcnow() - timedelta(minutes=5))
    first = production_rows(stores, cfg, spec, base_version=base)
    assert len(first) == 200  # the champion's data is a plain snapshot: every labeled row counts
    snapshot, _ = add_frame(
        stores.metadata, stores.datasets_dir, red.iloc[:300], source="retrain", parents=[base],
        note="a retrain's snapshot",
    )  # fmt: skip
    _log_served(stores, champion, red.iloc[200:260], features, ts=utcnow() + timedelta(seconds=1))
    second = production_rows(stores, cfg, spec, base_version=snapshot.version)
    assert len(second) == 60, f"{len(second) - 60} rows the snapshot already holds were added again"
