"""The `driftloop` command line: one Typer app (`app.py`) with the commands of each stage mounted from a module
of its own (`models`, `monitor`, `scale`, `serve`, `ui`, `airflow`). Every command is a few lines over the modules
below it; `run` turns every user or usage mistake into one line and exit code 2.

`python -m driftloop.cli ...` is the same as the `driftloop` console script.
"""

from driftloop.cli.app import app, main, run

__all__ = ["app", "main", "run"]
