"""Where the prediction log's files are, and which of them a reader of a time range must open.

Layout (the contract in docs/contracts.md): one folder per UTC hour of the rows' own timestamps,

    <log_dir>/<kind>/date=YYYY-MM-DD/hour=HH/<file>.parquet

and, from before hourly partitions, files straight in the day folder (`<kind>/date=YYYY-MM-DD/<file>.parquet`,
the *legacy* layout). Readers read both: a legacy day folder is one partition covering its whole day, so a
user who upgrades keeps reading their history without a migration step; compaction and retention treat it
like any other partition.

A reader of [start, end) lists only the day folders and hour folders that overlap the range (partition
pruning by building the file list, not by globbing everything and filtering), so a pass over the last hour
opens that hour's files whatever the length of the history.

Compaction (`driftloop.stores.logmaint`) replaces a partition's files by one file named `compact-*.parquet`
whose Parquet footer lists the files it replaces (`driftloop.replaces`). Until those inputs are deleted,
a reader that lists the folder drops every file named by a compacted file it sees, so it reads each row
once: either the inputs (it listed the folder before the compacted file appeared) or the compacted file.
A file that vanishes between listing and reading (compaction or retention deleted it) raises
`LogChanged`; `read_retrying` then lists again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import pyarrow.parquet as pq

LogKind = Literal["predictions", "feedback", "errors", "outcomes"]
KINDS: tuple[LogKind, ...] = ("predictions", "feedback", "errors", "outcomes")
COMPACT_PREFIX = "compact-"
REPLACES_KEY = b"driftloop.replaces"
PRUNED_KEY = b"driftloop.pruned"
HOUR_US = 3_600 * 1_000_000
LABEL_SKEW = timedelta(hours=1)
"""How far before its prediction a label may be stamped (replicas' clocks differ a little): a reader of the
labels of predictions since t reads feedback since t - LABEL_SKEW, as feedback comes after its prediction."""
_RETRIES = 5

T = TypeVar("T")


class LogChanged(Exception):
    """A log file listed for a read vanished before it was read (compaction or retention removed it)."""


def hour_folder(root: Path, hour_number: int) -> Path:
    """The partition of the rows whose timestamp falls in hour `hour_number` (hours since the epoch, UTC)."""
    start = datetime.fromtimestamp(hour_number * 3_600, UTC)
    return root / f"date={start:%Y-%m-%d}" / f"hour={start:%H}"


def _day(name: str) -> date | None:
    try:
        return date.fromisoformat(name.removeprefix("date=")) if name.startswith("date=") else None
    except ValueError:
        return None


def _hour(name: str) -> int | None:
    text = name.removeprefix("hour=")
    return int(text) if name.startswith("hour=") and text.isdigit() and int(text) < 24 else None


class Partition:
    """One folder of log files: an hour folder, or a legacy day folder (its own files, not its hours)."""

    def __init__(self, path: Path, start: datetime, end: datetime) -> None:
        self.path = path
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Partition({self.path})"

    def names(self) -> list[str]:
        """Complete Parquet files in the folder (temp files start with a dot), compaction inputs included."""
        try:
            with os.scandir(self.path) as entries:
                return sorted(
                    e.name
                    for e in entries
                    if e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
                )
        except FileNotFoundError:
            return []

    def visible(self) -> list[str]:
        """The files a reader reads: every file minus those a compacted file present here replaces."""
        names = self.names()
        if len(names) < 2 or not any(n.startswith(COMPACT_PREFIX) for n in names):
            return names
        replaced = set()
        for name in names:
            if name.startswith(COMPACT_PREFIX):
                replaced |= set(replaces(self.path / name))
        return [n for n in names if n not in replaced]


def replaces(path: Path) -> list[str]:
    """The file names a compacted file replaces (from its footer); [] for a file a writer wrote."""
    try:
        meta = pq.read_metadata(path).metadata or {}
    except FileNotFoundError as exc:
        raise LogChanged(str(path)) from exc
    raw = meta.get(REPLACES_KEY)
    return list(json.loads(raw)) if raw else []


def partitions(
    log_dir: Path | str, kind: LogKind, *, start: datetime | None = None, end: datetime | None = None
) -> Iterator[Partition]:
    """The partitions of a log that may hold rows with start <= ts < end (all of them without bounds)."""
    root = Path(log_dir) / kind
    try:
        with os.scandir(root) as entries:
            days = sorted((d, e.name) for e in entries if e.is_dir() and (d := _day(e.name)) is not None)
    except FileNotFoundError:
        return
    for day, name in days:
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        day_end = day_start + timedelta(days=1)
        if not _overlaps(day_start, day_end, start, end):
            continue
        folder = root / name
        hours: list[tuple[int, str]] = []
        try:
            with os.scandir(folder) as entries:
                hours = sorted(
                    (h, e.name) for e in entries if e.is_dir() and (h := _hour(e.name)) is not None
                )
        except FileNotFoundError:
            continue
        yield Partition(folder, day_start, day_end)  # legacy files straight in the day folder, if any
        for hour, hour_name in hours:
            hour_start = day_start + timedelta(hours=hour)
            hour_end = hour_start + timedelta(hours=1)
            if _overlaps(hour_start, hour_end, start, end):
                yield Partition(folder / hour_name, hour_start, hour_end)


def _overlaps(lo: datetime, hi: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (end is None or lo < as_utc(end)) and (start is None or hi > as_utc(start))


def as_utc(moment: datetime) -> datetime:
    """A naive datetime is UTC (DuckDB hands them back that way with TimeZone = 'UTC')."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def log_files(
    log_dir: Path | str, kind: LogKind, *, start: datetime | None = None, end: datetime | None = None
) -> list[Path]:
    """The files a reader of [start, end) opens: the overlapping partitions' visible files."""
    return [p.path / name for p in partitions(log_dir, kind, start=start, end=end) for name in p.visible()]


def parquet_source(files: list[Path]) -> str:
    """The DuckDB table expression over these files (any schema version, lined up by column name)."""
    quoted = ", ".join("'" + f.as_posix().replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}], hive_partitioning=false, union_by_name=true)"


def model_span(model_name: str, start: datetime | None, end: datetime | None) -> tuple[list[str], list[Any]]:
    """SQL conditions and their parameters for one model's rows with start <= ts < end (None: unbounded)."""
    where: list[str] = ["model_name = ?"]
    params: list[Any] = [model_name]
    if start is not None:
        where.append("ts >= ?")
        params.append(start)
    if end is not None:
        where.append("ts < ?")
        params.append(end)
    return where, params


def read_retrying(read: Callable[[], T]) -> T:
    """Run `read` (which lists the log and reads it) again if a listed file vanished meanwhile.

    Compaction deletes the files it replaced only after its compacted file has been in place for a while,
    and retention deletes whole expired partitions: a reader that listed before either and opens a file
    after gets `LogChanged` (or DuckDB's IO error naming a missing file) and lists again.
    """
    import duckdb

    for attempt in range(_RETRIES):
        try:
            return read()
        except (LogChanged, FileNotFoundError, duckdb.IOException) as exc:
            if isinstance(exc, duckdb.IOException) and not _missing_file(str(exc)):
                raise
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _missing_file(message: str) -> bool:
    return "No files found" in message or "No such file" in message or "does not exist" in message


__all__ = [
    "COMPACT_PREFIX",
    "HOUR_US",
    "KINDS",
    "LABEL_SKEW",
    "LogChanged",
    "LogKind",
    "Partition",
    "as_utc",
    "hour_folder",
    "log_files",
    "model_span",
    "parquet_source",
    "partitions",
    "read_retrying",
    "replaces",
]
