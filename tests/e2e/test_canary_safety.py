"""The canary's promises: a bad challenger is rolled back at the first step, and a controller killed with
SIGKILL mid-canary resumes without a double promotion or a stuck canary."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.registry import deployments
from tests.conftest import RED
from tests.e2e.conftest import drive, kill, make_project, running, train_on


@pytest.mark.slow
def test_bad_challenger_is_rolled_back_during_the_first_step(tmp_path: Path, red: pd.DataFrame) -> None:
    cfg, stores = make_project(tmp_path, RED)
    champion = train_on(cfg, stores, red, "red wines")
    shuffled = red.assign(quality=np.random.default_rng(0).permutation(red["quality"].to_numpy()))
    bad = train_on(cfg, stores, shuffled, "shuffled labels", force=True)
    first_step = cfg.loop.rollout.steps[0]
    deployments.start_canary(stores, bad, weight=first_step, reason="test: forced bad challenger")

    def rolled_back() -> bool:
        return stores.metadata.get_deployment(cfg.project.name).challenger is None

    with running(cfg, tmp_path) as (url, _controller, _start):
        traffic = drive(url, red, rolled_back)
    dep = stores.metadata.get_deployment(cfg.project.name)
    assert dep.champion == champion and dep.challenger is None, "the bad challenger was not rolled back"
    kinds = [e.kind for e in stores.metadata.list_events(cfg.project.name)]
    assert "rolled_back" in kinds and "promoted" not in kinds
    # No more than the first step's share of traffic ever saw the bad model.
    assert (
        max(h.challenger_weight for h in stores.metadata.deployment_history(cfg.project.name)) <= first_step
    )
    served = [r for r in traffic.served if r.status == 200]
    share = sum(r.version == bad for r in served) / len(served)
    assert share <= first_step + 0.05
    assert all(r.status == 200 for r in traffic.served)


@pytest.mark.slow
def test_controller_killed_mid_canary_resumes_without_double_promotion(
    tmp_path: Path, red: pd.DataFrame
) -> None:
    cfg, stores = make_project(tmp_path, RED)
    champion = train_on(cfg, stores, red, "red wines")
    challenger = train_on(
        cfg, stores, red.sample(frac=1.0, random_state=3), "red wines, reshuffled", force=True
    )
    deployments.start_canary(stores, challenger, weight=cfg.loop.rollout.steps[0], reason="test canary")
    name = cfg.project.name
    state = {"killed": False}

    with running(cfg, tmp_path) as (url, controller, start_controller):

        def progress() -> bool:
            dep = stores.metadata.get_deployment(name)
            if not state["killed"] and (dep.rollout_step or 0) >= 1:
                kill(controller)  # mid-canary, at an arbitrary point of its loop
                state["killed"] = True
                start_controller()
            return dep.champion == challenger

        traffic = drive(url, red, progress, timeout=180)
    events = stores.metadata.list_events(name)
    log = (tmp_path / "logs" / "controller-0.log").read_text()[-3000:]
    assert state["killed"], (
        f"the canary never reached its second step: {[(e.kind, e.message) for e in events]}\n{log}"
    )
    dep = stores.metadata.get_deployment(name)
    assert dep.champion == challenger and dep.challenger is None and dep.strategy == "single"
    assert [e.kind for e in events].count("promoted") == 1
    steps = [h.rollout_step for h in stores.metadata.deployment_history(name) if h.rollout_step is not None]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), (
        f"canary steps repeated or reversed: {steps}"
    )
    assert champion != challenger
    assert all(r.status == 200 for r in traffic.served)
