"""`driftloop log compact` and `driftloop log expire`: upkeep of the prediction log (docs/operations.md).

Mounted in `cli/app.py` with `app.add_typer(cli_log.app, name="log")`. Both are safe while servers write and
readers read (`driftloop.stores.logmaint`); the controller runs the same steps in its passes when
`log.compact` is true.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from driftloop.cli.options import ConfigOption
from driftloop.errors import UserError
from driftloop.timeutil import parse_duration

__all__ = ["app"]

app = typer.Typer(help="The prediction log: compaction and retention.", no_args_is_help=True)
console = Console(soft_wrap=True)

DeleteAfterOption = Annotated[
    str,
    typer.Option(
        "--delete-after",
        help="Delete replaced small files on a run at least this long after their compacted file appeared "
        "(readers that listed the folder before it never find a file missing).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")]


def _config(ctx: typer.Context, config: Any) -> Any:
    from driftloop.config import load_config

    return load_config(config or (ctx.find_root().obj or {}).get("config"))


def _report(result: Any, as_json: bool, log_dir: Any) -> None:
    counts = result.to_dict()
    if as_json:
        console.print_json(json.dumps({"log_dir": str(log_dir), **counts}))
        return
    console.print(
        f"prediction log {log_dir}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    )


def _log_dir(ctx: typer.Context, config: Any) -> tuple[Any, Path]:
    cfg = _config(ctx, config)
    return cfg, cfg.stores.resolved_log_dir()


@app.command()
def compact(
    ctx: typer.Context,
    config: ConfigOption = None,
    grace: Annotated[
        str | None,
        typer.Option(
            help="Compact hours that ended at least this long ago (default: log.compact_grace_seconds)."
        ),
    ] = None,
    delete_after: DeleteAfterOption = "60s",
    as_json: JsonFlag = False,
) -> None:
    """Merge the small files of every closed hour into one file per hour (and finish earlier runs' deletions)."""
    from driftloop.stores.logmaint import compact as run

    cfg, log_dir = _log_dir(ctx, config)
    wait = parse_duration(grace) if grace is not None else timedelta(seconds=cfg.log.compact_grace_seconds)
    _report(run(log_dir, grace=wait, delete_after=parse_duration(delete_after)), as_json, log_dir)


@app.command()
def expire(
    ctx: typer.Context,
    config: ConfigOption = None,
    days: Annotated[
        float | None, typer.Option(help="Retention in days (default: log.retention_days).")
    ] = None,
    delete_after: DeleteAfterOption = "60s",
    as_json: JsonFlag = False,
) -> None:
    """Delete partitions older than the retention, keeping labelled predictions retraining still uses."""
    from driftloop.stores.logmaint import expire_as_configured

    cfg, log_dir = _log_dir(ctx, config)
    retention = days if days is not None else cfg.log.retention_days
    if retention is None:
        raise UserError(
            "log.retention_days is null (keep forever) and no --days was given: nothing to expire"
        )
    if retention <= 0:
        raise UserError(f"--days must be more than 0, got {retention}")
    wait = parse_duration(delete_after)
    _report(expire_as_configured(log_dir, cfg, retention_days=retention, delete_after=wait), as_json, log_dir)
