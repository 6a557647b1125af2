"""What the loop page shows, as plain JSON-ready dicts, read only from the stores the stages already write.

Each function answers one panel of the page: `now` (the deployment row, the versions' lineage tags from the
MLflow registry, the canary step's per-arm evidence from the prediction log and the decision the controller
would take on it), `history` (the deployment history), `monitoring` (the stored monitoring passes), `traffic`
(rows, errors and latency per minute from the prediction and error logs), `events` (loop events and alerts),
`version` (one version's lineage and gate report) and `explain` (one request). Nothing here writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from driftloop.loop import audit
from driftloop.loop.online import arm_stats
from driftloop.loop.rollout import decide
from driftloop.stores import Stores
from driftloop.stores.predlog import log_files

__all__ = ["events", "explain", "history", "monitoring", "now", "traffic", "version"]


def _summary(stores: Stores, version: str | None) -> dict[str, Any] | None:
    """A serving version's lineage at a glance: data version, family, CV score, gate verdict."""
    if not version:
        return None
    info = stores.tracking.get_version(version)
    tags = info.tags
    cv = next(((k[3:], float(v)) for k, v in tags.items() if k.startswith("cv_")), None)
    return {
        "version": info.version,
        "run_id": info.run_id,
        "data_version": tags.get("data_version"),
        "family": tags.get("family"),
        "metric": cv[0] if cv else None,
        "cv": cv[1] if cv else None,
        "gate": tags.get("gate"),
    }


def now(stores: Stores, *, pool: dict[str, Any] | None, regression: bool | None) -> dict[str, Any]:
    """The deployment, its versions, the canary step with its evidence, and (when served) the pool's state.

    `regression` is the served model's task when the caller knows it (the server does); otherwise the
    challenger's spec is read from the registry.
    """
    dep = stores.metadata.get_deployment(stores.model_name)
    rollout = stores.cfg.loop.rollout
    canary: dict[str, Any] | None = None
    if dep.strategy == "canary" and dep.champion and dep.challenger:
        step = dep.rollout_step or 0
        since = dep.step_started_at or dep.updated_at or datetime.now(UTC)
        if regression is None:
            regression = stores.tracking.load_bundle(dep.challenger).spec.task == "regression"
        champion, challenger = arm_stats(
            stores.log_dir,
            since=since,
            champion=dep.champion,
            challenger=dep.challenger,
            regression=regression,
            outcome=None if rollout.outcome is None else (stores.model_name, rollout.outcome),
        )
        dwell = (datetime.now(UTC) - since).total_seconds()
        # The same pure decision the controller takes on its next pass, on the same evidence.
        decision = decide(
            rollout, min(step, len(rollout.steps) - 1), champion, challenger, dwell, regression=regression
        )
        canary = {
            "step": step,
            "steps": list(rollout.steps),
            "weight": dep.challenger_weight,
            "step_started_at": since.isoformat(),
            "dwell_seconds": dwell,
            "decision": {"action": decision.action, "reason": decision.reason},
            "arms": {
                "champion": _arm(dep.champion, champion),
                "challenger": _arm(dep.challenger, challenger),
            },
            "rules": {
                "min_requests": rollout.min_requests,
                "min_dwell_seconds": rollout.min_dwell_seconds,
                "min_labels": rollout.min_labels,
                "max_error_rate_increase": rollout.max_error_rate_increase,
                "max_p95_latency_ratio": rollout.max_p95_latency_ratio,
                "confidence": rollout.confidence,
                "metric": "mean absolute error" if regression else "accuracy",
                "outcome": None if rollout.outcome is None else rollout.outcome.model_dump(),
            },
        }
    return {
        "model_name": stores.model_name,
        "deployment": dep.to_dict(),
        "champion": _summary(stores, dep.champion),
        "challenger": _summary(stores, dep.challenger),
        "canary": canary,
        "pool": pool,
        "now": datetime.now(UTC).isoformat(),
    }


def _arm(version: str, stats: Any) -> dict[str, Any]:
    return {
        "version": version,
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": stats.errors / stats.requests if stats.requests else None,
        "p95_latency_ms": stats.p95_latency_ms,
        "labeled": stats.labeled,
        "metric": stats.metric,
    }


def history(stores: Stores) -> dict[str, Any]:
    """Every deployment change, oldest first: the canary's staircase is the challenger share over time."""
    rows = audit.traffic_history(stores)
    return {"changes": [r | {"at": r["at"].isoformat() if r["at"] else None} for r in rows]}


def monitoring(stores: Stores, *, limit: int = 200) -> dict[str, Any]:
    """The stored monitoring passes, oldest first: per-feature drift scores with their thresholds, the dataset
    drift share, and the labeled metrics per version and arm with their confidence intervals."""
    windows = []
    for row in stores.metadata.list_monitoring_results(stores.model_name, limit=limit):
        result = row["result"]
        drift = result.get("drift") or {}
        perf = result.get("performance") or {}
        windows.append(
            {
                "id": row["id"],
                "ts": _iso(row["ts"]),
                "model_version": row["model_version"],
                "window_start": _iso(row["window_start"]),
                "window_end": _iso(row["window_end"]),
                "rows": row["n_rows"],
                "status": result.get("status"),
                "dataset_drift": row["dataset_drift"],
                "drift_share": row["drift_share"],
                "drift_share_threshold": drift.get("drift_share_threshold"),
                "features": {
                    name: {
                        "method": col.get("method"),
                        "score": col.get("statistic"),
                        "threshold": col.get("threshold"),
                        "score_kind": col.get("score_kind"),
                        "drift": col.get("drift"),
                    }
                    for name, col in (drift.get("columns") or {}).items()
                },
                "metric": (result.get("metric") or {}).get("name"),
                "performance": perf.get("groups") or [],
                "estimated": result.get("estimated") or [],
                "alerts": result.get("alerts") or [],
            }
        )
    return {"windows": windows}


def traffic(stores: Stores, *, minutes: int = 60) -> dict[str, Any]:
    """Answered rows, failed rows and p99 latency per minute over the last `minutes`, all replicas.

    Only the hour partitions the window touches are read, so the cost does not grow with the log's age.
    """
    import duckdb

    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes)

    def files(kind: str) -> list[str]:
        return [p.as_posix() for p in log_files(stores.log_dir, kind, start=start)]  # type: ignore[arg-type]

    buckets: dict[str, dict[str, Any]] = {}
    with duckdb.connect() as con:
        for kind, sql in (
            ("predictions", "count(*), quantile_cont(latency_ms, 0.99)"),
            ("errors", "sum(greatest(rows, 1)), NULL"),
        ):
            found = files(kind)
            if not found:
                continue
            rows = con.execute(
                f"SELECT epoch(time_bucket(INTERVAL 1 MINUTE, ts)) AS m, {sql} "
                "FROM read_parquet(?, union_by_name=true) WHERE ts >= ? AND arm IN ('champion', 'challenger') GROUP BY m ORDER BY m",
                [found, start],
            ).fetchall()
            for epoch, n, p99 in rows:  # seconds, not a timestamp: DuckDB's aware ones need pytz
                minute = datetime.fromtimestamp(epoch, UTC).isoformat()
                b = buckets.setdefault(minute, {"answered": 0, "errors": 0, "p99_latency_ms": None})
                if kind == "predictions":
                    b |= {"answered": int(n), "p99_latency_ms": float(p99) if p99 is not None else None}
                else:
                    b["errors"] = int(n)
    series = []
    for minute in sorted(buckets):
        b = buckets[minute]
        total = b["answered"] + b["errors"]
        series.append(
            {
                "minute": minute,
                "rows_per_second": total / 60.0,
                "error_rate": b["errors"] / total if total else None,
                **b,
            }
        )
    return {"minutes": minutes, "series": series}


def events(stores: Stores, *, limit: int = 300) -> dict[str, Any]:
    """The newest `limit` loop events (oldest first) and the alerts, newest first."""
    rows = stores.metadata.list_events(stores.model_name)[-limit:]
    alerts = [
        {k: _iso(v) if isinstance(v, datetime) else v for k, v in a.items()}
        for a in stores.metadata.list_alerts(limit=50)
    ]
    return {"events": [e.to_dict() for e in rows], "alerts": alerts}


def version(stores: Stores, number: str) -> dict[str, Any]:
    return audit.version_lineage(stores, number)


def explain(stores: Stores, request_id: str) -> dict[str, Any]:
    out = audit.explain(stores, request_id).to_dict()
    out["served"] = {k: _iso(v) if isinstance(v, datetime) else v for k, v in out["served"].items()}
    if out["feedback"]:
        out["feedback"]["ts"] = _iso(out["feedback"]["ts"])
    return out


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # DuckDB and SQLite hand back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
