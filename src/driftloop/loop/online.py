"""Online evidence for a canary step: per-arm traffic, errors, latency, labeled metric and (when configured)
a business outcome, all from the prediction log written by every server replica.

One source for both sides of the error rate: an arm's requests are its answered rows plus the rows of its
failed requests (the `errors` log) since the step began, its errors are the latter, for the arm's model
version. Every replica writes to the same log folder, so the counts cover all of them over the same interval
(a Prometheus scrape through a Service sees one pod, and its counters run since that pod started).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from driftloop.config import OutcomeRule
from driftloop.loop.rollout import ArmStats
from driftloop.monitor.experiment import outcome_by_arm
from driftloop.stores.logfiles import LABEL_SKEW, log_files, parquet_source, read_retrying
from driftloop.stores.predlog import latest_labels_sql

_ARMS = """arm IN ('champion', 'challenger')
    AND ((arm = 'champion' AND model_version = ?) OR (arm = 'challenger' AND model_version = ?))"""


def arm_stats(
    log_dir: Path,
    *,
    since: datetime,
    champion: str,
    challenger: str,
    regression: bool,
    outcome: tuple[str, OutcomeRule] | None = None,
) -> tuple[ArmStats, ArmStats]:
    """(champion, challenger) statistics for the rows each arm's version answered or failed since `since`.

    Only the partitions since `since` are read (feedback from `LABEL_SKEW` before it: a label comes after
    its prediction). `outcome`: (model name, `rollout.outcome`) adds each arm's business outcome over the
    same requests (`monitor.experiment.outcome_by_arm`)."""
    stats = read_retrying(lambda: _arm_stats(log_dir, since, champion, challenger, regression))
    if outcome is None:
        return stats
    model_name, rule = outcome
    found = {
        (o.arm, o.model_version): o
        for o in outcome_by_arm(log_dir, model_name, rule.name, start=since, end=None, missing=rule.missing)
    }
    return (
        replace(stats[0], outcome=found.get(("champion", champion))),
        replace(stats[1], outcome=found.get(("challenger", challenger))),
    )


def _arm_stats(
    log_dir: Path, since: datetime, champion: str, challenger: str, regression: bool
) -> tuple[ArmStats, ArmStats]:
    import duckdb

    preds = log_files(log_dir, "predictions", start=since)
    feedback = log_files(log_dir, "feedback", start=since - LABEL_SKEW) if preds else []
    errors = log_files(log_dir, "errors", start=since)
    by_arm: dict[str, dict[str, object]] = {"champion": {}, "challenger": {}}
    params = [since, champion, challenger]
    with duckdb.connect() as con:
        if preds:
            served = f"WITH served AS (SELECT * FROM {parquet_source(preds)} WHERE ts >= ? AND {_ARMS})"
            traffic = con.execute(
                served + "SELECT arm, count(*), quantile_cont(latency_ms, 0.95) FROM served GROUP BY arm",
                params,
            ).fetchall()
            for arm, n, p95 in traffic:
                by_arm[arm] |= {"answered": int(n), "p95_latency_ms": float(p95) if p95 is not None else None}
        if feedback:
            per_row = (
                "abs(p.prediction - fb.label)"
                if regression
                else "CASE WHEN p.prediction = fb.label THEN 1.0 ELSE 0.0 END"
            )
            labeled = con.execute(
                served
                + f"""
                , lab AS (
                    SELECT p.arm, {per_row} AS score
                    FROM served p JOIN ({latest_labels_sql(feedback)}) fb USING (request_id))
                SELECT arm, count(*), avg(score), stddev_samp(score) FROM lab GROUP BY arm
                """,
                params,
            ).fetchall()
            for arm, n, mean, sd in labeled:
                by_arm[arm] |= {"labeled": int(n), "metric": mean, "metric_sd": sd}
        if errors:
            # A request that failed before its rows were counted (rows = 0) still counts as one.
            failed = con.execute(
                f"SELECT arm, sum(greatest(rows, 1)) FROM {parquet_source(errors)} "
                f"WHERE ts >= ? AND {_ARMS} GROUP BY arm",
                params,
            ).fetchall()
            for arm, n in failed:
                by_arm[arm] |= {"errors": int(n)}
    return _stats(by_arm["champion"]), _stats(by_arm["challenger"])


def _stats(found: dict[str, object]) -> ArmStats:
    answered = int(found.pop("answered", 0))  # type: ignore[call-overload]
    errors = int(found.get("errors", 0))  # type: ignore[call-overload]
    return ArmStats(requests=answered + errors, **found)  # type: ignore[arg-type]


__all__ = ["arm_stats"]
