"""The Alembic chain builds exactly the tables of `metadata.meta`, on this run's backend (SQLite, or the
machine's PostgreSQL).

A change to a table in `stores/metadata.py` without a new revision makes `test_migrated_schema_matches_metadata`
fail. Each PostgreSQL test gets a throwaway database, dropped afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftloop.errors import UserError
from driftloop.stores import migrations
from driftloop.stores.metadata import MetadataStore, meta
from tests.conftest import database_url


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """An empty database of this run's backend: a new SQLite file, or a throwaway PostgreSQL database."""
    return database_url(tmp_path)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    store = MetadataStore.connect(db_url, create=False)
    yield store.engine
    store.close()


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_migrated_schema_matches_metadata(engine: sa.Engine) -> None:
    assert migrations.upgrade(engine) == migrations.head_revision()
    assert _tables(engine) == set(meta.tables) | {migrations.VERSION_TABLE}
    with engine.connect() as conn:
        diffs = migrations.schema_differences(conn)
    assert diffs == [], f"metadata.py and the migration chain disagree, add a revision: {diffs}"


def test_comparison_catches_a_table_change_without_a_migration(engine: sa.Engine) -> None:
    """The guard above has teeth: a column, an index or a type that only metadata.py has is reported."""
    migrations.upgrade(engine)
    changed = sa.MetaData()
    for table in meta.sorted_tables:
        table.to_metadata(changed)
    changed.tables["events"].append_column(sa.Column("severity", sa.String(16)))
    sa.Index("ix_alerts_rule", changed.tables["alerts"].c.rule)
    with engine.connect() as conn:
        diffs = migrations.schema_differences(conn, changed)
    kinds = {(d[0], d[2] if d[0] == "add_column" else d[1].name) for d in diffs}
    assert kinds == {("add_column", "events"), ("add_index", "ix_alerts_rule")}


def test_upgrade_twice_keeps_data_and_revision(db_url: str) -> None:
    store = MetadataStore.connect(db_url)  # create_all runs the migrations on first use
    try:
        dep = store.get_deployment("wine")
        store.update_deployment(dep, champion="1", reason="first", actor="test")
        assert migrations.upgrade(store.engine) == migrations.head_revision()
        again = MetadataStore.connect(db_url)
        assert again.get_deployment("wine").champion == "1"
        again.close()
        with store.engine.connect() as conn:
            versions = conn.execute(sa.text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).all()
        assert versions == [(migrations.head_revision(),)]
    finally:
        store.close()


_FIRST_USE = """
import sys, time
from driftloop.stores.metadata import MetadataStore
url, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))  # all processes reach their first connect at the same moment
MetadataStore.connect(url).close()
"""


def test_concurrent_first_use_migrates_once(db_url: str) -> None:
    """Several processes' first connect at once: one migrates, the others wait for it and find it done."""
    at = time.time() + 3.0  # after every process has imported driftloop (about a second each here)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_USE, db_url, str(at)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    failures = [p.stderr.read() for p in procs if p.wait(timeout=120) != 0]  # type: ignore[union-attr]
    assert not failures, failures[0]
    engine = sa.create_engine(db_url)
    try:
        assert migrations.current_revision(engine) == migrations.head_revision()
        with engine.connect() as conn:
            assert migrations.schema_differences(conn) == []
    finally:
        engine.dispose()


def test_leaves_mlflow_version_table_alone(engine: sa.Engine) -> None:
    """MLflow keeps its revision in `alembic_version`; sharing a database must not read or move it."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1')"))
    migrations.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [("1b5f0d9ad7c1",)]
        assert migrations.schema_differences(conn) == []


def test_adopts_a_database_made_before_migrations(engine: sa.Engine) -> None:
    meta.create_all(engine)
    assert migrations.current_revision(engine) is None
    assert migrations.upgrade(engine) == migrations.head_revision()
    with engine.connect() as conn:
        assert migrations.schema_differences(conn) == []


def test_refuses_a_foreign_table_with_our_name(engine: sa.Engine) -> None:
    """Another application's table with one of our names: say so instead of failing halfway through."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE dataset_versions (dataset_uuid VARCHAR(36) PRIMARY KEY, name TEXT)")
        )
    with pytest.raises(UserError, match=r"dataset_versions.*stores\.database_url"):
        migrations.upgrade(engine)
    assert _tables(engine) == {"dataset_versions"}, "a refused migration must leave nothing behind"


def test_an_older_release_starts_on_a_newer_schema(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """During a rolling upgrade the new release migrates first; old replicas that restart must not crash."""
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    with caplog.at_level("WARNING", logger="driftloop.stores.migrations"):
        assert migrations.upgrade(engine) == "0099_from_the_future"
    assert "newer than this driftloop knows" in caplog.text
    assert _tables(engine) == set(meta.tables) | {migrations.VERSION_TABLE}
