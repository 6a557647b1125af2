"""The `driftloop` command: thin Typer commands over the modules below. A UserError exits 2 with its message."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from driftloop.cli import airflow as cli_airflow
from driftloop.cli import log as cli_log
from driftloop.cli import models as cli_models
from driftloop.cli import monitor as cli_monitor
from driftloop.cli import scale as cli_scale
from driftloop.cli import ui as cli_ui
from driftloop.cli.options import ConfigOption
from driftloop.config import CONFIG_ENV
from driftloop.errors import ConflictError, UserError, first_line

app = typer.Typer(
    name="driftloop",
    help="Keep a tabular model healthy in production: data, training, gate, serving, monitoring, retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Versioned, validated datasets.", no_args_is_help=True)
db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
app.add_typer(cli_models.app, name="models")
app.add_typer(cli_log.app, name="log")
app.command("train")(cli_models.train)
app.command("monitor")(cli_monitor.monitor)
app.command("drift")(cli_monitor.drift)
app.command("estimate")(cli_monitor.estimate)
app.command("experiment")(cli_monitor.experiment)
app.command("score")(cli_scale.score)
app.command("airflow-dag")(cli_airflow.airflow_dag)
app.command("ui")(cli_ui.ui)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Also show the libraries' warnings and INFO lines (MLflow, alembic, httpx)."
    ),
]


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    ctx.obj = {"config": config}
    if not verbose:
        quiet_libraries()
    if config is not None:
        # Every subcommand (and every process it starts) loads this config unless told otherwise.
        os.environ[CONFIG_ENV] = str(config.resolve())


def quiet_libraries() -> None:
    """Only driftloop speaks: the libraries' warnings and INFO lines are for `--verbose`.

    MLflow warns on every logged model about things driftloop has decided on purpose (integer columns in the
    signature, the dataset source's kind) and logs its database set-up at INFO; alembic and httpx log a line per
    migration and per request. The environment variable reaches MLflow in this process whenever it is imported
    (it reads it then) and in every process a command starts (the server and controller of `demo`).
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # for child processes; this one is set below
    for name in ("mlflow", "alembic", "httpx", "urllib3", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"driftloop(\.|$)")
    # Deprecations are for whoever upgrades the libraries, not the user; pandas attributes those it raises
    # inside DuckDB's `.df()` to driftloop's calling line, so they would pass the filter above.
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


def config_path(ctx: typer.Context) -> Path | None:
    root = ctx.find_root()
    return (root.obj or {}).get("config")


def load(ctx: typer.Context):  # noqa: ANN201 - returns driftloop.config.Config
    from driftloop.config import load_config

    return load_config(config_path(ctx))


def stores(ctx: typer.Context):  # noqa: ANN201 - returns driftloop.stores.Stores
    from driftloop.stores import open_stores

    return open_stores(load(ctx))


# -- init -----------------------------------------------------------------------------------------------------


@app.command()
def init(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file with the training data.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Column to predict.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the config.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config.")] = False,
) -> None:
    """Write a commented starter driftloop.yaml for DATA, inferring task, feature types, ids and leakage."""
    from driftloop.starter import write_starter

    report = write_starter(data, target, out=out, force=force)
    console.print(
        f"[green]wrote[/] {report.path}: task [bold]{report.task}[/], {len(report.features)} features"
    )
    if report.id_column:
        console.print(f"  id column: {report.id_column}")
    if report.timestamp_column:
        console.print(f"  timestamp column: {report.timestamp_column}")
    for name, reason in report.excluded.items():
        console.print(f"  [yellow]excluded[/] {name}: {reason}")
    if report.leaks:
        console.print("  (delete a column from data.exclude to use it as a feature after all)")
    console.print("next: [bold]driftloop data add[/] FILE, then [bold]driftloop train[/]")


# -- data -----------------------------------------------------------------------------------------------------


@data_app.command("add")
def data_add(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="Data file (default: data.path from the config).")
    ] = None,
    note: Annotated[str, typer.Option(help="A note stored with the version.")] = "",
    new_schema: Annotated[
        bool,
        typer.Option(help="Columns may differ from the latest version's (every other check still applies)."),
    ] = False,
) -> None:
    """Validate FILE and store it as an immutable, content-addressed snapshot; exit 2 and store nothing if
    `data validate` against the latest version would fail or training could not use it."""
    from driftloop.data.datasets import add_checked_file

    st = stores(ctx)
    path = file or st.cfg.data.path
    if path is None:
        raise UserError("give a FILE or set data.path in the config")
    # data.format describes data.path; a FILE given here is read for what it is.
    fmt = st.cfg.data.format if file is None else "auto"
    record, created, warnings = add_checked_file(
        st.metadata, st.datasets_dir, path, st.cfg, fmt=fmt, new_schema=new_schema, note=note
    )
    for w in warnings:
        console.print(f"[yellow]warning[/] {w}")
    verb = "added" if created else "already stored as"
    console.print(
        f"{verb} version [bold]{record.version}[/] ({record.n_rows} rows, {record.n_columns} columns)"
    )


@data_app.command("list")
def data_list(ctx: typer.Context) -> None:
    """Every stored dataset version, oldest first."""
    table = Table("version", "created", "rows", "columns", "source", "parents", "note")
    for rec in stores(ctx).metadata.list_datasets():
        table.add_row(
            rec.version,
            rec.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(rec.n_rows),
            str(rec.n_columns),
            rec.source,
            ",".join(rec.parents),
            rec.note,
        )
    console.print(table)


@data_app.command("show")
def data_show(ctx: typer.Context, version: Annotated[str, typer.Argument(help="Version or prefix.")]) -> None:
    """One version: digest, lineage and schema."""
    from driftloop.data.schema import column_kind

    rec = stores(ctx).metadata.get_dataset(version)
    console.print(f"version [bold]{rec.version}[/]  sha256 {rec.digest}")
    console.print(
        f"source {rec.source}\nsnapshot {rec.path}\nrows {rec.n_rows}, parents {rec.parents or '-'}"
    )
    table = Table("column", "kind", "dtype", "nullable", "distinct", "min", "max", "categories")
    for col in rec.schema["columns"]:
        cats = col.get("categories")
        table.add_row(
            col["name"],
            col.get("kind") or column_kind(col["dtype"], cats),  # schemas stored before kinds: derived
            col["dtype"],
            "yes" if col["nullable"] else "no",
            str(col["n_unique"]),
            _num(col.get("minimum")),
            _num(col.get("maximum")),
            ", ".join(cats[:8]) + (" ..." if len(cats) > 8 else "") if cats else "",
        )
    console.print(table)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


@data_app.command("validate")
def data_validate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="File to check.")],
    against: Annotated[str, typer.Option(help="Stored version to compare with.")] = "latest",
) -> None:
    """Check FILE against a stored version's schema; broken columns are named and the exit code is 1."""
    from driftloop.data.datasets import validate_file

    st = stores(ctx)
    errors, warnings, ref = validate_file(st.metadata, file, against, st.cfg.data.format)
    for w in warnings:
        console.print(f"[yellow]warning[/] {w}")
    for e in errors:
        console.print(f"[red]error[/] {e}")
    if errors:
        console.print(f"[red]{file} does not match version {ref.version}[/]: {len(errors)} broken column(s)")
        raise typer.Exit(1)
    console.print(f"[green]{file} matches version {ref.version}[/]")


# -- db -------------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the metadata tables (safe to run twice; also done on first use)."""
    from driftloop.stores.metadata import MetadataStore
    from driftloop.stores.migrations import upgrade

    store = MetadataStore.connect(load(ctx).stores.resolved_database_url(), create=False)
    try:
        revision = upgrade(store.engine)
        url = store.engine.url.render_as_string(hide_password=True)
    finally:
        store.close()
    console.print(f"metadata store at {url} is at revision {revision}")


# -- serve, watch, demo -----------------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to bind (config serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (config serving.port).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (config serving.workers).")
    ] = None,
) -> None:
    """Serve predictions: champion/challenger routing, hot swap, prediction log, Prometheus metrics."""
    from driftloop.cli import serve as cli_serve

    cli_serve.serve(host=host, port=port, workers=workers, config=config_path(ctx))


@app.command()
def watch(
    ctx: typer.Context,
    interval: Annotated[
        str | None, typer.Option(help="Time between passes, e.g. 30s (config loop.interval_seconds).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Export the monitoring gauges on this port (config loop.metrics_port).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Run one pass and exit.")] = False,
) -> None:
    """Run the controller: monitor, trigger, retrain, gate, canary, promote or roll back. Stops on SIGTERM."""
    import logging
    import signal
    import threading

    from driftloop.loop.controller import Controller, open_stores_patiently
    from driftloop.timeutil import parse_duration

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cfg = load(ctx)
    port = metrics_port or cfg.loop.metrics_port
    metrics = None
    if port:
        from prometheus_client import start_http_server

        from driftloop.loop.metrics import controller_metrics

        # Before the stores: a probe on this port sees a live process while the database is still awaited.
        metrics = controller_metrics(cfg.project.name)
        start_http_server(port)  # heartbeat, passes, and the gauges each monitoring pass sets
        console.print(f"controller and monitoring metrics on http://0.0.0.0:{port}/metrics")
    st = open_stores_patiently(cfg, stop)  # a store still starting up is waited for, not a crash
    if st is None:
        return
    if metrics is not None:
        from driftloop.loop.metrics import seed_monitoring

        seed_monitoring(st.metadata, st.model_name)  # how old monitoring is, also right after a restart
    seconds = parse_duration(interval).total_seconds() if interval else st.cfg.loop.interval_seconds
    controller = Controller(st.cfg, st, metrics=metrics)
    console.print(f"watching {st.model_name} every {seconds:g}s as {controller.holder}")
    controller.watch(seconds, stop, max_passes=1 if once else None)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(help="Where the demo project lives (reset on each run).")] = Path(
        "driftloop-demo"
    ),
) -> None:
    """The wine story end to end: train on red, serve, meet white wines, drift, retrain, canary, promote."""
    from driftloop.demo import run_demo

    summary = run_demo(folder.resolve(), console=console)
    if summary.failed or not summary.promoted:
        raise typer.Exit(1)


# -- audit ----------------------------------------------------------------------------------------------------


@app.command()
def events(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only newer events: an ISO time or a duration (30m, 2h, 1d).")
    ] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Every loop decision with its evidence and lineage, oldest first."""
    from driftloop.timeutil import parse_since

    st = stores(ctx)
    rows = st.metadata.list_events(st.model_name, since=parse_since(since) if since else None, kinds=kind)
    if as_json:
        for ev in rows:
            print(json.dumps(ev.to_dict(), default=str))
        return
    table = Table("time", "kind", "version", "data", "message")
    for ev in rows:
        table.add_row(
            ev.ts.strftime("%Y-%m-%d %H:%M:%S"),
            ev.kind,
            ev.model_version or "",
            ev.data_version or "",
            ev.message,
        )
    console.print(table)


@app.command()
def history(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="Registered model name (default: project.name).")
    ] = None,
) -> None:
    """Which version served which share of traffic when, and why it changed."""
    from driftloop.loop.audit import traffic_history

    st = stores(ctx)
    if model and model != st.model_name:
        raise UserError(f"model {model!r} is not this project's model ({st.model_name!r}); use --config")
    table = Table("rev", "since", "champion", "share", "challenger", "share", "strategy", "reason")
    for row in traffic_history(st):
        table.add_row(
            str(row["revision"]),
            row["at"].strftime("%Y-%m-%d %H:%M:%S"),
            row["champion"] or "-",
            f"{row['champion_share']:.0%}",
            row["challenger"] or "-",
            f"{row['challenger_share']:.0%}",
            row["strategy"],
            row["reason"],
        )
    console.print(table)


@app.command()
def explain(
    ctx: typer.Context, request_id: Annotated[str, typer.Argument(help="A request id from /v1/predict.")]
) -> None:
    """Walk one request back to the model version that answered (or failed) it, its run and training-data digest."""
    from driftloop.loop.audit import explain as explain_request

    _print_json(explain_request(stores(ctx), request_id).to_dict())


def _print_json(obj: object) -> None:
    console.print_json(json.dumps(obj, default=str))


def main() -> None:
    """Entry point: user mistakes exit 2 with a message, never a traceback."""
    run(app)


# Typer 0.2x carries its own copy of click (`typer._click`) beside the real one: a usage error from either
# must become one line and exit 2, as click's own standalone mode would print it.
_CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException,)
_CLICK_EXITS: tuple[type[Exception], ...] = (click.exceptions.Exit,)
_CLICK_ABORTS: tuple[type[BaseException], ...] = (click.exceptions.Abort, KeyboardInterrupt)
try:
    from typer._click import exceptions as _typer_click

    _CLICK_ERRORS += (_typer_click.ClickException,)
    _CLICK_EXITS += (typer.Exit,)
    _CLICK_ABORTS += (typer.Abort,)
except ImportError:  # a Typer that uses click itself
    pass


def run(command: typer.Typer) -> None:
    """Run a Typer app as a console script: exit 2 with one line for any usage or user error."""
    try:
        code = command(standalone_mode=False)  # typer.Exit(n) comes back as n here
    except UserError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except ConflictError as exc:  # another actor changed the deployment first: nothing was written
        err_console.print(f"[red]error:[/] {exc}; nothing was changed, look again and retry", highlight=False)
        sys.exit(2)
    except _CLICK_EXITS as exc:
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except _CLICK_ERRORS as exc:
        exc.show()  # type: ignore[attr-defined]  # "Usage: ..." and "Error: ..." as click prints them
        sys.exit(2 if getattr(exc, "exit_code", 1) in (1, 2) else exc.exit_code)  # type: ignore[attr-defined]
    except _CLICK_ABORTS:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        from driftloop.stores.metadata import store_unreachable

        if not store_unreachable(exc):
            raise  # a bug: the traceback is what a report needs
        err_console.print(
            f"[red]error:[/] the metadata store (stores.database_url) cannot be reached: {first_line(exc)}",
            highlight=False,
        )
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
