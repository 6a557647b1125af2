"""`driftloop airflow-dag`: print (or write) an Airflow DAG file wired to one project.

Mounted in `cli/app.py` with `app.command("airflow-dag")(cli_airflow.airflow_dag)`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from driftloop.airflow_dag import DEFAULT_SCHEDULE, render_dag


def airflow_dag(
    project: Annotated[
        Path, typer.Option("--project", help="Project folder (with driftloop.yaml) or the config file.")
    ] = Path("."),
    schedule: Annotated[
        str, typer.Option(help="Cron expression or preset (@hourly) for how often the loop runs.")
    ] = DEFAULT_SCHEDULE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (atomically) instead of stdout.")
    ] = None,
) -> None:
    """Write an Airflow 3 DAG that runs this project's loop: `driftloop airflow-dag --project . > dags/x.py`."""
    source = render_dag(project, schedule=schedule)
    if output is None:
        typer.echo(source, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    # Temp file + rename: Airflow's DAG processor never parses a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(source)
    os.replace(tmp, output)
    typer.echo(f"wrote {output}", err=True)
