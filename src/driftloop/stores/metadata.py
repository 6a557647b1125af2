"""The metadata store: dataset versions, deployment state, loop events, monitoring results, alerts, leases.

One code path for SQLite (embedded default) and PostgreSQL (psycopg 3). Deployment state changes only
through `MetadataStore.update_deployment`, a compare-and-swap on the row's `revision`, so two controllers,
or an admin call racing a controller, cannot overwrite each other's decisions.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from driftloop.errors import ConfigError, ConflictError, LeaseLostError, NotFoundError

meta = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamptz that always reads back as an aware UTC datetime, on every backend, in one place.

    SQLite hands datetimes back naive (everything stored is UTC); PostgreSQL hands timestamptz back in the
    session's time zone, the server's unless set. Same DDL as `DateTime(timezone=True)`.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


datasets = sa.Table(
    "dataset_versions",
    meta,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("n_columns", sa.Integer, nullable=False),
    sa.Column("schema_json", sa.Text, nullable=False),
    sa.Column("parents_json", sa.Text, nullable=False, default="[]"),
    sa.Column("note", sa.Text, nullable=False, default=""),
)

deployments = sa.Table(
    "deployments",
    meta,
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("champion", sa.String(32)),
    sa.Column("challenger", sa.String(32)),
    sa.Column("strategy", sa.String(16), nullable=False),
    sa.Column("challenger_weight", sa.Float, nullable=False),
    sa.Column("rollout_step", sa.Integer),
    sa.Column("step_started_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
)

deployment_history = sa.Table(
    "deployment_history",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("champion", sa.String(32)),
    sa.Column("challenger", sa.String(32)),
    sa.Column("strategy", sa.String(16), nullable=False),
    sa.Column("challenger_weight", sa.Float, nullable=False),
    sa.Column("rollout_step", sa.Integer),
    sa.Column("changed_at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.UniqueConstraint("model_name", "revision"),
)

events = sa.Table(
    "events",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", UTCDateTime, nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("model_version", sa.String(32)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("data_version", sa.String(64)),
    sa.Column("evidence_json", sa.Text, nullable=False, default="{}"),
)

monitoring_results = sa.Table(
    "monitoring_results",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", UTCDateTime, nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32)),
    sa.Column("window_start", UTCDateTime),
    sa.Column("window_end", UTCDateTime),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("dataset_drift", sa.Boolean),
    sa.Column("drift_share", sa.Float),
    sa.Column("result_json", sa.Text, nullable=False),
)

alerts = sa.Table(
    "alerts",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(200), nullable=False, index=True),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("last_sent", UTCDateTime),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("model_version", sa.String(32)),
    sa.Column("evidence_json", sa.Text, nullable=False, default="{}"),
)

leases = sa.Table(
    "leases",
    meta,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    # The fencing token: +1 on every new acquisition (never on a renewal), so a holder whose lease lapsed
    # and was taken over cannot write with its old token even if it still believes it holds the lease.
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def store_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the database cannot be reached or used right now: a connection
    refused or lost, a database dropped or locked. Such a failure is the store's, to wait out, not a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return True
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def default_actor() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Deployment:
    """What serves now. `revision` counts changes; every change goes through compare-and-swap on it."""

    model_name: str
    revision: int = 0
    champion: str | None = None
    challenger: str | None = None
    strategy: str = "single"
    challenger_weight: float = 0.0
    rollout_step: int | None = None
    step_started_at: datetime | None = None
    updated_at: datetime | None = None
    reason: str = ""
    actor: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("step_started_at", "updated_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass(frozen=True)
class Lease:
    """A held lease and its fencing token (`epoch`). Writes that pass it as `fence` commit only while this very
    acquisition still holds the lease: checked in the writing transaction itself."""

    name: str
    holder: str
    epoch: int
    expires_at: datetime


@dataclass(frozen=True)
class DatasetRecord:
    version: str
    digest: str
    created_at: datetime
    source: str
    path: str
    n_rows: int
    n_columns: int
    schema: dict[str, Any]
    parents: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Event:
    id: int
    ts: datetime
    model_name: str
    kind: str
    message: str
    model_version: str | None
    run_id: str | None
    data_version: str | None
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ts"] = self.ts.isoformat()
        return out


class MetadataStore:
    """SQLAlchemy access to the metadata tables. Create with `MetadataStore.connect(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, url: str, *, create: bool = True) -> MetadataStore:
        url = normalize_url(url)
        if not url.startswith(("sqlite:", "postgresql+psycopg:")):
            scheme = url.split(":", 1)[0] if ":" in url else url
            raise ConfigError(
                f"stores.database_url: {scheme!r} is not a supported database; use sqlite:///PATH (the default) "
                "or postgresql://USER@HOST:PORT/DB"
            )
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            # Several processes (servers, controller, CLI) share one SQLite file: wait for locks, don't fail.
            kwargs["connect_args"] = {"timeout": 30}
        engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if create:
            store.create_all()
        return store

    def create_all(self) -> None:
        from driftloop.stores.migrations import upgrade

        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- datasets -----------------------------------------------------------------------------------------

    def add_dataset(self, rec: DatasetRecord) -> DatasetRecord:
        """Insert a dataset version; identical content (same digest) returns the existing record."""
        existing = self.find_dataset_by_digest(rec.digest)
        if existing is not None:
            return existing
        try:
            with self.begin() as conn:
                conn.execute(
                    datasets.insert().values(
                        version=rec.version,
                        digest=rec.digest,
                        created_at=rec.created_at,
                        source=rec.source,
                        path=rec.path,
                        n_rows=rec.n_rows,
                        n_columns=rec.n_columns,
                        schema_json=json.dumps(rec.schema),
                        parents_json=json.dumps(rec.parents),
                        note=rec.note,
                    )
                )
        except sa.exc.IntegrityError:
            # Another process added the same content between our read and our insert.
            existing = self.find_dataset_by_digest(rec.digest)
            if existing is None:
                raise
            return existing
        return rec

    def find_dataset_by_digest(self, digest: str) -> DatasetRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(datasets).where(datasets.c.digest == digest)).mappings().first()
        return _dataset(row) if row else None

    def get_dataset(self, version: str) -> DatasetRecord:
        """Look up a version by its id or any unique prefix of it; `latest` is the newest."""
        with self.engine.connect() as conn:
            if version == "latest":
                rows = (
                    conn.execute(sa.select(datasets).order_by(datasets.c.created_at.desc()).limit(1))
                    .mappings()
                    .all()
                )
            else:
                # Versions are lowercase hex. Lowercase the prefix and escape LIKE's wildcards, so a lookup
                # answers the same on both backends: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
                prefix = datasets.c.version.startswith(version.lower(), autoescape=True)
                rows = conn.execute(sa.select(datasets).where(prefix).limit(2)).mappings().all()
        if not rows:
            raise NotFoundError(f"dataset version {version!r} does not exist (see `driftloop data list`)")
        if len(rows) > 1:
            raise NotFoundError(f"dataset version prefix {version!r} is ambiguous: give more characters")
        return _dataset(rows[0])

    def list_datasets(self) -> list[DatasetRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(datasets).order_by(datasets.c.created_at)).mappings().all()
        return [_dataset(r) for r in rows]

    # -- deployment state ---------------------------------------------------------------------------------

    def get_deployment(self, model_name: str) -> Deployment:
        """The current deployment; revision 0 with nothing serving if none was ever made."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(deployments).where(deployments.c.model_name == model_name))
                .mappings()
                .first()
            )
        if row is None:
            return Deployment(model_name=model_name)
        return _deployment(row)

    def update_deployment(
        self,
        expected: Deployment,
        *,
        event: Callable[[Deployment], dict[str, Any]] | None = None,
        fence: Lease | None = None,
        **changes: Any,
    ) -> Deployment:
        """Compare-and-swap: apply `changes` only if the row is still at `expected.revision`.

        Raises ConflictError if someone else changed it first; the caller re-reads and decides again.
        Every successful change is appended to deployment_history, and the event `event(new)` describes
        (kind, message, model_version, evidence) is written, in the same transaction: a process killed at
        any moment leaves both or neither.

        With `fence` (the controller's lease), the write commits only while that acquisition of the lease is
        still held, checked in the same transaction (LeaseLostError otherwise): a controller that lost its
        lease mid-decision cannot act on a state another controller now owns.
        """
        changes.setdefault("actor", default_actor())
        new = replace(expected, revision=expected.revision + 1, updated_at=utcnow(), **changes)
        values = {k: v for k, v in asdict(new).items() if k != "model_name"}
        with self.begin() as conn:
            if fence is not None:
                _check_fence(conn, fence)
            if expected.revision == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(deployments.insert().values(model_name=new.model_name, **values))
                except sa.exc.IntegrityError:
                    raise ConflictError(f"deployment of {new.model_name} was created concurrently") from None
            else:
                result = conn.execute(
                    deployments.update()
                    .where(deployments.c.model_name == new.model_name)
                    .where(deployments.c.revision == expected.revision)
                    .values(**values)
                )
                if result.rowcount != 1:
                    raise ConflictError(
                        f"deployment of {new.model_name} changed since revision {expected.revision}"
                    )
            conn.execute(
                deployment_history.insert().values(
                    model_name=new.model_name,
                    revision=new.revision,
                    champion=new.champion,
                    challenger=new.challenger,
                    strategy=new.strategy,
                    challenger_weight=new.challenger_weight,
                    rollout_step=new.rollout_step,
                    changed_at=new.updated_at,
                    reason=new.reason,
                    actor=new.actor,
                )
            )
            if event is not None:
                conn.execute(events.insert().values(**_event_row(new.model_name, **event(new))))
        return new

    def deployment_history(self, model_name: str) -> list[Deployment]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(deployment_history)
                    .where(deployment_history.c.model_name == model_name)
                    .order_by(deployment_history.c.revision)
                )
                .mappings()
                .all()
            )
        return [
            Deployment(
                model_name=r["model_name"],
                revision=r["revision"],
                champion=r["champion"],
                challenger=r["challenger"],
                strategy=r["strategy"],
                challenger_weight=r["challenger_weight"],
                rollout_step=r["rollout_step"],
                updated_at=r["changed_at"],
                reason=r["reason"],
                actor=r["actor"],
            )
            for r in rows
        ]

    # -- events -------------------------------------------------------------------------------------------

    def add_event(
        self,
        model_name: str,
        kind: str,
        message: str,
        *,
        model_version: str | None = None,
        run_id: str | None = None,
        data_version: str | None = None,
        evidence: dict[str, Any] | None = None,
        ts: datetime | None = None,
        fence: Lease | None = None,
    ) -> int:
        """Append one loop event; with `fence`, only while that lease is still held (see update_deployment)."""
        row = _event_row(
            model_name,
            kind,
            message,
            model_version=model_version,
            run_id=run_id,
            data_version=data_version,
            evidence=evidence,
            ts=ts,
        )
        with self.begin() as conn:
            if fence is not None:
                _check_fence(conn, fence)
            result = conn.execute(events.insert().values(**row))
            return _new_id(result)

    def list_events(
        self, model_name: str | None = None, *, since: datetime | None = None, kinds: list[str] | None = None
    ) -> list[Event]:
        query = sa.select(events).order_by(events.c.id)
        if model_name:
            query = query.where(events.c.model_name == model_name)
        if since:
            query = query.where(events.c.ts >= since)
        if kinds:
            query = query.where(events.c.kind.in_(kinds))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Event(
                id=r["id"],
                ts=r["ts"],  # type: ignore[arg-type]
                model_name=r["model_name"],
                kind=r["kind"],
                message=r["message"],
                model_version=r["model_version"],
                run_id=r["run_id"],
                data_version=r["data_version"],
                evidence=json.loads(r["evidence_json"] or "{}"),
            )
            for r in rows
        ]

    # -- monitoring results -------------------------------------------------------------------------------

    def add_monitoring_result(
        self,
        model_name: str,
        result: dict[str, Any],
        *,
        model_version: str | None,
        window_start: datetime | None,
        window_end: datetime | None,
        n_rows: int,
        dataset_drift: bool | None,
        drift_share: float | None,
        ts: datetime | None = None,
    ) -> int:
        with self.begin() as conn:
            res = conn.execute(
                monitoring_results.insert().values(
                    ts=ts or utcnow(),
                    model_name=model_name,
                    model_version=model_version,
                    window_start=window_start,
                    window_end=window_end,
                    n_rows=n_rows,
                    dataset_drift=dataset_drift,
                    drift_share=drift_share,
                    result_json=json.dumps(result, default=str),
                )
            )
            return _new_id(res)

    def list_monitoring_results(self, model_name: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Newest last: each row with its stored result parsed."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(monitoring_results)
                    .where(monitoring_results.c.model_name == model_name)
                    .order_by(monitoring_results.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        out = []
        for r in reversed(rows):
            d = dict(r)
            d["result"] = json.loads(d.pop("result_json"))
            out.append(d)
        return out

    # -- leases (one active controller) -------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, seconds: float) -> Lease | None:
        """Take or renew the named lease; None while another holder's lease has not expired.

        A renewal (the same holder, not yet expired) keeps the fencing token; any new acquisition (a first
        one, a takeover of an expired lease, the same holder coming back after its lease lapsed) increments it.
        """
        now = utcnow()
        until = now + timedelta(seconds=seconds)
        mine = sa.and_(leases.c.name == name, leases.c.holder == holder, leases.c.expires_at >= now)
        with self.begin() as conn:
            renewed = conn.execute(leases.update().where(mine).values(expires_at=until))
            if renewed.rowcount != 1:
                taken = conn.execute(
                    leases.update()
                    .where(leases.c.name == name)
                    .where(sa.not_(sa.and_(leases.c.holder != holder, leases.c.expires_at >= now)))
                    .values(holder=holder, expires_at=until, epoch=leases.c.epoch + 1)
                )
                if taken.rowcount != 1:
                    if conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first():
                        return None  # held by someone else
                    try:
                        with conn.begin_nested():
                            conn.execute(
                                leases.insert().values(name=name, holder=holder, expires_at=until, epoch=1)
                            )
                    except sa.exc.IntegrityError:
                        return None  # someone else created it first
            epoch = conn.execute(sa.select(leases.c.epoch).where(leases.c.name == name)).scalar_one()
        return Lease(name=name, holder=holder, epoch=int(epoch), expires_at=until)

    def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        """Extend `lease` (a heartbeat); None if it lapsed or another acquisition replaced it meanwhile."""
        now = utcnow()
        until = now + timedelta(seconds=seconds)
        with self.begin() as conn:
            result = conn.execute(leases.update().where(_held(lease, now)).values(expires_at=until))
        return replace(lease, expires_at=until) if result.rowcount == 1 else None

    def release_lease(self, name: str, holder: str) -> None:
        """Let the lease lapse now. The row stays, so the next acquisition's fencing token is still higher."""
        with self.begin() as conn:
            conn.execute(
                leases.update()
                .where(leases.c.name == name)
                .where(leases.c.holder == holder)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )

    # -- alerts (state for de-duplication, cool-down and escalation; see loop/alerts.py) -------------------

    def get_open_alert(self, fingerprint: str) -> dict[str, Any] | None:
        """The newest alert with this fingerprint that is still firing, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(alerts)
                    .where(alerts.c.fingerprint == fingerprint)
                    .where(alerts.c.state == "firing")
                    .order_by(alerts.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return _alert(row) if row else None

    def add_alert(
        self,
        *,
        fingerprint: str,
        rule: str,
        severity: str,
        message: str,
        ts: datetime,
        model_version: str | None = None,
        evidence: dict[str, Any] | None = None,
        sent: bool = False,
    ) -> int:
        with self.begin() as conn:
            res = conn.execute(
                alerts.insert().values(
                    fingerprint=fingerprint,
                    rule=rule,
                    severity=severity,
                    message=message,
                    first_seen=ts,
                    last_seen=ts,
                    last_sent=ts if sent else None,
                    count=1,
                    state="firing",
                    model_version=model_version,
                    evidence_json=json.dumps(evidence or {}, default=str),
                )
            )
            return _new_id(res)

    def update_alert(self, alert_id: int, **changes: Any) -> None:
        """Set columns of one alert row (`evidence` is stored as JSON)."""
        if "evidence" in changes:
            changes["evidence_json"] = json.dumps(changes.pop("evidence"), default=str)
        with self.begin() as conn:
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(**changes))

    def list_alerts(self, *, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first."""
        query = sa.select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if state:
            query = query.where(alerts.c.state == state)
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(query).mappings().all()]


def _held(lease: Lease, now: datetime) -> Any:
    return sa.and_(
        leases.c.name == lease.name,
        leases.c.holder == lease.holder,
        leases.c.epoch == lease.epoch,
        leases.c.expires_at >= now,
    )


def _new_id(result: Any) -> int:
    """The primary key an INSERT just made (every table here has one integer key)."""
    key = result.inserted_primary_key
    assert key is not None, "an INSERT without a primary key"
    return int(key[0])


def _check_fence(conn: Connection, lease: Lease) -> None:
    """Inside a write transaction: raise LeaseLostError unless `lease` is still held.

    A no-op UPDATE rather than a SELECT: it takes the lease row's lock (PostgreSQL) or the write lock
    (SQLite) until the transaction ends, so no one can take the lease over between this check and the commit.
    """
    held = conn.execute(leases.update().where(_held(lease, utcnow())).values(epoch=leases.c.epoch))
    if held.rowcount != 1:
        raise LeaseLostError(
            f"lease {lease.name} (epoch {lease.epoch}) is no longer held by {lease.holder}: write refused"
        )


def _event_row(
    model_name: str,
    kind: str,
    message: str,
    *,
    model_version: str | None = None,
    run_id: str | None = None,
    data_version: str | None = None,
    evidence: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> dict[str, Any]:
    return {
        "ts": ts or utcnow(),
        "model_name": model_name,
        "kind": kind,
        "message": message,
        "model_version": model_version,
        "run_id": run_id,
        "data_version": data_version,
        "evidence_json": json.dumps(evidence or {}, default=str),
    }


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    for prefix in ("postgresql+psycopg2://", "postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _dataset(row: Any) -> DatasetRecord:
    return DatasetRecord(
        version=row["version"],
        digest=row["digest"],
        created_at=row["created_at"],  # type: ignore[arg-type]
        source=row["source"],
        path=row["path"],
        n_rows=row["n_rows"],
        n_columns=row["n_columns"],
        schema=json.loads(row["schema_json"]),
        parents=json.loads(row["parents_json"] or "[]"),
        note=row["note"] or "",
    )


def _alert(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["evidence"] = json.loads(out.pop("evidence_json") or "{}")
    return out


def _deployment(row: Any) -> Deployment:
    return Deployment(
        model_name=row["model_name"],
        revision=row["revision"],
        champion=row["champion"],
        challenger=row["challenger"],
        strategy=row["strategy"],
        challenger_weight=row["challenger_weight"],
        rollout_step=row["rollout_step"],
        step_started_at=row["step_started_at"],
        updated_at=row["updated_at"],
        reason=row["reason"],
        actor=row["actor"],
    )
