"""Options more than one command takes, defined once so they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["ConfigOption"]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="driftloop.yaml to use (default: the nearest one upward from here)."),
]
