"""The Grafana dashboard's annotation queries (promotions, rollbacks, canary steps) run against the real
metadata store of this run's backend and find the deployment changes the state machine records."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from driftloop.stores.metadata import MetadataStore, utcnow
from tests.conftest import database_url

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "driftloop.json"


def test_annotation_queries_find_promotions_rollbacks_and_canary_steps(tmp_path: Path) -> None:
    annotations = json.loads(DASHBOARD.read_text())["annotations"]["list"]
    queries = {a["name"]: a["target"]["rawSql"] for a in annotations}
    assert set(queries) == {"Promotions", "Rollbacks", "Canary steps"}
    store = MetadataStore.connect(database_url(tmp_path))
    now = utcnow()
    try:
        store.add_event("wine", "promoted", "canary passed", model_version="2", ts=now - timedelta(hours=2))
        store.add_event(
            "wine", "rolled_back", "error rate up", model_version="3", ts=now - timedelta(hours=1)
        )
        store.add_event(
            "wine", "canary_advanced", "step 2", model_version="3", ts=now - timedelta(minutes=90)
        )
        store.add_event("wine", "promoted", "long ago", model_version="1", ts=now - timedelta(days=30))
        store.add_event("wine", "trigger_fired", "drift", ts=now - timedelta(hours=1))
        found = {}
        with store.engine.connect() as conn:
            for name, sql in queries.items():
                # What Grafana's $__timeFilter(ts) expands to, for the dashboard's last 6 hours.
                bound = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN :start AND :end", sql)
                rows = conn.execute(sa.text(bound), {"start": now - timedelta(hours=6), "end": now}).all()
                found[name] = [(r.text, r.tags) for r in rows]
    finally:
        store.close()
    assert found == {
        "Promotions": [("wine v2 promoted: canary passed", "promoted")],
        "Rollbacks": [("wine v3 rolled back: error rate up", "rolled_back")],
        "Canary steps": [("wine v3 canary step: step 2", "canary_advanced")],
    }
