"""Alembic environment of the metadata store, run only through `driftloop.stores.migrations`.

The caller hands over an open connection (in `config.attributes["connection"]`) inside a transaction it
owns, so the advisory lock it took and the schema change commit or roll back together.
"""

from __future__ import annotations

from alembic import context

from driftloop.stores.metadata import meta
from driftloop.stores.migrations import VERSION_TABLE, only_tables_of

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through driftloop.stores.migrations.upgrade(engine), not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=meta,
    # MLflow keeps its own `alembic_version` and may live in the same database.
    version_table=VERSION_TABLE,
    include_object=only_tables_of(meta),
    # SQLite cannot ALTER most things: batch mode copies the table, which later revisions will need.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
