"""From a dataset version to what the search needs: spec, kept holdout, encoded training matrix.

Every reason the data cannot be trained on is found here, before anything is logged or registered, and
reported as a `DataError` naming the column, class or config key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from driftloop.config import Config
from driftloop.data.datasets import dataset_schema
from driftloop.data.features import feature_specs, infer_task
from driftloop.data.leakage import find_leaks
from driftloop.data.schema import first_infinite
from driftloop.errors import DataError
from driftloop.stores.metadata import DatasetRecord
from driftloop.stores.models import Encoder, ModelSpec
from driftloop.train.candidates import Problem
from driftloop.train.split import held_out, row_digests


@dataclass
class Prepared:
    spec: ModelSpec
    """Without `family` yet: the search decides it."""
    train: pd.DataFrame
    holdout: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    problem: Problem
    groups: np.ndarray
    """Each training row's digest: copies of a row share it, and share a CV fold."""
    source_rows: np.ndarray
    """Each training row's position in the dataset version's table."""
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.spec.classes)


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def _label_key(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def class_indices(classes: tuple[object, ...], labels: pd.Series) -> np.ndarray:
    """Labels as indices into `classes`, -1 for a label not among them."""
    index = {_label_key(c): i for i, c in enumerate(classes)}
    return np.array([index.get(_label_key(v), -1) for v in labels.tolist()], dtype=np.int64)


def _refuse_infinities(frame: pd.DataFrame, columns: list[str], version: str) -> None:
    """Versions stored before `data add` refused infinities still hold them: name them, not a sklearn trace."""
    problems = []
    for name in columns:
        found = first_infinite(frame[name])
        if found is not None:
            row, n = found
            problems.append(f"column {name!r}: {n} infinite value(s), first in data row {row + 1}")
    if problems:
        raise DataError(
            f"dataset {version}: infinite values cannot be trained on; fix the file and `driftloop data add` it",
            problems=problems,
        )


def prepare(cfg: Config, frame: pd.DataFrame, record: DatasetRecord) -> Prepared:
    target, folds = cfg.data.target, cfg.training.cv_folds
    specs, dropped = feature_specs(cfg, frame, dataset_schema(record))
    _refuse_infinities(frame, [*(f.name for f in specs), target], record.version)
    warnings: list[str] = []
    if frame[target].isna().all():
        raise DataError(f"target column {target!r}: every value is missing")
    unlabeled = int(frame[target].isna().sum())
    if unlabeled:
        warnings.append(f"target column {target!r}: {unlabeled} row(s) without a label are left out")
    labeled = frame[frame[target].notna()]
    positions = np.flatnonzero(frame[target].notna().to_numpy())
    labeled = labeled.reset_index(drop=True)
    task = cfg.data.task or infer_task(labeled[target])
    if task == "regression":
        values = pd.to_numeric(labeled[target], errors="coerce")
        if values.isna().any():
            bad = labeled[target][values.isna()].iloc[0]
            raise DataError(f"target column {target!r}: regression needs numbers, found {bad!r}")
        labeled[target] = values.astype(float)
    else:
        counts = labeled[target].value_counts()
        singles = [str(_plain(c)) for c, n in counts.items() if n < 2]
        if singles:
            raise DataError(
                f"target column {target!r}: class(es) {', '.join(singles)} have a single row; a class "
                "needs at least two (one to learn from, one to check); drop or relabel those rows"
            )
        if task == "binary" and len(counts) != 2:
            raise DataError(f"data.task is binary but target column {target!r} has {len(counts)} classes")
    names = [f.name for f in specs]
    leaks = find_leaks(labeled, target, task, names, seed=cfg.training.seed)
    for leak in leaks:
        warnings.append(
            f"likely target leakage still among the features: {leak.reason}; "
            f"exclude {', '.join(leak.columns)} with data.exclude unless it is known at prediction time"
        )
    digests = row_digests(labeled, [*names, target])
    mask = held_out(digests, cfg.data.holdout_fraction)
    train, holdout = labeled[~mask].reset_index(drop=True), labeled[mask].reset_index(drop=True)
    groups, source_rows = digests[~mask], positions[~mask]
    if cfg.training.validation == "time":
        order = _time_order(cfg, train)
        train, groups, source_rows = (
            train.iloc[order].reset_index(drop=True),
            groups[order],
            source_rows[order],
        )
    if holdout.empty:
        raise DataError(
            f"data: {len(labeled)} labeled rows leave no holdout at data.holdout_fraction="
            f"{cfg.data.holdout_fraction:g}; add rows or raise the fraction"
        )
    if len(train) < folds:
        raise DataError(
            f"data: only {len(train)} training rows (after the holdout) for training.cv_folds={folds}"
        )
    classes: tuple[object, ...] = ()
    if task == "regression":
        y = train[target].to_numpy(dtype=np.float64)
    else:
        counts = train[target].value_counts()
        if len(counts) < 2:
            raise DataError(
                f"target column {target!r}: the training rows hold a single class ({_plain(counts.index[0])!r})"
            )
        if counts.max() < folds:
            raise DataError(
                f"target column {target!r}: no class has training.cv_folds={folds} training rows "
                f"(largest: {counts.max()}); lower training.cv_folds"
            )
        rare = [f"{_plain(c)} ({n})" for c, n in counts.items() if n < folds]
        if rare:
            warnings.append(
                f"target column {target!r}: class(es) {', '.join(rare)} have fewer training rows than "
                f"training.cv_folds={folds}; their cross-validated scores are rough"
            )
        classes = tuple(_plain(c) for c in sorted(counts.index.tolist()))
        only_holdout = sorted(set(holdout[target].map(_label_key)) - {_label_key(c) for c in classes})
        if only_holdout:
            warnings.append(f"class(es) {', '.join(only_holdout)} occur only in the holdout: never predicted")
        y = class_indices(classes, train[target])
    # A target never negative in the data (counts, amounts) gets models that never predict below zero:
    # counts through a Poisson loss, anything else through squared error floored at zero.
    nonnegative = task == "regression" and bool(y.min() >= 0 and y.max() > 0)
    counts = nonnegative and bool(np.all(np.asarray(y, dtype=np.float64) % 1 == 0))
    spec = ModelSpec(
        task=task,  # type: ignore[arg-type]
        target=target,
        features=tuple(specs),
        classes=classes,
        metric=cfg.metric(task),
        data_version=record.version,
        id_column=cfg.data.id_column,
        timestamp_column=cfg.data.timestamp_column,
        minimum_prediction=0.0 if nonnegative else None,
    )
    X = Encoder(spec).encode_frame(train)
    categorical = tuple(i for i, f in enumerate(specs) if f.kind == "categorical")
    problem = Problem(
        task=task,
        n_features=len(specs),
        categorical=categorical,
        seed=cfg.training.seed,
        nonnegative=nonnegative,
        counts=counts,
    )
    return Prepared(
        spec=spec,
        train=train,
        holdout=holdout,
        X=X,
        y=y,
        problem=problem,
        groups=groups,
        source_rows=source_rows,
        warnings=warnings,
        dropped={d.column: d.reason for d in dropped},
    )


def _time_order(cfg: Config, train: pd.DataFrame) -> np.ndarray:
    """Row order by `data.timestamp_column` (stable: rows with equal times keep their table order)."""
    column = cfg.data.timestamp_column
    if not column:
        raise DataError("training.validation: time needs data.timestamp_column (the column that orders rows)")
    if column not in train.columns:
        raise DataError(
            f"data.timestamp_column {column!r} (for training.validation: time) is not in the data"
        )
    times = pd.to_datetime(train[column], errors="coerce", format="mixed", utc=True)
    if times.isna().any():
        bad = train[column][times.isna()].iloc[0]
        raise DataError(
            f"data.timestamp_column {column!r}: {bad!r} is not a time; time-ordered CV needs one per row"
        )
    return np.argsort(times.to_numpy(), kind="stable")
