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
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "promote", "1")
    assert code == 2 and "no challenger to promote" in err
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "rollback")
    assert code == 2 and "nothing to roll back" in err
    code, out, err = run(capsys, monkeypatch, "--config", config, "models", "show", "7")
    assert code == 2 and "no version '7'" in err
