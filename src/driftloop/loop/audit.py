"""The auditor's questions: which version served which share of traffic when and why, and where one
prediction came from (model version -> run -> training data digest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftloop.errors import NotFoundError
from driftloop.stores import Stores
from driftloop.stores.predlog import read_log


@dataclass
class Explanation:
    request_id: str
    served: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    feedback: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "served": self.served,
            "model": self.model,
            "data": self.data,
            "feedback": self.feedback,
        }


def _rows(log_dir: object, kind: str, request_id: str) -> list[dict[str, Any]]:
    """Every row of a log for one request id (quoted for SQL: it is the user's input)."""
    quoted = request_id.replace("'", "''")
    return read_log(log_dir, kind, where=f"request_id = '{quoted}'").to_pylist()  # type: ignore[arg-type]


def explain(stores: Stores, request_id: str) -> Explanation:
    """Walk one served prediction back to its model version, training run and training data."""
    # The served row, not the shadow copy: "champion"/"challenger" sort before "shadow".
    served = min(
        _rows(stores.log_dir, "predictions", request_id), key=lambda r: (r["arm"], r["ts"]), default=None
    )
    if served is None:
        raise NotFoundError(f"request id {request_id!r} is not in the prediction log at {stores.log_dir}")
    version = stores.tracking.get_version(served["model_version"])
    run = stores.tracking.client.get_run(version.run_id)
    data_version = version.tags.get("data_version") or run.data.tags.get("data_version", "")
    data: dict[str, Any] = {"version": data_version}
    if data_version:
        rec = stores.metadata.get_dataset(data_version)
        data |= {"digest": rec.digest, "source": rec.source, "rows": rec.n_rows, "parents": rec.parents}
    feedback = max(_rows(stores.log_dir, "feedback", request_id), key=lambda r: r["ts"], default=None)
    return Explanation(
        request_id=request_id,
        served={k: served[k] for k in ("ts", "model_version", "arm", "source", "prediction", "latency_ms")}
        | {"features": served["features"]},
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
