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

With a seconds budget, a table larger than `budget.MIN_SEARCH_ROWS` rows is searched on a stratified
sample sized from the budget and the first family's measured cost (`budget.plan_rows`), and the chosen model
is refitted on all rows, whose predicted time is reserved from the start. A trial still running when the
budget (less the refit's reserve) runs out is stopped after its current batch of folds.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from driftloop.config import EnsembleConfig
from driftloop.metrics import higher_is_better
from driftloop.stores.models import Ensemble, EnsembleMember
from driftloop.train import budget, candidates, cost, ensemble
from driftloop.train.budget import RowCost, RowPlan
from driftloop.train.candidates import FAMILY_ORDER, Params, Problem
from driftloop.train.cost import PredictCost
from driftloop.train.cv import CVResult, Folds, cross_validate, make_folds
from driftloop.train.sampling import restrict_folds, stratified_sample

FORESTS = ("random_forest", "extra_trees")
#: Trials skipped for want of budget after which the search stops (TPE may keep proposing a costly family).
MAX_SKIPPED = 5

log = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    number: int
    family: str
    params: Params
    state: str
    """complete, pruned, failed, or too_slow (complete, but over `training.max_predict_ms`)."""
    cv: CVResult | None = None
    message: str = ""
    seconds: float = 0.0
    cost: PredictCost | None = None
    """Predict time of the model it would be refitted to, on the serving path (`train.cost`)."""


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
    cost: PredictCost | None = None
    """The sum of its members' predict times (None when a member's is unknown)."""
    too_slow: bool = False
    """Its CV score won, but its predict time is over `training.max_predict_ms`."""
    over_budget: bool = False
    """Its CV score won, but its refit would not end within the seconds budget (the best single trial's does)."""

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
    rows: RowPlan | None = None
    """Rows searched and refitted on, when the budget was planned by rows (a large table)."""

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
    trials: list[TrialRecord],
    metric: str,
    n_folds: int,
    ensemble: EnsembleCandidate | None = None,
    rows: RowPlan | None = None,
) -> list[dict[str, Any]]:
    """Best complete trial per family, the ensemble candidate, and the baseline (trial 0: the first
    family's defaults), best first (like PyCaret's compare_models). With `rows`, every row also says how
    many rows CV ran on (`cv_rows`) out of how many the model is refitted on and the table has."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    board: list[dict[str, Any]] = []
    first = next((t for t in trials if t.number == 0 and t.state == "complete" and t.cv is not None), None)
    if first is not None and first.cv is not None:
        # The first family's default parameters, always tried first: a floor the chosen model never falls
        # below in CV, whatever the budget allowed after it.
        board.append(
            {
                "family": "baseline",
                "trials": 1,
                "pruned": 0,
                "failed": 0,
                "best_trial": 0,
                f"{metric}_mean": first.cv.mean,
                f"{metric}_std": first.cv.std,
                "fit_seconds": first.cv.fit_seconds / max(1, n_folds),
                "params": {"family": first.family, **first.params},
                **(first.cost.to_dict() if first.cost else {}),
                **({"over_limit": True} if first.state == cost.TOO_SLOW else {}),
            }
        )
    if ensemble is not None:
        board.append(
            {
                "family": "ensemble",
                "trials": len(ensemble.members),
                "pruned": 0,
                "failed": 0,
                f"{metric}_mean": ensemble.cv.mean,
                f"{metric}_std": ensemble.cv.std,
                "fit_seconds": sum(t.cv.fit_seconds for t in ensemble.members if t.cv) / max(1, n_folds),
                "params": {"members": ensemble.describe(), "chosen": ensemble.chosen}
                | ({"over_budget": True} if ensemble.over_budget else {}),
                **(ensemble.cost.to_dict() if ensemble.cost else {}),
                **({"over_limit": True} if ensemble.too_slow else {}),
            }
        )
    for family in {t.family for t in trials}:
        mine = [t for t in trials if t.family == family]
        done = [t for t in mine if t.state == "complete" and t.cv is not None]
        slow = [t for t in mine if t.state == cost.TOO_SLOW and t.cv is not None]
        row: dict[str, Any] = {
            "family": family,
            "trials": len(mine),
            "pruned": sum(t.state == "pruned" for t in mine),
            "failed": sum(t.state == "failed" for t in mine),
            cost.TOO_SLOW: len(slow),
        }
        # A family with no trial fast enough still shows its best, marked too slow, below those that fit.
        done = done or slow
        if done:
            best = max(done, key=lambda t: (sign * t.cv.mean, -t.number))  # type: ignore[union-attr]
            assert best.cv is not None
            row |= {
                "best_trial": best.number,
                f"{metric}_mean": best.cv.mean,
                f"{metric}_std": best.cv.std,
                "fit_seconds": best.cv.fit_seconds / max(1, n_folds),
                "params": best.params,
                **(best.cost.to_dict() if best.cost else {}),
            }
            if best.state == cost.TOO_SLOW:
                row["over_limit"] = True
        board.append(row)
    if rows is not None:
        for row in board:
            row |= {"cv_rows": rows.search_rows, "refit_rows": rows.refit_rows, "rows": rows.total_rows}
    key = f"{metric}_mean"
    return sorted(
        board,
        key=lambda r: (
            key not in r,
            bool(r.get("over_limit")),
            -sign * r.get(key, 0.0),
            r["family"] == "baseline",
            r["family"],
        ),
    )


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
    folds: Folds | None = None,
    max_predict_ms: float | None = None,
) -> SearchResult:
    """Search `families` under the budget, then refit the best on all of X. `progress(done, best)` per trial.

    `folds`: the CV folds (default: shuffled, stratified, one row per group).

    Every complete trial's predict time is measured (`train.cost`); one over `max_predict_ms` is kept as
    `too_slow`, never chosen, and TPE is told it broke a constraint.

    `ensemble_config` (enabled): also select an ensemble of the best trials, and refit it instead of the
    best single trial when its CV score is better; a seconds budget keeps room for its refit.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_started = time.perf_counter()  # the probe below counts in the budget
    workers = resolve_workers(n_jobs)
    folds = folds if folds is not None else make_folds(y, problem.task, n_folds, problem.seed)
    ordered = [f for f in FAMILY_ORDER if f in families]
    X_all, y_all, plan = X, y, None
    if seconds is not None and len(y) > budget.MIN_SEARCH_ROWS:
        plan = plan_rows(ordered[0], X, y, problem, n_folds, seconds)
        if plan.sampled:
            picked = stratified_sample(y, problem.task, plan.search_rows, problem.seed)
            X, y, folds = X[picked], y[picked], restrict_folds(folds, picked)
            log.info("searching on %s", plan.describe())
    enqueued = default_order(ordered, problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=problem.seed, multivariate=True, group=True, n_startup_trials=len(enqueued) + 2
        )
    direction: Literal["minimize", "maximize"] = "maximize" if higher_is_better(metric) else "minimize"
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
        done = [t for t in records if t.state == "complete"]
        if seconds is not None and done:
            # Stop before a trial that, with the refit after it, would end past the budget (the first
            # trial always runs: the baseline every later model must beat).
            best = _best(done, metric)
            if _would_overrun(
                records, best, n_folds, search_started, seconds, pending["ensemble"], family, plan, workers
            ):
                # Skip it; stop only when no family's trial fits any more (a forest's may not, while a
                # cheaper LightGBM or linear trial still does), or TPE keeps proposing what does not fit.
                skipped.add(trial.number)
                if len(skipped) >= MAX_SKIPPED or all(
                    _would_overrun(
                        records, best, n_folds, search_started, seconds, pending["ensemble"], f, plan, workers
                    )
                    for f in ordered
                ):
                    study.stop()
                raise optuna.TrialPruned("the budget has no room for this trial")
        # Past this moment the refit of the best so far would end after the budget: stop the trial then.
        deadline = None
        if seconds is not None and done:
            left = seconds - (time.perf_counter() - search_started)
            deadline = (
                search_started
                + seconds
                - _planned_reserve(records, best, n_folds, pending["ensemble"], plan, left, workers)
            )
        record = TrialRecord(trial.number, family, params, "running")
        records.append(record)
        started = time.perf_counter()

        def report(step: int, value: float) -> bool:
            if deadline is not None and time.perf_counter() > deadline:
                record.message = "stopped: the budget ran out during this trial"
                study.stop()
                return True
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
        record.cost = cost.trial_cost(family, params, cv.model, problem, n_classes, X)
        cv.model = None  # timed; forty trials' forests would otherwise stay in memory
        record.seconds = time.perf_counter() - started  # the timing is part of the trial's cost
        cost.tell_constraint(trial, record.cost, max_predict_ms)  # TPE then proposes fewer slow models
        record.state = cost.TOO_SLOW if cost.over_limit(record.cost, max_predict_ms) else "complete"
        return cv.mean

    skipped: set[int] = set()

    def after_trial(study: Any, frozen: Any) -> None:
        if seconds is not None and time.perf_counter() - search_started >= seconds:
            study.stop()  # Optuna's own timeout would also skip the first trial once the probe used the time
        if frozen.number in skipped:
            return
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
            pending["ensemble"] = select_ensemble(
                done, y, folds, metric, problem.task, ensemble_config, max_predict_ms=max_predict_ms
            )

    study.optimize(
        objective,
        n_trials=trials,
        callbacks=[after_trial],
        catch=(Exception,),
    )
    search_seconds = time.perf_counter() - search_started
    done = [t for t in records if t.state == "complete"]
    slow = [(t.family, t.number, t.cost) for t in records if t.state == cost.TOO_SLOW and t.cost]
    if not done and slow:
        assert max_predict_ms is not None
        raise cost.no_candidate_fits(slow, max_predict_ms)
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
        rows=plan,
    )
    candidate = None
    if use_ensemble:
        assert ensemble_config is not None
        candidate = select_ensemble(
            done, y, folds, metric, problem.task, ensemble_config, max_predict_ms=max_predict_ms
        )
        if candidate is not None and candidate.chosen and seconds is not None:
            # Selected after the search, the ensemble may hold a member whose refit the budget has no room
            # for (500 extra trees on 50,000 rows took 12 s of a 12 s budget). Then the best single trial
            # is refitted instead: it fits, or at least overruns by less.
            left = seconds - (time.perf_counter() - search_started)
            whole = _refit_reserve(records, best, n_folds, candidate, plan, workers)
            if whole > left and _refit_reserve(records, best, n_folds, None, plan) < whole:
                candidate.chosen, candidate.over_budget = False, True
    if plan is not None and plan.refit_rows < plan.total_rows:
        # The budget cannot afford a refit on every row (see `budget.plan_rows`): the largest sample it can.
        picked = stratified_sample(y_all, problem.task, plan.refit_rows, problem.seed + 1)
        X_all, y_all = X_all[picked], y_all[picked]
    return _refit(result, candidate, X_all, y_all, problem, n_classes, n_folds, workers, use_ensemble)


def plan_rows(
    family: str,
    X: np.ndarray,
    y: np.ndarray,
    problem: Problem,
    n_folds: int,
    seconds: float,
) -> RowPlan:
    """Measure `family`'s default on two stratified row counts (`budget.PROBE_ROWS`, one thread as in
    CV, a tenth of its trees, scaled up) and plan the rows to search and refit on within `seconds`
    (`budget.plan_rows`); `seconds` counts from before the probe."""
    spec = candidates.FAMILIES[family]
    params = spec.defaults(problem)[0]
    started = time.perf_counter()
    scale = 1.0
    if "n_estimators" in params or spec.final(params).get("n_estimators"):
        trees = int(params.get("n_estimators", candidates.SEARCH_TREES))
        probe_trees = max(5, round(trees * budget.PROBE_TREE_SHARE))
        params, scale = {**params, "n_estimators": probe_trees}, trees / probe_trees
    points = []
    for rows in budget.PROBE_ROWS:
        picked = stratified_sample(y, problem.task, rows, problem.seed)
        t0 = time.perf_counter()
        candidates.fit(family, spec.build(params, problem, 1), X[picked], y[picked], problem)
        points.append((len(picked), (time.perf_counter() - t0) * scale))
    row_cost = RowCost.through(points[0], points[-1])
    left = seconds - (time.perf_counter() - started)
    plan = budget.plan_rows(len(y), left, row_cost, n_folds)
    return RowPlan(plan.search_rows, plan.refit_rows, plan.total_rows, plan.refit_seconds, row_cost, family)


def default_order(families: Sequence[str], problem: Problem) -> list[tuple[str, Params]]:
    """The enqueued defaults: each cheap family's first (LightGBM, linear), their other defaults, then
    the forests' first defaults and their others. Forests cost several LightGBM trials on a mid-size table
    and rarely serve within `training.max_predict_ms`, so a tight budget spends its time on the others."""
    cheap = [f for f in families if f not in FORESTS]
    forests = [f for f in families if f in FORESTS]
    out = []
    for group in (cheap, forests):
        out += [(f, p) for f in group for p in candidates.FAMILIES[f].defaults(problem)[:1]]
        out += [(f, p) for f in group for p in candidates.FAMILIES[f].defaults(problem)[1:]]
    return out


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
    folds: Folds | None = None,
    max_predict_ms: float | None = None,
) -> SearchResult:
    """Ensemble selection after a search that did not run it (e.g. on Dask): the same trials' OOF
    predictions on the same folds; refits the ensemble when it wins, else returns the result as it was."""
    if not config.enabled or result.ensemble_checked:
        return result
    folds = folds if folds is not None else make_folds(y, problem.task, n_folds, problem.seed)
    done = [t for t in result.trials if t.state == "complete" and t.cv is not None and t.cv.oof is not None]
    candidate = (
        select_ensemble(done, y, folds, result.metric, problem.task, config, max_predict_ms=max_predict_ms)
        if done
        else None
    )
    if candidate is None or not candidate.chosen:
        result.ensemble, result.ensemble_checked = candidate, True
        result.leaderboard = leaderboard(result.trials, result.metric, n_folds, candidate, result.rows)
        return result
    return _refit(result, candidate, X, y, problem, n_classes, n_folds, resolve_workers(n_jobs), True)


def select_ensemble(
    done: list[TrialRecord],
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    metric: str,
    task: str,
    config: EnsembleConfig,
    *,
    max_predict_ms: float | None = None,
) -> EnsembleCandidate | None:
    """The ensemble of the best complete trials (None when fewer than two distinct members are chosen).

    It is not chosen when its predict time, the sum of its members', is over `max_predict_ms`.
    """
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
    if all(t.cost is not None for t in members):
        candidate.cost = cost.ensemble_cost(
            (
                t.cost,
                candidate.trees[t.number] / candidates.FINAL_TREES if t.number in candidate.trees else 1.0,
            )  # type: ignore[misc]
            for t in members
        )
        candidate.too_slow = cost.over_limit(candidate.cost, max_predict_ms)
        candidate.chosen = wins and not candidate.too_slow
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
        estimator: Any = _fit_ensemble(candidate, X, y, problem, n_classes, workers, result.rows is not None)
        final_params: Params = {"members": candidate.describe()}
    else:
        best = result.best
        threads = _refit_threads(best.family, len(y), workers, result.rows is not None)
        family = candidates.FAMILIES[best.family]
        final_params = family.final(best.params)
        estimator = family.build(final_params, problem, threads)
        candidates.fit(best.family, estimator, X, y, problem)
    result.estimator = estimator
    result.final_params = final_params
    result.refit_seconds = time.perf_counter() - started
    result.ensemble, result.ensemble_checked = candidate, checked
    result.leaderboard = leaderboard(result.trials, result.metric, n_folds, candidate, result.rows)
    return result


def _refit_threads(family: str, rows: int, workers: int, planned: bool) -> int:
    """Threads of a refit. LightGBM on small data gains nothing from threads and loses badly on a busy
    machine (OpenMP spins: 50,000 rows took 57 s with 2 threads against 2.4 s with one at load 4 on 2
    cores); one thread also gives the same trees on every machine. A refit the budget planned by rows
    (`budget.plan_rows`) was predicted from single-thread fits, so it runs on one thread too."""
    if family == "lightgbm" and (rows < 50_000 or planned):
        return 1
    return workers


def _fit_ensemble(
    candidate: EnsembleCandidate,
    X: np.ndarray,
    y: np.ndarray,
    problem: Problem,
    n_classes: int,
    workers: int,
    planned: bool = False,
) -> Ensemble:
    """Refit every member on all rows (members side by side in threads) in its serving form."""
    from concurrent.futures import ThreadPoolExecutor

    def fit_one(trial: TrialRecord) -> Any:
        family = candidates.FAMILIES[trial.family]
        params = family.final(trial.params)
        if trial.number in candidate.trees:
            params = {**params, "n_estimators": candidate.trees[trial.number]}
        threads = _refit_threads(trial.family, len(y), workers, planned)
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
    family: str | None = None,
    plan: RowPlan | None = None,
    workers: int = 1,
) -> bool:
    """Whether the next trial (of `family`; else a typical one) plus the refit and save of the chosen model
    would pass the budget (`train.budget`).

    Optuna's own timeout only stops before a trial, so a search could overrun by a whole trial and the
    refit; the budget is meant for the whole search, refit included.
    """
    elapsed = time.perf_counter() - started
    if family is None:
        upcoming = float(np.median([t.seconds for t in records]))
    else:
        upcoming = budget.trial_estimate(family, records)
    refit = _planned_reserve(records, best, n_folds, candidate, plan, seconds - elapsed - upcoming, workers)
    return not budget.affords(upcoming, refit, elapsed, seconds)


def _planned_reserve(
    records: list[TrialRecord],
    best: TrialRecord,
    n_folds: int,
    candidate: EnsembleCandidate | None,
    plan: RowPlan | None,
    left: float,
    workers: int = 1,
) -> float:
    """The refit the search leaves room for: the ensemble's when it fits in the `left` seconds, else the
    best single trial's; an ensemble whose refit does not fit is not chosen at the end (`run_search`), so
    reserving for it would only stop the search early."""
    single = _refit_reserve(records, best, n_folds, None, plan)
    if candidate is None or not candidate.chosen:
        return single
    both = _refit_reserve(records, best, n_folds, candidate, plan, workers)
    return both if both <= left else single


def _refit_reserve(
    records: list[TrialRecord],
    best: TrialRecord,
    n_folds: int,
    candidate: EnsembleCandidate | None,
    plan: RowPlan | None,
    workers: int = 1,
) -> float:
    """Expected seconds of the refit (and save) of the model chosen if the search stopped now.

    An ensemble's members are refitted side by side on `workers` threads (`_fit_ensemble`): the members that
    fit on one thread share them, a forest uses every worker itself."""
    if candidate is not None and candidate.chosen:
        estimates = [
            (
                t.family,
                _refit_estimate(
                    t, n_folds, candidate.trees.get(t.number, candidates.FINAL_TREES), records, plan
                ),
            )
            for t in candidate.members
        ]
        lanes = max(1, min(workers, len(estimates)))
        shared = sum(e for family, e in estimates if family not in FORESTS)
        return sum(e for family, e in estimates if family in FORESTS) + shared / lanes
    return _refit_estimate(best, n_folds, candidates.FINAL_TREES, records, plan)


def _refit_estimate(
    trial: TrialRecord,
    n_folds: int,
    trees: int,
    records: list[TrialRecord] | None = None,
    plan: RowPlan | None = None,
) -> float:
    """A trial's refit (and save): its fold time scaled to the refit's rows and trees. For the family whose
    cost was measured before the search, the measured refit of its default scaled by how much longer this
    trial took than the default's (trial 0) is used when larger."""
    ratio = 1.0
    if plan is not None:
        fold_rows = plan.search_rows * (n_folds - 1) // n_folds
        measured = plan.cost if trial.family == plan.family else None
        ratio = budget.growth(trial.family, fold_rows, plan.refit_rows, measured)
    # The folds' fits only: a trial's seconds also hold timing its predict cost, which a refit does not do.
    fits = trial.cv.fit_seconds if trial.cv is not None else trial.seconds
    estimate = budget.refit_estimate(trial.family, fits, n_folds, trees / candidates.SEARCH_TREES, ratio)
    if plan is not None and trial.family == plan.family and records:
        first = next((t for t in records if t.number == 0 and t.family == plan.family and t.seconds), None)
        if first is not None:
            estimate = max(estimate, plan.refit_seconds * trial.seconds / first.seconds)
    return estimate


def _best(done: list[TrialRecord], metric: str) -> TrialRecord:
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(done, key=lambda t: (sign * t.cv.mean, -t.number))  # type: ignore[union-attr]
