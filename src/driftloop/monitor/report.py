"""The monitoring report: JSON (schema in `report.schema.json`) and a self-contained Plotly HTML page.

Both `driftloop drift` and `driftloop monitor` build one report dict; the HTML page is rendered from that
dict alone, so what people see and what machines read never disagree. Plotly's JavaScript is inlined
once, so the page opens without network access. Files are written to a temp name, then renamed.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
REF_COLOR, CUR_COLOR = "#4c78a8", "#f58518"


def write_atomic(path: Path | str, text: str) -> Path:
    """Write text to `path` through a temp file in the same folder and a rename: never half-written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json(path: Path | str, report: dict[str, Any]) -> Path:
    return write_atomic(path, json.dumps(report, indent=2, default=str, allow_nan=False) + "\n")


def write_html(path: Path | str, report: dict[str, Any]) -> Path:
    return write_atomic(path, render_html(report))


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# -- HTML ----------------------------------------------------------------------------------------------------


def render_html(report: dict[str, Any]) -> str:
    title = _title(report)
    parts = [f"<h1>{html.escape(title)}</h1>", _summary(report)]
    drift = report.get("drift")
    if drift:
        parts.append("<h2>Feature drift</h2>")
        parts.append(_drift_table(drift))
        for name, col in drift["columns"].items():
            if col.get("distribution"):
                parts.append(_figure(_distribution_figure(name, col)))
    for key, label in (("prediction_drift", "Prediction drift"), ("target_drift", "Target drift")):
        col = report.get(key)
        if col and col.get("distribution"):
            parts.append(f"<h2>{label}</h2>")
            parts.append(_figure(_distribution_figure(col["column"], col)))
    joint = report.get("multivariate")
    if joint:
        parts.append("<h2>Multivariate drift</h2>")
        parts.append(_multivariate_table(joint))
    quality = report.get("quality")
    if quality:
        parts.append("<h2>Data quality</h2>")
        parts.append(_quality_table(quality))
    performance = report.get("performance")
    history = report.get("history") or []
    estimated = report.get("estimated") or []
    if performance or history or estimated:
        parts.append("<h2>Performance</h2>")
        if performance:
            parts.append(_performance_table(performance))
        if estimated:
            parts.append(_estimated_table(estimated, performance or {}))
        if history:
            parts.append(_figure(_history_figure(history)))
    cost = report.get("cost")
    if cost:
        parts.append("<h2>Serving cost</h2>")
        parts.append(_cost_table(cost))
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.drift {{ background: #fde2e1; }} .ok {{ background: #e3f4e1; }} .na {{ color: #888; }}
.verdict {{ font-size: 1.2rem; font-weight: 600; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
{body}
</body></html>
"""


def _title(report: dict[str, Any]) -> str:
    if report.get("kind") == "monitor":
        return f"driftloop monitoring: {report.get('model_name')} v{report.get('model_version')}"
    return "driftloop drift report"


def _summary(report: dict[str, Any]) -> str:
    rows = []
    if report.get("kind") == "monitor":
        window = report.get("window") or {}
        rows.append(f"Window: {window.get('start')} to {window.get('end')}, {window.get('rows')} rows")
        rows.append(f"Status: {report.get('status')}")
    else:
        for side in ("reference", "current"):
            info = report.get(side) or {}
            rows.append(
                f"{side.capitalize()}: {html.escape(str(info.get('path')))} ({info.get('rows')} rows)"
            )
    drift = report.get("drift")
    if drift:
        verdict = drift.get("dataset_drift")
        text = {
            True: "Dataset drift detected",
            False: "No dataset drift",
            None: "Not enough data for a verdict",
        }
        share = drift.get("drift_share")
        share_text = "n/a" if share is None else f"{share:.0%}"
        rows.append(
            f'<span class="verdict">{text[verdict]}</span>: {drift["n_drifted"]} of {drift["n_tested"]} columns '
            f"drifted ({share_text}; threshold {drift['drift_share_threshold']:.0%})"
        )
    for name, reason in (report.get("skipped") or {}).items():
        rows.append(f"Not tested: {html.escape(name)}: {html.escape(reason)}")
    return "".join(f"<p>{r}</p>" for r in rows)


def _fmt(value: Any) -> str:
    if value is None:
        return '<span class="na">n/a</span>'
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _drift_table(drift: dict[str, Any]) -> str:
    head = "<tr><th>column</th><th>kind</th><th>method</th><th>statistic</th><th>threshold</th><th>drift</th><th>PSI</th><th>note</th></tr>"
    rows = []
    for name, col in drift["columns"].items():
        css = {True: "drift", False: "ok", None: "na"}[col.get("drift")]
        psi_css = ' class="drift"' if col.get("psi_drift") else ""
        rows.append(
            f'<tr class="{css}"><td>{html.escape(name)}</td><td>{col["kind"]}</td><td>{_fmt(col["method"])}</td>'
            f"<td>{_fmt(col['statistic'])}</td><td>{_fmt(col['threshold'])}</td><td>{_fmt(col['drift'])}</td>"
            f"<td{psi_css}>{_fmt(col['psi'])}</td>"
            f"<td>{_fmt(col.get('error') or '')}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _quality_table(quality: dict[str, Any]) -> str:
    checks = quality.get("columns", {})
    head = "<tr><th>column</th><th>null rate</th><th>out of range</th><th>unseen categories</th><th>problems</th></tr>"
    rows = []
    for name, col in checks.items():
        css = "drift" if col.get("problems") else "ok"
        rows.append(
            f'<tr class="{css}"><td>{html.escape(name)}</td><td>{_fmt(col.get("null_rate"))}</td>'
            f"<td>{_fmt(col.get('out_of_range_share'))}</td><td>{_fmt(col.get('unseen_share'))}</td>"
            f"<td>{html.escape('; '.join(col.get('problems') or []))}</td></tr>"
        )
    summary = f"<p>Rows: {quality.get('rows')}. Passed: {_fmt(quality.get('passed'))}.</p>"
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in quality.get("problems") or [])
    return summary + (f"<ul>{problems}</ul>" if problems else "") + f"<table>{head}{''.join(rows)}</table>"


def _performance_table(performance: dict[str, Any]) -> str:
    rows = []
    for group in performance.get("groups", []):
        metrics = ", ".join(
            f"{k} {_fmt(v['value'])} [{_fmt(v.get('ci_low'))}, {_fmt(v.get('ci_high'))}]"
            for k, v in group["metrics"].items()
        )
        rows.append(
            f"<tr><td>{html.escape(str(group['model_version']))}</td><td>{html.escape(str(group['arm']))}</td>"
            f"<td>{group['n_labeled']}</td><td>{metrics}</td></tr>"
        )
    head = "<tr><th>model version</th><th>arm</th><th>labeled rows</th><th>metrics (95% CI)</th></tr>"
    extra = f"<p>Labels for unknown request ids: {performance.get('unknown_labels', 0)}</p>"
    return f"<table>{head}{''.join(rows)}</table>{extra}"


def _estimated_table(estimated: list[dict[str, Any]], performance: dict[str, Any]) -> str:
    """Label-free estimates per version and arm over the window, beside the realised metric once labels came."""
    realised = {(g["model_version"], g["arm"]): g for g in performance.get("groups", [])}
    rows = []
    for group in estimated:
        live = realised.get((group["model_version"], group["arm"]))
        cells = []
        for k, v in group["metrics"].items():
            real = (live or {}).get("metrics", {}).get(k, {}).get("value")
            cells.append(
                f"{html.escape(k)} {_fmt(v['value'])} [{_fmt(v['low'])}, {_fmt(v['high'])}]"
                + (
                    f", realised {_fmt(real)} ({live['n_labeled']} labels)"
                    if live and real is not None
                    else ""
                )
            )
        rows.append(
            f"<tr><td>{html.escape(str(group['model_version']))}</td><td>{html.escape(str(group['arm']))}</td>"
            f"<td>{group['rows']}</td><td>{html.escape(str(group['method'] or '-'))}</td>"
            f"<td>{'; '.join(cells) or '-'}</td><td>{html.escape(group.get('note') or '')}</td></tr>"
        )
    head = (
        "<tr><th>model version</th><th>arm</th><th>rows</th><th>method</th>"
        "<th>estimated without labels (95% band)</th><th>note</th></tr>"
    )
    return f"<h3>Estimated before labels</h3><table>{head}{''.join(rows)}</table>"


def _multivariate_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for m in results:
        drivers = ", ".join(f"{html.escape(d['feature'])} {d['share']:.0%}" for d in m["drivers"][:5])
        verdict = '<td class="drift">drift</td>' if m["drift"] else '<td class="ok">no drift</td>'
        rows.append(
            f"<tr><td>{html.escape(m['method'])}</td><td>{_fmt(m['statistic'])}</td>"
            f"<td>{_fmt(m['threshold'])}</td>{verdict}<td>{drivers}</td></tr>"
        )
    head = "<tr><th>method</th><th>statistic</th><th>threshold</th><th>verdict</th><th>driven by</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _cost_table(cost: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr><td>{html.escape(str(c['model_version']))}</td><td>{html.escape(str(c['arm']))}</td>"
        f"<td>{html.escape(str(c['source']))}</td><td>{c['rows']}</td><td>{_fmt(c['cpu_ms_per_1k'])}</td>"
        f"<td>{_fmt(c['p95_latency_ms'])}</td></tr>"
        for c in cost
    ]
    head = (
        "<tr><th>model version</th><th>arm</th><th>source</th><th>rows</th>"
        "<th>model CPU-ms per 1,000 predictions</th><th>p95 latency ms</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _distribution_figure(name: str, col: dict[str, Any]) -> go.Figure:
    dist = col["distribution"]
    if dist["type"] == "histogram":
        edges = dist["edges"]
        x = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        width = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    else:
        x = [str(k) for k in dist["keys"]]
        width = None
    fig = go.Figure()
    fig.add_bar(x=x, y=dist["reference"], name="reference", marker_color=REF_COLOR, width=width, opacity=0.7)
    fig.add_bar(x=x, y=dist["current"], name="current", marker_color=CUR_COLOR, width=width, opacity=0.7)
    verdict = {True: "DRIFT", False: "no drift", None: "not tested"}[col.get("drift")]
    stat = col.get("statistic")
    stat_text = "n/a" if stat is None else f"{stat:.4g}"
    fig.update_layout(
        title=f"{name}: {col.get('method')} = {stat_text} (threshold {col.get('threshold')}) - {verdict}",
        barmode="overlay" if dist["type"] == "histogram" else "group",
        yaxis_title="share of rows",
        height=320,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return fig


def _history_figure(history: list[dict[str, Any]]) -> go.Figure:
    """One line per (metric, model version, arm) over the stored monitoring passes."""
    series: dict[str, tuple[list[Any], list[Any]]] = {}
    for point in history:
        groups = [(g, "") for g in (point.get("performance") or {}).get("groups", [])]
        groups += [(g, " (estimated)") for g in point.get("estimated") or []]
        for group, kind in groups:
            for metric, value in group["metrics"].items():
                key = f"{metric} v{group['model_version']} {group['arm']}{kind}"
                xs, ys = series.setdefault(key, ([], []))
                xs.append(point["ts"])
                ys.append(value["value"])
    fig = go.Figure()
    for key, (xs, ys) in series.items():
        dash = "dot" if key.endswith("(estimated)") else "solid"
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=key, line={"dash": dash})
    fig.update_layout(title="Performance over time", height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def _figure(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
