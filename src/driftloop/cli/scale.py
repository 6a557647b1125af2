"""`driftloop score`: batch scoring of Parquet/CSV files of any size on a Dask cluster.

Mounted in `cli/app.py` with `app.command("score")(cli_scale.score)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from driftloop.cli.options import ConfigOption
from driftloop.errors import UserError

#: Inputs smaller than this (on disk) are scored by in-process workers when no scheduler is given:
#: starting worker processes would cost more than it saves.
IN_PROCESS_BYTES = 64 * 2**20


def score(
    input: Annotated[
        str, typer.Option("--input", "-i", help="Parquet or CSV file, folder or glob ('data/*.parquet').")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the scored Parquet files.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="champion, challenger or a model version number.")
    ] = "champion",
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Scheduler of an existing Dask cluster, tcp://host:8786, or 'local' for a local cluster "
            "(default: scale.dask_scheduler / DRIFTLOOP_DASK_SCHEDULER, else a local cluster).",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Local cluster: worker processes (scale.local_workers).")
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(help="Local cluster: memory limit per worker, e.g. 2GiB (scale.local_memory_limit)."),
    ] = None,
    partition_rows: Annotated[
        int | None, typer.Option(min=1, help="Rows per partition (config scale.partition_rows).")
    ] = None,
    top: Annotated[
        str | None,
        typer.Option(
            help="Also export the best rows, ranked by --by: a count (1000) or a percentage (10%), "
            "to OUTPUT/top.csv and OUTPUT/top.xlsx with the id column (data.id_column)."
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="Score to rank --top by: proba:<class> or prediction (default: the positive class, "
            "the last of the sorted classes, of a binary model; the prediction of a regression)."
        ),
    ] = None,
    top_out: Annotated[
        Path | None,
        typer.Option(help="A copy of the --top export elsewhere: a .csv or .xlsx file (replaced)."),
    ] = None,
    log: Annotated[
        bool, typer.Option(help="Append the predictions to the prediction log (source=batch).")
    ] = True,
    compile_trees: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="Predict through compiled trees, built once per model version and machine (default: "
            "unless the input is small enough to score in this process, where building takes longer "
            "than it saves).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Score a dataset partition by partition with a registered model; bad rows go to OUTPUT/rejects/."""
    from driftloop.config import load_config
    from driftloop.scale.cluster import dask_client, resolve_address
    from driftloop.scale.inputs import find_input
    from driftloop.scale.ranking import parse_top
    from driftloop.scale.scoring import score_batch
    from driftloop.stores import open_stores

    try:
        cfg = load_config(config)
        address = resolve_address(dask, cfg.scale.dask_scheduler)  # same meaning as `train --dask`
        top_k = parse_top(top) if top is not None else None
        workers = workers or cfg.scale.local_workers
        memory_limit = memory_limit or cfg.scale.local_memory_limit
        small = address is None and workers is None and find_input(input).total_bytes < IN_PROCESS_BYTES
        stores = open_stores(cfg)
        try:
            with dask_client(
                address,
                n_workers=1 if small else workers,
                threads_per_worker=2 if small else 1,
                processes=not small,
                memory_limit=memory_limit or "auto",
            ) as client:
                summary = score_batch(
                    stores,
                    client,
                    input,
                    output,
                    model=model,
                    partition_rows=partition_rows,
                    log_predictions=log,
                    compile_trees=not small if compile_trees is None else compile_trees,
                    top=top_k,
                    by=by,
                    top_out=top_out,
                )
        finally:
            stores.close()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"scored {summary.scored} of {summary.rows} rows with {summary.model_name} version "
        f"{summary.model_version} in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s, "
        f"{summary.partitions} partitions{', compiled trees' if summary.compiled else ''}) -> "
        f"{summary.output}/predictions"
    )
    if summary.top_rows is not None:
        excel = (
            " and top.xlsx" if (Path(summary.output) / "top.xlsx").exists() else " (too many rows for Excel)"
        )
        copy = f"; copy in {top_out}" if top_out is not None else ""
        typer.echo(
            f"top {summary.top_rows} rows by {summary.top_by} -> {summary.output}/top.csv{excel}{copy}"
        )
    if summary.logged:
        typer.echo(f"logged {summary.logged} predictions (source=batch)")
    if summary.rejected:
        typer.secho(
            f"rejected {summary.rejected} rows: see {summary.output}/rejects (column _reject_reason)",
            fg=typer.colors.YELLOW,
            err=True,
        )
