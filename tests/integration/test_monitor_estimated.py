"""Performance estimated without labels in a real monitoring pass: a model trained by `train` (which keeps its
holdout with it), windows logged as the server logs them, `run_check` on this run's backend.

The data follow one rule P(y | x) everywhere (a logistic link on two features), so what moves between
windows is only where the inputs fall: covariate shift, the case the estimate is built for. Rows gathered
near the decision boundary are harder, and the estimate must see that before any label arrives."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from driftloop.config import AlertRule, TriggerConfig
from driftloop.loop.alerts import alerts_from_check
from driftloop.loop.steps import signals_from_check
from driftloop.loop.triggers import evaluate_triggers
from driftloop.monitor.check import run_check
from driftloop.monitor.publish import export_gauges
from driftloop.monitor.report import render_html
from driftloop.stores import Stores
from driftloop.stores.metadata import utcnow
from tests.e2e.conftest import make_project, train_on

FEATURES = ["x0", "x1", "x2"]


def draw(n: int, seed: int, *, near_boundary: bool = False) -> pd.DataFrame:
    """Rows of the one rule P(y=1 | x) = sigmoid(3 x0 - 2 x1); `near_boundary`: inputs where it is ~0.5."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    if near_boundary:
        x[:, 0] = (2 * x[:, 1] + rng.normal(scale=0.4, size=n)) / 3
    p = 1 / (1 + np.exp(-(3 * x[:, 0] - 2 * x[:, 1])))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = np.where(rng.random(n) < p, "yes", "no")
    return frame


def log_served(stores: Stores, version: str, frame: pd.DataFrame, *, ts, labels: bool) -> None:
    """Serve `frame` with the model's real outputs into the log, as the server does (and its labels)."""
    from driftloop.stores.predlog import FeedbackEntry, LogWriter, PredictionEntry

    bundle = stores.tracking.load_bundle(version)
    out = bundle.predict_frame(frame[FEATURES])
    classes = tuple(str(c) for c in bundle.spec.classes)
    preds = LogWriter(stores.log_dir, "predictions").start()
    feedback = LogWriter(stores.log_dir, "feedback").start()
    start_us = int(ts.timestamp() * 1e6)
    for i in range(len(frame)):
        rid = f"{version}-{start_us}-{i}"
        preds.put(
            PredictionEntry(
                request_id=rid, batch=False, ts_us=start_us + i * 1000, model_name=stores.model_name,
                model_version=version, arm="champion", source="online", feature_names=tuple(FEATURES),
                feature_kinds=("numeric",) * len(FEATURES),
                columns=[np.array([frame[n].iloc[i]]) for n in FEATURES],
                labels=[out.labels[i]], proba=out.proba[i : i + 1], classes=classes, latency_ms=1.0,
            )
        )  # fmt: skip
        if labels:
            feedback.put(
                FeedbackEntry(
                    request_ids=[rid], labels=[frame["label"].iloc[i]], regression=False,
                    ts_us=start_us + i * 1000,
                )
            )  # fmt: skip
    preds.close()
    feedback.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("estimated")
    data = root / "rule.csv"
    draw(3000, seed=1).to_csv(data, index=False)
    cfg, stores = make_project(
        root,
        data,
        data={"target": "label"},
        training={"families": ["linear"], "budget": {"trials": 2, "seconds": None}},
        monitoring={"window": None, "last_rows": 1500, "min_rows": 200},
    )
    version = train_on(cfg, stores, pd.read_csv(data), "the rule")
    yield cfg, stores, version
    stores.close()


def test_train_keeps_its_holdout_for_estimation(trained) -> None:  # noqa: ANN001
    cfg, stores, version = trained
    path = stores.tracking.holdout_path(version)
    assert path is not None
    holdout = pd.read_parquet(path)
    assert list(holdout.columns) == [*FEATURES, "label"]
    # The kept holdout, not training rows: about data.holdout_fraction of the 3,000 rows.
    assert abs(len(holdout) - 3000 * cfg.data.holdout_fraction) < 100
    reference = pd.read_parquet(stores.tracking.reference_path(version))
    assert not set(map(tuple, holdout[FEATURES].round(12).to_numpy())) & set(
        map(tuple, reference[FEATURES].round(12).to_numpy())
    )


def test_the_estimate_sees_a_harder_window_before_its_labels_arrive(trained) -> None:  # noqa: ANN001
    cfg, stores, version = trained
    holdout_auc = float(stores.tracking.get_version(version).tags["holdout_roc_auc"])
    triggers = [TriggerConfig(kind="estimated_performance", max_drop=0.05, cooldown_seconds=0)]
    rule = AlertRule(name="estimated-drop", kind="estimated_performance", max_drop=0.05)

    # A window like the training data, labelled: the estimate and the realised metrics agree.
    log_served(stores, version, draw(1500, seed=2), ts=utcnow() - timedelta(minutes=30), labels=True)
    easy = run_check(stores, cfg)
    [group] = easy.estimated
    assert (group.model_version, group.arm, group.rows, group.method) == (version, "champion", 1500, "cbpe")
    live = easy.performance.group(version, "champion")
    assert live is not None and live.n_labeled == 1500
    for metric in ("accuracy", "roc_auc", "f1_macro"):
        est, real = group.metrics[metric], live.metrics[metric].value
        assert est.low <= real <= est.high, (metric, est, real)
        assert abs(est.value - real) < 0.03, (metric, est, real)
    assert easy.champion_estimate is group.metrics["roc_auc"]
    signals = signals_from_check(easy, cfg, utcnow())
    [quiet] = evaluate_triggers(triggers, signals, {})
    assert not quiet.fired and "within" in quiet.reason
    assert alerts_from_check(easy, [rule]) == []

    # Rows gathered at the decision boundary, no labels yet: the estimate falls, and says so at once.
    hard = draw(1500, seed=3, near_boundary=True)
    log_served(stores, version, hard, ts=utcnow(), labels=False)
    check = run_check(stores, cfg)
    [group] = check.estimated
    est = group.metrics["roc_auc"]
    assert est.high < holdout_auc - 0.05, (est, holdout_auc)
    [fired] = evaluate_triggers(triggers, signals_from_check(check, cfg, utcnow()), {})
    assert fired.fired, fired.reason
    assert fired.evidence["reference"] == pytest.approx(holdout_auc)
    assert fired.evidence["estimated"] == pytest.approx(est.value)
    [alert] = alerts_from_check(check, [rule])
    assert "without labels" in alert.message
    # What the labels say once they come: the estimate was right about it, within its band.
    from driftloop.monitor.performance import evaluate_performance

    bundle = stores.tracking.load_bundle(version)
    served = bundle.predict_frame(hard[FEATURES])
    classes = [str(c) for c in bundle.spec.classes]
    joined = pd.DataFrame(
        {
            "model_version": version,
            "arm": "champion",
            "prediction": served.labels,
            "label": hard["label"],
            "probabilities": [
                json.dumps(dict(zip(classes, map(float, p), strict=True))) for p in served.proba
            ],
        }
    )
    realised = evaluate_performance(joined, task="binary", classes=classes, resamples=0)
    real_auc = realised.groups[0].metrics["roc_auc"].value
    assert est.low <= real_auc <= est.high, (est, real_auc)

    # Where a pass goes: Prometheus, the report, the stored result.
    registry = CollectorRegistry()
    export_gauges(check, registry)
    labels = {"metric": "roc_auc", "model_version": version, "arm": "champion"}
    for bound, value in (("value", est.value), ("low", est.low), ("high", est.high)):
        got = registry.get_sample_value("driftloop_model_metric_estimated", {**labels, "bound": bound})
        assert got == pytest.approx(value)
    page = render_html(check.report())
    assert (
        "Estimated before labels" in page
        and f"roc_auc {est.value:.4g} [{est.low:.4g}, {est.high:.4g}]" in page
    )
    assert check.to_dict()["estimated"][0]["metrics"]["roc_auc"]["value"] == pytest.approx(est.value)


def test_estimation_off_leaves_the_pass_without_it(trained) -> None:  # noqa: ANN001
    cfg, stores, _version = trained
    off = cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={"estimation": False})})
    assert run_check(stores, off, record=False).estimated == []


def test_config_refuses_an_estimated_trigger_it_cannot_feed(tmp_path: Path) -> None:
    from driftloop.config import load_config
    from driftloop.errors import ConfigError
    from tests.conftest import write_project

    trigger = {"triggers": [{"kind": "estimated_performance"}]}
    off = write_project(tmp_path, monitoring={"estimation": False}, loop=trigger)
    with pytest.raises(ConfigError, match=r"loop\.triggers\[0\].*monitoring\.estimation"):
        load_config(off)
    r2 = write_project(tmp_path, training={"metric": "r2"}, loop=trigger)
    with pytest.raises(ConfigError, match="'r2' has no label-free estimate"):
        load_config(r2)
    assert load_config(write_project(tmp_path, loop=trigger)).loop.triggers[0].kind == "estimated_performance"


def test_an_unreadable_holdout_costs_the_estimate_not_the_pass(trained, monkeypatch) -> None:  # noqa: ANN001
    """A corrupt holdout file on disk (the fault injected, not mocked): the pass still judges drift and
    performance, and its estimate section says why it has none; the next pass tries again."""
    from driftloop.monitor import check as check_module

    cfg, stores, version = trained
    path = stores.tracking.holdout_path(version)
    assert path is not None
    good = path.read_bytes()
    monkeypatch.setattr(check_module, "_ESTIMATORS", check_module._Memo())  # nothing fitted before the fault
    try:
        path.write_bytes(b"not parquet")
        broken = run_check(stores, cfg, record=False)
    finally:
        path.write_bytes(good)
    assert broken.status == "ok" and broken.drift is not None and broken.performance is not None
    [group] = broken.estimated
    assert group.method is None and group.metrics == {}
    assert (group.note or "").startswith(f"v{version}: model or holdout unreadable:")
    [again] = run_check(stores, cfg, record=False).estimated
    assert again.method == "cbpe"
