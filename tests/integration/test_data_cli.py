"""`driftloop init` and `driftloop data ...` through the real CLI entry point: outputs and exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import RED, WHITE, backend, database_url


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftloop.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stores_env(root: Path) -> dict[str, str]:
    """The CLI's environment: `init` writes no database_url, so the postgres pass names its database here."""
    env = dict(os.environ)
    if backend() == "postgres":
        env["DRIFTLOOP_DATABASE_URL"] = database_url(root / ".driftloop")
    return env


@pytest.mark.no_database
def test_init_writes_a_loadable_commented_config(tmp_path: Path) -> None:
    result = run(tmp_path, "init", str(RED), "--target", "quality")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "driftloop.yaml").read_text()
    assert "# " in text and "task: multiclass" in text
    cfg = yaml.safe_load(text)
    assert cfg["data"]["target"] == "quality" and cfg["data"]["exclude"] == []
    again = run(tmp_path, "init", str(RED), "--target", "quality")
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.no_database
def test_init_recognises_ids_dates_and_leaks(tmp_path: Path, red: pd.DataFrame) -> None:
    frame = red.head(400).copy()
    frame.insert(0, "wine_id", range(10_000, 10_000 + len(frame)))
    frame["tasted_on"] = pd.date_range("2024-01-01", periods=len(frame), freq="h").astype(str)
    frame["score_x10"] = frame["quality"] * 10
    path = tmp_path / "wines.csv"
    frame.to_csv(path, index=False)
    result = run(tmp_path, "init", str(path), "--target", "quality")
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load((tmp_path / "driftloop.yaml").read_text())
    assert cfg["data"]["id_column"] == "wine_id"
    assert cfg["data"]["timestamp_column"] == "tasted_on"
    assert cfg["data"]["exclude"] == ["score_x10"]
    assert "likely target leakage" in (tmp_path / "driftloop.yaml").read_text()


@pytest.mark.no_database
def test_init_bad_target_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, "init", str(RED), "--target", "nope")
    assert result.returncode == 2
    assert "'nope'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "driftloop.yaml").exists()


def test_data_add_is_content_addressed_and_validate_names_broken_columns(
    tmp_path: Path, red: pd.DataFrame
) -> None:
    env = stores_env(tmp_path)
    assert run(tmp_path, "init", str(RED), "--target", "quality", env=env).returncode == 0
    first = run(tmp_path, "data", "add", env=env)
    assert first.returncode == 0, first.stderr
    version = first.stdout.split("version ")[1].split()[0]
    copy = tmp_path / "copy.csv"
    red.to_csv(copy, sep=",", index=False)  # other delimiter, same content
    second = run(tmp_path, "data", "add", str(copy), env=env)
    assert "already stored" in second.stdout and version in second.stdout
    assert run(tmp_path, "data", "add", str(WHITE), env=env).returncode == 0
    listing = run(tmp_path, "data", "list", env=env)
    assert listing.stdout.count("\n│ ") >= 2 or listing.stdout.count(version) == 1
    show = run(tmp_path, "data", "show", version[:6], env=env)
    assert show.returncode == 0 and "alcohol" in show.stdout
    broken = tmp_path / "broken.csv"
    red.drop(columns=["pH"]).assign(alcohol="strong").to_csv(broken, index=False)
    check = run(tmp_path, "data", "validate", str(broken), "--against", version, env=env)
    assert check.returncode == 1
    assert "'pH'" in check.stdout and "'alcohol'" in check.stdout
    ok = run(tmp_path, "data", "validate", str(RED), "--against", version, env=env)
    assert ok.returncode == 0


def test_bad_data_exits_2_and_stores_nothing(tmp_path: Path, red: pd.DataFrame) -> None:
    env = stores_env(tmp_path)
    assert run(tmp_path, "init", str(RED), "--target", "quality", env=env).returncode == 0
    bad = tmp_path / "bad.csv"
    red.assign(chlorides=None).to_csv(bad, index=False)
    result = run(tmp_path, "data", "add", str(bad), env=env)
    assert result.returncode == 2 and "'chlorides'" in result.stderr
    assert not list((tmp_path / ".driftloop" / "datasets").glob("*.parquet"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert run(tmp_path, "data", "add", str(empty), env=env).returncode == 2
    assert run(tmp_path, "data", "show", "ffffff", env=env).returncode == 2


@pytest.mark.no_database
def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "driftloop.yaml").write_text(
        "data:\n  target: quality\ntraining:\n  budget:\n    seconds: -1\n"
    )
    result = run(tmp_path, "data", "list")
    assert result.returncode == 2
    assert "training.budget.seconds: must be > 0" in result.stderr
