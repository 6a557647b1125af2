"""The prediction log: Parquet files of every answered prediction, every failed one and every feedback label.

Writers (one per process and log) buffer entries in memory and a background thread flushes them every
`flush_seconds` or `flush_rows`, each flush as new files written to a hidden temp name and renamed, so a
reader never sees half a file. Layout and columns are the contract in docs/contracts.md:

    <log_dir>/predictions/date=YYYY-MM-DD/hour=HH/pred-<host>-<pid>-<start-epoch-ms>-<seq:06d>.parquet
    <log_dir>/feedback/date=YYYY-MM-DD/hour=HH/fb-<host>-<pid>-<start-epoch-ms>-<seq:06d>.parquet
    <log_dir>/errors/date=YYYY-MM-DD/hour=HH/err-<host>-<pid>-<start-epoch-ms>-<seq:06d>.parquet

Each row goes to the partition of its own timestamp (UTC date and hour), so one flush that spans an hour
boundary writes two files. Compaction and retention (`driftloop.stores.logmaint`) rewrite closed partitions.

A row the writer cannot write (text that is not valid Unicode, say) never blocks the rows around it: when a
file cannot be written, each of its entries is tried on its own in memory, the ones that fail go to the
quarantine as JSON lines, `<log_dir>/quarantine/<kind>-<host>-<pid>-<start-epoch-ms>-<seq:06d>.jsonl`
(counted by `on_quarantine`), and the others are written. What still fails is a storage fault: those
entries stay queued and are retried; files already written are not written again.

What a crash can lose: `close()` (called on graceful shutdown) writes everything buffered. A SIGKILL or
power cut loses the rows buffered since the last flush: at most `flush_seconds` of traffic (or
`flush_rows` rows, whichever comes first). Files already renamed are complete.

Readers: `log_files(log_dir, kind, start=, end=)` lists the files a time range needs (partition pruning,
`driftloop.stores.logfiles`) and `parquet_source(files)` is the DuckDB table expression over them;
`read_log(...)` and `count_rows(...)` are small helpers.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.stores.logfiles import (
    HOUR_US,
    LogKind,
    as_utc,
    hour_folder,
    log_files,
    parquet_source,
    read_retrying,
)

log = logging.getLogger(__name__)

PREFIX: dict[str, str] = {"predictions": "pred", "feedback": "fb", "errors": "err", "outcomes": "out"}
TS_TYPE = pa.timestamp("us", tz="UTC")


def feature_struct_type(names: Sequence[str], kinds: Sequence[str]) -> pa.StructType:
    """The `features` column type: numeric features as double, categorical as string."""
    return pa.struct(
        [
            pa.field(n, pa.float64() if k == "numeric" else pa.string())
            for n, k in zip(names, kinds, strict=True)
        ]
    )


def _served_by() -> list[tuple[str, pa.DataType]]:
    """The columns a prediction row and an error row share: which request, when, and which model and arm."""
    return [
        ("request_id", pa.string()),
        ("ts", TS_TYPE),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("source", pa.string()),
    ]


def join_struct_type(names: Sequence[str], kinds: Sequence[str]) -> pa.StructType:
    """The `join_keys` column type: the id column as string, the timestamp column as timestamp[us, UTC]."""
    return pa.struct(
        [pa.field(n, TS_TYPE if k == "datetime" else pa.string()) for n, k in zip(names, kinds, strict=True)]
    )


def prediction_schema(
    features: pa.StructType, *, regression: bool, joins: pa.StructType | None = None
) -> pa.Schema:
    return pa.schema(
        [
            *_served_by(),
            ("features", features),
            ("prediction", pa.float64() if regression else pa.string()),
            ("probabilities", pa.string()),
            ("latency_ms", pa.float64()),
            ("predict_cpu_ms", pa.float64()),
            *([("join_keys", joins)] if joins is not None else []),
        ]
    )


def feedback_schema(*, regression: bool) -> pa.Schema:
    return pa.schema(
        [("request_id", pa.string()), ("ts", TS_TYPE), ("label", pa.float64() if regression else pa.string())]
    )


def outcome_schema() -> pa.Schema:
    """Business outcomes of earlier requests, one row per (request, outcome name): long, so any names fit."""
    return pa.schema(
        [("request_id", pa.string()), ("ts", TS_TYPE), ("name", pa.string()), ("value", pa.float64())]
    )


def error_schema() -> pa.Schema:
    return pa.schema(
        [
            *_served_by(),
            ("status", pa.int32()),
            ("error", pa.string()),
            ("rows", pa.int64()),
            ("latency_ms", pa.float64()),
        ]
    )


def label_string(value: Any) -> str:
    """Classification labels are logged as `str(label)`; an integral float (6.0) is the integer label 6."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, np.generic):
        return label_string(value.item())
    return str(value)


@dataclass
class PredictionEntry:
    """The rows of one answered request (or one shadow scoring), as cheap references for the writer thread.

    `columns` holds the features as received, one sequence per feature in `feature_names` order: a float
    array (NaN = null) for numeric features, a list of str/None for categorical ones.
    """

    request_id: str
    batch: bool
    ts_us: int
    model_name: str
    model_version: str
    arm: str
    source: str
    feature_names: tuple[str, ...]
    feature_kinds: tuple[str, ...]
    columns: Sequence[Any]
    labels: Sequence[Any]
    proba: np.ndarray | None
    classes: tuple[str, ...]
    latency_ms: float
    join_names: tuple[str, ...] = ()
    """The model's id and timestamp columns (`ModelSpec.id_column`, `timestamp_column`), logged for joins."""
    join_kinds: tuple[str, ...] = ()
    """Per join column: `text` (the id, as string) or `datetime` (microseconds since the epoch, UTC)."""
    join_columns: Sequence[Sequence[Any]] = ()
    """Per join column, one value per row (None where the request did not send it)."""
    predict_cpu_ms: float | None = None
    """CPU milliseconds the model spent on this request's rows (its share of the micro-batch); logged per row
    as an equal share, so a sum over any rows is their serving cost. None where it was not measured."""

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def schema_key(self) -> tuple[Any, ...]:
        # The class list is part of the key: two versions may know different classes (a retrained model can
        # learn a class the old one never saw), and their probability matrices have different widths.
        return (
            "p",
            self.feature_names,
            self.feature_kinds,
            self.proba is None,
            self.classes,
            self.join_names,
            self.join_kinds,
        )

    @staticmethod
    def table(entries: Sequence[PredictionEntry]) -> pa.Table:
        """Many entries with the same schema key -> one Arrow table, column by column (vectorised)."""
        first = entries[0]
        counts = np.fromiter((e.n_rows for e in entries), dtype=np.int64, count=len(entries))
        ftype = feature_struct_type(first.feature_names, first.feature_kinds)
        arrays = []
        for j, kind in enumerate(first.feature_kinds):
            if kind == "numeric":
                arr = np.concatenate([np.asarray(e.columns[j], dtype=np.float64) for e in entries])
                arrays.append(pa.array(arr, type=pa.float64(), mask=np.isnan(arr)))
            else:
                arrays.append(pa.array([v for e in entries for v in e.columns[j]], type=pa.string()))
        features = pa.StructArray.from_arrays(arrays, fields=list(ftype))
        ids: list[str] = []
        for e in entries:
            if e.batch:
                ids.extend([f"{e.request_id}:{i}" for i in range(e.n_rows)])
            else:
                ids.extend([e.request_id] * e.n_rows)
        regression = first.proba is None
        n = int(counts.sum())
        if regression:
            prediction = pa.array(np.concatenate([np.asarray(e.labels, dtype=np.float64) for e in entries]))
            probabilities = pa.nulls(n, type=pa.string())
        else:
            proba = np.concatenate([e.proba for e in entries])  # type: ignore[misc]
            prediction, probabilities = _class_columns(proba, entries, counts)
        joins = None
        extra = []
        if first.join_names:
            joins = join_struct_type(first.join_names, first.join_kinds)
            keys = [
                pa.array([v for e in entries for v in e.join_columns[j]], type=pa.int64()).cast(TS_TYPE)
                if kind == "datetime"
                else pa.array([v for e in entries for v in e.join_columns[j]], type=pa.string())
                for j, kind in enumerate(first.join_kinds)
            ]
            extra.append(pa.StructArray.from_arrays(keys, fields=list(joins)))
        return pa.Table.from_arrays(
            [
                pa.array(ids, type=pa.string()),
                pa.array(np.repeat([e.ts_us for e in entries], counts), type=pa.int64()).cast(TS_TYPE),
                _repeat([e.model_name for e in entries], counts),
                _repeat([e.model_version for e in entries], counts),
                _repeat([e.arm for e in entries], counts),
                _repeat([e.source for e in entries], counts),
                features,
                prediction,
                probabilities,
                pa.array(np.repeat([e.latency_ms for e in entries], counts), type=pa.float64()),
                _per_row_share([e.predict_cpu_ms for e in entries], counts),
                *extra,
            ],
            schema=prediction_schema(ftype, regression=regression, joins=joins),
        )


def _per_row_share(values: list[float | None], counts: np.ndarray) -> pa.Array:
    """Each entry's value split equally over its rows (null where the entry has none)."""
    per_row = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64) / np.maximum(
        counts, 1
    )
    arr = np.repeat(per_row, counts)
    return pa.array(arr, type=pa.float64(), mask=np.isnan(arr))


def _repeat(values: list[str], counts: np.ndarray) -> pa.Array:
    """A string column of per-entry values repeated per row, dictionary-style (cheap for few distinct)."""
    distinct = sorted(set(values))
    codes = np.repeat(np.asarray([distinct.index(v) for v in values], dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(codes, pa.array(distinct, type=pa.string())).cast(pa.string())


def _class_columns(
    proba: np.ndarray, entries: Sequence[PredictionEntry], counts: np.ndarray
) -> tuple[pa.Array, pa.Array]:
    """Predicted label strings and the probabilities as JSON objects, built by Arrow kernels, not per row.

    All entries share one class list: the writer groups entries by `schema_key`, which includes it.
    """
    import pyarrow.compute as pc

    classes = entries[0].classes
    keys = np.asarray(classes, dtype=object)
    prediction = pa.array(keys[np.argmax(proba, axis=1)], type=pa.string())
    parts: list[Any] = []
    for k, key in enumerate(classes):
        parts.append(("{" if k == 0 else ",") + orjson.dumps(key).decode() + ":")
        parts.append(pc.cast(pa.array(proba[:, k], type=pa.float64()), pa.string()))
    parts.append("}")
    probabilities = pc.binary_join_element_wise(*parts, "")
    return prediction, probabilities


@dataclass
class FeedbackEntry:
    """Ground-truth labels for earlier request ids: strings for classification, floats for regression."""

    request_ids: Sequence[str]
    labels: Sequence[Any]
    regression: bool
    ts_us: int

    @property
    def n_rows(self) -> int:
        return len(self.request_ids)

    def schema_key(self) -> tuple[Any, ...]:
        return ("f", self.regression)

    @staticmethod
    def table(entries: Sequence[FeedbackEntry]) -> pa.Table:
        regression = entries[0].regression
        counts = np.fromiter((e.n_rows for e in entries), dtype=np.int64, count=len(entries))
        ids = [rid for e in entries for rid in e.request_ids]
        if regression:
            labels = pa.array([float(v) for e in entries for v in e.labels], type=pa.float64())
        else:
            labels = pa.array([label_string(v) for e in entries for v in e.labels], type=pa.string())
        return pa.Table.from_arrays(
            [
                pa.array(ids, type=pa.string()),
                pa.array(np.repeat([e.ts_us for e in entries], counts), type=pa.int64()).cast(TS_TYPE),
                labels,
            ],
            schema=feedback_schema(regression=regression),
        )


@dataclass
class OutcomeEntry:
    """Named business outcomes (conversion 0/1, revenue) for earlier request ids, one triple per value."""

    request_ids: Sequence[str]
    names: Sequence[str]
    values: Sequence[float]
    ts_us: int

    @property
    def n_rows(self) -> int:
        return len(self.request_ids)

    def schema_key(self) -> tuple[Any, ...]:
        return ("o",)

    @staticmethod
    def table(entries: Sequence[OutcomeEntry]) -> pa.Table:
        counts = np.fromiter((e.n_rows for e in entries), dtype=np.int64, count=len(entries))
        return pa.Table.from_arrays(
            [
                pa.array([r for e in entries for r in e.request_ids], type=pa.string()),
                pa.array(np.repeat([e.ts_us for e in entries], counts), type=pa.int64()).cast(TS_TYPE),
                pa.array([n for e in entries for n in e.names], type=pa.string()),
                pa.array([float(v) for e in entries for v in e.values], type=pa.float64()),
            ],
            schema=outcome_schema(),
        )


@dataclass
class ErrorEntry:
    """One request the routed model failed to answer (a 5xx), or a failed shadow scoring.

    One log row per request, whatever its row count: `rows` says how many input rows it carried, so a
    reader can weigh it against the prediction log (one row per input row).
    """

    request_id: str
    ts_us: int
    model_name: str
    model_version: str
    arm: str
    source: str
    status: int | None
    """The HTTP status answered (500); None for a shadow scoring, which answers nobody."""
    error: str
    """The exception's class name."""
    rows: int
    latency_ms: float

    @property
    def n_rows(self) -> int:
        return 1

    def schema_key(self) -> tuple[Any, ...]:
        return ("e",)

    @staticmethod
    def table(entries: Sequence[ErrorEntry]) -> pa.Table:
        columns = {name: [getattr(e, name) for e in entries] for name in error_schema().names if name != "ts"}
        ts = pa.array([e.ts_us for e in entries], type=pa.int64()).cast(TS_TYPE)
        schema = error_schema()
        return pa.Table.from_arrays(
            [ts if f.name == "ts" else pa.array(columns[f.name], type=f.type) for f in schema], schema=schema
        )


Entry = PredictionEntry | FeedbackEntry | ErrorEntry | OutcomeEntry


def now_us() -> int:
    return time.time_ns() // 1000


_WRITER_NUMBERS = itertools.count()
"""Numbers the writers of this process (part of their file names)."""


class LogWriter:
    """A buffered, thread-flushed Parquet writer for one log kind; one file series per process.

    `put` never blocks and never does I/O: past `max_queue_rows` buffered rows it drops the entry and counts
    it, so a slow disk cannot stall the service. `close()` flushes everything and stops the thread.
    """

    def __init__(
        self,
        log_dir: Path,
        kind: LogKind,
        *,
        flush_seconds: float = 1.0,
        flush_rows: int = 5000,
        max_queue_rows: int = 200_000,
        on_drop: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        on_quarantine: Callable[[int], None] | None = None,
    ) -> None:
        self.root = Path(log_dir) / kind
        self.quarantine_dir = Path(log_dir) / QUARANTINE
        self.kind = kind
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_queue_rows = max_queue_rows
        self._on_drop = on_drop
        self._on_depth = on_depth
        self._on_quarantine = on_quarantine
        # Host, process, start time and the writer's number in this process: two writers of one process
        # started in the same millisecond (threads, tests, a job with several) must not share file names,
        # or one's rename would replace the other's file and its rows would be lost.
        self._series = (
            f"{PREFIX[kind]}-{_safe(socket.gethostname())}-{os.getpid()}-{time.time_ns() // 1_000_000}"
            f"-{next(_WRITER_NUMBERS)}"
        )
        self._seq = 0
        self._pending: list[Entry] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._thread: threading.Thread | None = None
        self.rows_written = 0
        self.rows_dropped = 0
        self.rows_quarantined = 0
        self.files_written = 0

    def start(self) -> LogWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"driftloop-{self.kind}-log", daemon=True)
            self._thread.start()
        return self

    @property
    def queued_rows(self) -> int:
        return self._rows

    def put(self, entry: Entry) -> bool:
        n = entry.n_rows
        with self._lock:
            if self._closing or self._rows + n > self.max_queue_rows:
                self.rows_dropped += n
                dropped = True
            else:
                self._pending.append(entry)
                self._rows += n
                dropped = False
                if self._rows >= self.flush_rows:
                    self._wake.notify()
        if dropped and self._on_drop is not None:
            self._on_drop(n)
        return not dropped

    def flush(self) -> int:
        """Write what is buffered now; returns the rows written. Safe to call from any thread."""
        with self._lock:
            batch, self._pending, rows = self._pending, [], self._rows
        if not batch:
            return 0
        retry, quarantined = self._write(batch)
        left = sum(e.n_rows for e in retry)
        if retry:
            log.error("prediction log: writing %d %s rows failed; will retry", left, self.kind)
        with self._lock:
            self._pending[:0] = retry
            self._rows -= rows - left
        written = rows - left - quarantined
        self.rows_written += written
        return written

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting entries, write everything buffered, stop the thread."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        self._report_depth()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closing and self._rows < self.flush_rows:
                    self._wake.wait(self.flush_seconds)
                closing = self._closing
            self.flush()
            self._report_depth()
            if closing:
                return

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            try:
                self._on_depth(self._rows)
            except Exception:  # metrics must never stop the log
                log.exception("prediction log: depth callback failed")

    def _write(self, batch: list[Entry]) -> tuple[list[Entry], int]:
        """Write the batch, one file per hour and schema -> (entries to retry, rows quarantined)."""
        groups: dict[tuple[Any, ...], list[Entry]] = {}
        for entry in batch:
            groups.setdefault((entry.ts_us // HOUR_US, entry.schema_key()), []).append(entry)
        retry: list[Entry] = []
        quarantined = 0
        for (hour_number, _), entries in groups.items():
            try:
                self._write_file(hour_number, entries)
                continue
            except Exception as exc:
                first_error = exc
            # Either one entry cannot be written at all (poison) or the storage failed: tell them apart.
            good, bad = _sort_out(entries)
            if bad:
                if self._quarantine(bad):
                    quarantined += sum(e.n_rows for e, _ in bad)
                else:
                    retry.extend(e for e, _ in bad)
            if not good:
                continue
            try:
                self._write_file(hour_number, good)
            except Exception:
                log.warning("prediction log: %s file not written: %s", self.kind, first_error, exc_info=True)
                retry.extend(good)
        return retry, quarantined

    def _write_file(self, hour_number: int, entries: list[Entry]) -> None:
        table = type(entries[0]).table(entries)  # type: ignore[arg-type]
        folder = hour_folder(self.root, hour_number)
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{self._series}-{self._seq:06d}.parquet"
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no half file left behind for the retry to trip over
            raise
        self.files_written += 1

    def _quarantine(self, bad: list[tuple[Entry, str]]) -> bool:
        """Keep entries no Parquet file can hold as JSON lines (ASCII, so any text survives); False if the
        quarantine itself cannot be written (the entries are then retried)."""
        n = sum(e.n_rows for e, _ in bad)
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"{self.kind}-{self._series}-{self._seq:06d}.jsonl"
            tmp = self.quarantine_dir / f".{name}.tmp"
            lines = [
                json.dumps({"log": self.kind, "error": why, "entry": _plain(vars(e))}, ensure_ascii=True)
                for e, why in bad
            ]
            tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
            os.replace(tmp, self.quarantine_dir / name)
        except Exception:
            log.exception("prediction log: quarantining %d %s rows failed; will retry", n, self.kind)
            return False
        log.error("prediction log: %d %s rows cannot be written; kept in %s", n, self.kind, name)
        self.rows_quarantined += n
        if self._on_quarantine is not None:
            try:
                self._on_quarantine(n)
            except Exception:  # metrics must never stop the log
                log.exception("prediction log: quarantine callback failed")
        return True


QUARANTINE = "quarantine"


def _sort_out(entries: list[Entry]) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """Entries that make a Parquet file on their own (in memory), and those that do not, with the error."""
    good: list[Entry] = []
    bad: list[tuple[Entry, str]] = []
    for entry in entries:
        try:
            pq.write_table(type(entry).table([entry]), io.BytesIO())  # type: ignore[list-item]
        except Exception as exc:
            bad.append((entry, f"{type(exc).__name__}: {exc}"))
        else:
            good.append(entry)
    return good, bad


def _plain(value: Any) -> Any:
    """An entry's fields as JSON-ready values: arrays as lists, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    return repr(value)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in text) or "host"


# -- readers --------------------------------------------------------------------------------------------


def latest_labels_sql(files: list[Path]) -> str:
    """One row per request id with its latest feedback label (of these feedback files): a request labeled
    twice counts once."""
    return f"SELECT request_id, arg_max(label, ts) AS label FROM {parquet_source(files)} GROUP BY request_id"


def read_log(
    log_dir: Path | str,
    kind: LogKind,
    *,
    where: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pa.Table:
    """Rows of a log with start <= ts < end (optionally filtered by a DuckDB SQL condition) as an Arrow
    table; empty if none."""

    def arrow(rel: Any) -> pa.Table:
        # DuckDB 2 names it to_arrow_table; 1.x had arrow().
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()

    return _query(log_dir, kind, "*", where, start, end, arrow, pa.table({}))


def count_rows(
    log_dir: Path | str,
    kind: LogKind,
    *,
    where: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """Rows in a log, optionally those matching a DuckDB SQL condition (e.g. `arm <> 'shadow'`)."""
    return _query(log_dir, kind, "count(*)", where, start, end, lambda rel: int(rel.fetchall()[0][0]), 0)


def _query(
    log_dir: Path | str,
    kind: LogKind,
    select: str,
    where: str | None,
    start: datetime | None,
    end: datetime | None,
    fetch: Callable[[Any], Any],
    empty: Any,
) -> Any:
    """`SELECT <select>` over the log's files of [start, end), fetched by `fetch`; `empty` if there are none."""
    import duckdb

    def read() -> Any:
        files = log_files(log_dir, kind, start=start, end=end)
        if not files:
            return empty
        with duckdb.connect() as con:
            return fetch(con.sql(f"SELECT {select} FROM {parquet_source(files)}" + _where(where, start, end)))

    return read_retrying(read)


def _where(where: str | None, start: datetime | None, end: datetime | None) -> str:
    """The partition bounds are hours (or days): the rows outside [start, end) in them are filtered here."""
    terms = [f"({where})"] if where else []
    if start is not None:
        terms.append(f"ts >= TIMESTAMPTZ '{as_utc(start).isoformat()}'")
    if end is not None:
        terms.append(f"ts < TIMESTAMPTZ '{as_utc(end).isoformat()}'")
    return " WHERE " + " AND ".join(terms) if terms else ""


__all__ = [
    "ErrorEntry",
    "FeedbackEntry",
    "LogKind",
    "LogWriter",
    "OutcomeEntry",
    "PredictionEntry",
    "count_rows",
    "latest_labels_sql",
    "log_files",
    "parquet_source",
    "read_log",
]
