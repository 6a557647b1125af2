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
        return ("p", self.feature_names, self.feature_kinds, self.proba is None)

    def to_table(self) -> pa.Table:
        n = self.n_rows
        ftype = feature_struct_type(self.feature_names, self.feature_kinds)
        arrays = []
        for col, kind in zip(self.columns, self.feature_kinds, strict=True):
            if kind == "numeric":
                arr = np.asarray(col, dtype=np.float64)
                arrays.append(pa.array(arr, type=pa.float64(), mask=np.isnan(arr)))
            else:
                arrays.append(pa.array(list(col), type=pa.string()))
        features = pa.StructArray.from_arrays(arrays, fields=list(ftype))
        regression = self.proba is None
        ids = [f"{self.request_id}:{i}" for i in range(n)] if self.batch else [self.request_id] * n
        if regression:
            prediction = pa.array(np.asarray(self.labels, dtype=np.float64), type=pa.float64())
            probabilities = pa.nulls(n, type=pa.string())
        else:
            prediction = pa.array([label_string(v) for v in self.labels], type=pa.string())
            classes = self.classes
            probabilities = pa.array(
                [orjson.dumps(dict(zip(classes, row, strict=True))).decode() for row in self.proba.tolist()],
                type=pa.string(),
            )
        ts = pa.array(np.full(n, self.ts_us, dtype=np.int64), type=pa.int64()).cast(TS_TYPE)
        return pa.Table.from_arrays(
            [
                pa.array(ids, type=pa.string()),
                ts,
                pa.array([self.model_name] * n, type=pa.string()),
                pa.array([self.model_version] * n, type=pa.string()),
                pa.array([self.arm] * n, type=pa.string()),
                pa.array([self.source] * n, type=pa.string()),
                features,
                prediction,
                probabilities,
                pa.array(np.full(n, self.latency_ms, dtype=np.float64), type=pa.float64()),
            ],
            schema=prediction_schema(ftype, regression=regression),
        )


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

    def to_table(self) -> pa.Table:
        n = self.n_rows
        label_type = pa.float64() if self.regression else pa.string()
        labels = (
            [float(v) for v in self.labels] if self.regression else [label_string(v) for v in self.labels]
        )
        return pa.Table.from_arrays(
            [
                pa.array(list(self.request_ids), type=pa.string()),
                pa.array(np.full(n, self.ts_us, dtype=np.int64), type=pa.int64()).cast(TS_TYPE),
                pa.array(labels, type=label_type),
            ],
            schema=feedback_schema(regression=self.regression),
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
        groups: dict[tuple[Any, ...], list[pa.Table]] = {}
        for entry in batch:
            day = datetime.fromtimestamp(entry.ts_us / 1e6, UTC).strftime("%Y-%m-%d")
            groups.setdefault((day, entry.schema_key()), []).append(entry.to_table())
        for (day, _), tables in groups.items():
            folder = self.root / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"{self._series}-{self._seq:06d}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(pa.concat_tables(tables), tmp, compression="zstd")
            os.replace(tmp, folder / name)
            self.files_written += 1


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in text) or "host"


# -- readers --------------------------------------------------------------------------------------------


def log_glob(log_dir: Path | str, kind: LogKind) -> str:
    """The glob DuckDB reads: `read_parquet(glob, hive_partitioning=true, union_by_name=true)`."""
    return (Path(log_dir) / kind / "date=*" / "*.parquet").as_posix()


def log_files(log_dir: Path | str, kind: LogKind) -> list[Path]:
    return sorted(p for p in (Path(log_dir) / kind).glob("date=*/*.parquet") if not p.name.startswith("."))


def read_log(log_dir: Path | str, kind: LogKind, *, where: str | None = None) -> pa.Table:
    """All rows of a log (optionally filtered by a DuckDB SQL condition) as an Arrow table; empty if none."""
    if not log_files(log_dir, kind):
        return pa.table({})
    import duckdb

    sql = f"SELECT * FROM read_parquet('{log_glob(log_dir, kind)}', hive_partitioning=false, union_by_name=true)"
    if where:
        sql += f" WHERE {where}"
    with duckdb.connect() as con:
        result = con.execute(sql)
        # DuckDB 2 renamed fetch_arrow_table to to_arrow_table.
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
        return fetch()


def count_rows(log_dir: Path | str, kind: LogKind, *, where: str | None = None) -> int:
    """Rows in a log, optionally those matching a DuckDB SQL condition (e.g. `arm <> 'shadow'`)."""
    if not log_files(log_dir, kind):
        return 0
    import duckdb

    sql = f"SELECT count(*) FROM read_parquet('{log_glob(log_dir, kind)}', hive_partitioning=false, union_by_name=true)"
    if where:
        sql += f" WHERE {where}"
    with duckdb.connect() as con:
        return int(con.execute(sql).fetchone()[0])
