"""`driftloop init`: look at a data file and write a commented starter driftloop.yaml for it.

It infers the task and the feature types, recognises id-like and date/time columns, and excludes every column
of a likely target leak (a pair whose sum or difference gives the target too: either column alone still
leaks), each with the reason as a comment the user deletes to put the column back. The file is written whole
or not at all.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from driftloop.config import CONFIG_FILE, DEFAULT_METRIC, config_from_dict
from driftloop.data.features import feature_kind, infer_task, is_datetime_like, is_id_like
from driftloop.data.io import detect_format, read_table
from driftloop.data.leakage import Leak, find_leaks
from driftloop.data.schema import check_table, infer_schema, too_few_rows
from driftloop.errors import ConfigError, DataError


@dataclass
class StarterReport:
    path: Path
    task: str
    n_rows: int
    features: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    id_column: str | None = None
    timestamp_column: str | None = None
    leaks: list[Leak] = field(default_factory=list)


def _q(value: str) -> str:
    """A YAML scalar for a column name (quoted only when it must be)."""
    return yaml.safe_dump(value, default_style=None, width=1000).strip().removesuffix("...").strip()


def inspect(data_path: Path, target: str, fmt: str = "auto") -> StarterReport:
    frame = read_table(data_path, fmt)
    if target not in frame.columns:
        raise DataError(
            f"--target: column {target!r} is not in {data_path} (columns: {', '.join(frame.columns)})"
        )
    problems = check_table(frame) + too_few_rows(frame)
    if problems:
        raise DataError(f"{data_path}: the data is not usable", problems=problems)
    task = infer_task(frame[target])
    schema = infer_schema(frame)
    report = StarterReport(path=data_path, task=task, n_rows=len(frame))
    candidates: list[str] = []
    for col in schema.columns:
        if col.name == target:
            continue
        series = frame[col.name]
        # Dates before ids: a timestamp column is often unique per row too.
        if is_datetime_like(series):
            if report.timestamp_column is None:
                report.timestamp_column = col.name
            else:
                report.excluded[col.name] = "date/time column"
            continue
        if is_id_like(series):
            if report.id_column is None:
                report.id_column = col.name
            else:
                report.excluded[col.name] = "unique per row (id-like): it can only memorise rows"
            continue
        kind = feature_kind(col, None)
        if kind is None:
            report.excluded[col.name] = f"free text ({col.n_unique} distinct values)"
            continue
        report.features[col.name] = kind
        candidates.append(col.name)
    report.leaks = find_leaks(frame, target, task, candidates)
    for leak in report.leaks:
        for name in leak.columns:
            if name in report.excluded:
                continue
            # Both columns of a pair go: a model keeps most of the leak through either one alone (cnt =
            # casual + registered: R² 0.99 / 0.97), and neither exists yet when the prediction is needed.
            why = "" if len(leak.columns) == 1 else "; so does either column alone"
            report.excluded[name] = f"likely target leakage: {leak.reason}{why}"
            report.features.pop(name, None)
    return report


def render(report: StarterReport, target: str, data_path: Path, config_dir: Path) -> str:
    """The commented YAML text of a starter config."""
    try:
        rel = os.path.relpath(data_path.resolve(), config_dir.resolve())
    except ValueError:
        rel = str(data_path.resolve())
    categorical = [n for n, k in report.features.items() if k == "categorical"]
    lines = [
        "# driftloop.yaml: written by `driftloop init`. Every key is optional except data.target;",
        "# defaults live in driftloop/config.py. Environment variables DRIFTLOOP_SECTION__KEY override keys.",
        "",
        "project:",
        f"  name: {_q(_project_name(data_path))}   # registered model name in MLflow",
        "",
        "data:",
        f"  path: {_q(rel)}",
        f"  format: {detect_format(data_path)}",
        f"  target: {_q(target)}",
        f"  task: {report.task}   # inferred from {report.n_rows} rows of {_q(target)}",
    ]
    lines.append(
        f"  id_column: {_q(report.id_column)}   # unique per row: kept for joins, never a feature"
        if report.id_column
        else "  id_column: null"
    )
    lines.append(
        f"  timestamp_column: {_q(report.timestamp_column)}   # date/time: used for windows, not a feature"
        if report.timestamp_column
        else "  timestamp_column: null"
    )
    if report.excluded:
        lines.append("  exclude:")
        if report.leaks:
            lines.append(
                "    # Leaky columns are not known when a prediction is made; a model that uses them looks"
            )
            lines.append(
                "    # perfect here and fails in production. Delete a line to use that column as a feature."
            )
        for name, reason in report.excluded.items():
            lines.append(f"    - {_q(name)}   # {reason}")
    else:
        lines.append("  exclude: []")
    if categorical:
        lines.append("  feature_types:   # inferred; change a column to numeric or categorical here")
        for name in categorical:
            lines.append(f"    {_q(name)}: categorical")
    else:
        lines.append("  feature_types: {}   # all features numeric; map a column to categorical to change it")
    lines += [
        "",
        "training:",
        "  families: [linear, random_forest, extra_trees, lightgbm]",
        "  budget:",
        "    trials: 40",
        "    seconds: 120          # the whole run: search, refit and logging the model",
        "  cv_folds: 5",
        "  validation: grouped     # CV folds: grouped (copies of a row share a fold) or time (by data.timestamp_column)",
        f"  metric: {DEFAULT_METRIC[report.task]}",
        "  seed: 42",
        "  max_predict_ms: 3.0       # one row, timed on the serving path; slower candidates are not chosen",
        "",
        "gate:",
        "  min_improvement: 0.0      # in metric units, on the same held-out rows",
        "  confidence: 0.95          # paired test: noise cannot promote a model",
        "  max_latency_ms_per_row: 5.0   # one-row and 100-row requests, on the model as the server loads it",
        "",
        "stores:",
        "  root: .driftloop          # SQLite + local files; set database_url for PostgreSQL",
        "",
        "serving:",
        "  port: 8000",
        "",
        "monitoring:",
        "  window: 1h",
        "  drift_share: 0.5",
        "  multivariate: false       # true: also test the joint distribution (domain classifier, PCA; ~1 s a pass)",
        "",
    ]
    return "\n".join(lines)


def _project_name(data_path: Path) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in data_path.stem).strip("-._")
    return stem or "driftloop-model"


def write_starter(
    data_path: Path, target: str, *, out: Path | None = None, force: bool = False, fmt: str = "auto"
) -> StarterReport:
    """Inspect the data and write the starter config (whole or not at all). Refuses to overwrite unless forced."""
    out = out or Path.cwd() / CONFIG_FILE
    if out.exists() and not force:
        raise ConfigError(f"{out} exists: pass --force to overwrite it")
    report = inspect(data_path, target, fmt)
    text = render(report, target, data_path, out.parent)
    # The written file must load: check it before it replaces anything.
    config_from_dict(yaml.safe_load(text), base_dir=out.parent, environ={})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report.path = out
    return report
