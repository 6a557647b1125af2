"""Model search with its trials spread over a Dask cluster's workers, sharing one Optuna study.

    result = distributed_search(client, X, y, problem, n_classes, metric, families=..., n_folds=5,
                                trials=40, seconds=None)          # same signature as train.tuning.run_search

The trainer's search, distributed: the same families, search spaces, defaults enqueued first, folds,
median pruning and refit (`train.candidates`, `train.cv`), with the study in a storage every worker
reaches (an Optuna journal file for a local cluster, or the metadata database's PostgreSQL for a real
one). Each worker runs its share of the trial budget (so the total is exactly `trials`) with a TPE sampler
seeded `seed + worker index`, so runs are repeatable for a fixed cluster size; trials then run in parallel,
which changes which points TPE proposes, not the budget or the defaults every family starts from.

When an MLflow run is active on the client, each trial is logged by the worker that ran it, as a nested
run of that run (`train.record.log_trial`), and `on_trial` is not called; otherwise `on_trial` receives
every trial on the client at the end. The best trial is refitted on the client.
"""

from __future__ import annotations

import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from driftloop.metrics import higher_is_better
from driftloop.train import candidates, cost
from driftloop.train.candidates import FAMILY_ORDER, Problem
from driftloop.train.cv import Folds, cross_validate, make_folds
from driftloop.train.tuning import SearchResult, TrialRecord, default_order, leaderboard, resolve_workers

if TYPE_CHECKING:
    from distributed import Client


@dataclass(frozen=True)
class TrialLog:
    """Where workers log trials: the client's tracking URI, experiment and parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


@dataclass(frozen=True)
class StudyPlan:
    storage: str
    """`journal:<path>` or an SQLAlchemy URL (PostgreSQL) for Optuna's RDB storage."""
    study_name: str
    direction: Literal["minimize", "maximize"]
    families: tuple[str, ...]
    n_enqueued: int
    problem: Problem
    n_classes: int
    metric: str
    n_folds: int
    seed: int
    folds: Folds | None = None
    """The training run's CV folds (grouped or time-ordered); None: `make_folds` on the workers."""
    max_predict_ms: float | None = None


def open_storage(storage: str) -> Any:
    import optuna

    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(storage[len("journal:") :]))
    return optuna.storages.RDBStorage(storage)


def distributed_search(
    client: Client,
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
    storage: str | None = None,
    trial_log: TrialLog | None = None,
    folds: Folds | None = None,
    max_predict_ms: float | None = None,
) -> SearchResult:
    """Run the search on the cluster's workers, then refit the best on the client. See the module docstring."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if not workers:
        raise RuntimeError("the Dask cluster has no workers")
    ordered = tuple(f for f in FAMILY_ORDER if f in families)
    enqueued = default_order(ordered, problem)
    tmp = None
    if storage is None:  # a local cluster: a journal file in this machine's temp folder
        tmp = tempfile.TemporaryDirectory(prefix="driftloop-study-")
        storage = f"journal:{Path(tmp.name) / 'study.log'}"
    plan = StudyPlan(
        storage=storage,
        study_name=f"driftloop-{uuid.uuid4().hex[:12]}",
        direction="maximize" if higher_is_better(metric) else "minimize",
        families=ordered,
        n_enqueued=len(enqueued),
        problem=problem,
        n_classes=n_classes,
        metric=metric,
        n_folds=n_folds,
        seed=problem.seed,
        folds=folds,
        max_predict_ms=max_predict_ms,
    )
    study = optuna.create_study(
        storage=open_storage(storage), study_name=plan.study_name, direction=plan.direction
    )
    for family, params in enqueued:
        study.enqueue_trial(candidates.prefixed(family, params))
    if trial_log is None:
        trial_log = _active_run()
    data = client.scatter([X, y], broadcast=True)
    shares = _shares(trials, len(workers))
    started = time.perf_counter()
    futures = [
        client.submit(
            run_worker_trials,
            plan,
            data[0],
            data[1],
            shares[i],
            seconds,
            i,
            trial_log,
            workers=[address],
            allow_other_workers=False,
            pure=False,
            key=f"search-{plan.study_name}-{i}",
        )  # fmt: skip
        for i, address in enumerate(workers)
        if shares[i] != 0
    ]
    try:
        records = sorted((r for part in client.gather(futures) for r in part), key=lambda r: r.number)
    finally:
        if tmp is not None:
            tmp.cleanup()
    search_seconds = time.perf_counter() - started
    if trial_log is None and on_trial is not None:
        for record in records:
            on_trial(record)
    done = [t for t in records if t.state == "complete"]
    slow = [(t.family, t.number, t.cost) for t in records if t.state == cost.TOO_SLOW and t.cost]
    if not done and slow:
        raise cost.no_candidate_fits(slow, max_predict_ms or 0.0)
    if not done:
        failures = "; ".join(f"trial {t.number} ({t.family}): {t.message}" for t in records if t.message)
        raise RuntimeError(f"no candidate model could be trained: {failures or 'no trial finished'}")
    sign = 1.0 if higher_is_better(metric) else -1.0
    best = max(done, key=lambda t: (sign * t.cv.mean, -t.number))  # type: ignore[union-attr]
    if progress is not None:
        progress(len(records), best)
    refit_started = time.perf_counter()
    estimator = candidates.FAMILIES[best.family].build(best.params, problem, resolve_workers(n_jobs))
    candidates.fit(best.family, estimator, X, y, problem)
    return SearchResult(
        metric=metric,
        best=best,
        estimator=estimator,
        trials=records,
        search_seconds=search_seconds,
        refit_seconds=time.perf_counter() - refit_started,
        leaderboard=leaderboard(records, metric, n_folds),
    )


def _shares(trials: int | None, n_workers: int) -> list[int | None]:
    if trials is None:  # a seconds budget only: every worker runs until it is spent
        return [None] * n_workers
    return [trials // n_workers + (1 if i < trials % n_workers else 0) for i in range(n_workers)]


def _active_run() -> TrialLog | None:
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    return TrialLog(mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id)


def run_worker_trials(
    plan: StudyPlan,
    X: np.ndarray,
    y: np.ndarray,
    n_trials: int | None,
    seconds: float | None,
    index: int,
    trial_log: TrialLog | None,
) -> list[TrialRecord]:
    """One worker's share of the study: the trainer's objective, trial by trial, logged from here."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=plan.seed + index, multivariate=True, group=True, n_startup_trials=plan.n_enqueued + 2
        )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=plan.n_enqueued, n_warmup_steps=0)
    study = optuna.load_study(
        study_name=plan.study_name, storage=open_storage(plan.storage), sampler=sampler, pruner=pruner
    )
    folds = (
        plan.folds if plan.folds is not None else make_folds(y, plan.problem.task, plan.n_folds, plan.seed)
    )
    records: list[TrialRecord] = []
    log_client = None
    if trial_log is not None:
        from mlflow import MlflowClient

        log_client = MlflowClient(tracking_uri=trial_log.tracking_uri)

    def objective(trial: Any) -> float:
        family = trial.suggest_categorical("family", list(plan.families))
        params = candidates.FAMILIES[family].space(trial, plan.problem)
        record = TrialRecord(trial.number, family, params, "running")
        records.append(record)
        started = time.perf_counter()

        def report(step: int, value: float) -> bool:
            if trial.number < plan.n_enqueued:  # the defaults are never pruned, as in the local search
                return False
            trial.report(value, step)
            return trial.should_prune()

        try:
            cv = cross_validate(
                family, params, X, y, plan.problem, plan.n_classes, plan.metric, folds, 1, report
            )
        except Exception as exc:
            record.state, record.message = "failed", f"{type(exc).__name__}: {exc}"
            record.seconds = time.perf_counter() - started
            raise
        record.cv, record.seconds = cv, time.perf_counter() - started
        if cv.pruned:
            record.state = "pruned"
            raise optuna.TrialPruned()
        # Timed here, on the worker, as in the local search; the model does not travel back to the client.
        record.cost = cost.trial_cost(family, params, cv.model, plan.problem, plan.n_classes, X)
        cv.model = None
        record.seconds = time.perf_counter() - started  # the timing is part of the trial's cost
        cost.tell_constraint(trial, record.cost, plan.max_predict_ms)
        record.state = cost.TOO_SLOW if cost.over_limit(record.cost, plan.max_predict_ms) else "complete"
        return cv.mean

    def after_trial(_study: Any, _frozen: Any) -> None:
        if log_client is not None and trial_log is not None and records:
            from driftloop.train.record import log_trial

            log_trial(log_client, trial_log.experiment_id, trial_log.parent_run_id, records[-1], plan.metric)

    study.optimize(objective, n_trials=n_trials, timeout=seconds, callbacks=[after_trial], catch=(Exception,))
    return records
