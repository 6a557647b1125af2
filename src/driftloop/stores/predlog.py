"""The prediction log: Parquet files of every answered prediction and every feedback label.

Writers (one per process and log) buffer entries in memory and a background thread flushes them every
`flush_seconds` or `flush_rows`, each flush as new files written to a hidden temp name and renamed, so a
reader never sees half a file. Layout and columns are the contract in docs/contracts.md:

    <log_dir>/predictions/date=YYYY-MM-DD/pred-<host>-<pid>-<start-epoch-ms>-<seq:06d>.parquet
    <log_dir>/feedback/date=YYYY-MM-DD/fb-<host>-<pid>-<start-epoch-ms>-<seq:06d>.parquet

What a crash can lose: `close()` (called on graceful shutdown) writes everything buffered. A SIGKILL or
power cut loses the rows buffered since the last flush: at most `flush_seconds` of traffic (or
`flush_rows` rows, whichever comes first). Files already renamed are complete.

Readers: `log_glob(log_dir, kind)` for DuckDB, `read_log(...)` and `count_rows(...)` for small helpers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

LogKind = Literal["predictions", "feedback"]
PREFIX: dict[str, str] = {"predictions": "pred", "feedback": "fb"}
TS_TYPE = pa.timestamp("us", tz="UTC")
_DAY_US = 86_400 * 1_000_000


def feature_struct_type(names: Sequence[str], kinds: Sequence[str]) -> pa.StructType:
    """The `features` column type: numeric features as double, categorical as string."""
    return pa.struct(
        [
            pa.field(n, pa.float64() if k == "numeric" else pa.string())
            for n, k in zip(names, kinds, strict=True)
        ]
    )


def prediction_schema(features: pa.StructType, *, regression: bool) -> pa.Schema:
    return pa.schema(
        [
            ("request_id", pa.string()),
            ("ts", TS_TYPE),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("arm", pa.string()),
            ("source", pa.string()),
            ("features", features),
            ("prediction", pa.float64() if regression else pa.string()),
            ("probabilities", pa.string()),
            ("latency_ms", pa.float64()),
        ]
    )


def feedback_schema(*, regression: bool) -> pa.Schema:
    return pa.schema(
        [("request_id", pa.string()), ("ts", TS_TYPE), ("label", pa.float64() if regression else pa.string())]
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

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def schema_key(self) -> tuple[Any, ...]:
        # The class list is part of the key: two versions may know different classes (a retrained model can
        # learn a class the old one never saw), and their probability matrices have different widths.
        return ("p", self.feature_names, self.feature_kinds, self.proba is None, self.classes)

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
            ],
            schema=prediction_schema(ftype, regression=regression),
        )


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


Entry = PredictionEntry | FeedbackEntry


def now_us() -> int:
    return time.time_ns() // 1000


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
    ) -> None:
        self.root = Path(log_dir) / kind
        self.kind = kind
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_queue_rows = max_queue_rows
        self._on_drop = on_drop
        self._on_depth = on_depth
        self._series = (
            f"{PREFIX[kind]}-{_safe(socket.gethostname())}-{os.getpid()}-{time.time_ns() // 1_000_000}"
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
        try:
            self._write(batch)
        except Exception:
            log.exception("prediction log: writing %d %s rows failed; will retry", rows, self.kind)
            with self._lock:
                self._pending[:0] = batch
            return 0
        with self._lock:
            self._rows -= rows
        self.rows_written += rows
        return rows

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

    def _write(self, batch: list[Entry]) -> None:
        groups: dict[tuple[Any, ...], list[Entry]] = {}
        for entry in batch:
            groups.setdefault((entry.ts_us // _DAY_US, entry.schema_key()), []).append(entry)
        for (day_number, _), entries in groups.items():
            table = type(entries[0]).table(entries)  # type: ignore[arg-type]
            day = datetime.fromtimestamp(day_number * 86_400, UTC).strftime("%Y-%m-%d")
            folder = self.root / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"{self._series}-{self._seq:06d}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, folder / name)
            self.files_written += 1


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in text) or "host"


# -- readers --------------------------------------------------------------------------------------------


def log_glob(log_dir: Path | str, kind: LogKind) -> str:
    """The glob of a log's complete files (temp files are hidden and end otherwise)."""
    return (Path(log_dir) / kind / "date=*" / "*.parquet").as_posix()


def log_source(log_dir: Path | str, kind: LogKind) -> str:
    """The DuckDB table expression every reader of a log uses (files of any schema version, by column name)."""
    glob = log_glob(log_dir, kind).replace("'", "''")
    return f"read_parquet('{glob}', hive_partitioning=false, union_by_name=true)"


def latest_labels_sql(log_dir: Path | str) -> str:
    """One row per request id with its latest feedback label: a request labeled twice counts once."""
    return f"SELECT request_id, arg_max(label, ts) AS label FROM {log_source(log_dir, 'feedback')} GROUP BY request_id"


def log_files(log_dir: Path | str, kind: LogKind) -> list[Path]:
    return sorted(p for p in (Path(log_dir) / kind).glob("date=*/*.parquet") if not p.name.startswith("."))


def read_log(log_dir: Path | str, kind: LogKind, *, where: str | None = None) -> pa.Table:
    """All rows of a log (optionally filtered by a DuckDB SQL condition) as an Arrow table; empty if none."""
    if not log_files(log_dir, kind):
        return pa.table({})
    import duckdb

    sql = f"SELECT * FROM {log_source(log_dir, kind)}"
    if where:
        sql += f" WHERE {where}"
    with duckdb.connect() as con:
        rel = con.sql(sql)
        # DuckDB 2 names it to_arrow_table; 1.x had arrow().
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()


def count_rows(log_dir: Path | str, kind: LogKind, *, where: str | None = None) -> int:
    """Rows in a log, optionally those matching a DuckDB SQL condition (e.g. `arm <> 'shadow'`)."""
    if not log_files(log_dir, kind):
        return 0
    import duckdb

    sql = f"SELECT count(*) FROM {log_source(log_dir, kind)}"
    if where:
        sql += f" WHERE {where}"
    with duckdb.connect() as con:
        return int(con.execute(sql).fetchone()[0])
