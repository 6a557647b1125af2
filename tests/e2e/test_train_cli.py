"""`driftloop train` and `driftloop models ...` through the real entry point (`cli.main`), in process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from driftloop.cli import main
from tests.conftest import write_project


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["driftloop", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_train_then_inspect_and_refuse_an_ungated_promotion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(write_project(tmp_path))
    code, out, err = run(capsys, monkeypatch, "--config", config, "data", "add")
    assert code == 0, err
    code, out, err = run(
        capsys, monkeypatch, "--config", config, "train", "--budget-trials", "2", "--no-progress"
    )
    assert code == 0, err
    assert "v1 (" in out and "; champion;" in out and "leaderboard" in out
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "list")
    assert code == 0 and "champion" in out and "accuracy" in out
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "show", "1", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["role"] == "champion" and shown["spec"]["target"] == "quality"
    assert shown["cost"]["train_trials"] == 2 and shown["cost"]["train_cpu_seconds"] > 0
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "show", "1")
    assert code == 0 and "cost: trained in " in out and "CPU-s, 2 trials); predicts one row in " in out
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "promote", "1")
    assert code == 2 and "no challenger to promote" in err
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "rollback")
    assert code == 2 and "nothing to roll back" in err
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "show", "7")
    assert code == 2 and "no version '7'" in err


def test_regression_reports_r2_and_mae_and_the_objective_that_keeps_predictions_in_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(write_project(tmp_path, data={"task": "regression"}))
    code, out, err = run(capsys, monkeypatch, "--config", config, "data", "add")
    assert code == 0, err
    code, out, err = run(
        capsys, monkeypatch, "--config", config, "train", "--budget-trials", "2", "--no-progress"
    )
    assert code == 0, err
    # Wine quality is never negative: a Poisson objective, said so, and every holdout metric.
    assert "holdout rmse " in out and ", r2 " in out and ", mae " in out
    assert "objective poisson" in out and "grouped by row digest" in out


def test_a_continuous_target_never_below_zero_keeps_squared_error_floored_at_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alcohol (8 to 15 %, not counts): squared error, predictions floored at 0, said so and stored."""
    config = str(write_project(tmp_path, data={"task": "regression", "target": "alcohol"}))
    code, out, err = run(capsys, monkeypatch, "--config", config, "data", "add")
    assert code == 0, err
    code, out, err = run(
        capsys, monkeypatch, "--config", config, "train", "--budget-trials", "2", "--no-progress"
    )
    assert code == 0, err
    assert "objective squared error, predictions floored at 0" in out
    from driftloop.config import load_config
    from driftloop.stores import open_stores

    stores = open_stores(load_config(config))
    try:
        assert stores.tracking.load_bundle("1").spec.minimum_prediction == 0.0
    finally:
        stores.close()


def test_models_list_says_which_holdout_scores_are_not_comparable_and_shows_the_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from tests.conftest import RED

    config = str(write_project(tmp_path))
    smaller = tmp_path / "smaller.csv"
    pd.read_csv(RED, sep=";").iloc[300:].to_csv(smaller, sep=";", index=False)
    for data in (str(RED), str(smaller)):  # v2 trains on another data version, so another holdout
        code, out, err = run(capsys, monkeypatch, "--config", config, "data", "add", data)
        assert code == 0, err
        code, out, err = run(
            capsys, monkeypatch, "--config", config, "train", "--budget-trials", "1", "--no-progress"
        )
        assert code == 0, err
    from driftloop.cli import models as cli_models

    monkeypatch.setattr(cli_models.console, "width", 240)  # one table row per line
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "list")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("2 "))
    # v2's holdout score is marked, the note says why, and the gate's same-row scores stand beside it.
    assert " *" in row and "vs v1" in row and "rows)" in row
    assert "not comparable" in out
    # The MLflow UI's version page says what each version is and what the gate decided.
    from driftloop.config import load_config
    from driftloop.stores import open_stores

    stores = open_stores(load_config(config, environ={}))
    try:
        client = stores.tracking.client
        first = client.get_model_version(stores.model_name, "1").description
        second = client.get_model_version(stores.model_name, "2").description
    finally:
        stores.close()
    assert "trained on data version" in first and "No gate" in first
    assert "Gate against champion v1:" in second and ("passed" in second or "failed" in second)
