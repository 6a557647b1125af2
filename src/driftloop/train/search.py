"""`train`: one tracked AutoML run from a dataset version to a registered, gated model version.

Steps: load the version, prepare (checks, kept holdout, encoding), Optuna search with every trial a nested
MLflow run, refit of the best on all training rows, holdout scores, the model in its native format with
signature and input example, the drift reference sample, lineage; then the gate against the champion,
registration, and the deployment transition (first model -> champion, gate passed -> challenger).
Nothing is registered unless every step before it succeeded; a failure marks the MLflow run FAILED.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from driftloop.compiled import served_form
from driftloop.config import Config
from driftloop.data.datasets import load_dataset
from driftloop.errors import ConflictError, UserError
from driftloop.metrics import all_scores
from driftloop.registry import deployments
from driftloop.registry.gate import GateReport, run_gate
from driftloop.stores import Stores, open_stores
from driftloop.stores.metadata import Deployment, Lease
from driftloop.stores.models import ModelBundle, load_bundle_dir, log_bundle
from driftloop.stores.tracking import GATE_REPORT_ARTIFACT, HOLDOUT_ARTIFACT, REFERENCE_ARTIFACT
from driftloop.train import cost
from driftloop.train import record as rec
from driftloop.train.budget import search_seconds
from driftloop.train.candidates import for_serving
from driftloop.train.cv import Folds, make_folds, time_folds
from driftloop.train.prepare import Prepared, class_indices, prepare
from driftloop.train.tuning import SearchResult, run_search, with_ensemble

__all__ = [
    "TrainResult",
    "gate_score_tags",
    "holdout_scores",
    "print_gate",
    "train",
    "training_cost_tags",
    "validation_folds",
    "version_description",
]

log = logging.getLogger(__name__)

#: Retraining validates forward in time only with at least this many production rows per fold.
MIN_ROWS_PER_TIME_FOLD = 20


@dataclass
class TrainResult:
    version: str
    run_id: str
    data_version: str
    family: str
    metric: str
    cv_mean: float
    cv_std: float
    holdout: dict[str, float]
    champion: bool
    """This version became the champion (the first model)."""
    challenger: bool
    """This version passed the gate and became the challenger."""
    gate: GateReport | None
    n_trials: int
    seconds: float
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    objective: str = ""
    """Regression: `poisson` (a count target), `squared_error, floored at 0` (another target never below
    zero) or `squared_error`."""
    validation: str = ""
    """How the CV folds were cut (grouped by row digest, or time-ordered)."""
    predict_ms: dict[str, float] = field(default_factory=dict)
    """The registered model's predict time, one row and 100 rows, loaded as the server loads it."""
    cpu_seconds: float = 0.0
    """CPU time this process (and child processes it waited for) spent on the run; on Dask, the workers'
    trials are not in it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "data_version": self.data_version,
            "family": self.family,
            "metric": self.metric,
            "cv_mean": self.cv_mean,
            "cv_std": self.cv_std,
            "holdout": self.holdout,
            "champion": self.champion,
            "challenger": self.challenger,
            "gate": self.gate.to_dict() if self.gate else None,
            "n_trials": self.n_trials,
            "seconds": self.seconds,
            "leaderboard": self.leaderboard,
            "warnings": self.warnings,
            "objective": self.objective,
            "validation": self.validation,
            "predict_ms": self.predict_ms,
            "cpu_seconds": self.cpu_seconds,
        }


def holdout_scores(bundle: ModelBundle, rows: pd.DataFrame) -> dict[str, float]:
    out = bundle.predict_frame(rows)
    target = bundle.spec.target
    if bundle.spec.is_classifier:
        y = class_indices(bundle.spec.classes, rows[target])
        return all_scores(bundle.spec.task, y, out.proba)  # type: ignore[arg-type]
    return all_scores("regression", rows[target].to_numpy(dtype=float), out.labels)


def train(
    cfg: Config,
    data_version: str | None = None,
    budget_seconds: float | None = None,
    progress: bool = True,
    *,
    budget_trials: int | None = None,
    stores: Stores | None = None,
    recent: pd.DataFrame | None = None,
    force: bool = False,
    console: Console | None = None,
    search_fn: Callable[..., SearchResult] | None = None,
    time_order_from: int | None = None,
    started: float | None = None,
    fence: Lease | None = None,
    drift_reference: pd.DataFrame | None = None,
) -> TrainResult:
    """Train, log, gate and register one model version of the project. See the module docstring.

    `recent`: labeled production rows (features + target) the gate scores both models on as well.
    `force`: a test override that passes the gate whatever it finds; the report records it.
    `time_order_from`: the dataset's rows from this position on are in time order (retraining: the
    labeled production rows, oldest first); CV then validates forward over them (see `validation_folds`).
    `started`: the `time.perf_counter()` the seconds budget counts from (default: now; the CLI passes
    when the command began, so opening the stores counts too).
    `search_fn`: runs the search (default: in this process); `scale.search.distributed_search` bound to a
    Dask client spreads the trials over a cluster with the same arguments and result.
    `fence`: the controller's lease; naming the challenger commits only while it is still held.
    `drift_reference`: rows (features + target) to log as the model's drift reference instead of a sample
    of its training rows; the loop passes the production rows a retrained model is meant for.
    """
    started = time.perf_counter() if started is None else started
    cpu_started = _cpu_seconds()
    console = console or Console(stderr=True)
    stores = stores or open_stores(cfg)
    frame, record = load_dataset(stores.metadata, data_version or "latest")
    prep = prepare(cfg, frame, record)
    for warning in prep.warnings:
        console.print(f"[yellow]warning[/] {warning}")
    trials = budget_trials if budget_trials is not None else cfg.training.budget.trials
    seconds = budget_seconds if budget_seconds is not None else cfg.training.budget.seconds
    metric = prep.spec.metric
    folds, validation = validation_folds(cfg, prep, time_order_from)
    if validation.startswith("grouped") and time_order_from is not None:
        prep.warnings.append(f"CV: {validation}")

    import mlflow

    tracking = stores.tracking
    client = tracking.client
    experiment_id = tracking.experiment_id()
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{record.version}") as run,
        tempfile.TemporaryDirectory(prefix="driftloop-served-") as scratch,
    ):
        run_id = run.info.run_id
        _log_lineage(cfg, prep, record, frame, trials, seconds)
        mlflow.log_param("validation", validation[:500])
        if not prep.problem.is_classifier:
            mlflow.log_param("objective", prep.problem.loss)
        # The budget covers the whole run: the search gets what loading and preparing left, less a reserve
        # for the steps after it (its refit and the model's save are planned inside the search).
        search_started = time.perf_counter()
        search_budget = None if seconds is None else search_seconds(seconds, search_started - started)
        search = _search(
            cfg,
            prep,
            folds,
            trials,
            search_budget,
            progress,
            console,
            client,
            experiment_id,
            run_id,
            search_fn or run_search,
        )
        family = search.family
        estimator, flavor = for_serving(family, search.estimator)
        spec = _with_family(prep, family)
        bundle = ModelBundle(spec=spec, estimator=estimator, flavor=flavor)  # type: ignore[arg-type]
        holdout = holdout_scores(bundle, prep.holdout)
        best_cv = search.cv
        mlflow.log_metrics(
            {f"cv_{metric}_mean": best_cv.mean, f"cv_{metric}_std": best_cv.std}
            | {f"holdout_{k}": v for k, v in holdout.items()}
            | {"search_seconds": search.search_seconds, "refit_seconds": search.refit_seconds}
            | {"n_trials": len(search.trials)}
            | _ensemble_metrics(search, metric)
        )
        mlflow.log_params({"best_family": family} | rec.flat_params("best", search.final_params))
        mlflow.log_table(rec.leaderboard_frame(search.leaderboard, metric), rec.LEADERBOARD_ARTIFACT)
        if search.rows is not None:
            rows = search.rows
            mlflow.log_params({"search_rows": rows.search_rows, "refit_rows": rows.refit_rows})
        rec.print_leaderboard(
            console, search.leaderboard, metric, cfg.training.cv_folds, cfg.training.max_predict_ms,
            sample=search.rows.describe() if search.rows is not None and search.rows.sampled else None,
        )  # fmt: skip
        with warnings.catch_warnings():
            # MLflow tries the raw estimator on the example DataFrame; ours takes the encoded matrix.
            warnings.simplefilter("ignore", UserWarning)
            info = log_bundle(bundle, input_example=prep.train[spec.feature_names].head(5))
        # From here on the model is the one logged, loaded from its folder as a server worker loads it:
        # its predict time is recorded and the gate judges (and times) what would be served.
        served_dir = _logged_model_dir(info.model_uri, Path(scratch))
        served = load_bundle_dir(served_dir)
        predict_ms = cost.measure(served_form(served), prep.X).to_dict()
        mlflow.log_metrics(predict_ms)
        console.print(
            f"model {family}: predicts one row in {predict_ms['predict_ms_1row']:.3f} ms, 100 rows in "
            f"{predict_ms['predict_ms_100rows']:.3f} ms (limit {cfg.training.max_predict_ms} ms a row)"
        )
        columns = [*spec.feature_names, spec.target]
        sample = {"max_rows": cfg.training.reference_rows, "seed": cfg.training.seed}
        reference = prep.train if drift_reference is None else drift_reference
        rec.log_reference(reference[columns], REFERENCE_ARTIFACT, **sample)
        # Monitoring estimates performance before labels arrive by calibrating on rows the model never saw.
        rec.log_reference(prep.holdout[columns], HOLDOUT_ARTIFACT, **sample)
        dep = stores.metadata.get_deployment(stores.model_name)
        report = None
        if dep.champion is not None:
            champion = tracking.load_bundle(dep.champion)
            report = run_gate(
                cfg.gate, metric, served, champion, prep.holdout, recent=recent, seed=cfg.training.seed,
                force=force, champion_version=dep.champion, challenger_dir=served_dir,
            )  # fmt: skip
        tags = {
            "data_version": record.version,
            "run_id": run_id,
            "family": family,
            f"cv_{metric}": f"{best_cv.mean:.6f}",
            **{f"holdout_{k}": f"{v:.6f}" for k, v in holdout.items()},
            **({"objective": prep.problem.loss} if not prep.problem.is_classifier else {}),
        }
        version = tracking.register(info.model_uri, run_id, tags=tags)
        mlflow.set_tag("model_version", version)
        if report is not None:
            report.challenger_version = version
            rec.log_json(run_id, report.to_dict(), GATE_REPORT_ARTIFACT)
            decision = ("forced" if report.forced else "pass") if report.passed else "fail"
            mlflow.set_tag("gate", decision)
            tracking.set_tag(version, "gate", decision)
            for key, value in gate_score_tags(report).items():
                tracking.set_tag(version, key, value)
        tracking.describe(version, version_description(family, record.version, metric, holdout, report))
        # Where the time went (the budget covers all of it): before the search, search + refit, after.
        after = time.perf_counter()
        cpu_seconds = _cpu_seconds() - cpu_started
        mlflow.log_metrics(
            {
                "seconds_before_search": search_started - started,
                "seconds_after_search": after - search_started - search.search_seconds - search.refit_seconds,
                "seconds_total": after - started,
                "cpu_seconds_total": cpu_seconds,
            }
        )
        # What the version cost to make, where `models show` and the MLflow UI show it beside what it
        # costs to serve.
        for key, value in training_cost_tags(
            after - started, cpu_seconds, len(search.trials), predict_ms
        ).items():
            tracking.set_tag(version, key, value)
    stores.metadata.add_event(
        stores.model_name,
        "model_registered",
        f"v{version}: {family}, holdout {metric} {holdout.get(metric, float('nan')):.4f}",
        model_version=version,
        run_id=run_id,
        data_version=record.version,
        evidence={"cv_mean": best_cv.mean, "holdout": holdout, "family": family},
    )
    became_champion = became_challenger = False
    if report is None:
        deployments.set_champion(stores, version, reason=f"first model (v{version} on {record.version})")
        became_champion = True
        console.print(f"[green]v{version} is the champion[/] (the first model)")
    else:
        became_challenger = _apply_gate(
            stores, console, report, version, run_id, record.version, judged=dep, fence=fence
        )
    return TrainResult(
        version=version,
        run_id=run_id,
        data_version=record.version,
        family=family,
        metric=metric,
        cv_mean=best_cv.mean,
        cv_std=best_cv.std,
        holdout=holdout,
        champion=became_champion,
        challenger=became_challenger,
        gate=report,
        n_trials=len(search.trials),
        seconds=time.perf_counter() - started,
        leaderboard=search.leaderboard,
        warnings=prep.warnings,
        objective="" if prep.problem.is_classifier else prep.problem.loss,
        validation=validation,
        predict_ms=predict_ms,
        cpu_seconds=cpu_seconds,
    )


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def training_cost_tags(
    wall_seconds: float, cpu_seconds: float, trials: int, predict_ms: dict[str, float]
) -> dict[str, str]:
    """A version's cost as tags (`stores.tracking.COST_TAGS`): to train (wall and CPU seconds, trials) and to
    serve (predict ms)."""
    return {
        "train_wall_seconds": f"{wall_seconds:.1f}",
        "train_cpu_seconds": f"{cpu_seconds:.1f}",
        "train_trials": str(trials),
        **{k: f"{v:.4f}" for k, v in predict_ms.items()},
    }


def version_description(
    family: str, data_version: str, metric: str, holdout: dict[str, float], report: GateReport | None
) -> str:
    """What the MLflow UI shows on the version's page: what it is, its score, and the gate's verdict."""
    lines = [
        f"{family} trained on data version {data_version}; holdout {metric} {holdout.get(metric, float('nan')):.4f}."
    ]
    if report is None:
        lines.append("No gate: there was no champion to compare with.")
    else:
        verdict = ("forced past" if report.forced else "passed") if report.passed else "failed"
        lines.append(f"Gate against champion v{report.champion_version}: {verdict}. {report.reason}")
    return "\n\n".join(lines)


def gate_score_tags(report: GateReport) -> dict[str, str]:
    """Both models' scores on the same rows (the gate's), as version tags: `models list` shows them beside
    the holdout scores, which each version measured on its own data version's holdout."""
    check = report.check("metric")
    if check is None or "challenger" not in check.details:
        return {}
    return {
        "gate_challenger_score": f"{check.details['challenger']:.6f}",
        "gate_champion_score": f"{check.details['champion']:.6f}",
        "gate_champion": str(report.champion_version),
        "gate_rows": str(check.details.get("n_rows", "")),
    }


def _ensemble_metrics(search: SearchResult, metric: str) -> dict[str, float]:
    """The ensemble candidate's CV and whether it was chosen (also when it lost to the best single model)."""
    if search.ensemble is None:
        return {}
    return {
        f"ensemble_cv_{metric}_mean": search.ensemble.cv.mean,
        "ensemble_chosen": float(search.ensemble.chosen),
        "ensemble_members": float(len(search.ensemble.members)),
    }


def _logged_model_dir(model_uri: str, folder: Path) -> Path:
    """The logged model's files in a local folder (a copy, as `TrackingStore.model_dir` gives a server)."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder)))


def _with_family(prep: Prepared, family: str) -> Any:
    from dataclasses import replace

    return replace(prep.spec, family=family)


def _log_lineage(
    cfg: Config,
    prep: Prepared,
    record: Any,
    frame: pd.DataFrame,
    trials: int | None,
    seconds: float | None,
) -> None:
    import mlflow

    commit, dirty = rec.git_commit(cfg.base_dir)
    mlflow.set_tags(
        {
            "data_version": record.version,
            "data_digest": record.digest,
            "git_commit": commit or "none",
            "git_dirty": str(dirty).lower(),
            "task": prep.spec.task,
            **{f"lib.{k}": v for k, v in rec.lib_versions().items()},
            **({"leakage_warning": "; ".join(w for w in prep.warnings if "leakage" in w)[:5000]}
               if any("leakage" in w for w in prep.warnings) else {}),
        }
    )  # fmt: skip
    mlflow.log_params(
        {
            "seed": cfg.training.seed,
            "metric": prep.spec.metric,
            "cv_folds": cfg.training.cv_folds,
            "families": ",".join(cfg.training.families),
            "budget_trials": trials,
            "budget_seconds": seconds,
            "data_version": record.version,
            "n_train_rows": len(prep.train),
            "n_holdout_rows": len(prep.holdout),
            "n_features": len(prep.spec.features),
            "holdout": f"row digest < {cfg.data.holdout_fraction:g}",
        }
    )
    mlflow.log_dict(rec.config_record(cfg), "config.json")
    dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]  # mlflow.data re-exports it lazily
        frame, source=record.path, targets=prep.spec.target, name=f"{cfg.project.name}@{record.version}",
        digest=record.digest[:36],
    )  # fmt: skip
    mlflow.log_input(dataset, context="training")


def validation_folds(cfg: Config, prep: Prepared, time_order_from: int | None = None) -> tuple[Folds, str]:
    """The CV folds and a description of them.

    Retraining (`time_order_from`): the base rows always train, and the production rows after them are cut
    into `cv_folds` chunks validated forward in time, so CV measures what the gate's recent rows measure;
    with too few production rows for that, grouped folds. Otherwise `training.validation`.
    """
    n_folds, n = cfg.training.cv_folds, len(prep.y)
    if time_order_from is not None:
        start = int(np.searchsorted(prep.source_rows, time_order_from))
        if start > 0 and n - start >= n_folds * MIN_ROWS_PER_TIME_FOLD:
            return time_folds(
                n, n_folds, prep.groups, start
            ), f"time-ordered over production rows {start}..{n}"
        why = f"{n - start} production training rows < {n_folds * MIN_ROWS_PER_TIME_FOLD} for time-ordered CV"
        folds = make_folds(prep.y, prep.problem.task, n_folds, prep.problem.seed, prep.groups)
        return folds, f"grouped by row digest ({why})"
    if cfg.training.validation == "time":
        return time_folds(n, n_folds, prep.groups), f"time-ordered by {cfg.data.timestamp_column}"
    folds = make_folds(prep.y, prep.problem.task, n_folds, prep.problem.seed, prep.groups)
    return folds, "grouped by row digest"


def _search(
    cfg: Config,
    prep: Prepared,
    folds: Folds,
    trials: int | None,
    seconds: float | None,
    show: bool,
    console: Console,
    client: Any,
    experiment_id: str,
    run_id: str,
    search_fn: Callable[..., SearchResult],
) -> SearchResult:
    metric = prep.spec.metric
    columns = [
        TextColumn("[bold]search[/]"),
        BarColumn(),
        MofNCompleteColumn() if trials else TextColumn("{task.completed} trials"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    ]
    with Progress(*columns, console=console, disable=not show, transient=False) as bar:
        task = bar.add_task("", total=trials)

        def update(done: int, best: Any) -> None:
            text = f"best {best.family} {metric} {best.cv.mean:.4f}" if best is not None else ""
            bar.update(task, completed=done, description=text)

        extra: dict[str, Any] = {"folds": folds}
        if search_fn is run_search:
            extra["ensemble_config"] = cfg.training.ensemble
        result = search_fn(
            prep.X,
            prep.y,
            prep.problem,
            prep.n_classes,
            metric,
            families=list(cfg.training.families),
            n_folds=cfg.training.cv_folds,
            trials=trials,
            seconds=seconds,
            n_jobs=cfg.training.n_jobs,
            on_trial=lambda t: rec.log_trial(client, experiment_id, run_id, t, metric),
            progress=update,
            max_predict_ms=cfg.training.max_predict_ms,
            **extra,
        )
    # A search that does not select ensembles itself (e.g. on Dask) gets the same selection afterwards.
    return with_ensemble(
        result, prep.X, prep.y, prep.problem, prep.n_classes, n_folds=cfg.training.cv_folds,
        config=cfg.training.ensemble, n_jobs=cfg.training.n_jobs, folds=folds,
        max_predict_ms=cfg.training.max_predict_ms,
    )  # fmt: skip


def _apply_gate(
    stores: Stores,
    console: Console,
    report: GateReport,
    version: str,
    run_id: str,
    data_version: str,
    *,
    judged: Deployment,
    fence: Lease | None = None,
) -> bool:
    """Record the gate's decision as an event, print it, and name a passing model the challenger."""
    kind = "gate_passed" if report.passed else "gate_failed"
    stores.metadata.add_event(
        stores.model_name, kind, report.reason, model_version=version, run_id=run_id,
        data_version=data_version, evidence=report.to_dict(),
    )  # fmt: skip
    print_gate(console, report)
    if not report.passed:
        return False
    try:
        # Compare-and-swap against the state the gate judged: a champion promoted meanwhile was not judged.
        deployments.set_challenger(
            stores, version, reason=f"gate passed: {report.reason}", expected=judged, fence=fence
        )
    except (UserError, ConflictError) as exc:
        console.print(f"[yellow]v{version} passed the gate but is not the challenger:[/] {exc}")
        stores.metadata.add_event(
            stores.model_name, "challenger_skipped", str(exc), model_version=version, run_id=run_id
        )
        return False
    console.print(f"[green]v{version} is the challenger[/] of champion v{report.champion_version}")
    return True


def print_gate(console: Console, report: GateReport) -> None:
    from rich.table import Table

    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    forced = " [bold red](forced)[/]" if report.forced else ""
    table = Table(
        title=f"gate: v{report.challenger_version} vs champion v{report.champion_version}: {verdict}{forced}"
    )
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in report.checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[red]fail[/]", check.reason)
    console.print(table)
