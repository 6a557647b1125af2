"""Reading a monitoring window out of the prediction log with DuckDB (schema: docs/contracts.md).

Files are read with `union_by_name=true`, so files written under different feature sets line up by
name (a feature absent from some files reads as null, one absent from all is simply not a column). The
`features` struct is unnested into one column per feature. Shadow rows (challenger output that was not
served) are left out of the input window: they repeat the served rows' inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from driftloop.stores.predlog import latest_labels_sql, log_files, log_source

META_COLUMNS = ("request_id", "ts", "model_version", "arm", "prediction", "probabilities")


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
    import duckdb

    if not log_files(log_dir, "predictions"):
        return Window(pd.DataFrame(columns=list(META_COLUMNS)), start, end, [])
    where, params = ["model_name = ?", "arm <> 'shadow'"], [model_name]
    if start is not None:
        where.append("ts >= ?")
        params.append(start)
    if end is not None:
        where.append("ts < ?")
        params.append(end)
    sql = f"SELECT request_id, ts, model_version, arm, prediction, probabilities, unnest(features) FROM {log_source(log_dir, 'predictions')} WHERE {' AND '.join(where)}"
    if last is not None:
        sql += f" ORDER BY ts DESC LIMIT {int(last)}"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        frame = con.execute(sql, params).df()
    if last is not None and len(frame):
        start, end = frame["ts"].min().to_pydatetime(), frame["ts"].max().to_pydatetime()
    features = [c for c in frame.columns if c not in META_COLUMNS]
    return Window(frame, start, end, features)


def read_labeled(
    log_dir: Path, model_name: str, *, start: datetime | None, end: datetime | None
) -> tuple[pd.DataFrame, int]:
    """Predictions (every arm, shadow included) in [start, end) joined with their latest label, and the
    number of feedback rows in that span whose request id matches no prediction anywhere in the log."""
    import duckdb

    if not log_files(log_dir, "predictions") or not log_files(log_dir, "feedback"):
        return pd.DataFrame(
            columns=["request_id", "model_version", "arm", "prediction", "probabilities", "label"]
        ), 0
    span, params = ["TRUE"], []
    if start is not None:
        span.append("ts >= ?")
        params.append(start)
    if end is not None:
        span.append("ts < ?")
        params.append(end)
    preds, fb = log_source(log_dir, "predictions"), log_source(log_dir, "feedback")
    joined_sql = f"""
        WITH p AS (SELECT request_id, model_version, arm, prediction, probabilities FROM {preds}
                   WHERE model_name = ? AND {" AND ".join(span)}),
             f AS ({latest_labels_sql(log_dir)})
        SELECT p.*, f.label FROM p JOIN f USING (request_id)"""
    unknown_sql = f"""
        SELECT count(*) FROM {fb} WHERE {" AND ".join(span)}
        AND request_id NOT IN (SELECT request_id FROM {preds})"""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        joined = con.execute(joined_sql, [model_name, *params]).df()
        unknown = int(con.execute(unknown_sql, params).fetchone()[0])
    return joined, unknown
