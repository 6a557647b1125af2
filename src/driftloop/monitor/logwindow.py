"""Reading a monitoring window out of the prediction log with DuckDB (schema: docs/contracts.md).

Files are read with `union_by_name=true`, so files written under different feature sets line up by
name (a feature absent from some files reads as null, one absent from all is simply not a column). The
`features` struct is unnested into one column per feature. Shadow rows (challenger output that was not
served) are left out of the input window: they repeat the served rows' inputs.

Only the partitions (UTC hours) that overlap the window are listed and opened, so a pass over the last hour
costs the same with a day or a year of history. Labels are looked up from the window's start on (less
`LABEL_SKEW`): feedback comes after its prediction, so older feedback files cannot label it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from driftloop.stores.logfiles import LABEL_SKEW, log_files, model_span, parquet_source, read_retrying
from driftloop.stores.predlog import latest_labels_sql

META_COLUMNS = ("request_id", "ts", "model_version", "arm", "prediction", "probabilities")
_LAST_SPANS = (timedelta(hours=1), timedelta(days=1), timedelta(days=7), None)
"""`--last N` looks back this far, step by step, until it has N rows (None: the whole log)."""


@dataclass
class Window:
    rows: pd.DataFrame
    """One row per served prediction: the meta columns plus one column per logged feature."""
    start: datetime | None
    end: datetime | None
    feature_columns: list[str]


def read_window(
    log_dir: Path,
    model_name: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    last: int | None = None,
) -> Window:
    """Served predictions of `model_name` with start <= ts < end, or the last `last` of them."""
    if last is not None and start is None:
        # The newest rows are in the newest partitions: widen the span only while it holds too few rows.
        anchor = end
        for span in _LAST_SPANS:
            since = None if span is None else (anchor or datetime.now(UTC)) - span
            found = _read_window(log_dir, model_name, start=since, end=end, last=last)
            if len(found.rows) >= last or since is None:
                return found
    return _read_window(log_dir, model_name, start=start, end=end, last=last)


def _read_window(
    log_dir: Path, model_name: str, *, start: datetime | None, end: datetime | None, last: int | None
) -> Window:
    import duckdb

    where, params = model_span(model_name, start, end)
    where.append("arm <> 'shadow'")

    def read() -> pd.DataFrame | None:
        files = log_files(log_dir, "predictions", start=start, end=end)
        if not files:
            return None
        sql = f"SELECT request_id, ts, model_version, arm, prediction, probabilities, unnest(features) FROM {parquet_source(files)} WHERE {' AND '.join(where)}"
        if last is not None:
            sql += f" ORDER BY ts DESC LIMIT {int(last)}"
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql, params).df()

    frame = read_retrying(read)
    if frame is None:
        return Window(pd.DataFrame(columns=list(META_COLUMNS)), start, end, [])
    if last is not None and len(frame):
        start, end = frame["ts"].min().to_pydatetime(), frame["ts"].max().to_pydatetime()
    features = [c for c in frame.columns if c not in META_COLUMNS]
    return Window(frame, start, end, features)


def read_labeled(
    log_dir: Path, model_name: str, *, start: datetime | None, end: datetime | None
) -> tuple[pd.DataFrame, int]:
    """Predictions (every arm, shadow included) in [start, end) joined with their latest label, and the
    number of feedback rows in that span whose request id matches no prediction logged from one span
    length before it (a label for an older prediction no pass could use; without bounds: the whole log)."""
    import duckdb

    empty = pd.DataFrame(
        columns=["request_id", "model_version", "arm", "prediction", "probabilities", "label"]
    )
    span, params = ["TRUE"], []
    if start is not None:
        span.append("ts >= ?")
        params.append(start)
    if end is not None:
        span.append("ts < ?")
        params.append(end)
    match_since = start - (end - start) if start is not None and end is not None else None
    labels_since = start - LABEL_SKEW if start is not None else None

    def read() -> tuple[pd.DataFrame, int]:
        in_span = log_files(log_dir, "feedback", start=start, end=end)
        labels = log_files(log_dir, "feedback", start=labels_since)
        if not labels:
            return empty, 0
        fb = parquet_source(in_span) if in_span else None
        preds = log_files(log_dir, "predictions", start=start, end=end)
        matchable = log_files(log_dir, "predictions", start=match_since, end=end)
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            if not matchable:  # nothing logged: every label in the span is unmatched
                if fb is None:
                    return empty, 0
                sql = f"SELECT count(*) FROM {fb} WHERE {' AND '.join(span)}"
                return empty, int(con.execute(sql, params).fetchall()[0][0])
            joined = empty
            if preds:
                joined = con.execute(
                    f"""
                    WITH p AS (SELECT request_id, model_version, arm, prediction, probabilities
                               FROM {parquet_source(preds)} WHERE model_name = ? AND {" AND ".join(span)}),
                         f AS ({latest_labels_sql(labels)})
                    SELECT p.*, f.label FROM p JOIN f USING (request_id)""",
                    [model_name, *params],
                ).df()
            unknown = 0
            if fb is not None:
                match = "" if match_since is None else "WHERE ts >= ?"
                (unknown,) = con.execute(
                    f"""SELECT count(*) FROM {fb} WHERE {" AND ".join(span)}
                    AND request_id NOT IN (SELECT request_id FROM {parquet_source(matchable)} {match})""",
                    [*params, *([match_since] if match_since is not None else [])],
                ).fetchone() or (0,)
        return joined, int(unknown)

    return read_retrying(read)
