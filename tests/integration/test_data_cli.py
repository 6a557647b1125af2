"""`driftloop init` and `driftloop data ...` through the real CLI entry point: outputs and exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert show.returncode == 0 and "alcohol" in show.stdout and "numeric" in show.stdout  # the kind
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


def cli_in_process(
    cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """The real entry point without a process start-up (exit code, stdout, stderr)."""
    from driftloop.cli import main
    from driftloop.config import CONFIG_ENV

    monkeypatch.chdir(cwd)
    monkeypatch.delenv(CONFIG_ENV, raising=False)  # --config sets it; restored after the test
    monkeypatch.setattr(sys, "argv", ["driftloop", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_data_add_refuses_what_validate_or_training_would_refuse(
    tmp_path: Path, red: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of these was stored as the latest version `train` uses; now exit 2, naming the cause, nothing
    stored. A Parquet file is read as Parquet although the config (written for CSV data) says csv."""
    for key, value in stores_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    small = red.head(200)
    small.to_csv(tmp_path / "red.csv", sep=";", index=False)
    assert cli_in_process(tmp_path, monkeypatch, capsys, "init", "red.csv", "--target", "quality")[0] == 0
    code, out, err = cli_in_process(tmp_path, monkeypatch, capsys, "data", "add")
    assert code == 0, err
    version = out.split("version ")[1].split()[0]
    cases = {
        "no_ph.csv": (small.drop(columns=["pH"]), "column 'pH': missing"),
        "no_target.csv": (small.drop(columns=["quality"]), "column 'quality': missing"),
        "one_row.csv": (small.head(1), "1 data row(s): a dataset needs at least 2"),
        "infinite.csv": (small.assign(sulphates=np.inf), "column 'sulphates': 200 infinite value(s)"),
        "constant.csv": (small.assign(quality=5), "target column 'quality': a single value (5)"),
    }
    for name, (frame, _) in cases.items():
        frame.to_csv(tmp_path / name, sep=";", index=False)
    header = ";".join([*small.columns, "alcohol"])
    rows = [";".join(map(str, [*r, r[-2]])) for r in small.head(5).itertuples(index=False)]
    (tmp_path / "twice.csv").write_text("\n".join([header, *rows]) + "\n")
    cases["twice.csv"] = (None, "duplicate column name(s): alcohol")
    (tmp_path / "text.parquet").write_text("fixed acidity;quality\n")
    cases["text.parquet"] = (None, "not a Parquet file")
    for name, (_, message) in cases.items():
        code, out, err = cli_in_process(tmp_path, monkeypatch, capsys, "data", "add", name)
        assert code == 2 and message in err, (name, out, err)
        assert "Traceback" not in err and "np." not in err and "no data rows" not in err, err
    assert len(list((tmp_path / ".driftloop" / "datasets").glob("*.parquet"))) == 1

    small.to_parquet(tmp_path / "same.parquet")  # `init` wrote data.format: csv
    code, out, err = cli_in_process(tmp_path, monkeypatch, capsys, "data", "add", "same.parquet")
    assert code == 0 and f"already stored as version {version}" in out, err
    code, out, err = cli_in_process(tmp_path, monkeypatch, capsys, "data", "add", "no_ph.csv", "--new-schema")
    assert code == 0, err


@pytest.mark.no_database
def test_messages_name_the_real_cause(
    tmp_path: Path, red: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli_in_process(tmp_path, monkeypatch, capsys, "--config", str(tmp_path), "data", "list")
    assert code == 2 and "is a folder, not a file" in err and "does not exist" not in err
    red.head(1).to_csv(tmp_path / "one.csv", index=False)
    code, _, err = cli_in_process(tmp_path, monkeypatch, capsys, "init", "one.csv", "--target", "alcohol")
    assert code == 2 and "1 data row(s)" in err and "np." not in err, err
    red.head(50).assign(alcohol=red["alcohol"].head(50).replace(9.4, -np.inf)).to_csv(
        tmp_path / "inf.csv", index=False
    )
    code, _, err = cli_in_process(tmp_path, monkeypatch, capsys, "init", "inf.csv", "--target", "quality")
    assert code == 2 and "column 'alcohol':" in err and "infinite" in err, err
    assert not (tmp_path / "driftloop.yaml").exists()
