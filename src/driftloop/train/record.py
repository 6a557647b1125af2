"""What a training run writes to MLflow besides the model: trials as nested runs, the leaderboard, lineage.

Lineage is what makes a model version reproducible: data digest (as an MLflow dataset input), config, git
commit of the project, seed, and the versions of the libraries that fitted it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from driftloop.config import Config
from driftloop.train.tuning import TrialRecord

LIBRARIES = ("driftloop", "mlflow", "scikit-learn", "lightgbm", "optuna", "numpy", "pandas", "scipy")
LEADERBOARD_ARTIFACT = "leaderboard.json"
# A pruned or too-slow trial ended as the search meant it to (its `state` tag says which); KILLED would read
# in the MLflow UI as a crash or a user's kill. Only a trial that raised is FAILED.
_STATUS = {"complete": "FINISHED", "too_slow": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}


def lib_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(folder: Path) -> tuple[str | None, bool]:
    """(commit, dirty) of the git checkout holding the project folder, or (None, False) outside one."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, False
    return head.stdout.strip(), bool(status.stdout.strip())


def config_record(cfg: Config) -> dict[str, Any]:
    """The sections that decide the model; stores and serving hold URLs and tokens that stay out of MLflow."""
    dump = cfg.model_dump(mode="json")
    return {k: dump[k] for k in ("project", "data", "training", "gate")}


def flat_params(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out |= flat_params(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return {prefix: text[:6000]}


def log_trial(client: Any, experiment_id: str, parent_run_id: str, trial: TrialRecord, metric: str) -> None:
    """One trial as a nested run (parent tag), in three calls: create, one batch of data, terminate."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(
        experiment_id,
        run_name=f"trial-{trial.number:03d}-{trial.family}",
        tags={"mlflow.parentRunId": parent_run_id, "family": trial.family, "state": trial.state},
    )
    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in flat_params("", {"family": trial.family, **trial.params}).items()]
    metrics = [Metric("seconds", trial.seconds, now, 0)]
    if trial.cv is not None:
        metrics += [Metric(f"cv_{metric}", s, now, i) for i, s in enumerate(trial.cv.fold_scores)]
        if not trial.cv.pruned:
            metrics += [
                Metric(f"cv_{metric}_mean", trial.cv.mean, now, 0),
                Metric(f"cv_{metric}_std", trial.cv.std, now, 0),
            ]
    if trial.cost is not None:
        metrics += [Metric(k, v, now, 0) for k, v in trial.cost.to_dict().items()]
    tags = [RunTag("message", trial.message[:5000])] if trial.message else []
    client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
    client.set_terminated(run.info.run_id, status=_STATUS.get(trial.state, "FINISHED"))


def leaderboard_frame(rows: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    records = []
    for rank, row in enumerate(rows, start=1):
        records.append(
            {
                "rank": rank,
                "family": row["family"],
                f"{metric}_mean": row.get(f"{metric}_mean"),
                f"{metric}_std": row.get(f"{metric}_std"),
                "fit_seconds": row.get("fit_seconds"),
                "predict_ms_1row": row.get("predict_ms_1row"),
                "predict_ms_100rows": row.get("predict_ms_100rows"),
                "over_limit": bool(row.get("over_limit")),
                "trials": row["trials"],
                "pruned": row["pruned"],
                "failed": row["failed"],
                "too_slow": row.get("too_slow", 0),
                "best_trial": row.get("best_trial"),
                "cv_rows": row.get("cv_rows"),
                "rows": row.get("rows"),
                "params": json.dumps(row.get("params") or {}, sort_keys=True),
            }
        )
    return pd.DataFrame.from_records(records)


def print_leaderboard(
    console: Console,
    rows: list[dict[str, Any]],
    metric: str,
    n_folds: int,
    max_predict_ms: float | None = None,
    sample: str | None = None,
) -> None:
    """`sample`: the rows CV ran on, when the search used a sample of the table (`RowPlan.describe`)."""
    limit = f"; predict ms on the serving path, limit {max_predict_ms:g} ms a row" if max_predict_ms else ""
    on = f" on {sample}" if sample else ""
    table = Table(title=f"leaderboard: best per family, {n_folds}-fold CV {metric}{on}{limit}")
    columns = (
        "#",
        "family",
        "mean",
        "std",
        "fit s/fold",
        "ms 1/100 rows",
        "trials",
        "pruned",
        "slow",
        "best trial",
    )
    for col in columns:
        table.add_column(col, justify="left" if col == "family" else "right")
    for rank, row in enumerate(rows, start=1):
        mean = row.get(f"{metric}_mean")
        table.add_row(
            str(rank),
            row["family"],
            "-" if mean is None else f"{mean:.4f}",
            "-" if mean is None else f"{row[f'{metric}_std']:.4f}",
            "-" if mean is None else f"{row['fit_seconds']:.2f}",
            _ms(row),
            str(row["trials"]),
            str(row["pruned"]),
            str(row.get("too_slow", 0)),
            _best_trial_cell(row),
        )
    console.print(table)


def _ms(row: dict[str, Any]) -> str:
    """Predict ms for one row and for 100 rows; red when the one-row figure is over the limit."""
    one, batch = row.get("predict_ms_1row"), row.get("predict_ms_100rows")
    if one is None or batch is None:
        return "-"
    text = f"{one:.2f}/{batch:.1f}"
    return f"[red]{text}[/]" if row.get("over_limit") else text


def _best_trial_cell(row: dict[str, Any]) -> str:
    if row["family"] == "ensemble":  # its members: trial numbers with weights
        members = (row.get("params") or {}).get("members", [])
        return " ".join(f"{m['trial']}:{m['weight']:.2f}" for m in members)
    if "best_trial" in row:
        return str(row["best_trial"])
    return "all failed" if row["failed"] else "-"


def log_reference(frame: pd.DataFrame, artifact_path: str, *, max_rows: int, seed: int) -> None:
    """Write a reference sample (at most `max_rows` rows of `frame`) as Parquet and log it at `artifact_path`
    of the active run."""
    import mlflow

    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed)

    folder, name = artifact_path.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=folder)


def log_json(run_id: str, payload: dict[str, Any], artifact_path: str) -> None:
    """A JSON artifact on a (possibly finished) run."""
    from mlflow import MlflowClient

    folder, name = artifact_path.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, default=str))
        MlflowClient().log_artifact(run_id, str(path), artifact_path=folder)
