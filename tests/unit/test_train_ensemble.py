"""Ensemble selection over out-of-fold predictions, the search's ensemble candidate, and the ensemble format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.config import EnsembleConfig, load_config
from driftloop.metrics import score
from driftloop.stores.models import (
    Ensemble,
    EnsembleMember,
    ModelBundle,
    ModelSpec,
    load_ensemble,
    save_ensemble,
)
from driftloop.train import candidates, ensemble
from driftloop.train.candidates import Problem, predict_scores
from driftloop.train.cv import make_folds
from driftloop.train.tuning import run_search


def _random_proba(rng: np.random.Generator, c: int, n: int, k: int) -> np.ndarray:
    raw = rng.gamma(1.0, size=(c, n, k))
    return raw / raw.sum(axis=2, keepdims=True)


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("multiclass", "accuracy"),
        ("multiclass", "f1_macro"),
        ("multiclass", "log_loss"),
        ("multiclass", "roc_auc"),
        ("binary", "roc_auc"),
        ("binary", "accuracy"),
        ("regression", "rmse"),
        ("regression", "mae"),
        ("regression", "r2"),
    ],
)
def test_the_vectorised_fold_scores_equal_the_metric_definition(task: str, metric: str) -> None:
    rng = np.random.default_rng(3)
    n, k, c = 150, (2 if task == "binary" else 5), 4
    if task == "regression":
        y = rng.normal(size=n)
        P = y + rng.normal(scale=0.5, size=(c, n))
    else:
        y = rng.integers(0, k, size=n)
        y[:k] = np.arange(k)
        P = _random_proba(rng, c, n, k)
        P[0, :, 0] = P[0, :, 1]  # ties in the scores
    folds = make_folds(y if task != "regression" else np.zeros(n), task, 3, 0)
    got = ensemble.fold_scorer(metric, task, y, folds)(P)
    want = [np.mean([score(metric, y[v], P[i][v], task) for _, v in folds]) for i in range(c)]
    assert np.allclose(got, want, rtol=0, atol=1e-12)


def _candidates(seed: int) -> tuple[list[np.ndarray], np.ndarray, list]:
    """Noisy, partly independent probability forecasts of the same labels, best first by CV accuracy."""
    rng = np.random.default_rng(seed)
    n, k = 300, 4
    y = rng.integers(0, k, size=n)
    truth = np.eye(k)[y]
    oofs = [0.35 * truth + _random_proba(rng, 1, n, k)[0] for _ in range(8)]
    oofs = [o / o.sum(axis=1, keepdims=True) for o in oofs]
    folds = make_folds(y, "multiclass", 5, seed)
    means = [np.mean([score("accuracy", y[v], o[v], "multiclass") for _, v in folds]) for o in oofs]
    order = sorted(range(len(oofs)), key=lambda i: (-means[i], i))
    return [oofs[i] for i in order], y, folds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_is_deterministic_weights_sum_to_one_and_it_never_loses_to_the_best_single(
    seed: int,
) -> None:
    oofs, y, folds = _candidates(seed)
    a = ensemble.select(oofs, y, folds, "accuracy", "multiclass", rounds=20, max_members=3)
    b = ensemble.select(oofs, y, folds, "accuracy", "multiclass", rounds=20, max_members=3)
    assert a == b
    assert sum(a.weights) == pytest.approx(1.0) and all(w > 0 for w in a.weights)
    assert 1 <= len(a.indices) <= 3 and a.rounds <= 20
    best_single = np.mean([score("accuracy", y[v], oofs[0][v], "multiclass") for _, v in folds])
    assert a.mean >= best_single
    # The reported fold scores are those of the weighted blend.
    blend = sum(w * oofs[i] for i, w in zip(a.indices, a.weights, strict=True))
    assert list(a.fold_scores) == pytest.approx(
        [score("accuracy", y[v], blend[v], "multiclass") for _, v in folds]
    )


def test_independent_forecasts_blend_better_than_any_alone_and_lower_is_better_metrics_work() -> None:
    oofs, y, folds = _candidates(0)
    chosen = ensemble.select(oofs, y, folds, "log_loss", "multiclass", rounds=30, max_members=8)
    singles = [np.mean([score("log_loss", y[v], o[v], "multiclass") for _, v in folds]) for o in oofs]
    assert len(chosen.indices) > 1 and chosen.mean < min(singles)


def test_one_candidate_is_its_own_ensemble() -> None:
    oofs, y, folds = _candidates(1)
    chosen = ensemble.select(oofs[:1], y, folds, "accuracy", "multiclass", rounds=5)
    assert chosen.indices == (0,) and chosen.weights == (1.0,)


def _wine(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    X = frame.drop(columns="quality").to_numpy(float)
    classes = np.unique(frame["quality"])
    return X, np.searchsorted(classes, frame["quality"].to_numpy()), len(classes)


def test_the_search_offers_an_ensemble_deterministically_and_refits_it(red: pd.DataFrame) -> None:
    X, y, k = _wine(red.sample(500, random_state=2))
    y, k = (y >= 3).astype(int), 2
    p = Problem("binary", X.shape[1], (), seed=5)
    config = EnsembleConfig(max_members=3)
    runs = [
        run_search(
            X,
            y,
            p,
            k,
            "log_loss",
            families=["lightgbm", "linear", "extra_trees"],
            n_folds=3,
            trials=5,
            seconds=None,
            ensemble_config=config,
        )  # fmt: skip
        for _ in range(2)
    ]
    a, b = runs
    assert a.ensemble is not None and a.ensemble_checked
    assert (
        a.ensemble.describe() == b.ensemble.describe()
        and a.ensemble.cv.fold_scores == b.ensemble.cv.fold_scores
    )
    assert sum(a.ensemble.weights) == pytest.approx(1.0) and 2 <= len(a.ensemble.members) <= 3
    assert a.ensemble.chosen == (a.ensemble.cv.mean < a.best.cv.mean)  # log loss: lower is better
    row = next(r for r in a.leaderboard if r["family"] == "ensemble")
    assert row["log_loss_mean"] == a.ensemble.cv.mean
    assert [m["trial"] for m in row["params"]["members"]] == [t.number for t in a.ensemble.members]
    if a.ensemble.chosen:
        assert a.family == "ensemble" and isinstance(a.estimator, Ensemble) and a.cv is a.ensemble.cv
    assert np.array_equal(
        predict_scores(a.estimator, X[:20], p, k), predict_scores(b.estimator, X[:20], p, k)
    )
    # Switched off: no candidate, the best single trial as before.
    off = run_search(
        X, y, p, k, "log_loss", families=["lightgbm", "linear", "extra_trees"], n_folds=3, trials=5,
        seconds=None, ensemble_config=EnsembleConfig(enabled=False),
    )  # fmt: skip
    assert off.ensemble is None and off.family == a.best.family
    assert all(r["family"] != "ensemble" for r in off.leaderboard)


def test_forest_members_share_the_final_trees_by_weight() -> None:
    from driftloop.train.cv import CVResult
    from driftloop.train.tuning import EnsembleCandidate, TrialRecord, _member_trees

    def trial(number: int, family: str) -> TrialRecord:
        return TrialRecord(number, family, {}, "complete", CVResult([0.5], None, 1.0))

    cand = EnsembleCandidate(
        [trial(0, "extra_trees"), trial(1, "random_forest"), trial(2, "lightgbm")],
        [0.6, 0.2, 0.2],
        CVResult([0.6], None, 1.0),
        chosen=True,
    )
    trees = _member_trees(cand)
    assert trees == {0: 375, 1: candidates.SEARCH_TREES}


def test_the_ensemble_format_is_native_files_and_json_and_loads_back_identically(
    tmp_path: Path, red: pd.DataFrame
) -> None:
    X, y, k = _wine(red.sample(400, random_state=4))
    p = Problem("multiclass", X.shape[1], (), seed=0)
    members = []
    for family, weight in (("lightgbm", 0.5), ("extra_trees", 0.3), ("linear", 0.2)):
        spec = candidates.FAMILIES[family]
        est = candidates.fit(family, spec.build(spec.defaults(p)[0], p, 1), X, y, p)
        native, flavor = candidates.for_serving(family, est)
        members.append(EnsembleMember(native, flavor, weight, family=family, trial=len(members)))  # type: ignore[arg-type]
    model = Ensemble(members, "multiclass", k)
    save_ensemble(model, tmp_path / "ens")
    files = sorted(f.name for f in (tmp_path / "ens").iterdir())
    assert files == ["ensemble.json", "member-0.lgb", "member-1.skops", "member-2.skops"]
    loaded = load_ensemble(tmp_path / "ens")
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.describe() == model.describe()
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), k) and np.allclose(proba.sum(axis=1), 1.0)
    classes = tuple(int(c) for c in np.unique(red["quality"]))
    spec = ModelSpec(task="multiclass", target="quality", features=(), classes=classes, family="ensemble")
    out = ModelBundle(spec=spec, estimator=loaded, flavor="ensemble").predict_matrix(X[:5])
    assert out.proba is not None and list(out.labels) == [classes[i] for i in proba[:5].argmax(axis=1)]


def test_the_ensemble_switch_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text("data: {target: quality}\ntraining: {ensemble: false}\n")
    assert load_config(path).training.ensemble.enabled is False
    path.write_text("data: {target: quality}\ntraining: {ensemble: {max_members: 3}}\n")
    cfg = load_config(path).training.ensemble
    assert cfg.enabled and cfg.max_members == 3
    path.write_text("data: {target: quality}\n")
    assert load_config(path).training.ensemble.enabled
