"""The metadata store on this run's backend (SQLite, or the machine's real PostgreSQL): datasets, CAS
deployments, leases."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftloop.errors import ConflictError, NotFoundError
from driftloop.stores.metadata import DatasetRecord, MetadataStore
from tests.conftest import backend, database_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    st = MetadataStore.connect(database_url(tmp_path))
    yield st
    st.close()


def test_deployment_compare_and_swap(store: MetadataStore) -> None:
    first = store.get_deployment("m")
    assert first.revision == 0 and first.champion is None
    dep = store.update_deployment(first, champion="1", reason="first model")
    assert dep.revision == 1
    with pytest.raises(ConflictError):
        store.update_deployment(first, champion="2", reason="stale writer")
    dep2 = store.update_deployment(
        dep, challenger="2", strategy="canary", challenger_weight=0.05, reason="gate"
    )
    with pytest.raises(ConflictError):
        store.update_deployment(dep, champion="9", reason="stale writer")
    assert store.get_deployment("m") == dep2
    history = store.deployment_history("m")
    assert [h.revision for h in history] == [1, 2]
    assert history[1].challenger_weight == 0.05 and history[1].reason == "gate"


def test_events_and_monitoring_results_round_trip(store: MetadataStore) -> None:
    store.add_event("m", "gate_failed", "worse", model_version="2", evidence={"delta": -0.01})
    store.add_event("m", "promoted", "better", model_version="3")
    events = store.list_events("m")
    assert [e.kind for e in events] == ["gate_failed", "promoted"]
    assert events[0].evidence == {"delta": -0.01} and events[0].ts.tzinfo is not None
    assert [e.kind for e in store.list_events("m", kinds=["promoted"])] == ["promoted"]
    store.add_monitoring_result(
        "m",
        {"x": 1},
        model_version="1",
        window_start=None,
        window_end=None,
        n_rows=5,
        dataset_drift=True,
        drift_share=0.6,
    )
    (row,) = store.list_monitoring_results("m")
    assert row["result"] == {"x": 1} and row["dataset_drift"] is True


def test_lease_is_exclusive_until_released(store: MetadataStore) -> None:
    assert store.acquire_lease("controller", "a", 60)
    assert not store.acquire_lease("controller", "b", 60)
    assert store.acquire_lease("controller", "a", 60)  # renewal
    store.release_lease("controller", "a")
    assert store.acquire_lease("controller", "b", 60)


def test_expired_lease_can_be_taken_over(store: MetadataStore) -> None:
    assert store.acquire_lease("controller", "a", -1)  # already expired
    assert store.acquire_lease("controller", "b", 60)


def test_unknown_dataset_version_is_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        store.get_dataset("abc")


def test_dataset_prefix_lookup_is_the_same_on_every_backend(store: MetadataStore) -> None:
    """A prefix is matched literally and whatever its case: SQLite's LIKE ignores ASCII case, PostgreSQL's does
    not, and `_`/`%` are wildcards to both."""
    for digest in ("ab12" + "0" * 60, "ab34" + "0" * 60):
        store.add_dataset(
            DatasetRecord(
                version=digest[:12], digest=digest, created_at=datetime.now(UTC), source="test",
                path=f"{digest[:12]}.parquet", n_rows=1, n_columns=1, schema={},
            )
        )  # fmt: skip
    assert store.get_dataset("AB12").version == "ab1200000000"
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.get_dataset("AB")
    for pattern in ("ab_2", "%12", "a%"):
        with pytest.raises(NotFoundError, match="does not exist"):
            store.get_dataset(pattern)


def test_timestamps_come_back_in_utc(store: MetadataStore) -> None:
    """Whatever the server's time zone: PostgreSQL hands timestamptz back in the session's zone (a server in
    Asia/Kolkata gave +05:30, which `driftloop events` printed as if it were UTC), SQLite hands them back naive."""
    if backend() == "postgres":
        with store.begin() as conn:
            name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Kolkata'"))
        store.engine.dispose()  # new sessions take the database's zone
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW timezone")).scalar_one() == "Asia/Kolkata"
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    store.add_event("m", "check", "x", ts=at)
    store.add_monitoring_result(
        "m", {}, model_version="1", window_start=at - timedelta(hours=1), window_end=at, n_rows=0,
        dataset_drift=None, drift_share=None, ts=at,
    )  # fmt: skip
    store.update_deployment(store.get_deployment("m"), champion="1", reason="first")
    (event,) = store.list_events("m")
    (result,) = store.list_monitoring_results("m")
    (history,) = store.deployment_history("m")
    stamps = [event.ts, result["ts"], result["window_start"], result["window_end"], history.updated_at]
    assert stamps[:4] == [at, at, at - timedelta(hours=1), at]
    assert all(t.utcoffset() == timedelta(0) for t in stamps), stamps
    assert event.to_dict()["ts"] == "2026-03-01T12:00:00+00:00"


@pytest.mark.postgres
def test_mlflow_and_driftloop_share_one_postgresql_database(pg_fresh_url: str, tmp_path: Path) -> None:
    """One setting (stores.database_url) holds both MLflow's tables and driftloop's."""
    import mlflow

    from driftloop.config import config_from_dict
    from driftloop.stores import open_stores

    cfg = config_from_dict(
        {
            "data": {"target": "y"},
            "project": {"name": "shared-db"},
            "stores": {"root": str(tmp_path), "database_url": pg_fresh_url},
        },
        environ={},
    )
    assert cfg.stores.resolved_tracking_uri() == pg_fresh_url
    stores = open_stores(cfg)
    experiment = stores.tracking.experiment_id()  # MLflow creates its tables in the same database
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metric("x", 1.0)
    assert stores.tracking.client.get_run(run.info.run_id).data.metrics == {"x": 1.0}
    reopened = open_stores(cfg)  # driftloop's migrations find MLflow's tables and leave them alone
    reopened.metadata.add_event("shared-db", "check", "both stores in one database")
    assert [e.kind for e in reopened.metadata.list_events("shared-db")] == ["check"]
    import sqlalchemy as sa

    names = set(sa.inspect(reopened.metadata.engine).get_table_names())
    assert {"experiments", "runs", "datasets", "alembic_version"} <= names
    assert {"dataset_versions", "deployments", "events", "driftloop_alembic_version"} <= names
    for st in (stores, reopened):
        st.close()
