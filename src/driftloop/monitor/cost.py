"""Serving cost per model version, arm and source, from the prediction log: CPU-ms per 1,000 predictions.

The server times each micro-batch's predict call in CPU seconds and logs every row's share
(`predict_cpu_ms`, see `serve.batching`); batch scoring logs its partitions' the same way. So the figure comes
from one source for every replica and worker, over exactly the monitoring window, like the canary's error
rates. Rows logged before the column existed (or by a writer that did not measure) count as rows but not as
measured rows; the cost is over the measured ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from driftloop.stores.logfiles import log_files, model_span, parquet_source, read_retrying

__all__ = ["ArmCost", "serving_cost"]


@dataclass(frozen=True)
class ArmCost:
    model_version: str
    arm: str
    source: str
    rows: int
    measured_rows: int
    cpu_ms_per_1k: float | None
    """Model CPU milliseconds per 1,000 predicted rows (None: no measured row)."""
    p95_latency_ms: float | None
    """Of the requests' server-side latency, over their rows."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def serving_cost(
    log_dir: Path, model_name: str, *, start: datetime | None, end: datetime | None
) -> list[ArmCost]:
    """One row per (version, arm, source) that predicted in [start, end), ordered by version and arm."""
    import duckdb

    where, params = model_span(model_name, start, end)

    def read() -> list[tuple[Any, ...]]:
        files = log_files(log_dir, "predictions", start=start, end=end)
        if not files:
            return []
        source = parquet_source(files)
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
            cpu = "predict_cpu_ms" if "predict_cpu_ms" in columns else "CAST(NULL AS DOUBLE)"
            sql = (
                f"SELECT model_version, arm, source, count(*), count({cpu}), sum({cpu}), "
                f"quantile_cont(latency_ms, 0.95) FROM {source} WHERE {' AND '.join(where)} "
                "GROUP BY ALL ORDER BY ALL"
            )
            return con.execute(sql, params).fetchall()

    out = []
    for version, arm, src, rows, measured, cpu_ms, p95 in read_retrying(read):
        per_1k = float(cpu_ms) * 1000.0 / measured if measured else None
        out.append(
            ArmCost(
                str(version),
                str(arm),
                str(src),
                int(rows),
                int(measured),
                per_1k,
                float(p95) if p95 is not None else None,
            )
        )
    return out
