"""The deployment state machine on this run's backend (SQLite, or the machine's real PostgreSQL for both the
metadata and MLflow), with real MLflow aliases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from driftloop.config import config_from_dict
from driftloop.errors import ConflictError, NotFoundError, UserError
from driftloop.registry import deployments as dp
from driftloop.stores import Stores
from driftloop.stores.metadata import MetadataStore
from driftloop.stores.models import FeatureSpec, ModelBundle, ModelSpec, log_bundle
from driftloop.stores.tracking import TrackingStore
from tests.conftest import backend, database_url


@pytest.fixture(scope="module")
def tracking_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


def _registered_versions(tracking: TrackingStore, n: int) -> None:
    """n registered versions of one small real model (logged once)."""
    import mlflow

    spec = ModelSpec(task="binary", target="y", features=(FeatureSpec("x", "numeric"),), classes=(0, 1))
    X = np.arange(20, dtype=float).reshape(-1, 1)
    bundle = ModelBundle(spec=spec, estimator=LogisticRegression().fit(X, X[:, 0] > 9), flavor="sklearn")
    with mlflow.start_run(experiment_id=tracking.experiment_id()) as run:
        info = log_bundle(bundle)
    for _ in range(n):
        tracking.register(info.model_uri, run.info.run_id)


@pytest.fixture
def stores(request: pytest.FixtureRequest, tmp_path: Path, tracking_root: Path) -> Iterator[Stores]:
    name = f"m-{request.node.name[:40]}"
    url = database_url(tmp_path)
    # SQLite: MLflow in one file for the module (its schema is built once). PostgreSQL: MLflow in the test's own
    # database beside the metadata, as stores.database_url puts it in production.
    tracking = {} if backend() == "postgres" else {"tracking_uri": f"sqlite:///{tracking_root / 'mlflow.db'}"}
    cfg = config_from_dict(
        {
            "project": {"name": "".join(c if c.isalnum() or c in "-_." else "-" for c in name)},
            "data": {"target": "y"},
            "stores": {"root": str(tmp_path), "database_url": url, **tracking},
        }
    )
    metadata = MetadataStore.connect(cfg.stores.resolved_database_url())
    tracking_store = TrackingStore(
        cfg.stores.resolved_tracking_uri(), (tracking_root / "artifacts").as_uri(), cfg.project.name,
        tmp_path / "cache",
    )  # fmt: skip
    _registered_versions(tracking_store, 3)
    st = Stores(cfg=cfg, metadata=metadata, tracking=tracking_store)
    yield st
    metadata.close()


def _aliases(st: Stores) -> dict[str, str]:
    return {a: str(v) for a, v in st.tracking.client.get_registered_model(st.model_name).aliases.items()}


def test_the_life_of_a_deployment(stores: Stores) -> None:
    st = stores
    with pytest.raises(UserError, match="no challenger to promote"):
        dp.promote(st, reason="nothing yet")
    with pytest.raises(UserError, match="no champion yet"):
        dp.set_challenger(st, "2", reason="too early")
    with pytest.raises(NotFoundError, match="no version '9'"):
        dp.set_champion(st, "9")
    dep = dp.set_champion(st, "1")
    assert (dep.champion, dep.challenger, dep.strategy, dep.revision) == ("1", None, "single", 1)
    assert _aliases(st) == {"champion": "1"}
    with pytest.raises(UserError, match="already the champion"):
        dp.set_champion(st, "2")
    with pytest.raises(UserError, match="cannot also be the challenger"):
        dp.set_challenger(st, "1", reason="x")
    dp.set_challenger(st, "2", reason="gate passed")
    assert _aliases(st) == {"champion": "1", "challenger": "2"}
    with pytest.raises(UserError, match="v3 is not the challenger"):
        dp.start_strategy(st, "canary", version="3", weight=0.05, reason="wrong one")
    with pytest.raises(UserError, match="weight: a canary step needs"):
        dp.start_strategy(st, "canary", weight=None, reason="no weight")
    with pytest.raises(UserError, match="strategy: must be one of"):
        dp.start_strategy(st, "blue-green", reason="typo")
    dep = dp.start_canary(st, "2", weight=0.05, reason="canary")
    assert (dep.strategy, dep.challenger_weight, dep.rollout_step) == ("canary", 0.05, 0)
    assert dep.step_started_at is not None
    with pytest.raises(UserError, match="the next step is 1"):
        dp.advance_canary(st, step=2, weight=0.5, reason="skip")
    with pytest.raises(UserError, match="must raise the weight"):
        dp.advance_canary(st, step=1, weight=0.01, reason="down")
    dep = dp.advance_canary(st, step=1, weight=0.25, reason="healthy")
    assert (dep.rollout_step, dep.challenger_weight) == (1, 0.25)
    with pytest.raises(UserError, match="canary rollout of v2 is in progress"):
        dp.set_challenger(st, "3", reason="another")
    dep = dp.promote(st, reason="canary passed", evidence={"p": 0.01})
    assert (dep.champion, dep.challenger, dep.strategy, dep.challenger_weight, dep.rollout_step) == (
        "2", None, "single", 0.0, None,
    )  # fmt: skip
    assert _aliases(st) == {"champion": "2"}
    with pytest.raises(UserError, match="nothing to roll back"):
        dp.rollback(st, reason="x")
    dp.set_challenger(st, "3", reason="gate passed")
    dep = dp.start_strategy(st, "ab", weight=0.3, reason="a/b")
    assert (dep.strategy, dep.challenger_weight) == ("ab", 0.3)
    assert dp.start_strategy(st, "bluegreen", reason="switch").challenger_weight == 1.0
    assert dp.start_strategy(st, "shadow", reason="watch").challenger_weight == 0.0
    dep = dp.rollback(st, reason="error rate up", actor="tester")
    assert (dep.champion, dep.challenger, dep.strategy, dep.challenger_weight) == ("2", None, "single", 0.0)
    assert dep.reason == "error rate up" and dep.actor == "tester"
    assert _aliases(st) == {"champion": "2"}
    history = st.metadata.deployment_history(st.model_name)
    assert [h.revision for h in history] == list(range(1, dep.revision + 1))
    events = st.metadata.list_events(st.model_name)
    assert [e.kind for e in events] == [
        "champion_set", "challenger_set", "canary_started", "canary_advanced", "promoted",
        "challenger_set", "strategy_started", "strategy_started", "strategy_started", "rolled_back",
    ]  # fmt: skip
    rolled = events[-1]
    assert rolled.model_version == "3" and rolled.message == "error rate up"
    assert (
        rolled.evidence["previous"]["challenger"] == "3"
        and rolled.evidence["deployment"]["challenger"] is None
    )
    assert events[4].evidence == {"p": 0.01, **{k: events[4].evidence[k] for k in ("deployment", "previous")}}
    assert events[4].evidence["previous"]["champion"] == "1"


def test_a_stale_decision_is_refused_and_a_harmless_race_is_retried(stores: Stores) -> None:
    st = stores
    dp.set_champion(st, "1")
    dp.set_challenger(st, "2", reason="gate passed")
    decided_on = dp.start_canary(st, "2", weight=0.05, reason="canary")
    # Someone else changes only the weight: the controller's rollback still applies to the same models.
    st.metadata.update_deployment(decided_on, challenger_weight=0.1, reason="admin nudged the weight")
    dep = dp.rollback(st, reason="latency", expected=decided_on)
    assert dep.challenger is None and dep.revision == decided_on.revision + 2
    # A decision about v2 must not be applied to v3.
    dp.set_challenger(st, "3", reason="gate passed")
    stale = dp.start_canary(st, "3", weight=0.05, reason="canary")
    dp.promote(st, reason="admin promoted")
    with pytest.raises(ConflictError, match="changed since the decision"):
        dp.rollback(st, reason="late", expected=stale)
    assert dp.current(st).champion == "3"


def test_two_racing_promotions_apply_once(stores: Stores) -> None:
    st = stores
    dp.set_champion(st, "1")
    dp.set_challenger(st, "2", reason="gate passed")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def promote() -> None:
        barrier.wait()
        try:
            dp.promote(st, reason="race")
            outcomes.append("promoted")
        except UserError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=promote) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("promoted") == 1
    assert all("no challenger to promote" in o for o in outcomes if o != "promoted")
    dep = dp.current(st)
    assert (dep.champion, dep.challenger) == ("2", None)
    assert [e.kind for e in st.metadata.list_events(st.model_name)].count("promoted") == 1
