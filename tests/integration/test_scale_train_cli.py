"""`driftloop train --dask local`: the trainer's search runs on a Dask cluster and registers a champion."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import write_project


def test_train_with_trials_on_a_local_dask_cluster(tmp_path: Path) -> None:
    write_project(tmp_path, training={"budget": {"trials": 2, "seconds": None}, "families": ["lightgbm"]})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "driftloop.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert cli("data", "add").returncode == 0
    result = cli("train", "--dask", "local", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "trials on the Dask cluster" in result.stdout
    assert "v1 is the champion" in result.stdout + result.stderr
