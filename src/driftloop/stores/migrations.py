"""Schema migrations of the metadata store: the Alembic chain under `stores/alembic/`, run from code.

`upgrade(engine)` brings a database to the newest revision; `MetadataStore.create_all` calls it on first use
and `driftloop db upgrade` calls it on purpose. It is safe to run twice and from several processes at once:
the migration runs in one transaction under a database lock (a PostgreSQL advisory lock, SQLite's
`BEGIN IMMEDIATE`), and whoever comes second finds the schema current and does nothing.

No alembic.ini is needed: the script folder ships inside the package. The version table is
`driftloop_alembic_version`, so MLflow's own `alembic_version` can live in the same database.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine

from driftloop.errors import UserError

VERSION_TABLE = "driftloop_alembic_version"
SCRIPT_LOCATION = "driftloop.stores:alembic"
#: The first revision; a database made by `meta.create_all` before migrations existed is stamped with it.
BASELINE = "0001_initial"
#: Key of the PostgreSQL advisory lock that serialises migrations ("driftloo" as a signed 64-bit integer).
ADVISORY_LOCK_KEY = int.from_bytes(b"driftloo", "big", signed=True)

log = logging.getLogger(__name__)


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    """The newest revision in the migration chain shipped with this version of driftloop."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migration chain is empty"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def only_tables_of(target: sa.MetaData) -> Callable[..., bool]:
    """An Alembic `include_object` that sees only `target`'s tables: MLflow's may share the database."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return name in target.tables
        table = getattr(obj, "table", None)
        return table is None or table.name in target.tables

    return include


def schema_differences(conn: Connection, target: sa.MetaData | None = None) -> list[Any]:
    """What differs between the database and `target` (default `metadata.meta`), as Alembic's autogenerate
    sees it: empty when they agree."""
    from driftloop.stores.metadata import meta

    target = meta if target is None else target
    opts = {"version_table": VERSION_TABLE, "include_object": only_tables_of(target), "compare_type": True}
    return compare_metadata(MigrationContext.configure(conn, opts=opts), target)


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to `revision` (default: the newest) and return the revision it is now at."""
    target = head_revision() if revision == "head" else revision
    # The common case, every process start on a current database, costs one SELECT and takes no lock.
    current = _current_or_none(engine)
    if current == target:
        return target
    if current is not None and not _known(current):
        # A newer release migrated this database (during a rolling upgrade, say): this older code must not
        # fail to start over it; migrations add before they remove, so it keeps working until replaced.
        log.warning(
            "metadata database is at revision %s, newer than this driftloop knows (%s)", current, target
        )
        return current
    with engine.begin() as conn:
        _lock(conn)
        adopted = _adopt_unversioned(conn)
        command.upgrade(_config(conn), revision)
        if adopted and revision == "head" and schema_differences(conn):
            raise UserError(
                f"the metadata database has driftloop's tables but no {VERSION_TABLE}, and they do not match "
                "any release's schema: point stores.database_url at a database of driftloop's own"
            )
        return _current(conn) or ""


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _current_or_none(engine: Engine) -> str | None:
    try:
        return current_revision(engine)
    except sa.exc.OperationalError:
        # e.g. an SQLite file whose folder does not exist yet: let the real migration report it.
        return None


def _lock(conn: Connection) -> None:
    """Hold the migration lock until this transaction ends, so concurrent first uses run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        # pysqlite runs DDL outside any transaction unless one is open; BEGIN IMMEDIATE opens one and takes
        # the database's write lock (others wait up to busy_timeout), which makes the migration atomic too.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _adopt_unversioned(conn: Connection) -> bool:
    """Stamp a database whose tables were made by `meta.create_all` before migrations existed.

    Only if every table is there (after the upgrade they must match the newest schema exactly); any other
    table of ours without a version table means someone else's table has our name: refuse clearly. (Ours avoid MLflow's names, such as
    `datasets`, so both can share one PostgreSQL database.)
    """
    from driftloop.stores.metadata import meta

    names = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        return False
    ours = names & set(meta.tables)
    if not ours:
        return False
    if ours == set(meta.tables):
        if not schema_differences(conn):
            command.stamp(_config(conn), "head")  # already exactly the newest schema
            return False
        # Made by a release before migrations existed: its tables are the baseline's. Stamp it and let the
        # chain bring it up; `upgrade` checks that the result matches, else the transaction rolls back.
        command.stamp(_config(conn), BASELINE)
        return True
    raise UserError(
        f"the metadata database already has table(s) {', '.join(sorted(ours))} but no {VERSION_TABLE}: "
        "they were not made by driftloop's migrations. Point stores.database_url (DRIFTLOOP_DATABASE_URL) "
        "at a database of driftloop's own, not one another application (e.g. MLflow) uses."
    )


def make_revision(engine: Engine, message: str) -> Path:
    """For developers: write a new revision file with the changes between the database and `metadata.meta`.

    Migrate `engine` (a scratch database) to head first; review and edit the generated file before committing.
    """
    upgrade(engine)
    scripts = ScriptDirectory.from_config(_config())
    # Numbered ids (0002_add_x) keep the folder in order; they must fit alembic's VARCHAR(32) version column.
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:26].rstrip("_")
    rev_id = f"{len(list(scripts.walk_revisions())) + 1:04d}_{slug}"
    with engine.begin() as conn:
        cfg = _config(conn)
        cfg.set_main_option("file_template", "%%(rev)s")
        script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    assert script is not None and not isinstance(script, list)
    head_revision.cache_clear()
    return Path(script.path)
