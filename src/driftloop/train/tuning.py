"""The Optuna search over model families: seeded TPE, known-good defaults first, median pruning, refit.

Given the same data, seed and trial budget (no seconds budget) the search is deterministic: trials run one
after another (folds inside a trial run in parallel), the sampler is seeded, every estimator is seeded, and
LightGBM runs single-threaded in CV. A seconds budget stops between trials, so it can change how many run.

After the trials, ensemble selection (`train.ensemble`) over the complete trials' out-of-fold predictions
gives one more candidate, a weighted average of the best trials. It replaces the best single model only
when its CV score is better; then each member is refitted on all rows. Forest members share the final
trees in proportion to their weights (at least the search's count each): the blend's tree-sampling
variance is then no larger than that of one forest with `FINAL_TREES` trees, and the refit costs about as
much as one such forest.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.config import EnsembleConfig
from driftloop.metrics import higher_is_better
from driftloop.stores.models import Ensemble, EnsembleMember
from driftloop.train import candidates, ensemble
from driftloop.train.candidates import FAMILY_ORDER, Params, Problem
from driftloop.train.cv import CVResult, cross_validate, make_folds

FORESTS = ("random_forest", "extra_trees")

log = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    number: int
    family: str
    params: Params
    state: str
    """complete, pruned or failed."""
    cv: CVResult | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass
class EnsembleCandidate:
    """The ensemble selection's result: members (trials) with weights summing to 1, its CV on their OOF."""

    members: list[TrialRecord]
    weights: list[float]
    cv: CVResult
    chosen: bool
    """Its CV score beats the best single trial's, so it is the model."""
    trees: dict[int, int] = field(default_factory=dict)
    """Trees each forest member gets at the refit, by trial number."""

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"trial": t.number, "family": t.family, "weight": round(w, 6)}
            | ({"n_estimators": self.trees[t.number]} if t.number in self.trees else {})
            for t, w in zip(self.members, self.weights, strict=True)
        ]


@dataclass
class SearchResult:
    metric: str
    best: TrialRecord
    """The best single trial (by CV)."""
    estimator: Any
    """The chosen model refitted on all training rows: the best trial's, or the ensemble (`Ensemble`)."""
    trials: list[TrialRecord]
    search_seconds: float
    refit_seconds: float
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    final_params: Params = field(default_factory=dict)
    """The refitted model's parameters (forests get more trees than the search used; an ensemble: members)."""
    ensemble: EnsembleCandidate | None = None
    """The ensemble candidate, when one with two or more members was built (chosen or not)."""
    ensemble_checked: bool = False
    """Ensemble selection ran (a search without it, e.g. on Dask, is completed by `with_ensemble`)."""

    @property
    def ensemble_chosen(self) -> bool:
        return self.ensemble is not None and self.ensemble.chosen

    @property
    def family(self) -> str:
        """The chosen model's family: the best trial's, or `ensemble`."""
        return "ensemble" if self.ensemble_chosen else self.best.family

    @property
    def cv(self) -> CVResult:
        """The chosen model's CV result."""
        if self.ensemble is not None and self.ensemble.chosen:
            return self.ensemble.cv
        assert self.best.cv is not None
        return self.best.cv


def resolve_workers(n_jobs: int) -> int:
    return max(1, os.cpu_count() or 1) if n_jobs in (-1, 0) else n_jobs


def leaderboard(
    trials: list[TrialRecord], metric: str, n_folds: int, ensemble: EnsembleCandidate | None = None
) -> list[dict[str, Any]]:
    """Best complete trial per family, and the ensemble candidate, best first (like PyCaret's compare_models)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    rows = []
    if ensemble is not None:
        rows.append(
            {
                "family": "ensemble",
                "trials": len(ensemble.members),
                "pruned": 0,
                "failed": 0,
                f"{metric}_mean": ensemble.cv.mean,
                f"{metric}_std": ensemble.cv.std,
                "fit_seconds": sum(t.cv.fit_seconds for t in ensemble.members if t.cv) / max(1, n_folds),
                "params": {"members": ensemble.describe(), "chosen": ensemble.chosen},
            }
        )
    for family in {t.family for t in trials}:
        mine = [t for t in trials if t.family == family]
        done = [t for t in mine if t.state == "complete" and t.cv is not None]
        row: dict[str, Any] = {
            "family": family,
            "trials": len(mine),
            "pruned": sum(t.state == "pruned" for t in mine),
            "failed": sum(t.state == "failed" for t in mine),
        }
        if done:
            best = max(done, key=lambda t: (sign * t.cv.mean, -t.number))  # type: ignore[union-attr]
            assert best.cv is not None
            row |= {
                "best_trial": best.number,
                f"{metric}_mean": best.cv.mean,
                f"{metric}_std": best.cv.std,
                "fit_seconds": best.cv.fit_seconds / max(1, n_folds),
                "params": best.params,
            }
        rows.append(row)
    key = f"{metric}_mean"
    return sorted(rows, key=lambda r: (key not in r, -sign * r.get(key, 0.0), r["family"]))


def run_search(
    X: np.ndarray,
    y: np.ndarray,
    problem: Problem,
    n_classes: int,
    metric: str,
    *,
    families: list[str],
    n_folds: int,
    trials: int | None,
    seconds: float | None,
    n_jobs: int = -1,
    on_trial: Callable[[TrialRecord], None] | None = None,
    progress: Any = None,
    ensemble_config: EnsembleConfig | None = None,
) -> SearchResult:
    """Search `families` under the budget, then refit the best on all of X. `progress(done, best)` per trial.

    `ensemble_config` (enabled): also select an ensemble of the best trials, and refit it instead of the
    best single trial when its CV score is better; a seconds budget keeps room for its refit.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workers = resolve_workers(n_jobs)
    folds = make_folds(y, problem.task, n_folds, problem.seed)
    ordered = [f for f in FAMILY_ORDER if f in families]
    enqueued = [(f, p) for f in ordered for p in candidates.FAMILIES[f].defaults(problem)[:1]]
    enqueued += [(f, p) for f in ordered for p in candidates.FAMILIES[f].defaults(problem)[1:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=problem.seed, multivariate=True, group=True, n_startup_trials=len(enqueued) + 2
        )
    direction = "maximize" if higher_is_better(metric) else "minimize"
    # A trial is pruned after a batch of folds if its running mean is worse than the median of earlier
    # trials at that step. The defaults are never pruned, so every family gets a full CV on the board.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(enqueued), n_warmup_steps=0)
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    for family, params in enqueued:
        study.enqueue_trial(candidates.prefixed(family, params))
    records: list[TrialRecord] = []
    use_ensemble = ensemble_config is not None and ensemble_config.enabled
    pending: dict[str, EnsembleCandidate | None] = {"ensemble": None}

    def objective(trial: Any) -> float:
        family = trial.suggest_categorical("family", ordered)
        params = candidates.FAMILIES[family].space(trial, problem)
        record = TrialRecord(trial.number, family, params, "running")
        records.append(record)
        started = time.perf_counter()

        def report(step: int, value: float) -> bool:
            if trial.number < len(enqueued):
                return False
            trial.report(value, step)
            return trial.should_prune()

        try:
            cv = cross_validate(family, params, X, y, problem, n_classes, metric, folds, workers, report)
        except Exception as exc:
            record.state, record.message = "failed", f"{type(exc).__name__}: {exc}"
            record.seconds = time.perf_counter() - started
            log.warning("trial %d (%s) failed: %s", trial.number, family, record.message)
            raise
        record.cv, record.seconds = cv, time.perf_counter() - started
        if cv.pruned:
            record.state = "pruned"
            raise optuna.TrialPruned()
        record.state = "complete"
        return cv.mean

    def after_trial(study: Any, _frozen: Any) -> None:
        record = records[-1]
        if on_trial is not None:
            on_trial(record)
        done = [t for t in records if t.state == "complete"]
        if progress is not None:
            progress(len(records), _best(done, metric) if done else None)
        if seconds is None or not done:
            return
        if use_ensemble and record.state == "complete":
            # Cheap (vectorised, milliseconds): the refit the budget must leave room for may be the ensemble's.
            assert ensemble_config is not None
            pending["ensemble"] = select_ensemble(done, y, folds, metric, problem.task, ensemble_config)
        if _would_overrun(records, _best(done, metric), n_folds, started, seconds, pending["ensemble"]):
            study.stop()

    started = time.perf_counter()
    study.optimize(
        objective,
        n_trials=trials,
        timeout=seconds,
        callbacks=[after_trial],
        catch=(Exception,),
    )
    search_seconds = time.perf_counter() - started
    done = [t for t in records if t.state == "complete"]
    if not done:
        failures = "; ".join(f"trial {t.number} ({t.family}): {t.message}" for t in records if t.message)
        raise RuntimeError(f"no candidate model could be trained: {failures or 'no trial finished'}")
    best = _best(done, metric)
    result = SearchResult(
        metric=metric,
        best=best,
        estimator=None,
        trials=records,
        search_seconds=search_seconds,
        refit_seconds=0.0,
    )
    candidate = None
    if use_ensemble:
        assert ensemble_config is not None
        candidate = select_ensemble(done, y, folds, metric, problem.task, ensemble_config)
    return _refit(result, candidate, X, y, problem, n_classes, n_folds, workers, use_ensemble)


def with_ensemble(
    result: SearchResult,
    X: np.ndarray,
    y: np.ndarray,
    problem: Problem,
    n_classes: int,
    *,
    n_folds: int,
    config: EnsembleConfig,
    n_jobs: int = -1,
) -> SearchResult:
    """Ensemble selection after a search that did not run it (e.g. on Dask): the same trials' OOF
    predictions on the same folds; refits the ensemble when it wins, else returns the result as it was."""
    if not config.enabled or result.ensemble_checked:
        return result
    folds = make_folds(y, problem.task, n_folds, problem.seed)
    done = [t for t in result.trials if t.state == "complete" and t.cv is not None and t.cv.oof is not None]
    candidate = select_ensemble(done, y, folds, result.metric, problem.task, config) if done else None
    if candidate is None or not candidate.chosen:
        result.ensemble, result.ensemble_checked = candidate, True
        result.leaderboard = leaderboard(result.trials, result.metric, n_folds, candidate)
        return result
    return _refit(result, candidate, X, y, problem, n_classes, n_folds, resolve_workers(n_jobs), True)


def select_ensemble(
    done: list[TrialRecord],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    metric: str,
    task: str,
    config: EnsembleConfig,
) -> EnsembleCandidate | None:
    """The ensemble of the best complete trials (None when fewer than two distinct members are chosen)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    pool = sorted(
        (t for t in done if t.cv is not None and t.cv.oof is not None),
        key=lambda t: (-sign * t.cv.mean, t.number),  # type: ignore[union-attr]
    )[: config.candidates]
    if len(pool) < 2:
        return None
    chosen = ensemble.select(
        [t.cv.oof for t in pool],  # type: ignore[union-attr,misc]
        y,
        folds,
        metric,
        task,
        rounds=config.rounds,
        max_members=config.max_members,
    )
    if len(chosen.indices) < 2:
        return None
    members = [pool[i] for i in chosen.indices]
    best_cv = pool[0].cv
    assert best_cv is not None
    blend = CVResult(
        list(chosen.fold_scores), None, sum(t.cv.fit_seconds for t in members if t.cv is not None)
    )
    wins = sign * blend.mean > sign * best_cv.mean + ensemble.MIN_GAIN
    candidate = EnsembleCandidate(members, list(chosen.weights), blend, chosen=wins)
    candidate.trees = _member_trees(candidate)
    return candidate


def _member_trees(candidate: EnsembleCandidate) -> dict[int, int]:
    """Forest members share FINAL_TREES in proportion to their weights, at least SEARCH_TREES each."""
    forests = [
        (t, w) for t, w in zip(candidate.members, candidate.weights, strict=True) if t.family in FORESTS
    ]
    share = sum(w for _, w in forests)
    return {
        t.number: max(candidates.SEARCH_TREES, round(candidates.FINAL_TREES * w / share)) for t, w in forests
    }


def _refit(
    result: SearchResult,
    candidate: EnsembleCandidate | None,
    X: np.ndarray,
    y: np.ndarray,
    problem: Problem,
    n_classes: int,
    n_folds: int,
    workers: int,
    checked: bool,
) -> SearchResult:
    """Refit the chosen model on all of X: the ensemble when it won, else the best trial."""
    started = time.perf_counter()
    if candidate is not None and candidate.chosen:
        estimator: Any = _fit_ensemble(candidate, X, y, problem, n_classes, workers)
        final_params: Params = {"members": candidate.describe()}
    else:
        best = result.best
        # LightGBM on small data gains nothing from threads and loses badly on a busy machine (OpenMP
        # spins); one thread also gives the same trees on every machine.
        threads = 1 if best.family == "lightgbm" and len(y) < 50_000 else workers
        family = candidates.FAMILIES[best.family]
        final_params = family.final(best.params)
        estimator = family.build(final_params, problem, threads)
        candidates.fit(best.family, estimator, X, y, problem)
    result.estimator = estimator
    result.final_params = final_params
    result.refit_seconds = time.perf_counter() - started
    result.ensemble, result.ensemble_checked = candidate, checked
    result.leaderboard = leaderboard(result.trials, result.metric, n_folds, candidate)
    return result


def _fit_ensemble(
    candidate: EnsembleCandidate, X: np.ndarray, y: np.ndarray, problem: Problem, n_classes: int, workers: int
) -> Ensemble:
    """Refit every member on all rows (members side by side in threads) in its serving form."""
    from concurrent.futures import ThreadPoolExecutor

    def fit_one(trial: TrialRecord) -> Any:
        family = candidates.FAMILIES[trial.family]
        params = family.final(trial.params)
        if trial.number in candidate.trees:
            params = {**params, "n_estimators": candidate.trees[trial.number]}
        threads = 1 if trial.family == "lightgbm" and len(y) < 50_000 else workers
        estimator = family.build(params, problem, threads)
        return candidates.fit(trial.family, estimator, X, y, problem)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(candidate.members)))) as pool:
        fitted = list(pool.map(fit_one, candidate.members))
    members = []
    for trial, weight, estimator in zip(candidate.members, candidate.weights, fitted, strict=True):
        native, flavor = candidates.for_serving(trial.family, estimator)
        members.append(EnsembleMember(native, flavor, weight, family=trial.family, trial=trial.number))  # type: ignore[arg-type]
    return Ensemble(members, problem.task, n_classes if problem.is_classifier else 0)


def _would_overrun(
    records: list[TrialRecord],
    best: TrialRecord,
    n_folds: int,
    started: float,
    seconds: float,
    candidate: EnsembleCandidate | None = None,
) -> bool:
    """Stop early when another typical trial plus the refit of the chosen model would pass the budget.

    Optuna's own timeout only stops before a trial, so a search could overrun by a whole trial and the
    refit; the budget is meant for the whole search, refit included.
    """
    elapsed = time.perf_counter() - started
    typical = float(np.median([t.seconds for t in records]))
    if candidate is not None and candidate.chosen:
        refit = sum(
            _refit_estimate(t, n_folds, candidate.trees.get(t.number, candidates.FINAL_TREES))
            for t in candidate.members
        )
    else:
        refit = _refit_estimate(best, n_folds, candidates.FINAL_TREES)
    return elapsed + typical + refit > seconds


def _refit_estimate(trial: TrialRecord, n_folds: int, trees: int) -> float:
    """A refit fits on all rows once: about one fold's fit, scaled up for more rows (and trees)."""
    scale = trees / candidates.SEARCH_TREES if trial.family in FORESTS else 1.0
    return trial.seconds / max(1, n_folds) * 1.5 * scale


def _best(done: list[TrialRecord], metric: str) -> TrialRecord:
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(done, key=lambda t: (sign * t.cv.mean, -t.number))  # type: ignore[union-attr]
