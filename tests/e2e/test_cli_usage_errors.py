"""Every usage mistake on the command line exits 2 with a clear line naming the cause, never a traceback.

Table-driven, through a real subprocess of `python -m driftloop.cli`, as a user types it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import RED

BASE = {"project": {"name": "wine"}, "data": {"target": "quality"}}
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/driftloop"  # port 1: nothing listens there

CASES = [
    # (id, config overrides or None for no project, argv, what stderr must say)
    ("typo-command", None, ["trian"], "No such command 'trian'"),
    ("missing-argument", None, ["explain"], "Missing argument 'request_id'"),
    ("missing-argument-subcommand", None, ["models", "show"], "Missing argument 'version'"),
    ("not-an-integer", None, ["serve", "--port", "abc"], "'--port'"),
    ("option-out-of-range", None, ["train", "--budget-seconds", "0"], "'--budget-seconds'"),
    ("port-out-of-range", {}, ["serve", "--port", "99999"], "--port: must be <= 65535"),
    (
        "unreachable-database",
        {"stores": {"database_url": UNREACHABLE}},
        ["history"],
        "the metadata store (stores.database_url) cannot be reached",
    ),
    (
        "unsupported-database",
        {"stores": {"database_url": "oracle://scott@db/orcl"}},
        ["history"],
        "stores.database_url: 'oracle' is not a supported database",
    ),
    (
        "unwritable-output",
        None,
        ["drift", str(RED), str(RED), "--json", "{file}/report.json"],
        "cannot write there",
    ),
]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftloop.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("overrides", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_usage_error_exits_2_with_one_clear_line(
    tmp_path: Path, overrides: dict | None, args: list[str], expected: str
) -> None:
    if overrides is not None:
        (tmp_path / "driftloop.yaml").write_text(yaml.safe_dump({**BASE, **overrides}))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    proc = run_cli([a.replace("{file}", str(a_file)) for a in args], tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert expected in proc.stderr, proc.stderr[-2000:]


def test_metric_that_does_not_fit_the_target(tmp_path: Path) -> None:
    """`training.metric: accuracy` with a numeric target: a config error before any trial runs."""
    cfg = {"project": {"name": "wine"}, "data": {"target": "alcohol"}, "training": {"metric": "accuracy"}}
    (tmp_path / "driftloop.yaml").write_text(yaml.safe_dump(cfg))
    assert run_cli(["data", "add", str(RED)], tmp_path).returncode == 0
    proc = run_cli(["train", "--budget-seconds", "5"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "training.metric: 'accuracy' does not apply to a regression target" in proc.stderr
    assert "use one of rmse, mae, r2" in proc.stderr
