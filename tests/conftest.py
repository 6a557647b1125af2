"""Fixtures shared by every suite: wine data (the copy the package ships), a project folder, the stores backend
of the run, and throwaway PostgreSQL databases.

`--backend sqlite|postgres` (or DRIFTLOOP_TEST_BACKEND; default sqlite) says where the projects the tests make
keep their stores. With `postgres`, each one gets a throwaway database on the machine's PostgreSQL
(`database_url`): driftloop's tables and MLflow's backend store in it (one database, as in production),
artifacts and prediction logs in local files. `make test` runs the integration suite once per backend. Tests
marked `no_database` use neither database and run in the sqlite pass only; tests marked `postgres` are about
PostgreSQL itself and run in the postgres pass only.

Everything PostgreSQL fails (never skips) when the server is unreachable: CI must prove the PostgreSQL path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
BACKENDS = ("sqlite", "postgres")

# -- the backend of this run ------------------------------------------------------------------------------------

_backend = "sqlite"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="where test projects keep their stores: sqlite (embedded files, the default) or postgres (a "
        "throwaway database each on the machine's PostgreSQL); also DRIFTLOOP_TEST_BACKEND",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _backend
    chosen = config.getoption("--backend") or os.environ.get("DRIFTLOOP_TEST_BACKEND") or "sqlite"
    if chosen not in BACKENDS:
        raise pytest.UsageError(f"DRIFTLOOP_TEST_BACKEND={chosen!r}: must be one of {', '.join(BACKENDS)}")
    _backend = chosen
    if chosen == "postgres":
        config.pluginmanager.register(_databases, "driftloop-test-databases")


def backend() -> str:
    """The stores backend of this run: "sqlite" or "postgres"."""
    return _backend


def pytest_report_header(config: pytest.Config) -> str:
    return f"driftloop stores backend: {_backend}"


#: marker -> the backend whose pass leaves the marked tests out, and why
_LEFT_OUT = {
    "no_database": ("postgres", "use no database, so they run in the sqlite pass only"),
    "postgres": ("sqlite", "are about PostgreSQL itself, so they run in the postgres pass only"),
}
_deselected: dict[str, int] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test runs in the passes where it means something: no pointless second run, nothing skipped."""
    keep, drop = [], []
    for item in items:
        marker = next(
            (
                m
                for m, (left_out_of, _) in _LEFT_OUT.items()
                if left_out_of == _backend and item.get_closest_marker(m)
            ),
            None,
        )
        if marker is None:
            keep.append(item)
        else:
            drop.append(item)
            _deselected[marker] = _deselected.get(marker, 0) + 1
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _databases.made:
        terminalreporter.write_line(
            f"backend postgres: {_databases.made} throwaway databases made and dropped"
        )
    for marker, n in _deselected.items():
        terminalreporter.write_line(
            f"backend {_backend}: {n} test(s) marked {marker!r} deselected: they {_LEFT_OUT[marker][1]}"
        )


# -- throwaway PostgreSQL databases -----------------------------------------------------------------------------


def _admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}. Start it (see .ci/run).")


def _create_database() -> tuple[str, str]:
    """A new empty database: (name, SQLAlchemy URL for psycopg 3)."""
    name = f"driftloop_test_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def _drop_databases(names: list[str]) -> None:
    if not names:
        return
    with _admin() as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _throwaway_database() -> Iterator[str]:
    name, url = _create_database()
    try:
        yield url
    finally:
        _drop_databases([name])


class _ProjectDatabases:
    """The databases `database_url` made in the postgres pass, each dropped when what asked for it ends.

    A database asked for by a test (or its function-scoped fixtures) is dropped after the test's teardown; one
    asked for while a module- or session-scoped fixture was being set up lives as long as that fixture. Dropping
    early matters: MLflow caches an engine (a connection pool) per database URL for the life of the process, so
    databases kept to the end of the session would pile up idle connections past max_connections (100).
    Whatever is left (a fixture that failed half-way) is dropped at session end.

    A plugin registered in `pytest_configure`, not hooks of this conftest: conftest hooks only see nodes under
    tests/, and a session-scoped fixture is set up on the session node.
    """

    def __init__(self) -> None:
        self.fixture_frames: list[
            tuple[str, list[str]]
        ] = []  # (scope, databases made): fixtures being set up
        self.test_owned: list[str] = []
        self.live: set[str] = set()
        self.made = 0

    def new(self) -> str:
        name, url = _create_database()
        self.made += 1
        self.live.add(name)
        owner = next((made for scope, made in reversed(self.fixture_frames) if scope != "function"), None)
        (self.test_owned if owner is None else owner).append(name)
        return url

    def drop(self, names: list[str]) -> None:
        names = [n for n in names if n in self.live]
        _drop_databases(names)
        self.live.difference_update(names)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef) -> Iterator[Any]:
        made: list[str] = []
        # Registered before the fixture runs, so it runs after the fixture's own teardown (finalizers run LIFO).
        fixturedef.addfinalizer(lambda: self.drop(made))
        self.fixture_frames.append((fixturedef.scope, made))
        try:
            return (yield)
        finally:
            self.fixture_frames.pop()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self) -> Iterator[None]:
        try:
            return (yield)
        finally:
            names, self.test_owned = self.test_owned, []
            self.drop(names)

    def pytest_sessionfinish(self) -> None:
        self.drop(sorted(self.live))


_databases = _ProjectDatabases()


def database_url(root: Path) -> str:
    """Where a project rooted at `root` (its stores folder) keeps its metadata, for this run's backend.

    sqlite: the embedded default, `sqlite:///<root>/driftloop.db`. postgres: a fresh throwaway database (MLflow's
    backend store goes there too when a project's `stores.database_url` names it).
    """
    if _backend == "postgres":
        return _databases.new()
    return f"sqlite:///{Path(root).as_posix()}/driftloop.db"


def drop_database(url: str) -> None:
    """Drop a database `database_url` made before its time (a test of a store outage)."""
    _databases.drop([url.rsplit("/", 1)[1]])


def tracking_uri(root: Path) -> str:
    """Where MLflow keeps runs and models for a bare MLflow test: `<root>/mlflow.db`, or a fresh PostgreSQL one."""
    if _backend == "postgres":
        return _databases.new()
    return f"sqlite:///{Path(root).as_posix()}/mlflow.db"


# -- data and projects ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def red() -> pd.DataFrame:
    return pd.read_csv(RED, sep=";")


@pytest.fixture(scope="session")
def white() -> pd.DataFrame:
    return pd.read_csv(WHITE, sep=";")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DRIFTLOOP_* variable of the developer's shell leaks into a test (the test suite's own settings stay)."""
    for name in list(os.environ):
        if name.startswith("DRIFTLOOP_") and not name.startswith("DRIFTLOOP_TEST_"):
            monkeypatch.delenv(name)


def write_project(root: Path, data_file: Path = RED, **sections: dict) -> Path:
    """A driftloop.yaml in `root` for the wine data with small budgets; extra sections merge over it.

    In the postgres pass the project's stores go to a throwaway database (unless `stores` names one).
    """
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
    if _backend == "postgres" and not cfg["stores"].get("database_url"):
        cfg["stores"]["database_url"] = database_url(Path(cfg["stores"]["root"]))
    path = root / "driftloop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with a small-budget config for red wine; returns the config path."""
    return write_project(tmp_path)


@pytest.fixture
def pg_fresh_url() -> Iterator[str]:
    """URL of a PostgreSQL database of this test's own, dropped afterwards."""
    with _throwaway_database() as url:
        yield url
