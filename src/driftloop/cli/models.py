"""CLI commands for training and the model registry: `driftloop train` and `driftloop models ...`.

Mounted by `cli/app.py`: `app.command("train")(cli_models.train)` and `app.add_typer(cli_models.app,
name="models")`. The global `--config` option of the root command is read from the Typer context.
Errors are not caught here: a UserError becomes exit code 2 in `cli.run`.
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
    import time

    begun = time.perf_counter()  # --budget-seconds counts from here: opening the stores is part of the run
    from driftloop.scale.cluster import resolve_address
    from driftloop.train.search import train as run_train

    st = _stores(ctx)
    address = resolve_address(dask, st.cfg.scale.dask_scheduler)  # checked before any work starts
    if address is None:
        result = run_train(
            st.cfg, data, budget_seconds, progress, budget_trials=budget_trials, stores=st, console=console,
            started=begun,
        )  # fmt: skip
    else:
        from functools import partial

        from driftloop.scale.cluster import dask_client
        from driftloop.scale.search import distributed_search

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
                started=begun,
            )
    role = "champion" if result.champion else "challenger" if result.challenger else "registered only"
    metric = result.metric
    # Regression: RMSE alone hides scale and bias; R² and MAE beside it, and how predictions stay in range.
    others = [m for m in ("r2", "mae", "rmse") if m != metric] if metric in ("rmse", "mae", "r2") else []
    holdout = ", ".join(f"{m} {result.holdout.get(m, float('nan')):.4f}" for m in [metric, *others])
    objective = {
        "poisson": "; objective poisson (count target: predictions never below 0)",
        "squared_error, floored at 0": "; objective squared error, predictions floored at 0 (target never below 0)",
    }.get(result.objective, "; objective squared error" if result.objective else "")
    console.print(
        f"v{result.version} ({result.family}): CV {metric} {result.cv_mean:.4f} ± {result.cv_std:.4f} "
        f"({result.validation}), holdout {holdout}{objective}; {role}; "
        f"{result.n_trials} trials in {result.seconds:.1f}s; run {result.run_id}"
    )


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """Every registered version with its data, family, scores, gate decision and role."""
    from driftloop.loop.audit import role

    st = _stores(ctx)
    dep = st.metadata.get_deployment(st.model_name)
    versions = st.tracking.list_versions()
    # Each holdout score is measured on its own data version's holdout: scores of versions trained on
    # different data are not on the same rows. The gate scored challenger and champion on the same rows.
    reference = next((v.tags.get("data_version") for v in versions if v.version == dep.champion), None)
    table = Table(
        "version", "data", "family", "CV", "holdout", "gate (same rows)", "role", title=st.model_name
    )
    marked = False
    for v in versions:
        cv = next((f"{k[3:]} {float(x):.4f}" for k, x in v.tags.items() if k.startswith("cv_")), "-")
        metric = cv.split(" ")[0]
        hold = v.tags.get(f"holdout_{metric}")
        other = reference is not None and v.tags.get("data_version") != reference
        marked |= bool(hold) and other
        table.add_row(
            v.version,
            v.tags.get("data_version", "-"),
            v.tags.get("family", "-"),
            cv,
            (f"{float(hold):.4f}" + (" *" if other else "")) if hold else "-",
            _gate_cell(v.version, v.tags),
            role(dep, v.version),
        )
    console.print(table)
    if marked:
        console.print(
            f"* measured on another data version's holdout than the champion's ({reference}): not "
            "comparable with its score; the gate column scores both models on the same rows"
        )


def _gate_cell(version: str, tags: dict[str, str]) -> str:
    """The gate's decision and, when recorded, both models' scores on the gate's (same) rows."""
    decision = tags.get("gate", "-")
    if "gate_challenger_score" not in tags:
        return decision
    return (
        f"{decision}: {float(tags['gate_challenger_score']):.4f} vs v{tags.get('gate_champion', '?')} "
        f"{float(tags['gate_champion_score']):.4f} ({tags.get('gate_rows', '?')} rows)"
    )


@app.command("show")
def show(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Model version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One version: lineage tags, features, classes, role, and its gate report."""
    from driftloop.loop.audit import version_lineage
    from driftloop.stores.tracking import version_cost

    st = _stores(ctx)
    out = version_lineage(st, version)
    spec = st.tracking.load_bundle(out["version"]).spec
    out["spec"] = spec.to_dict()
    out["cost"] = version_cost(out["tags"])
    gate = out["gate"]
    if as_json:
        console.print_json(json.dumps(out, default=str))
        return
    console.print(f"[bold]{st.model_name} v{out['version']}[/] {out['role'] or ''}  run {out['run_id']}")
    for key, value in sorted(out["tags"].items()):
        console.print(f"  {key}: {value}")
    console.print(f"  task {spec.task}, target {spec.target!r}, classes {list(spec.classes)}")
    console.print("  features: " + ", ".join(f"{f.name} ({f.kind})" for f in spec.features))
    if out["cost"]:
        c = out["cost"]
        console.print(
            f"  cost: trained in {c['train_wall_seconds']:g} s ({c['train_cpu_seconds']:g} CPU-s, "
            f"{c['train_trials']:g} trials); predicts one row in {c['predict_ms_1row']:.3f} ms, 100 rows in "
            f"{c['predict_ms_100rows']:.3f} ms"
        )
    if gate:
        console.print(
            f"  gate: {gate['decision']}{' (forced)' if gate.get('forced') else ''}: {gate['reason']}"
        )
        if (served := (gate.get("cost") or {})).get("ratio"):
            console.print(
                f"  serving cost vs champion: {served['ratio']['one_row']:.2f}x one row, "
                f"{served['ratio']['batch']:.2f}x per row in a batch"
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
