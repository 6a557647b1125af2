"""Compaction and retention of the prediction log, safe while servers write and readers read.

Compaction replaces the many small files of a *closed* partition (an hour folder whose hour ended at least
`grace` ago, or a legacy day folder) by one file per schema, in three steps:

1. write the rows of the partition's visible files to `.compact-<ms>-<hex>.parquet.tmp` (hidden: readers and
   writers ignore dot-files); its footer lists the input file names (`driftloop.replaces`);
2. fsync and rename it to `compact-<ms>-<hex>.parquet` (atomic): from now on a reader that lists the folder
   drops the inputs it names (`Partition.visible`), so it reads the compacted file or the inputs, never both;
3. delete the inputs, but only once the compacted file is `delete_after` old (on a later run): a reader whose
   directory listing overlapped the rename still sees every input, never some of them; one that listed
   before the rename and opens an input after its deletion gets `LogChanged` and lists again.

Crash cases (SIGKILL between any two steps): before 2, a hidden temp file is left, which the next run deletes
(it holds the maintenance lock, so no other run is writing it); between 2 and 3, the inputs and the compacted
file are both present and readers read the compacted file only; the next run deletes the inputs. No step
loses or duplicates a row, and a rerun finishes the job. Writers never write into a closed partition
(rows go to the hour of their own timestamp); a late file (a writer retrying a storage fault) is just another
input of the next compaction.

Retention (`log.retention_days`) deletes whole partitions that ended before `now - retention_days`, except
the rows retraining may still use: prediction rows that have a feedback label, with their feedback, while
they are inside the retraining window (`loop.retrain.recency_seconds`; None: forever). An expired prediction
partition in that window is rewritten (by the same three steps) to its labelled rows only; an expired
feedback partition in that window is kept whole. A label that arrives after its prediction's partition was
pruned finds no prediction: it counts as unmatched feedback.

One maintenance run at a time per log folder (`<log_dir>/.maintenance.lock`, an advisory `flock`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.stores.logfiles import (
    COMPACT_PREFIX,
    KINDS,
    PRUNED_KEY,
    REPLACES_KEY,
    LogKind,
    Partition,
    log_files,
    parquet_source,
    partitions,
    replaces,
)

if TYPE_CHECKING:
    from driftloop.config import Config

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(minutes=10)
DEFAULT_DELETE_AFTER = timedelta(seconds=60)
_ROW_GROUP_ROWS = 128_000


@dataclass
class MaintenanceResult:
    """What one run did, per counter."""

    partitions_compacted: int = 0
    files_compacted: int = 0
    """Input files now replaced by a compacted file (deleted on this run or a later one)."""
    files_deleted: int = 0
    """Replaced inputs and leftover temp files deleted."""
    partitions_expired: int = 0
    partitions_pruned: int = 0
    """Expired prediction partitions cut down to their labelled rows."""
    rows_kept: int = 0
    """Labelled prediction rows kept by pruning."""
    kinds: list[str] = field(default_factory=list)

    def add(self, other: MaintenanceResult) -> MaintenanceResult:
        for name in (
            "partitions_compacted",
            "files_compacted",
            "files_deleted",
            "partitions_expired",
            "partitions_pruned",
            "rows_kept",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


@contextmanager
def maintenance_lock(log_dir: Path | str) -> Iterator[None]:
    """One compaction or retention run at a time on this log folder (blocks until the other finishes)."""
    path = Path(log_dir)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".maintenance.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact(
    log_dir: Path | str,
    *,
    now: datetime | None = None,
    grace: timedelta = DEFAULT_GRACE,
    delete_after: timedelta = DEFAULT_DELETE_AFTER,
    kinds: tuple[LogKind, ...] = KINDS,
) -> MaintenanceResult:
    """Finish earlier runs' deletions, then compact every closed partition that has more than one file."""
    now = now or datetime.now(UTC)
    result = MaintenanceResult()
    with maintenance_lock(log_dir):
        for kind in kinds:
            for part in partitions(log_dir, kind, end=now - grace):
                result.files_deleted += _finish(part, delete_after)
                if part.end + grace > now:
                    continue  # still open: a writer may add to it
                replaced = _replace(part, part.visible(), keep=None)
                if replaced:
                    result.partitions_compacted += 1
                    result.files_compacted += replaced
    return result


def expire(
    log_dir: Path | str,
    *,
    retention_days: float,
    labels_since: datetime | None,
    keep_labels: bool = True,
    now: datetime | None = None,
    delete_after: timedelta = DEFAULT_DELETE_AFTER,
) -> MaintenanceResult:
    """Delete partitions that ended `retention_days` ago, keeping labelled predictions (and their feedback)
    logged since `labels_since` (None: however old) when `keep_labels`."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    result = MaintenanceResult()

    def needed(part: Partition) -> bool:
        return keep_labels and (labels_since is None or part.end > labels_since)

    with maintenance_lock(log_dir):
        labelled: pa.Array | None = None
        for kind in KINDS:
            for part in partitions(log_dir, kind, end=cutoff):
                if part.end > cutoff or not part.names():
                    continue  # not wholly expired, or a day folder with no legacy files of its own
                if kind in ("errors", "outcomes") or not needed(part):
                    _delete_partition(part)
                    result.partitions_expired += 1
                    continue
                if kind == "feedback":
                    continue  # the labels of kept predictions
                result.files_deleted += _finish(part, delete_after)
                visible = part.visible()
                if len(visible) == 1 and _pruned(part.path / visible[0]):
                    continue
                if labelled is None:
                    labelled = _labelled_ids(log_dir)
                kept: list[int] = []
                only_labelled = _only_ids(labelled, kept)
                if _replace(part, visible, keep=only_labelled):
                    result.partitions_pruned += 1
                    result.rows_kept += sum(kept)
    return result


def maintain(log_dir: Path | str, cfg: Config, *, now: datetime | None = None) -> MaintenanceResult:
    """Compaction, then retention as `cfg.log` and the retraining window (`cfg.loop.retrain`) say."""
    now = now or datetime.now(UTC)
    result = compact(log_dir, now=now, grace=timedelta(seconds=cfg.log.compact_grace_seconds))
    if cfg.log.retention_days is not None:
        result.add(expire_as_configured(log_dir, cfg, retention_days=cfg.log.retention_days, now=now))
    return result


def expire_as_configured(
    log_dir: Path | str,
    cfg: Config,
    *,
    retention_days: float,
    now: datetime | None = None,
    delete_after: timedelta = DEFAULT_DELETE_AFTER,
) -> MaintenanceResult:
    """`expire`, keeping the labelled rows the retraining window (`cfg.loop.retrain`) may still use."""
    now = now or datetime.now(UTC)
    retrain = cfg.loop.retrain
    since = now - timedelta(seconds=retrain.recency_seconds) if retrain.recency_seconds else None
    return expire(
        log_dir,
        retention_days=retention_days,
        labels_since=since,
        keep_labels=retrain.include_production,
        now=now,
        delete_after=delete_after,
    )


def _labelled_ids(log_dir: Path | str) -> pa.Array:
    """Every request id the feedback log labels."""
    import duckdb

    files = log_files(log_dir, "feedback")
    if not files:
        return pa.array([], type=pa.string())
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT DISTINCT request_id FROM {parquet_source(files)}").fetchall()
    return pa.array([r[0] for r in rows], type=pa.string())


def _only_ids(ids: pa.Array, kept: list[int]) -> Callable[[pa.Table], pa.Table]:
    """A filter to the rows whose request id is in `ids`, appending each table's kept row count to `kept`."""

    def only(table: pa.Table) -> pa.Table:
        rows = table.filter(pc.is_in(table["request_id"], value_set=ids))
        kept.append(rows.num_rows)
        return rows

    return only


def _pruned(path: Path) -> bool:
    return (pq.read_metadata(path).metadata or {}).get(PRUNED_KEY) == b"1"


def _finish(part: Partition, delete_after: timedelta) -> int:
    """Delete what compacted files old enough replace, oldest compacted file first (a file it replaces
    that is itself compacted goes after the files that one replaced), and leftover temp files."""
    deleted = 0
    try:
        entries = os.listdir(part.path)
    except FileNotFoundError:
        return 0
    for name in entries:
        if name.startswith(f".{COMPACT_PREFIX}") and name.endswith(".tmp"):
            (part.path / name).unlink(missing_ok=True)  # a run killed before its rename
            deleted += 1
    names = part.names()
    present = set(names)
    for name in sorted((n for n in names if n.startswith(COMPACT_PREFIX)), key=_created_ms):
        if (
            name not in present
            or time.time() * 1000 - _created_ms(name)
            < delete_after.total_seconds() * 1000  # wall clock, as in the name
        ):
            continue
        for old in replaces(part.path / name):
            if old in present:
                (part.path / old).unlink(missing_ok=True)
                present.discard(old)
                deleted += 1
    return deleted


def _created_ms(name: str) -> int:
    return int(name.removeprefix(COMPACT_PREFIX).split("-")[0])


def _replace(part: Partition, names: list[str], *, keep: Callable[[pa.Table], pa.Table] | None) -> int:
    """Write `names` (grouped by schema) as compacted files that replace them; returns the inputs replaced.

    Without `keep`, a group of one file is left alone (nothing to gain); with it, every group is rewritten.
    """
    groups: dict[pa.Schema, list[str]] = {}
    for name in names:
        schema = pq.read_schema(part.path / name).remove_metadata()
        groups.setdefault(schema, []).append(name)
    replaced = 0
    for schema, group in groups.items():
        if keep is None and len(group) < 2:
            continue
        _write_compacted(part.path, schema, group, keep)
        replaced += len(group)
    return replaced


def _write_compacted(
    folder: Path, schema: pa.Schema, inputs: list[str], keep: Callable[[pa.Table], pa.Table] | None
) -> None:
    meta = {REPLACES_KEY: json.dumps(inputs).encode()}
    if keep is not None:
        meta[PRUNED_KEY] = b"1"
    # The time in the name orders compacted files (the deletion step needs it) and dates them.
    name = f"{COMPACT_PREFIX}{time.time_ns() // 1_000_000}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = folder / f".{name}.tmp"
    try:
        with pq.ParquetWriter(tmp, schema.with_metadata(meta), compression="zstd") as writer:
            pending: list[pa.Table] = []
            rows = 0
            for input_name in inputs:
                table = pq.read_table(folder / input_name).replace_schema_metadata(None)
                table = keep(table) if keep is not None else table
                pending.append(table)
                rows += table.num_rows
                if rows >= _ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                    pending, rows = [], 0
            if pending:  # no rows at all (pruning kept none) is a valid file with no row group
                writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
        _fsync(tmp)
        os.replace(tmp, folder / name)
        _fsync(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("prediction log: %s replaces %d files in %s", name, len(inputs), folder)


def _fsync(path: Path) -> None:
    """Make a file's bytes (or a folder's entries) durable before the step that depends on them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delete_partition(part: Partition) -> None:
    """Remove an expired partition's files (a legacy day folder keeps its hour folders), then empty folders."""
    if part.path.name.startswith("hour="):
        shutil.rmtree(part.path, ignore_errors=True)
    else:
        for name in os.listdir(part.path):
            if (part.path / name).is_file():
                (part.path / name).unlink(missing_ok=True)
    for folder in (part.path, part.path.parent):
        if folder.name.startswith(("hour=", "date=")):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty (other hours, or the legacy files' day still has hours)


__all__ = [
    "DEFAULT_DELETE_AFTER",
    "DEFAULT_GRACE",
    "MaintenanceResult",
    "compact",
    "expire",
    "expire_as_configured",
    "maintain",
    "maintenance_lock",
]
