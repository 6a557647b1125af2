"""`driftloop drift` (any two tables), `driftloop estimate` (a model's metrics on a table without labels) and
`driftloop monitor` (one pass over the prediction log).

Mounted in `cli/app.py` with `app.command("drift")(cli_monitor.drift)` and `app.command("monitor")(cli_monitor.monitor)`;
also runnable alone as `python -m driftloop.cli.monitor drift|estimate|monitor ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from driftloop.cli.options import ConfigOption
from driftloop.errors import NotFoundError, UserError

app = typer.Typer(name="driftloop-monitor", no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)

JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")]
HtmlOption = Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")]


def drift(
    reference: Annotated[Path, typer.Argument(help="Reference table (CSV with any delimiter, or Parquet).")],
    current: Annotated[Path, typer.Argument(help="Current table to compare with the reference.")],
    json_out: JsonOption = None,
    html_out: HtmlOption = None,
    drift_share: Annotated[
        float | None,
        typer.Option(help="Share of drifted columns that makes dataset drift (default: config or 0.5)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="driftloop.yaml whose monitoring.columns overrides apply."),
    ] = None,
    multivariate: Annotated[
        bool,
        typer.Option(
            "--multivariate",
            help="Also test the joint distribution: a domain classifier (ROC AUC) and PCA reconstruction error, "
            "with the features that drive each.",
        ),
    ] = False,
) -> None:
    """Compare CURRENT with REFERENCE column by column, with Evidently's default drift tests and thresholds."""
    from driftloop.monitor.drift import ColumnOverride
    from driftloop.monitor.report import write_html, write_json
    from driftloop.monitor.tables import compare_files

    share, overrides = 0.5, {}
    if config is not None:
        from driftloop.config import load_config

        mon = load_config(config).monitoring
        share = mon.drift_share
        overrides = {k: ColumnOverride(v.method, v.threshold) for k, v in mon.columns.items()}
    if drift_share is not None:
        if not 0 < drift_share <= 1:
            raise UserError(f"--drift-share must be in (0, 1], got {drift_share}")
        share = drift_share
    report = compare_files(
        reference, current, drift_share=share, overrides=overrides, multivariate=multivariate
    )
    _print_drift(report["drift"], report.get("skipped", {}))
    print_multivariate(report.get("multivariate") or [])
    _write(report, json_out, html_out, write_json, write_html)


def estimate(
    ctx: typer.Context,
    reference: Annotated[
        Path,
        typer.Argument(
            help="Labelled reference table (CSV or Parquet) with the target column, out of sample for the model "
            "(a holdout, or production rows it never trained on).",
        ),
    ],
    current: Annotated[
        Path, typer.Argument(help="Table to estimate the metrics on; its target column is optional.")
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="champion, challenger or a model version number.")
    ] = "champion",
    json_out: JsonOption = None,
    config: ConfigOption = None,
) -> None:
    """Estimate the model's metrics on CURRENT without its labels: calibrated confidence for classifiers
    (CBPE), a learned loss for regression (DLE), each with a band; beside the realised ones if CURRENT has labels."""
    from datetime import UTC, datetime

    from driftloop.config import load_config
    from driftloop.data.io import read_table
    from driftloop.monitor.estimation import estimate_tables
    from driftloop.monitor.report import write_json
    from driftloop.stores import open_stores

    root_obj = ctx.find_root().obj if ctx is not None else None
    path = config or ((root_obj or {}).get("config") if isinstance(root_obj, dict) else None)
    cfg = load_config(path)
    ref_frame, cur_frame = read_table(reference), read_table(current)  # DataError naming a bad file
    stores = open_stores(cfg)
    try:
        version = _model_version(stores, model)
        bundle = stores.tracking.load_bundle(version)
        model_name = stores.model_name
    finally:
        stores.close()
    result, notes = estimate_tables(bundle, ref_frame, cur_frame, reference, current)
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
    table = Table("metric", "estimate", f"{result.confidence:.0%} band", "realised")
    for name, m in result.metrics.items():
        table.add_row(
            name,
            _fmt(m.value),
            f"{_fmt(m.low)} - {_fmt(m.high)}",
            "n/a" if m.realised is None else _fmt(m.realised),
        )
    console.print(
        f"{model_name} v{version} ({bundle.spec.task}), {result.method.upper()} fitted on "
        f"{result.detail['reference_rows']} reference rows; {result.rows} current rows"
    )
    console.print(table)
    if json_out is not None:
        report = {
            "kind": "estimate",
            "schema_version": 1,
            "created_at": datetime.now(UTC).isoformat(),
            "model": {"name": model_name, "version": version, "task": bundle.spec.task},
            "reference": {"path": str(reference), "rows": len(ref_frame)},
            "current": {"path": str(current), "rows": len(cur_frame)},
            "notes": notes,
            "estimate": result.to_dict(),
        }
        try:
            console.print(f"wrote {write_json(json_out, report)}")
        except OSError as exc:
            raise UserError(f"--json {json_out}: cannot write there: {exc.strerror or exc}") from None


def _model_version(stores: Any, model: str) -> str:
    """The version `--model` names: a deployment role or a version number (NotFoundError naming it)."""
    if model in ("champion", "challenger"):
        version = getattr(stores.metadata.get_deployment(stores.model_name), model)
        if version is None:
            raise NotFoundError(
                f"model {stores.model_name} has no {model} deployed; pass --model VERSION "
                f"(versions: {', '.join(v.version for v in stores.tracking.list_versions()) or 'none'})"
            )
        return str(version)
    stores.tracking.get_version(model)  # raises NotFoundError naming the version
    return model


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"


def monitor(
    ctx: typer.Context,
    window: Annotated[
        str | None, typer.Option(help="Window length: 30m, 1h, 2d (default: monitoring.window).")
    ] = None,
    last: Annotated[
        int | None, typer.Option("--last", help="The last N predictions instead of a time window.")
    ] = None,
    json_out: JsonOption = None,
    html_out: HtmlOption = None,
    config: ConfigOption = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            help="Also write the monitoring gauges in Prometheus text format here (node-exporter textfile)."
        ),
    ] = None,
) -> None:
    """One monitoring pass over the prediction log: drift, data quality, performance; stored, logged, alerted."""
    from driftloop.config import load_config
    from driftloop.monitor.check import run_check
    from driftloop.monitor.report import write_html, write_json
    from driftloop.stores import open_stores

    if window is not None and last is not None:
        raise UserError("give --window or --last, not both")
    root_obj = ctx.find_root().obj if ctx is not None else None
    path = config or ((root_obj or {}).get("config") if isinstance(root_obj, dict) else None)
    cfg = load_config(path)
    from driftloop.loop.alerts import evaluate_alerts

    stores = open_stores(cfg)
    try:
        check = run_check(stores, cfg, window=window, last=last)
        check.alerts = [o.to_dict() for o in evaluate_alerts(stores, cfg, check)]
        history = [
            {
                "ts": row["ts"].isoformat(),
                "performance": row["result"].get("performance"),
                "estimated": row["result"].get("estimated"),
            }
            for row in stores.metadata.list_monitoring_results(stores.model_name, limit=500)
        ]
        report = check.report(history=history)
    finally:
        stores.close()
    if metrics_file is not None:
        from prometheus_client import CollectorRegistry, write_to_textfile

        from driftloop.monitor.publish import export_gauges

        registry = CollectorRegistry()
        export_gauges(check, registry)
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(metrics_file), registry)  # writes a temp file and renames it
    if check.status == "no_model":
        console.print("[yellow]nothing deployed yet[/]: train and deploy a model first")
    for alert in check.alerts:
        console.print(
            f"[red]alert[/] {alert['rule']} ({alert['severity']}, {alert['action']}): {alert['message']}"
        )
    if check.status == "no_data":
        console.print(
            f"[yellow]no data[/]: {check.n_rows} rows in the window (monitoring.min_rows = {cfg.monitoring.min_rows})"
        )
    if check.drift is not None:
        _print_drift(report["drift"], {})
    if check.quality is not None and not check.quality.passed:
        for problem in check.quality.problems:
            console.print(f"[red]data quality:[/] {problem}")
    print_multivariate(report.get("multivariate") or [])
    print_performance(report.get("performance") or {})
    print_estimated(report.get("estimated") or [])
    print_cost(report.get("cost") or [])
    _write(report, json_out, html_out, write_json, write_html)


def experiment(
    ctx: typer.Context,
    outcome: Annotated[str, typer.Argument(help="The outcome name clients report with their feedback.")],
    window: Annotated[str, typer.Option(help="Requests served this far back: 30m, 1h, 7d.")] = "7d",
    min_lift: Annotated[
        float,
        typer.Option(help="The smallest lift worth finding (outcome units: 0.01 = one point of conversion)."),
    ] = 0.01,
    missing: Annotated[
        str, typer.Option(help="zero: a request with no report counts as 0; skip: it is left out.")
    ] = "zero",
    json_out: JsonOption = None,
    config: ConfigOption = None,
) -> None:
    """A/B on a business outcome: each arm's mean with its interval, and a sequential verdict you may peek at."""
    import json
    from datetime import UTC, datetime

    from driftloop.config import load_config
    from driftloop.monitor.experiment import compare, outcome_by_arm
    from driftloop.stores import open_stores
    from driftloop.timeutil import parse_duration

    if missing not in ("zero", "skip"):
        raise UserError(f"--missing must be zero or skip, got {missing!r}")
    if not min_lift > 0:
        raise UserError(f"--min-lift must be > 0, got {min_lift}")
    span = parse_duration(window)
    root_obj = ctx.find_root().obj if ctx is not None else None
    path = config or ((root_obj or {}).get("config") if isinstance(root_obj, dict) else None)
    cfg = load_config(path)
    stores = open_stores(cfg)
    try:
        dep = stores.metadata.get_deployment(stores.model_name)
        now = datetime.now(UTC)
        arms = outcome_by_arm(
            stores.log_dir,
            stores.model_name,
            outcome,
            start=now - span,
            end=None,
            missing=missing,  # type: ignore[arg-type]
        )
    finally:
        stores.close()
    report: dict = {
        "outcome": outcome,
        "window": window,
        "missing": missing,
        "arms": [a.to_dict() for a in arms],
    }
    for a in arms:
        low, high = a.interval()
        console.print(
            f"v{a.model_version} {a.arm}: {a.requests} requests ({a.reported} reported), "
            f"{outcome} {a.mean:.4g} [{low:.4g}, {high:.4g}]"
        )
    champion = next((a for a in arms if a.arm == "champion" and a.model_version == dep.champion), None)
    challenger = next((a for a in arms if a.arm == "challenger" and a.model_version == dep.challenger), None)
    if champion is None or challenger is None:
        console.print(
            "[yellow]no comparison[/]: the champion and the challenger of the current deployment "
            "have not both served requests in the window"
        )
        report["comparison"] = None
    else:
        c = compare(outcome, champion, challenger, min_lift=min_lift)
        report["comparison"] = c.to_dict()
        console.print(
            f"lift {c.lift:+.4g} (challenger v{challenger.model_version} - champion v{champion.model_version}): "
            f"[bold]{c.verdict}[/] (always-valid p: better {c.p_better:.3g}, worse {c.p_worse:.3g})"
        )
        if c.needed_per_arm is not None:
            console.print(
                f"to find a lift of {min_lift:g} with 80% power: {c.needed_per_arm} requests per arm"
                + (f", {c.more_per_arm} more" if c.more_per_arm else " (reached)")
            )
    if json_out is not None:
        from driftloop.monitor.report import write_atomic

        write_atomic(json_out, json.dumps(report, indent=2, default=str))


def print_multivariate(results: list[dict]) -> None:
    """One line per method: statistic against threshold, verdict, and the features that drive it."""
    for m in results:
        verdict = "[red]drift[/]" if m["drift"] else "[green]no drift[/]"
        drivers = ", ".join(f"{d['feature']} {d['share']:.0%}" for d in m["drivers"][:3])
        console.print(
            f"multivariate {m['method']}: {m['statistic']:.3f} (threshold {m['threshold']:.3f}) {verdict}"
            + (f"; driven by {drivers}" if drivers else "")
        )


def print_cost(cost: list[dict]) -> None:
    """Model CPU-ms per 1,000 predictions per version, arm and source (what serving each one costs)."""
    for c in cost:
        figure = (
            "not measured" if c["cpu_ms_per_1k"] is None else f"{c['cpu_ms_per_1k']:.1f} CPU-ms per 1,000"
        )
        console.print(f"cost v{c['model_version']} {c['arm']} ({c['source']}): {c['rows']} rows, {figure}")


def print_estimated(estimated: list[dict]) -> None:
    """Metrics estimated without labels per model version and arm, with their bands (or why there are none)."""
    for group in estimated:
        metrics = ", ".join(
            f"{k} {v['value']:.4g} [{v['low']:.4g}, {v['high']:.4g}]"
            for k, v in group["metrics"].items()
            if v["value"] is not None and v["low"] is not None and v["high"] is not None
        )
        note = f" [dim]({group['note']})[/]" if group.get("note") else ""
        what = f"estimated ({group['method']}) {metrics}" if group["method"] else "no estimate"
        console.print(
            f"v{group['model_version']} {group['arm']}: {group['rows']} rows, {what}{note}", highlight=False
        )


def print_performance(performance: dict) -> None:
    """Live metrics per model version and arm, and the feedback no prediction matches."""
    for group in performance.get("groups", []):
        metrics = ", ".join(
            f"{k} {v['value']:.4g}" for k, v in group["metrics"].items() if v["value"] is not None
        )
        console.print(f"v{group['model_version']} {group['arm']}: {group['n_labeled']} labeled; {metrics}")
    unmatched = performance.get("unknown_labels", 0)
    if unmatched:
        console.print(
            f"[yellow]unmatched feedback[/]: {unmatched} label(s) whose request_id matches no logged "
            "prediction (a typo, an id from another system, or a prediction that was never logged)"
        )


def _write(report: dict, json_out: Path | None, html_out: Path | None, write_json, write_html) -> None:  # noqa: ANN001
    for option, path, writer in (("--json", json_out, write_json), ("--html", html_out, write_html)):
        if path is None:
            continue
        try:
            console.print(f"wrote {writer(path, report)}")
        except OSError as exc:  # a folder that is a file, no permission, a full disk: the user's path
            raise UserError(f"{option} {path}: cannot write there: {exc.strerror or exc}") from None


def _print_drift(drift: dict, skipped: dict[str, str]) -> None:
    table = Table("column", "kind", "method", "statistic", "threshold", "drift", "PSI")
    for name, col in drift["columns"].items():
        stat = "n/a" if col["statistic"] is None else f"{col['statistic']:.4g}"
        psi = "n/a" if col["psi"] is None else f"{col['psi']:.3g}"
        verdict = {True: "[red]yes[/]", False: "no", None: f"[yellow]{col.get('error')}[/]"}[col["drift"]]
        table.add_row(name, col["kind"], str(col["method"]), stat, str(col["threshold"]), verdict, psi)
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"[yellow]not tested[/] {name}: {reason}")
    verdict = drift["dataset_drift"]
    share = drift["drift_share"]
    text = {True: "[red bold]dataset drift[/]", False: "[green]no dataset drift[/]", None: "no verdict"}[
        verdict
    ]
    share_text = "n/a" if share is None else f"{share:.0%}"
    console.print(f"{text}: {drift['n_drifted']} of {drift['n_tested']} columns drifted ({share_text})")


app.command("drift")(drift)
app.command("estimate")(estimate)
app.command("monitor")(monitor)
app.command("experiment")(experiment)


def main() -> None:
    from driftloop.cli.app import run

    run(app)


if __name__ == "__main__":
    main()
