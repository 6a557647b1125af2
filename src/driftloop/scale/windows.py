"""Monitoring windows of the prediction log as Dask DataFrames: one partition per log file.

    window = log_window(log_dir, ["alcohol", "pH"], start=..., end=..., model_version="3")
    distributed_drift(client, window, reference, columns)

Each file is read on a worker with pyarrow: only the `request_id`, `ts`, `model_version`, `arm`, `source`
and `features` columns, the `features` struct flattened into one column per feature, rows outside [start, end) and
shadow rows dropped. Partitions (hour folders) outside the window are never opened.

Compaction deletes the files it replaced a while after (`log compact --delete-after`), so a job that runs
longer than that can find a listed file gone: its task raises `LogChanged`, and the caller lists again by
building and computing inside `read_retrying`:

    read_retrying(lambda: distributed_drift(client, log_window(log_dir, ...), reference, columns))
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.errors import DataError
from driftloop.stores.logfiles import LogChanged
from driftloop.stores.predlog import log_files


def log_window(
    log_dir: Path | str,
    features: list[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model_version: str | None = None,
    source: str | None = None,
) -> Any:
    """The logged features (plus `request_id`, `ts`, `model_version`, `source`) in [start, end), lazily."""
    import dask.dataframe as dd

    files = log_files(log_dir, "predictions", start=start, end=end)
    if not files:
        raise DataError(f"no prediction-log files in {log_dir} for the window")
    struct = pq.read_schema(files[0]).field("features").type
    columns: dict[str, pd.Series] = {
        "request_id": pd.Series([], dtype=object),
        "ts": pd.Series([], dtype="datetime64[us, UTC]"),
        "model_version": pd.Series([], dtype=object),
        "source": pd.Series([], dtype=object),
    }
    for name in features:
        index = struct.get_field_index(name)
        if index < 0:
            raise DataError(f"feature {name!r} is not in the prediction log")
        floating = pa.types.is_floating(struct.field(index).type)
        columns[name] = pd.Series([], dtype="float64" if floating else object)
    meta = pd.DataFrame(columns)
    return dd.from_map(
        read_log_file,
        [str(f) for f in files],
        features=tuple(features),
        start=start,
        end=end,
        model_version=model_version,
        source=source,
        meta=meta,
        enforce_metadata=False,
    )


def read_log_file(
    path: str,
    *,
    features: tuple[str, ...],
    start: datetime | None,
    end: datetime | None,
    model_version: str | None,
    source: str | None,
) -> pd.DataFrame:
    try:
        table = pq.read_table(
            path, columns=["request_id", "ts", "model_version", "arm", "source", "features"]
        )
    except FileNotFoundError as exc:
        raise LogChanged(f"{path} was compacted or expired after the window was listed") from exc
    mask = pc.not_equal(table["arm"], "shadow")  # shadow rows were never served
    if start is not None:
        mask = pc.and_(
            mask, pc.greater_equal(table["ts"], pa.scalar(start, type=table.schema.field("ts").type))
        )
    if end is not None:
        mask = pc.and_(mask, pc.less(table["ts"], pa.scalar(end, type=table.schema.field("ts").type)))
    if model_version is not None:
        mask = pc.and_(mask, pc.equal(table["model_version"], model_version))
    if source is not None:
        mask = pc.and_(mask, pc.equal(table["source"], source))
    table = table.filter(mask)
    struct = table["features"].combine_chunks()
    out = pd.DataFrame(
        {
            "request_id": table["request_id"].to_pandas().astype(object),
            "ts": table["ts"].to_pandas(),
            "model_version": table["model_version"].to_pandas().astype(object),
            "source": table["source"].to_pandas().astype(object),
        }
    )
    for name in features:
        column = struct.field(name)
        values = column.to_pandas()
        out[name] = values.astype("float64") if pa.types.is_floating(column.type) else values.astype(object)
    return out
