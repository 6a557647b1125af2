"""The auditor's questions: which version served which share of traffic when and why, and where one
prediction came from (model version -> run -> training data digest), or why a request got no answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from driftloop.errors import NotFoundError
from driftloop.stores import Stores
from driftloop.stores.logfiles import LABEL_SKEW, LogKind
from driftloop.stores.metadata import Deployment
from driftloop.stores.predlog import read_log


@dataclass
class Explanation:
    request_id: str
    outcome: str
    """`answered` (a prediction row exists) or `failed` (only an error row: the model raised, a 5xx)."""
    served: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    feedback: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "outcome": self.outcome,
            "served": self.served,
            "model": self.model,
            "data": self.data,
            "feedback": self.feedback,
        }


#: Where `explain` looks for a request id: the newest partitions first, widening only while neither the
#: prediction nor the error log has it. Most questions are about recent requests, and the log is partitioned
#: by hour, so a question about one of the last hour reads that hour's files, not months of history.
SEARCH_SPANS = (timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=31), None)

ANSWERED_FIELDS = ("ts", "model_version", "arm", "source", "prediction", "latency_ms", "features")
FAILED_FIELDS = ("ts", "model_version", "arm", "source", "status", "error", "rows", "latency_ms")


def _rows(log_dir: Path, kind: LogKind, request_id: str, since: datetime | None) -> list[dict[str, Any]]:
    """Every row of a log for one request id from `since` on (quoted for SQL: the id is the user's input)."""
    where = "request_id = '" + request_id.replace("'", "''") + "'"
    return read_log(log_dir, kind, where=where, start=since).to_pylist()


def _find(log_dir: Path, request_id: str) -> tuple[str, dict[str, Any]]:
    """The row that answered the request (`answered`), or, for a request the model failed (a 5xx: no
    prediction row), its error row (`failed`), from the newest span of SEARCH_SPANS that has either."""
    now = datetime.now(UTC)
    for span in SEARCH_SPANS:
        since = None if span is None else now - span
        # The served row, not the shadow copy: "champion"/"challenger" sort before "shadow".
        answered = _rows(log_dir, "predictions", request_id, since)
        if answered:
            return "answered", min(answered, key=lambda r: (r["arm"], r["ts"]))
        failed = _rows(log_dir, "errors", request_id, since)
        if failed:
            return "failed", min(failed, key=lambda r: (r["status"] is None, r["arm"], r["ts"]))
    raise NotFoundError(
        f"request id {request_id!r} is in neither the prediction log nor the error log at {log_dir}"
    )


def explain(stores: Stores, request_id: str) -> Explanation:
    """Walk one request back to the model version that served it (or failed it), its run and training data."""
    outcome, served = _find(stores.log_dir, request_id)
    fields = ANSWERED_FIELDS if outcome == "answered" else FAILED_FIELDS
    version = stores.tracking.get_version(served["model_version"])
    run = stores.tracking.client.get_run(version.run_id)
    data_version = version.tags.get("data_version") or run.data.tags.get("data_version", "")
    data = data_lineage(stores, data_version)
    # Feedback comes after its prediction (give or take the replicas' clock skew).
    labels = _rows(stores.log_dir, "feedback", request_id, served["ts"] - LABEL_SKEW)
    feedback = max(labels, key=lambda r: r["ts"], default=None)
    return Explanation(
        request_id=request_id,
        outcome=outcome,
        served={k: served[k] for k in fields},
        model={
            "name": version.name,
            "version": version.version,
            "run_id": version.run_id,
            "family": version.tags.get("family", run.data.params.get("family", "")),
            "aliases": version.aliases,
        },
        data=data,
        feedback={"label": feedback["label"], "ts": feedback["ts"]} if feedback else None,
    )


def version_lineage(stores: Stores, version: str) -> dict[str, Any]:
    """One registered version: its run, lineage tags (data version, family, scores), the training data's
    digest and parents, its role now and its gate report (None for a project's first model)."""
    import json

    from driftloop.stores.tracking import GATE_REPORT_ARTIFACT

    info = stores.tracking.get_version(version)
    try:
        gate = json.loads(stores.tracking.run_artifact(info.run_id, GATE_REPORT_ARTIFACT).read_text())
    except Exception:  # the first model of a project has no gate report
        gate = None
    data_version = info.tags.get("data_version", "")
    data = data_lineage(stores, data_version)
    return {
        "version": info.version,
        "run_id": info.run_id,
        "role": role(stores.metadata.get_deployment(stores.model_name), info.version) or None,
        "aliases": info.aliases,
        "tags": info.tags,
        "data": data,
        "gate": gate,
    }


def role(dep: Deployment, version: str) -> str:
    """`champion`, `challenger (canary 10%)`, or "" for a version that does not serve."""
    if dep.champion == version:
        return "champion"
    if dep.challenger == version:
        weight = f" {dep.challenger_weight:.0%}" if dep.strategy != "single" else ""
        return f"challenger ({dep.strategy}{weight})"
    return ""


def data_lineage(stores: Stores, data_version: str) -> dict[str, Any]:
    """A training data version's digest, source, size and parents ({"version": ""} when unknown)."""
    data: dict[str, Any] = {"version": data_version}
    if data_version:
        rec = stores.metadata.get_dataset(data_version)
        data |= {"digest": rec.digest, "source": rec.source, "rows": rec.n_rows, "parents": rec.parents}
    return data


def traffic_history(stores: Stores) -> list[dict[str, Any]]:
    """Every deployment change: when, who served which share, and why."""
    out = []
    for dep in stores.metadata.deployment_history(stores.model_name):
        weight = dep.challenger_weight if dep.challenger else 0.0
        out.append(
            {
                "revision": dep.revision,
                "at": dep.updated_at,
                "champion": dep.champion,
                "champion_share": 1.0 - weight if dep.strategy != "shadow" else 1.0,
                "challenger": dep.challenger,
                "challenger_share": weight if dep.strategy != "shadow" else 0.0,
                "strategy": dep.strategy,
                "reason": dep.reason,
                "actor": dep.actor,
            }
        )
    return out
