"""Assembling retraining data: the champion's training snapshot plus labeled production rows.

Labeled production rows are the features the server logged joined with the feedback labels on request id
(shadow rows excluded: their features are already in the champion's row). The most recent
`gate.recent_rows` of them are held out of training and given to the gate, so the challenger is judged on
the world as it is now. The assembled table becomes a new dataset version whose parent is the champion's
training data: lineage stays whole.

The retrained model's drift reference is the newest labeled production rows (one monitoring window's worth),
not a sample of its whole training table: that table is mostly the old world (the base snapshot), and drift
must be measured against the world the model was retrained for, or the loop would fire again at once after
every promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.config import Config
from driftloop.data.datasets import add_frame, load_dataset
from driftloop.errors import DataError
from driftloop.kinds import as_bool
from driftloop.stores import Stores
from driftloop.stores.logfiles import LABEL_SKEW, log_files, parquet_source, read_retrying
from driftloop.stores.metadata import DatasetRecord, utcnow
from driftloop.stores.models import ModelSpec
from driftloop.stores.predlog import latest_labels_sql


def labeled_production_rows(
    log_dir: Path | str, spec: ModelSpec, *, since: datetime | None = None
) -> pd.DataFrame:
    """Served rows with their true label, oldest first: columns `ts`, the features, and the target.

    Only the partitions since `since` are read (feedback from `LABEL_SKEW` before it)."""
    frame = read_retrying(lambda: _labeled_rows(log_dir, spec, since))
    if frame is None:
        return pd.DataFrame(columns=["ts", *spec.feature_names, spec.target])
    missing = [n for n in spec.feature_names if n not in frame.columns]
    if missing:
        raise DataError(f"the prediction log lacks feature column(s) {missing} of the champion")
    frame = frame.rename(columns={"__label": spec.target})
    frame[spec.target] = _restore_label(frame[spec.target], spec)
    for f in spec.features:
        if f.is_bool:  # logged as "True"/"False": booleans again, as in the training table they join
            frame[f.name] = _restore_bool(frame[f.name])
    return frame[["ts", *spec.feature_names, spec.target]]


def _labeled_rows(log_dir: Path | str, spec: ModelSpec, since: datetime | None) -> pd.DataFrame | None:
    import duckdb

    pred_files = log_files(log_dir, "predictions", start=since)
    label_files = log_files(log_dir, "feedback", start=since - LABEL_SKEW if since is not None else None)
    if not pred_files or not label_files:
        return None
    preds = parquet_source(pred_files)
    where = "arm <> 'shadow'"
    params: list[object] = []
    if since is not None:
        where += " AND ts >= ?"
        params.append(since)
    # Shadow rows go before the de-duplication, not after: a shadow row repeats its request's id and
    # timestamp, so `ORDER BY ts` could keep it over the served row and lose the request. Then one row per
    # request id (the first served), and the latest label wins when a request got feedback twice.
    sql = f"""
        WITH fb AS ({latest_labels_sql(label_files)}),
             p AS (SELECT * FROM {preds} WHERE {where}
                   QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts) = 1)
        SELECT p.ts, unnest(p.features), fb.label AS __label
        FROM p JOIN fb USING (request_id)
        ORDER BY p.ts, p.request_id
    """
    with duckdb.connect() as con:
        return con.execute(sql, params).df()


def in_snapshot_types(base: pd.DataFrame, production: pd.DataFrame) -> pd.DataFrame:
    """Production rows with each column in the training snapshot's type, so the two make one table.

    The log keeps a numeric column used as a categorical feature (`data.feature_types`) as its category
    strings ("2"); numbers again, it joins the snapshot's numbers instead of making a column of mixed types
    that no Parquet file can hold. A value that is no number becomes missing, which encodes as an unseen
    category does (NaN), so the model's input is unchanged.
    """
    out = production.copy()
    for name in production.columns:
        snapshot, logged = base[name].dtype, production[name].dtype
        numeric = pd.api.types.is_numeric_dtype(snapshot) and not pd.api.types.is_bool_dtype(snapshot)
        if name in base.columns and numeric and not pd.api.types.is_numeric_dtype(logged):
            out[name] = pd.to_numeric(production[name], errors="coerce")
    return out


def _restore_bool(logged: pd.Series) -> pd.Series:
    values = [None if v is None or v is pd.NA or v != v else as_bool(v) for v in logged.tolist()]
    return pd.Series(values, index=logged.index, dtype="boolean" if None in values else bool)


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
    first_production_row: int = 0
    """Rows from here on are production rows, oldest first (training validates forward over them)."""
    reference: pd.DataFrame | None = None
    """The drift reference for the retrained model (see `drift_reference`); None: its training sample."""


def production_rows(
    stores: Stores,
    cfg: Config,
    spec: ModelSpec,
    *,
    now: datetime | None = None,
    base_version: str | None = None,
) -> pd.DataFrame:
    """The labeled production rows the retraining policy admits (recency window), oldest first.

    With `base_version` (the snapshot the retrain starts from): if that snapshot was itself assembled by a
    retrain, only rows logged after it was made. The earlier ones are in it already; adding them again
    would count them twice (the gate's held-out rows of that retrain are the only ones not reused).
    """
    policy = cfg.loop.retrain
    if not policy.include_production:
        return pd.DataFrame(columns=["ts", *spec.feature_names, spec.target])
    cutoffs = []
    if policy.recency_seconds is not None:
        cutoffs.append((now or utcnow()) - timedelta(seconds=policy.recency_seconds))
    if base_version:
        base = stores.metadata.get_dataset(base_version)
        if base.parents:
            cutoffs.append(base.created_at)
    return labeled_production_rows(stores.log_dir, spec, since=max(cutoffs) if cutoffs else None)


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
    prod = (
        production
        if production is not None
        else production_rows(stores, cfg, spec, now=now, base_version=base_version)
    )
    n_recent = min(cfg.gate.recent_rows, len(prod) // 2)
    recent = prod.iloc[len(prod) - n_recent :] if n_recent else prod.iloc[:0]
    train_prod = prod.iloc[: len(prod) - n_recent]
    train_prod = _weighted(train_prod, policy.production_weight, seed=cfg.training.seed)
    columns = [c for c in base.columns if c in train_prod.columns]
    combined = pd.concat([base, in_snapshot_types(base, train_prod[columns])], ignore_index=True)
    is_base = np.arange(len(combined)) < len(base)
    combined, rare, kept = _without_rare_classes(combined, spec, min_rows=max(2, cfg.training.cv_folds))
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
        record=record,
        recent=recent.drop(columns=["ts"]),
        n_base=len(base),
        n_production=len(train_prod),
        first_production_row=int(is_base[kept].sum()),
        reference=drift_reference(prod, cfg),
    )


def drift_reference(production: pd.DataFrame, cfg: Config) -> pd.DataFrame | None:
    """The newest labeled production rows, as many as one monitoring window holds, as the drift reference.

    A time window (`monitoring.window`) takes the rows within that span of the newest one; `last_rows` takes
    that many. Fewer than `monitoring.min_rows` such rows: None, and the model keeps its training sample.
    """
    from driftloop.timeutil import parse_duration

    mon = cfg.monitoring
    if production.empty:
        return None
    if mon.window:
        newest = pd.Timestamp(production["ts"].max())
        rows = production[production["ts"] >= newest - parse_duration(mon.window)]
    else:
        rows = production.iloc[-(mon.last_rows or len(production)) :]
    if len(rows) < mon.min_rows:
        return None
    return rows.drop(columns=["ts"]).reset_index(drop=True)


def _without_rare_classes(
    frame: pd.DataFrame, spec: ModelSpec, *, min_rows: int
) -> tuple[pd.DataFrame, dict[str, int], np.ndarray]:
    """Drop the rows of classes with fewer than `min_rows` labels (a new class in production starts that way).

    Stratified CV and the kept holdout need a few rows of every class; such rows wait in the log until
    enough of them arrive for a later retraining. Also returns the mask of the rows kept.
    """
    everything = np.ones(len(frame), dtype=bool)
    if spec.task == "regression":
        return frame, {}, everything
    counts = frame[spec.target].value_counts()
    rare = counts[counts < min_rows]
    if rare.empty:
        return frame, {}, everything
    keep = ~frame[spec.target].isin(rare.index).to_numpy()
    return frame[keep].reset_index(drop=True), {str(k): int(v) for k, v in rare.items()}, keep


def _weighted(frame: pd.DataFrame, weight: float, *, seed: int) -> pd.DataFrame:
    """Weight production rows by repetition: each row appears floor(w) times, plus once more with p = frac(w).

    A snapshot is a plain table, so weights become rows; that keeps every estimator and the lineage simple.
    """
    if weight == 1.0 or frame.empty:
        return frame
    rng = np.random.default_rng(seed)
    counts = np.floor(weight) + (rng.random(len(frame)) < weight - np.floor(weight))
    return frame.loc[frame.index.repeat(counts.astype(int))]
