"""Schema migrations of the metadata store.

For now the tables are created from `metadata.meta`; the Alembic migration chain replaces this
(issue: production mode) with `driftloop db upgrade`, run automatically on first use.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine


def upgrade(engine: Engine) -> None:
    from driftloop.stores.metadata import meta

    meta.create_all(engine)
