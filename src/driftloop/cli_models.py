"""CLI commands for training and the model registry: `driftloop train` and `driftloop models ...`.

Mounted by `cli.py`: `app.command("train")(cli_models.train)` and `app.add_typer(cli_models.app,
name="models")`. The global `--config` option of the root command is read from the Typer context.
Errors are not caught here: a UserError becomes exit code 2 in `cli.main`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Registered model versions and what serves: list, show, promote, rollback.")
console = Console(soft_wrap=True)


def _config_path(ctx: typer.Context) -> Path | None:
    return ((ctx.find_root().obj or {}) if ctx is not None else {}).get("config")


def _stores(ctx: typer.Context) -> Any:
    from driftloop.config import load_config
    from driftloop.stores import open_stores

    return open_stores(load_config(_config_path(ctx)))


def train(
    ctx: typer.Context,
    data: Annotated[str | None, typer.Option("--data", help="Dataset version (default: the latest).")] = None,
    budget_seconds: Annotated[
        float | None, typer.Option("--budget-seconds", min=0.001, help="Search time budget.")
    ] = None,
    budget_trials: Annotated[
        int | None, typer.Option("--budget-trials", min=1, help="Search trial budget.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Run the trials on a Dask cluster: tcp://host:8786, or 'local' for a local cluster "
            "(default: scale.dask_scheduler / DRIFTLOOP_DASK_SCHEDULER, else in this process).",
        ),
    ] = None,
) -> None:
    """Search model families on a dataset version, register the best, and gate it against the champion."""
    from driftloop.train.search import train as run_train

    st = _stores(ctx)
    if dask is None and not st.cfg.scale.dask_scheduler:
        result = run_train(
            st.cfg, data, budget_seconds, progress, budget_trials=budget_trials, stores=st, console=console
        )
    else:
        from functools import partial

        from driftloop.scale.cluster import dask_client, resolve_address
        from driftloop.scale.search import distributed_search

        address = None if dask == "local" else resolve_address(dask, st.cfg.scale.dask_scheduler)
        with dask_client(address) as client:
            console.print(f"trials on the Dask cluster at {client.scheduler.address}")
            result = run_train(
                st.cfg,
                data,
                budget_seconds,
                progress,
                budget_trials=budget_trials,
                stores=st,
                console=console,
                search_fn=partial(distributed_search, client),
            )
    role = "champion" if result.champion else "challenger" if result.challenger else "registered only"
    metric = result.metric
    console.print(
        f"v{result.version} ({result.family}): CV {metric} {result.cv_mean:.4f} ± {result.cv_std:.4f}, "
        f"holdout {metric} {result.holdout.get(metric, float('nan')):.4f}; {role}; "
        f"{result.n_trials} trials in {result.seconds:.1f}s; run {result.run_id}"
    )


def _role(dep: Any, version: str) -> str:
    if dep.champion == version:
        return "champion"
    if dep.challenger == version:
        weight = f" {dep.challenger_weight:.0%}" if dep.strategy != "single" else ""
        return f"challenger ({dep.strategy}{weight})"
    return ""


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """Every registered version with its data, family, scores, gate decision and role."""
    st = _stores(ctx)
    dep = st.metadata.get_deployment(st.model_name)
    table = Table("version", "data", "family", "CV", "holdout", "gate", "role", title=st.model_name)
    for v in st.tracking.list_versions():
        cv = next((f"{k[3:]} {float(x):.4f}" for k, x in v.tags.items() if k.startswith("cv_")), "-")
        metric = cv.split(" ")[0]
        hold = v.tags.get(f"holdout_{metric}")
        table.add_row(
            v.version,
            v.tags.get("data_version", "-"),
            v.tags.get("family", "-"),
            cv,
            f"{float(hold):.4f}" if hold else "-",
            v.tags.get("gate", "-"),
            _role(dep, v.version),
        )
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Model version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One version: lineage tags, features, classes, role, and its gate report."""
    from driftloop.stores.tracking import GATE_REPORT_ARTIFACT

    st = _stores(ctx)
    info = st.tracking.get_version(version)
    spec = st.tracking.load_bundle(info.version).spec
    gate = None
    try:
        gate = json.loads(st.tracking.run_artifact(info.run_id, GATE_REPORT_ARTIFACT).read_text())
    except Exception:  # the first model of a project has no gate report
        gate = None
    out = {
        "version": info.version,
        "run_id": info.run_id,
        "role": _role(st.metadata.get_deployment(st.model_name), info.version) or None,
        "aliases": info.aliases,
        "tags": info.tags,
        "spec": spec.to_dict(),
        "gate": gate,
    }
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    console.print(f"[bold]{st.model_name} v{info.version}[/] {out['role'] or ''}  run {info.run_id}")
    for key in sorted(info.tags):
        console.print(f"  {key}: {info.tags[key]}")
    console.print(f"  task {spec.task}, target {spec.target!r}, classes {list(spec.classes)}")
    console.print("  features: " + ", ".join(f"{f.name} ({f.kind})" for f in spec.features))
    if gate:
        console.print(
            f"  gate: {gate['decision']}{' (forced)' if gate.get('forced') else ''}: {gate['reason']}"
        )


def _print_state(dep: Any) -> None:
    weight = f", challenger weight {dep.challenger_weight:g}" if dep.challenger else ""
    step = f", canary step {dep.rollout_step}" if dep.rollout_step is not None else ""
    console.print(
        f"champion v{dep.champion}, challenger {('v' + dep.challenger) if dep.challenger else 'none'}, "
        f"strategy {dep.strategy}{weight}{step} (revision {dep.revision})"
    )


@app.command("promote")
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The challenger's version.")],
    strategy: Annotated[
        str,
        typer.Option(help="single: make it the champion now; ab, canary, shadow, bluegreen: route traffic."),
    ] = "single",
    weight: Annotated[
        float | None, typer.Option(help="Challenger's share of traffic (ab, canary).", min=0.0, max=1.0)
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; kept in the deployment history.")] = "",
) -> None:
    """Promote the gated challenger VERSION, at once (single) or through a traffic strategy."""
    from driftloop.registry import deployments

    st = _stores(ctx)
    why = reason or f"promoted by hand ({strategy})"
    if strategy == "single":
        dep = deployments.promote(st, version=version, reason=why)
    else:
        if strategy == "canary" and weight is None:
            weight = st.cfg.loop.rollout.steps[0]
        dep = deployments.start_strategy(st, strategy, version=version, weight=weight, reason=why)
    _print_state(dep)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why; kept in the deployment history.")] = "rolled back by hand",
) -> None:
    """Send all traffic back to the champion at once; the challenger leaves the deployment."""
    from driftloop.registry import deployments

    st = _stores(ctx)
    _print_state(deployments.rollback(st, reason=reason))
