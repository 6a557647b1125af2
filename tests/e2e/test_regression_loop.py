"""The loop with a regression target, set by config alone: drift, retrain, gate, canary, promotion."""

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import RED
from tests.e2e.conftest import drive, make_project, running, train_on


@pytest.mark.slow
def test_regression_target_goes_round_the_loop(
    tmp_path: Path, red: pd.DataFrame, white: pd.DataFrame
) -> None:
    cfg, stores = make_project(
        tmp_path,
        RED,
        data={"task": "regression"},
        monitoring={"window": None, "last_rows": 400, "min_rows": 300},
        # A challenger that fails the gate early (little white wine seen yet) is retried 5 s later with more.
        loop={
            "triggers": [{"kind": "dataset_drift", "cooldown_seconds": 5}],
            "retrain": {"min_labeled_rows": 600},
        },
        gate={"recent_rows": 200},
    )
    champion = train_on(cfg, stores, red, "red wines")
    assert stores.tracking.load_bundle(champion).spec.task == "regression"
    name = cfg.project.name

    def promoted() -> bool:
        return stores.metadata.get_deployment(name).champion != champion

    with running(cfg, tmp_path) as (url, _controller, _start):
        drive(url, red.head(400))
        traffic = drive(url, white, promoted, timeout=240)
    kinds = [e.kind for e in stores.metadata.list_events(name)]
    assert "trigger_fired" in kinds and "gate_passed" in kinds and "promoted" in kinds, kinds
    new = stores.metadata.get_deployment(name).champion
    assert new != champion and stores.tracking.load_bundle(new).spec.task == "regression"
    assert all(r.status == 200 for r in traffic.served)
    served_by_new = [r for r in traffic.served if r.version == new]
    assert served_by_new and all(float(r.prediction) > 0 for r in served_by_new)
