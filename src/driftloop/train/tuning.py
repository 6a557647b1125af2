"""The Optuna search over model families: seeded TPE, known-good defaults first, median pruning, refit.

Given the same data, seed and trial budget (no seconds budget) the search is deterministic: trials run one
after another (folds inside a trial run in parallel), the sampler is seeded, every estimator is seeded, and
LightGBM runs single-threaded in CV. A seconds budget stops between trials, so it can change how many run.
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

from driftloop.metrics import higher_is_better
from driftloop.train import candidates
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
class SearchResult:
    metric: str
    best: TrialRecord
    estimator: Any
    """The best candidate refitted on all training rows."""
    trials: list[TrialRecord]
    search_seconds: float
    refit_seconds: float
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    final_params: Params = field(default_factory=dict)
    """The refitted model's parameters (forests get more trees than the search used)."""


def resolve_workers(n_jobs: int) -> int:
    return max(1, os.cpu_count() or 1) if n_jobs in (-1, 0) else n_jobs


def leaderboard(trials: list[TrialRecord], metric: str, n_folds: int) -> list[dict[str, Any]]:
    """Best complete trial per family, best first (like PyCaret's compare_models)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    rows = []
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
) -> SearchResult:
    """Search `families` under the budget, then refit the best on all of X. `progress(done, best)` per trial."""
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
        if (
            seconds is not None
            and done
            and _would_overrun(records, _best(done, metric), n_folds, started, seconds)
        ):
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
    started = time.perf_counter()
    # LightGBM on small data gains nothing from threads and loses badly on a busy machine (OpenMP spins);
    # one thread also gives the same trees on every machine.
    threads = 1 if best.family == "lightgbm" and len(y) < 50_000 else workers
    family = candidates.FAMILIES[best.family]
    final_params = family.final(best.params)
    estimator = family.build(final_params, problem, threads)
    candidates.fit(best.family, estimator, X, y, problem)
    refit_seconds = time.perf_counter() - started
    return SearchResult(
        metric=metric,
        best=best,
        estimator=estimator,
        trials=records,
        search_seconds=search_seconds,
        refit_seconds=refit_seconds,
        leaderboard=leaderboard(records, metric, n_folds),
        final_params=final_params,
    )


def _would_overrun(
    records: list[TrialRecord], best: TrialRecord, n_folds: int, started: float, seconds: float
) -> bool:
    """Stop early when another typical trial plus the refit of the best would pass the seconds budget.

    Optuna's own timeout only stops before a trial, so a search could overrun by a whole trial and the
    refit; the budget is meant for the whole search, refit included.
    """
    elapsed = time.perf_counter() - started
    typical = float(np.median([t.seconds for t in records]))
    # The refit fits on all rows once: about one fold's fit, scaled up for more rows (and trees).
    trees = candidates.FINAL_TREES / candidates.SEARCH_TREES if best.family in FORESTS else 1.0
    refit = best.seconds / max(1, n_folds) * 1.5 * trees
    return elapsed + typical + refit > seconds


def _best(done: list[TrialRecord], metric: str) -> TrialRecord:
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(done, key=lambda t: (sign * t.cv.mean, -t.number))  # type: ignore[union-attr]
