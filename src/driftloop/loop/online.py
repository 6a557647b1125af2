"""Online evidence for a canary step: per-arm traffic, latency and labeled metric from the prediction log,
and server errors by model version from the servers' Prometheus endpoints.

Errors are not in the prediction log (it holds answered predictions only), so they come from the
`driftloop_requests_total` counters. The challenger's version is new, so its counters cover the canary;
the champion's cover its whole life, which is the baseline we want.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import httpx

from driftloop.loop.rollout import ArmStats
from driftloop.stores.predlog import latest_labels_sql, log_files, log_source

log = logging.getLogger(__name__)

_SAMPLE = re.compile(r"^driftloop_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_requests(
    urls: list[str], timeout: float = 2.0
) -> dict[tuple[str, str], tuple[float, float]] | None:
    """(model_version, arm) -> (requests, 5xx errors) summed over the servers; None if none answered."""
    totals: dict[tuple[str, str], list[float]] = {}
    answered = False
    for url in urls:
        try:
            text = httpx.get(url, timeout=timeout).text
        except httpx.HTTPError as exc:
            log.warning("metrics endpoint %s unreachable: %s", url, exc)
            continue
        answered = True
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match:
                continue
            labels = dict(_LABEL.findall(match.group("labels")))
            key = (labels.get("model_version", ""), labels.get("arm", ""))
            value = float(match.group("value"))
            entry = totals.setdefault(key, [0.0, 0.0])
            entry[0] += value
            if labels.get("status", "").startswith("5"):
                entry[1] += value
    if not answered:
        return None
    return {k: (v[0], v[1]) for k, v in totals.items()}


def arm_stats(
    log_dir: Path,
    *,
    since: datetime,
    champion: str,
    challenger: str,
    regression: bool,
    errors: dict[tuple[str, str], tuple[float, float]] | None,
) -> tuple[ArmStats, ArmStats]:
    """(champion, challenger) statistics for the rows served since `since` by each arm's version."""
    empty = ArmStats(errors=None)
    if not log_files(log_dir, "predictions"):
        return empty, empty
    import duckdb

    preds = log_source(log_dir, "predictions")
    have_fb = bool(log_files(log_dir, "feedback"))
    per_row = (
        "abs(p.prediction - fb.label)"
        if regression
        else "CASE WHEN p.prediction = fb.label THEN 1.0 ELSE 0.0 END"
    )
    labeled = (
        f"""
        , lab AS (
            SELECT p.arm, {per_row} AS score
            FROM served p JOIN ({latest_labels_sql(log_dir)}) fb
            USING (request_id))
        SELECT arm, count(*), avg(score), stddev_samp(score) FROM lab GROUP BY arm
        """
        if have_fb
        else "SELECT NULL, 0, NULL, NULL WHERE false"
    )
    served = f"""
        WITH served AS (
            SELECT * FROM {preds}
            WHERE ts >= ? AND arm IN ('champion', 'challenger')
              AND ((arm = 'champion' AND model_version = ?) OR (arm = 'challenger' AND model_version = ?)))
    """
    with duckdb.connect() as con:
        traffic = con.execute(
            served + "SELECT arm, count(*), quantile_cont(latency_ms, 0.95) FROM served GROUP BY arm",
            [since, champion, challenger],
        ).fetchall()
        metrics = con.execute(served + labeled, [since, champion, challenger]).fetchall()
    by_arm: dict[str, dict[str, object]] = {"champion": {}, "challenger": {}}
    for arm, n, p95 in traffic:
        by_arm[arm] |= {"requests": int(n), "p95_latency_ms": float(p95) if p95 is not None else None}
    for arm, n, mean, sd in metrics:
        if arm in by_arm:
            by_arm[arm] |= {"labeled": int(n), "metric": mean, "metric_sd": sd}
    for arm, version in (("champion", champion), ("challenger", challenger)):
        if errors is not None:
            counted, failed = errors.get((version, arm), (0.0, 0.0))
            by_arm[arm] |= {"errors": int(failed), "counted": int(counted)}
    return ArmStats(**by_arm["champion"]), ArmStats(**by_arm["challenger"])  # type: ignore[arg-type]
