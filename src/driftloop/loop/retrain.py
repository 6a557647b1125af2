"""Assembling retraining data: the champion's training snapshot plus labeled production rows.

Labeled production rows are the features the server logged joined with the feedback labels on request id
(shadow rows excluded: their features are already in the champion's row). The most recent
`gate.recent_rows` of them are held out of training and given to the gate, so the challenger is judged on
the world as it is now. The assembled table becomes a new dataset version whose parent is the champion's
training data: lineage stays whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from driftloop.config import Config
from driftloop.data.datasets import add_frame, load_dataset
from driftloop.errors import DataError
from driftloop.stores import Stores
from driftloop.stores.metadata import DatasetRecord, utcnow
from driftloop.stores.models import ModelSpec
from driftloop.stores.predlog import latest_labels_sql, log_files, log_source


def labeled_production_rows(
    log_dir: object, spec: ModelSpec, *, since: datetime | None = None
) -> pd.DataFrame:
    """Served rows with their true label, oldest first: columns `ts`, the features, and the target."""
    if not log_files(log_dir, "predictions") or not log_files(log_dir, "feedback"):
        return pd.DataFrame(columns=["ts", *spec.feature_names, spec.target])
    import duckdb

    preds = log_source(log_dir, "predictions")
    where = "p.arm <> 'shadow'"
    params: list[object] = []
    if since is not None:
        where += " AND p.ts >= ?"
        params.append(since)
    # The latest label wins when a request got feedback twice; one row per request id.
    sql = f"""
        WITH fb AS ({latest_labels_sql(log_dir)}),
             p AS (SELECT * FROM {preds} QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts) = 1)
        SELECT p.ts, unnest(p.features), fb.label AS __label
        FROM p JOIN fb USING (request_id)
        WHERE {where}
        ORDER BY p.ts, p.request_id
    """
    with duckdb.connect() as con:
        frame = con.execute(sql, params).df()
    missing = [n for n in spec.feature_names if n not in frame.columns]
    if missing:
        raise DataError(f"the prediction log lacks feature column(s) {missing} of the champion")
    frame = frame.rename(columns={"__label": spec.target})
    frame[spec.target] = _restore_label(frame[spec.target], spec)
    return frame[["ts", *spec.feature_names, spec.target]]


def _restore_label(labels: pd.Series, spec: ModelSpec) -> pd.Series:
    """Logged labels are strings (classification) or floats; give them the training target's type back."""
    if spec.task == "regression":
        return labels.astype(float)
    by_string = {str(c): c for c in spec.classes}
    return labels.map(lambda v: by_string.get(v, _number_or_text(v)))


def _number_or_text(value: str) -> object:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number


@dataclass
class TrainingSet:
    """A new dataset version for training, and the recent production rows held out for the gate."""

    record: DatasetRecord
    recent: pd.DataFrame
    n_base: int
    n_production: int


def production_rows(
    stores: Stores, cfg: Config, spec: ModelSpec, *, now: datetime | None = None
) -> pd.DataFrame:
    """The labeled production rows the retraining policy admits (recency window), oldest first."""
    policy = cfg.loop.retrain
    if not policy.include_production:
        return pd.DataFrame(columns=["ts", *spec.feature_names, spec.target])
    since = None
    if policy.recency_seconds is not None:
        since = (now or utcnow()) - timedelta(seconds=policy.recency_seconds)
    return labeled_production_rows(stores.log_dir, spec, since=since)


def assemble(
    stores: Stores,
    cfg: Config,
    spec: ModelSpec,
    base_version: str,
    *,
    production: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> TrainingSet:
    """Build and store the retraining snapshot by the configured policy."""
    policy = cfg.loop.retrain
    base, base_rec = load_dataset(stores.metadata, base_version)
    prod = production if production is not None else production_rows(stores, cfg, spec, now=now)
    n_recent = min(cfg.gate.recent_rows, len(prod) // 2)
    recent = prod.iloc[len(prod) - n_recent :] if n_recent else prod.iloc[:0]
    train_prod = prod.iloc[: len(prod) - n_recent]
    train_prod = _weighted(train_prod, policy.production_weight, seed=cfg.training.seed)
    columns = [c for c in base.columns if c in train_prod.columns]
    combined = pd.concat([base, train_prod[columns]], ignore_index=True)
    combined, rare = _without_rare_classes(combined, spec, min_rows=max(2, cfg.training.cv_folds))
    record, _ = add_frame(
        stores.metadata,
        stores.datasets_dir,
        combined,
        source=f"retrain: {base_rec.version} + {len(train_prod)} labeled production rows",
        parents=[base_rec.version],
        note=f"{len(recent)} most recent labeled rows held out for the gate"
        + (f"; left out classes too rare to learn yet: {rare}" if rare else ""),
        max_categories=cfg.data.max_categories,
    )
    return TrainingSet(
        record=record, recent=recent.drop(columns=["ts"]), n_base=len(base), n_production=len(train_prod)
    )


def _without_rare_classes(
    frame: pd.DataFrame, spec: ModelSpec, *, min_rows: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop the rows of classes with fewer than `min_rows` labels (a new class in production starts that way).

    Stratified CV and the kept holdout need a few rows of every class; such rows wait in the log until
    enough of them arrive for a later retraining.
    """
    if spec.task == "regression":
        return frame, {}
    counts = frame[spec.target].value_counts()
    rare = counts[counts < min_rows]
    if rare.empty:
        return frame, {}
    kept = frame[~frame[spec.target].isin(rare.index)].reset_index(drop=True)
    return kept, {str(k): int(v) for k, v in rare.items()}


def _weighted(frame: pd.DataFrame, weight: float, *, seed: int) -> pd.DataFrame:
    """Weight production rows by repetition: each row appears floor(w) times, plus once more with p = frac(w).

    A snapshot is a plain table, so weights become rows; that keeps every estimator and the lineage simple.
    """
    if weight == 1.0 or frame.empty:
        return frame
    rng = np.random.default_rng(seed)
    counts = np.floor(weight) + (rng.random(len(frame)) < weight - np.floor(weight))
    return frame.loc[frame.index.repeat(counts.astype(int))]
