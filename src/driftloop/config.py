"""driftloop.yaml as typed pydantic models: the only place defaults live.

`load_config(path)` reads the file, applies `DRIFTLOOP_*` environment overrides and resolves relative
paths against the config file's folder. Nothing happens at import time.

Environment overrides: `DRIFTLOOP_SECTION__KEY=value` sets any key (`DRIFTLOOP_TRAINING__BUDGET__SECONDS=30`),
values parsed as YAML scalars. Shortcuts for the settings operators change most: `DRIFTLOOP_DATABASE_URL`,
`DRIFTLOOP_TRACKING_URI`, `DRIFTLOOP_ADMIN_TOKEN`, `DRIFTLOOP_DASK_SCHEDULER`, `DRIFTLOOP_HOME` (store root).
`DRIFTLOOP_CONFIG` names the config file itself when no path is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from driftloop.errors import ConfigError

CONFIG_FILE = "driftloop.yaml"
#: Path of the config to use when none is passed (set by `driftloop --config`, read by every subcommand).
CONFIG_ENV = "DRIFTLOOP_CONFIG"
ENV_PREFIX = "DRIFTLOOP_"
ENV_SHORTCUTS = {
    "DRIFTLOOP_DATABASE_URL": ("stores", "database_url"),
    "DRIFTLOOP_TRACKING_URI": ("stores", "tracking_uri"),
    "DRIFTLOOP_HOME": ("stores", "root"),
    "DRIFTLOOP_ADMIN_TOKEN": ("serving", "admin_token"),
    "DRIFTLOOP_ADMIN_TOKEN_PREVIOUS": ("serving", "admin_token_previous"),
    "DRIFTLOOP_DASK_SCHEDULER": ("scale", "dask_scheduler"),
}

Task = Literal["binary", "multiclass", "regression"]
FeatureType = Literal["numeric", "categorical"]
Family = Literal["linear", "random_forest", "extra_trees", "lightgbm"]
Metric = Literal["accuracy", "f1_macro", "roc_auc", "log_loss", "rmse", "mae", "r2"]
Strategy = Literal["single", "ab", "canary", "shadow", "bluegreen"]

#: Metrics where a smaller value is better; the gate and the controller flip their comparisons for these.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
#: Metrics monitoring can estimate before labels arrive (monitor/estimation/); log_loss and r2 cannot be.
ESTIMATED_METRICS = frozenset({"accuracy", "f1_macro", "roc_auc", "rmse", "mae"})
DEFAULT_METRIC: dict[str, Metric] = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}
TASK_METRICS: dict[str, tuple[Metric, ...]] = {
    "binary": ("roc_auc", "accuracy", "f1_macro", "log_loss"),
    "multiclass": ("accuracy", "f1_macro", "log_loss", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectConfig(Section):
    name: str = Field("driftloop-model", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Registered model name in MLflow, and the key of the deployment state."""


class DataConfig(Section):
    path: Path | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str = Field(..., min_length=1)
    task: Task | None = None
    """None: inferred from the target column (few distinct values -> classification)."""
    id_column: str | None = None
    timestamp_column: str | None = None
    exclude: list[str] = Field(default_factory=list)
    feature_types: dict[str, FeatureType] = Field(default_factory=dict)
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    max_categories: int = Field(50, ge=2)
    """A text column with more distinct values than this is treated as free text and excluded."""


class Budget(Section):
    trials: int | None = Field(40, gt=0)
    seconds: float | None = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.trials is None and self.seconds is None:
            raise ValueError("set trials, seconds or both: an unbounded search never ends")
        return self


class EnsembleConfig(Section):
    """Ensemble selection over the trials' out-of-fold predictions (see `driftloop.train.ensemble`)."""

    enabled: bool = True
    """Build a weighted ensemble of the best trials as one more candidate; it is chosen only when its CV
    score beats the best single model's, then its members are refitted on all training rows."""
    max_members: int = Field(5, ge=2, le=20)
    """Distinct models in the ensemble at most (each costs a refit and serving time)."""
    rounds: int = Field(25, ge=2, le=200)
    """Greedy selection rounds; a member's weight is the share of rounds that picked it."""
    candidates: int = Field(30, ge=2, le=500)
    """The best complete trials (by CV score) the selection picks from."""


DEFAULT_FAMILIES: tuple[Family, ...] = ("linear", "random_forest", "extra_trees", "lightgbm")


class TrainingConfig(Section):
    families: list[Family] = Field(default_factory=lambda: list(DEFAULT_FAMILIES), min_length=1)
    budget: Budget = Field(default_factory=Budget)
    cv_folds: int = Field(5, ge=2, le=20)
    metric: Metric | None = None
    """None: accuracy (multiclass), roc_auc (binary), rmse (regression)."""
    seed: int = 42
    reference_rows: int = Field(5000, ge=100)
    """Rows of the training features kept with the model as the drift reference."""
    n_jobs: int = Field(-1, ge=-1)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    """`training.ensemble: false` is short for `training.ensemble.enabled: false`."""
    validation: Literal["grouped", "time"] = "grouped"
    """How CV folds are cut. grouped: shuffled (stratified) folds that keep every copy of a row in one fold.
    time: rows ordered by `data.timestamp_column`, each later chunk validated on a model fitted on the
    rows before it. Retraining validates forward over its production rows either way."""
    max_predict_ms: float | None = Field(3.0, gt=0)
    """Most milliseconds the model may take to predict one row, timed during the search on the path the
    server uses, in the form a worker serves (forests on treelite's GTIL; an ensemble: the sum of its
    members). Candidates over it are not chosen; if none fits,
    `train` stops with an error naming this key. 3 ms keeps a worker's one-row p99 under 10 ms on two
    cores at rates its core can carry (about 1,000 / (model ms) one-row requests a second), not beyond: a
    2 ms model held at 1,000 req/s on one worker had p99 22 ms (benchmarks/serving/RESULTS.md). It bounds
    one row only; a 100-row request of a forest ensemble costs ~0.3 ms a row. null: no limit. The limit is a timing on this machine: a candidate within a few tenths of a
    millisecond of it can fall on either side from one run to the next (other processes take the cores),
    so the same data and seed give the same model only when no candidate is that close, or with null."""

    @field_validator("ensemble", mode="before")
    @classmethod
    def _ensemble_switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class GateConfig(Section):
    min_improvement: float = Field(0.0, ge=0)
    """How much better the challenger must be, in metric units, for the point estimate to count."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    test: Literal["bootstrap", "mcnemar"] = "bootstrap"
    bootstrap_resamples: int = Field(2000, ge=100)
    max_latency_ms_per_row: float = Field(5.0, gt=0)
    max_cost_increase: float | None = Field(None, gt=1)
    """Refuse a challenger that costs more than this many times the champion to serve: its one-row time or
    its per-row time in a 100-row batch (the gate's latency figures of both models, on the same rows)
    over the champion's times this factor. null (default): report the cost, refuse nothing. Sub-0.1 ms
    figures move by tens of percent with the machine's load, so a factor under 1.5 refuses at random."""
    recent_rows: int = Field(500, ge=0)
    """Most recent labeled production rows held out of retraining and used by the gate as well."""


class StoresConfig(Section):
    root: Path = Path(".driftloop")
    tracking_uri: str | None = None
    """None: sqlite:///<root>/mlflow.db, or the database_url when that points at PostgreSQL."""
    artifact_location: str | None = None
    """None: <root>/mlartifacts."""
    database_url: str | None = None
    """None: sqlite:///<root>/driftloop.db. PostgreSQL: postgresql+psycopg://user@host/db."""
    log_dir: Path | None = None
    """None: <root>/logs. Prediction and feedback Parquet files."""

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.root / 'driftloop.db').as_posix()}"

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        if self.database_url and self.database_url.startswith("postgresql"):
            return self.database_url
        return f"sqlite:///{(self.root / 'mlflow.db').as_posix()}"

    def resolved_artifact_location(self) -> str:
        return self.artifact_location or (self.root / "mlartifacts").resolve().as_uri()

    def resolved_log_dir(self) -> Path:
        return self.log_dir or self.root / "logs"

    def datasets_dir(self) -> Path:
        return self.root / "datasets"


class ServingConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    admin_token: str | None = None
    """None: the admin endpoints are off (404), never open."""
    admin_token_previous: str | None = None
    """Also accepted while a token is rotated: deploy the new token with the old one here, move the clients
    over, then deploy again without it. Ignored when `admin_token` is not set."""
    poll_seconds: float = Field(2.0, gt=0)
    max_body_bytes: int = Field(1 << 20, gt=0)
    max_rows_per_request: int = Field(10_000, gt=0)
    unknown_fields: Literal["reject", "ignore"] = "reject"
    log_flush_seconds: float = Field(1.0, gt=0)
    log_flush_rows: int = Field(5000, gt=0)
    log_queue_rows: int = Field(200_000, gt=0)
    """Rows the log writer buffers before it drops (and counts) instead of blocking the hot path."""
    compile_models: bool = True
    """Compile tree models in the background and swap them in, same answers: LightGBM to native code
    (lleaves), scikit-learn forests to treelite's GTIL; an ensemble member by member."""
    startup_wait_seconds: float = Field(15.0, ge=0)
    """A worker waits this long for its first model before accepting connections (then starts anyway)."""
    access_log: bool = True
    """One JSON line per request on stderr (request id, trace id, status, latency, version, arm, rows); probes
    and /metrics scrapes are left out."""


class ColumnDriftOverride(Section):
    method: Literal["ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi"] | None = None
    threshold: float | None = Field(None, gt=0)


class MonitoringConfig(Section):
    window: str | None = "1h"
    """A duration (30m, 1h, 2d) or None to use `last_rows`."""
    last_rows: int | None = Field(None, gt=0)
    drift_share: float = Field(0.5, gt=0, le=1)
    min_rows: int = Field(30, ge=1)
    """Fewer rows than this in the window give a "no data" result, not a verdict."""
    columns: dict[str, ColumnDriftOverride] = Field(default_factory=dict)
    """Per-column drift test and/or threshold (`method`: ks, chisquare, z, wasserstein, jensenshannon, psi)."""
    psi_threshold: float = Field(0.1, gt=0)
    """PSI is reported beside every column's test; at or above this it is flagged in the report."""
    max_null_increase: float = Field(0.1, ge=0, le=1)
    """Data quality: a null rate this much above the reference's fails the check."""
    max_out_of_range_share: float = Field(0.05, ge=0, le=1)
    """Data quality: more numeric values than this outside the training range fail the check."""
    max_unseen_share: float = Field(0.05, ge=0, le=1)
    """Data quality: more categorical values than this never seen in training fail the check."""
    performance_window: str | None = "7d"
    """Labeled predictions up to this long before the window's end count for performance; None: the window."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """Level of the performance metrics' bootstrap confidence intervals."""
    bootstrap_resamples: int = Field(300, ge=0)
    multivariate: bool = False
    """Also test the joint distribution (monitor/multivariate.py: a domain classifier and PCA reconstruction
    error, about 1 s a pass on 2 cores): catches changes in how features move together that per-column tests
    miss. Needed by the `multivariate_drift` trigger."""
    estimation: bool = True
    """Estimate each version's performance per arm from its outputs alone, before labels arrive (CBPE for
    classifiers, DLE for regression, calibrated on the version's kept holdout; monitor/estimated.py).
    Needed by the `estimated_performance` trigger and alert rule."""


AlertKind = Literal["dataset_drift", "feature_drift", "metric_drop", "estimated_performance", "data_quality"]


class AlertRule(Section):
    name: str
    kind: AlertKind
    features: list[str] = Field(default_factory=list)
    max_drop: float = Field(0.05, ge=0)
    """metric_drop: alert when the live metric is this far below the champion's gate metric;
    estimated_performance: when its label-free estimate is, with the estimate's band below it too."""
    severity: Literal["info", "warning", "critical"] = "warning"


def _default_alert_rules() -> list[AlertRule]:
    return [
        AlertRule(name="dataset-drift", kind="dataset_drift"),
        AlertRule(name="performance-drop", kind="metric_drop", severity="critical"),
        AlertRule(name="data-quality", kind="data_quality"),
    ]


class AlertsConfig(Section):
    rules: list[AlertRule] = Field(default_factory=_default_alert_rules)
    webhook_url: str | None = None
    webhook_retries: int = Field(3, ge=0)
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    cooldown_seconds: float = Field(900.0, ge=0)


class TriggerConfig(Section):
    kind: Literal[
        "dataset_drift",
        "feature_drift",
        "multivariate_drift",
        "metric_drop",
        "estimated_performance",
        "schedule",
        "new_labels",
    ]
    features: list[str] = Field(default_factory=list)
    max_drop: float = Field(0.05, ge=0)
    every_seconds: float | None = Field(None, gt=0)
    min_labels: int = Field(200, ge=1)
    cooldown_seconds: float = Field(600.0, ge=0)


def _default_triggers() -> list[TriggerConfig]:
    return [TriggerConfig(kind="dataset_drift"), TriggerConfig(kind="metric_drop")]


class RetrainConfig(Section):
    include_production: bool = True
    recency_seconds: float | None = Field(None, gt=0)
    """Only labeled production rows newer than this; None keeps them all."""
    production_weight: float = Field(1.0, gt=0)
    min_labeled_rows: int = Field(100, ge=0)


class OutcomeRule(Section):
    """A business outcome the canary also judges the challenger on: what clients report with their feedback
    (`POST /v1/feedback` items with `"outcomes": {"conversion": 1}`), per request, on the steps where both
    arms serve."""

    name: str = Field(min_length=1)
    """The outcome's name as clients report it, e.g. conversion or revenue."""
    require: Literal["win", "no_loss"] = "win"
    """win: the challenger gets full traffic only after a step shows it significantly ahead on the outcome
    (the canary holds at its last split step until then); no_loss: only a significant loss rolls it back."""
    missing: Literal["zero", "skip"] = "zero"
    """A request with no report counts as 0 (zero: nothing happened) or is left out (skip)."""


class RolloutConfig(Section):
    steps: list[float] = Field(default_factory=lambda: [0.05, 0.25, 0.5, 1.0], min_length=1)
    min_requests: int = Field(200, ge=1)
    """Requests (both arms) a step must see before it can advance."""
    min_dwell_seconds: float = Field(30.0, ge=0)
    max_error_rate_increase: float = Field(0.01, ge=0)
    max_p95_latency_ratio: float = Field(2.0, gt=1)
    p95_latency_floor_ms: float = Field(25.0, ge=0)
    """A challenger p95 below this is fast enough whatever its ratio to the champion's."""
    min_labels: int = Field(50, ge=1)
    """Labeled rows each arm needs in a step before the labeled metric is compared."""
    require_labels: bool = True
    """Advance only with labeled evidence; a project without feedback sets this to false."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """An equally good challenger is rolled back with probability at most 1 - confidence over the whole canary,
    however often the controller looks (always-valid tests, the level split across the steps)."""
    outcome: OutcomeRule | None = None
    """Also judge a business outcome (null: accuracy, errors and latency only); see `OutcomeRule`."""

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_one(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 1 for s in steps):
            raise ValueError("every step must be in (0, 1]")
        if steps != sorted(steps) or len(set(steps)) != len(steps):
            raise ValueError("steps must strictly increase")
        if steps[-1] != 1.0:
            raise ValueError("the last step must be 1.0 (full promotion)")
        return steps

    @model_validator(mode="after")
    def _outcome_needs_a_split_step(self) -> RolloutConfig:
        if self.outcome is not None and self.outcome.require == "win" and len(self.steps) < 2:
            raise ValueError(
                "outcome.require: win compares the arms on a step below 1.0, where both serve; add one "
                "(e.g. steps: [0.5, 1.0]) or use require: no_loss"
            )
        return self


class LoopConfig(Section):
    interval_seconds: float = Field(30.0, gt=0)
    triggers: list[TriggerConfig] = Field(default_factory=_default_triggers)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    lease_seconds: float = Field(60.0, gt=0)
    """How long a controller's lock lasts without renewal before another controller may take over."""
    metrics_port: int | None = Field(None, ge=1, le=65535)
    """Serve the monitoring gauges (drift scores, live metrics) on this port's /metrics; None: off."""


class LogConfig(Section):
    """Upkeep of the prediction log (`stores.log_dir`): compaction and retention (docs/operations.md)."""

    retention_days: float | None = Field(90.0, gt=0)
    """Delete the log's hour partitions that ended more than this many days ago; None keeps everything.

    Kept past it, for retraining: prediction rows that have a feedback label (every arm), and the feedback
    partitions, while they are inside the retraining window (`loop.retrain.recency_seconds`; None: for as
    long as the log exists) and `loop.retrain.include_production` is true. Unlabelled predictions and the
    errors log go. A label that arrives after its prediction was deleted counts as unmatched feedback."""
    compact: bool = True
    """The controller (`driftloop watch`) compacts closed partitions and applies retention in its passes."""
    compact_grace_seconds: float = Field(600.0, ge=0)
    """An hour partition is closed (compacted) this long after its hour ends; writers buffer for seconds."""
    maintenance_interval_seconds: float = Field(600.0, gt=0)
    """How often the controller runs compaction and retention (a pass that finds nothing to do is cheap)."""


class ScaleConfig(Section):
    dask_scheduler: str | None = None
    """tcp://host:8786 of an existing cluster; None starts a local cluster when one is needed."""
    partition_rows: int = Field(1_000_000, gt=0)
    """Rows per partition (one task) for batch scoring and drift over large windows."""
    local_workers: int | None = Field(None, gt=0)
    """Worker processes of the local cluster started without a scheduler; None: one per core, up to 4."""
    local_memory_limit: str | None = None
    """Memory limit per local worker (`4GiB`); None: Dask's default, an equal share of the machine's RAM."""


class Config(Section):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    stores: StoresConfig = Field(default_factory=StoresConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    base_dir: Path = Field(default=Path("."), exclude=True)
    """Folder of the config file; relative paths in it are resolved against this."""

    @model_validator(mode="after")
    def _estimated_performance_has_its_signal(self) -> Config:
        uses = [
            f"loop.triggers[{i}]"
            for i, t in enumerate(self.loop.triggers)
            if t.kind == "estimated_performance"
        ]
        uses += [
            f"alerts.rules[{i}] ({r.name})"
            for i, r in enumerate(self.alerts.rules)
            if r.kind == "estimated_performance"
        ]
        if not uses:
            return self
        if not self.monitoring.estimation:
            raise ValueError(
                f"{uses[0]}: estimated_performance needs monitoring.estimation: true "
                "(else no pass estimates performance and it could never fire)"
            )
        chosen = self.training.metric
        if chosen is not None and chosen not in ESTIMATED_METRICS:
            raise ValueError(
                f"{uses[0]}: estimated_performance compares the gate metric, and training.metric {chosen!r} "
                f"has no label-free estimate; use one of {', '.join(sorted(ESTIMATED_METRICS))}"
            )
        return self

    @model_validator(mode="after")
    def _multivariate_trigger_has_its_signal(self) -> Config:
        if not self.monitoring.multivariate and any(
            t.kind == "multivariate_drift" for t in self.loop.triggers
        ):
            raise ValueError(
                "loop.triggers: a multivariate_drift trigger needs monitoring.multivariate: true "
                "(else no pass computes it and the trigger could never fire)"
            )
        return self

    def metric(self, task: str) -> Metric:
        """The metric to optimise for `task` (inferred from the target): the configured one if it applies."""
        chosen = self.training.metric
        if chosen is None:
            return DEFAULT_METRIC[task]
        fits = TASK_METRICS[task]
        if chosen not in fits:
            kind = "a regression" if task == "regression" else f"a {task} classification"
            raise ConfigError(
                f"training.metric: {chosen!r} does not apply to {kind} target "
                f"(data.target {self.data.target!r}); use one of {', '.join(fits)}"
            )
        return chosen


def _set_path(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _env_overrides(environ: dict[str, str]) -> list[tuple[tuple[str, ...], Any]]:
    found: list[tuple[tuple[str, ...], Any]] = []
    for name, raw in sorted(environ.items()):
        if name in ENV_SHORTCUTS:
            found.append((ENV_SHORTCUTS[name], raw))
        elif name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(k.lower() for k in name[len(ENV_PREFIX) :].split("__"))
            found.append((keys, yaml.safe_load(raw) if raw else None))
    return found


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known key",
    "literal_error": "must be one of {expected}",
}


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem, each starting with the dotted key path: `training.budget.seconds: must be > 0`."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        template = _MESSAGES.get(err["type"])
        ctx = err.get("ctx") or {}
        try:
            msg = template.format(**ctx) if template else err["msg"]
        except KeyError:
            msg = err["msg"]
        if err["type"] == "value_error":
            msg = str(ctx.get("error", err["msg"]))
            if not err["loc"]:  # a rule across sections: its message names the keys, the input is all
                lines.append(msg)
                continue
        lines.append(
            f"{path}: {msg} (got {err['input']!r})" if err["type"] != "missing" else f"{path}: {msg}"
        )
    return lines


def config_from_dict(
    raw: dict[str, Any], *, base_dir: Path = Path("."), environ: dict[str, str] | None = None
) -> Config:
    """Validate a config mapping with environment overrides applied; relative paths resolve against base_dir."""
    tree = dict(raw)
    for keys, value in _env_overrides(dict(os.environ) if environ is None else environ):
        _set_path(tree, keys, value)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError("invalid config", problems=format_validation_error(exc)) from None
    cfg.base_dir = base_dir
    return _resolve_paths(cfg)


def _resolve_paths(cfg: Config) -> Config:
    base = cfg.base_dir
    if cfg.data.path is not None and not cfg.data.path.is_absolute():
        cfg.data.path = (base / cfg.data.path).resolve()
    if not cfg.stores.root.is_absolute():
        cfg.stores.root = (base / cfg.stores.root).resolve()
    if cfg.stores.log_dir is not None and not cfg.stores.log_dir.is_absolute():
        cfg.stores.log_dir = (base / cfg.stores.log_dir).resolve()
    return cfg


def find_config(start: Path | None = None) -> Path:
    """The driftloop.yaml in `start` or its nearest parent, like git finds its repository."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or its parents: run `driftloop init DATA.csv --target COL`"
    )


def load_config(path: Path | str | None = None, *, environ: dict[str, str] | None = None) -> Config:
    """Read, override from the environment, validate. Raises ConfigError naming every bad key."""
    if path is None and os.environ.get(CONFIG_ENV):
        path = os.environ[CONFIG_ENV]
    file = Path(path) if path is not None else find_config()
    if file.is_dir():
        inside = file / CONFIG_FILE
        hint = f": use {inside}" if inside.is_file() else f" (no {CONFIG_FILE} in it either)"
        raise ConfigError(f"config file {file} is a folder, not a file{hint}")
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not a text (UTF-8) file: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise ConfigError(f"config file {file} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections (data:, training:, ...)")
    cfg = config_from_dict(raw, base_dir=file.resolve().parent, environ=environ)
    if cfg.data.path is not None and not cfg.data.path.exists():
        raise ConfigError("invalid config", problems=[f"data.path: file {cfg.data.path} does not exist"])
    return cfg
