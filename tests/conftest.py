"""Fixtures shared by every suite: wine data (the copy the package ships), a project folder, and a throwaway
PostgreSQL database.

The PostgreSQL fixture fails (never skips) when the server is unreachable: CI must prove the PostgreSQL path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

DATA_DIR = Path(
    os.environ.get(
        "DRIFTLOOP_TEST_DATA", Path(__file__).resolve().parents[1] / "src" / "driftloop" / "demodata"
    )
)
RED = DATA_DIR / "winequality-red.csv"
WHITE = DATA_DIR / "winequality-white.csv"
PG_ADMIN_URL = os.environ.get("DRIFTLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def red() -> pd.DataFrame:
    return pd.read_csv(RED, sep=";")


@pytest.fixture(scope="session")
def white() -> pd.DataFrame:
    return pd.read_csv(WHITE, sep=";")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DRIFTLOOP_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("DRIFTLOOP_") and name not in ("DRIFTLOOP_TEST_DATA", "DRIFTLOOP_TEST_PG"):
            monkeypatch.delenv(name)


def write_project(root: Path, data_file: Path = RED, **sections: dict) -> Path:
    """A driftloop.yaml in `root` for the wine data with small budgets; extra sections merge over it."""
    import yaml

    cfg: dict = {
        "project": {"name": "wine"},
        "data": {"path": str(data_file), "target": "quality"},
        "training": {
            "budget": {"trials": 6, "seconds": None},
            "cv_folds": 3,
            "families": ["lightgbm", "linear"],
        },
        "stores": {"root": str(root / ".driftloop")},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = root / "driftloop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with a small-budget config for red wine; returns the config path."""
    return write_project(tmp_path)


@contextmanager
def _throwaway_database() -> Iterator[str]:
    import psycopg

    name = f"driftloop_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}. Start it (see .ci/run).")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session, dropped afterwards."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture
def pg_fresh_url() -> Iterator[str]:
    """URL of a PostgreSQL database of this test's own, dropped afterwards."""
    with _throwaway_database() as url:
        yield url
