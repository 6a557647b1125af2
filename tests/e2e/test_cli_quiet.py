"""Normal CLI output is driftloop's own: no third-party warnings or INFO lines unless `--verbose` asks."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import RED
from tests.e2e.test_cli_usage_errors import run_cli

NOISE = re.compile(r"Warning:|warnings\.warn|INFO (mlflow|alembic|httpx)")


def test_train_is_quiet_unless_verbose(tmp_path: Path) -> None:
    cfg = {"project": {"name": "wine"}, "data": {"target": "quality"}}
    (tmp_path / "driftloop.yaml").write_text(yaml.safe_dump(cfg))
    added = run_cli(["data", "add", str(RED)], tmp_path)
    assert added.returncode == 0, added.stderr[-2000:]
    quiet = run_cli(["train", "--budget-trials", "1", "--no-progress"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not NOISE.search(quiet.stdout + quiet.stderr), (quiet.stdout + quiet.stderr)[-3000:]
    assert "leaderboard" in quiet.stdout  # driftloop's own output is all there
    # The same command with --verbose shows what was held back (MLflow's warnings on the logged model).
    loud = run_cli(["--verbose", "train", "--budget-trials", "1", "--no-progress"], tmp_path)
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert NOISE.search(loud.stdout + loud.stderr), (loud.stdout + loud.stderr)[-3000:]
