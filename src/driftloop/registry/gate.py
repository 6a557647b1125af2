"""The promotion gate: may a newly trained model become the challenger of the current champion?

Four checks, one contract (configure in `__init__`, `evaluate(challenger, champion, rows) -> CheckResult`,
results are plain data with `to_dict()`):

- `MetricCheck`: both models scored on exactly the same rows (the kept holdout, plus recent labeled
  production rows when the loop passes them). The challenger must improve the metric by at least
  `gate.min_improvement` and the improvement must be significant under a paired test on those rows: a paired
  bootstrap confidence interval of the metric difference that excludes zero, or McNemar's exact test for
  accuracy. MLflow's own validation compares point metrics only, which lets noise promote a model.
- `LatencyCheck`: the time a one-row request and a 100-row request spend in the model, per row, within
  `gate.max_latency_ms_per_row`, timed on the server's path (JSON records -> `Encoder.encode_records` ->
  `predict_matrix`) on the challenger as the server loads it when `run_gate` gets its model folder, in the
  form a worker serves once its trees are converted (`compiled.served_form`: forests on treelite's GTIL;
  LightGBM on its booster, an upper bound of lleaves). Both models are timed so.
- `EdgeInputCheck`: predicts without error, with well-formed output, on missing values, extreme values and
  unseen categories.
- `cost_check`: what the challenger costs to serve against the champion (the latency check's figures of
  both, as a ratio); refuses a challenger over `gate.max_cost_increase` times the champion when it is set.

`run_gate` runs them and returns a `GateReport`. `force=True` (tests of the rollback path need a bad
challenger) passes the gate regardless, and says so in the report.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftloop.compiled import served_form
from driftloop.config import GateConfig
from driftloop.metrics import higher_is_better, score, score_resamples
from driftloop.stores.models import ModelBundle, load_bundle_dir

__all__ = [
    "UNSEEN_CATEGORY",
    "CheckResult",
    "EdgeInputCheck",
    "GateReport",
    "LatencyCheck",
    "MetricCheck",
    "cost_check",
    "edge_records",
    "label_indices",
    "mcnemar_p",
    "model_scores",
    "paired_bootstrap",
    "run_gate",
]

UNSEEN_CATEGORY = "__driftloop_unseen__"


@dataclass
class CheckResult:
    name: str
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def label_indices(bundle: ModelBundle, labels: pd.Series) -> np.ndarray:
    """True labels as indices into the bundle's classes (-1: a label the model never saw), or floats."""
    if not bundle.spec.is_classifier:
        return pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64)
    index = {_label_key(c): i for i, c in enumerate(bundle.spec.classes)}
    return np.array([index.get(_label_key(v), -1) for v in labels.tolist()], dtype=np.int64)


def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def model_scores(bundle: ModelBundle, rows: pd.DataFrame) -> np.ndarray:
    out = bundle.predict_frame(rows)
    return out.proba if out.proba is not None else out.labels


# -- metric -------------------------------------------------------------------------------------------------


def paired_bootstrap(
    metric: str,
    task: str,
    y_a: np.ndarray,
    s_a: np.ndarray,
    y_b: np.ndarray,
    s_b: np.ndarray,
    *,
    resamples: int,
    seed: int,
) -> np.ndarray:
    """Improvement of model a over model b (positive = a better) on `resamples` row resamples.

    Both models are scored on the same resampled rows each time: the pairing removes the variance the
    two share (hard rows are hard for both), so a real improvement shows with far fewer rows.
    """
    rng = np.random.default_rng(seed)
    n = len(y_a)
    sign = 1.0 if higher_is_better(metric) else -1.0
    out = np.empty(resamples)
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        ma = score_resamples(metric, y_a, s_a, task, idx)
        mb = score_resamples(metric, y_b, s_b, task, idx)
        out[start : start + len(idx)] = sign * (ma - mb)
    return out


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """One-sided exact McNemar test that a is more accurate than b: (p, a-only right, b-only right)."""
    from scipy.stats import binomtest

    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue), only_a, only_b


class MetricCheck:
    name = "metric"

    def __init__(self, metric: str, cfg: GateConfig, *, seed: int = 0) -> None:
        self.metric = metric
        self.cfg = cfg
        self.seed = seed

    def evaluate(self, challenger: ModelBundle, champion: ModelBundle, rows: pd.DataFrame) -> CheckResult:
        metric, cfg, task = self.metric, self.cfg, challenger.spec.task
        labels = rows[challenger.spec.target]
        y_ch, y_cp = label_indices(challenger, labels), label_indices(champion, labels)
        s_ch, s_cp = model_scores(challenger, rows), model_scores(champion, rows)
        m_ch, m_cp = score(metric, y_ch, s_ch, task), score(metric, y_cp, s_cp, task)
        sign = 1.0 if higher_is_better(metric) else -1.0
        improvement = sign * (m_ch - m_cp)
        boot = paired_bootstrap(
            metric, task, y_ch, s_ch, y_cp, s_cp, resamples=cfg.bootstrap_resamples, seed=self.seed
        )
        alpha = 1.0 - cfg.confidence
        low, high = (float(v) for v in np.nanquantile(boot, [alpha / 2, 1 - alpha / 2]))
        details: dict[str, Any] = {
            "metric": metric,
            "challenger": m_ch,
            "champion": m_cp,
            "improvement": improvement,
            "ci_low": low,
            "ci_high": high,
            "confidence": cfg.confidence,
            "min_improvement": cfg.min_improvement,
            "n_rows": len(rows),
            "test": "bootstrap",
            "resamples": cfg.bootstrap_resamples,
        }
        significant = low > 0
        ci = f"{cfg.confidence:.0%} CI of the improvement [{low:+.4f}, {high:+.4f}]"
        if cfg.test == "mcnemar" and metric == "accuracy":
            p, only_ch, only_cp = mcnemar_p(s_ch.argmax(axis=1) == y_ch, s_cp.argmax(axis=1) == y_cp)
            details |= {"test": "mcnemar", "p_value": p, "only_challenger_right": only_ch,
                        "only_champion_right": only_cp}  # fmt: skip
            significant = p < alpha
            ci = f"McNemar p={p:.3g} ({only_ch} rows only the challenger got right, {only_cp} only the champion)"
        head = f"{metric} {m_ch:.4f} vs champion {m_cp:.4f} on {len(rows)} rows ({improvement:+.4f})"
        if improvement <= 0 or improvement < cfg.min_improvement:
            why = (
                "worse than" if improvement < 0 else "not better than" if improvement == 0 else "too close to"
            )
            reason = f"{why} the champion: {head}, below gate.min_improvement={cfg.min_improvement:g}; {ci}"
            return CheckResult(self.name, False, reason, details)
        if not significant:
            return CheckResult(self.name, False, f"improvement not significant: {head}; {ci}", details)
        return CheckResult(self.name, True, f"better: {head}; {ci}", details)


# -- latency ------------------------------------------------------------------------------------------------


class LatencyCheck:
    """A one-row request is what most clients send and what a forest of a thousand python-level trees is
    slowest at; a batch hides that cost by spreading it over its rows, so both are judged. Each figure is
    the fastest of several calls, as `train.cost` times candidates: what the model costs when it has a
    core, so a busy machine does not fail a model that training accepted."""

    name = "latency"

    def __init__(
        self,
        max_ms_per_row: float,
        *,
        repeats: int = 3,
        single_rows: int = 20,
        batch_rows: int = 100,
        served_from: Path | None = None,
    ) -> None:
        self.max_ms_per_row = max_ms_per_row
        self.repeats = repeats
        self.single_rows = single_rows
        self.batch_rows = batch_rows
        self.served_from = served_from

    def evaluate(
        self, challenger: ModelBundle, champion: ModelBundle | None, rows: pd.DataFrame
    ) -> CheckResult:
        challenger = served_form(challenger)
        one = self._one_row_ms(challenger, rows)
        batch = self._batch_ms_per_row(challenger, rows)
        details: dict[str, Any] = {
            "one_row_ms": one,
            "batch_ms_per_row": batch,
            "batch_rows": min(self.batch_rows, len(rows)),
            "max_ms_per_row": self.max_ms_per_row,
            "path": "records -> encode_records -> predict_matrix, forests on GTIL as a worker serves them",
            "served_from": str(self.served_from) if self.served_from is not None else None,
        }
        if champion is not None:
            champion = served_form(champion)
            details["champion_one_row_ms"] = self._one_row_ms(champion, rows)
            details["champion_batch_ms_per_row"] = self._batch_ms_per_row(champion, rows)
        worst = max(one, batch)
        what = "a one-row request" if one >= batch else f"a {details['batch_rows']}-row request"
        if worst > self.max_ms_per_row:
            reason = (
                f"too slow: {worst:.3f} ms per row in {what} > gate.max_latency_ms_per_row="
                f"{self.max_ms_per_row:g}"
            )
            return CheckResult(self.name, False, reason, details)
        reason = (
            f"{one:.3f} ms for one row, {batch:.3f} ms per row in a batch (limit {self.max_ms_per_row:g})"
        )
        return CheckResult(self.name, True, reason, details)

    def _records(self, bundle: ModelBundle, rows: pd.DataFrame, n: int) -> list[dict[str, Any]]:
        frame = rows[bundle.spec.feature_names].head(n)
        return [{k: _plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]

    def _batch_ms_per_row(self, bundle: ModelBundle, rows: pd.DataFrame) -> float:
        records = self._records(bundle, rows, self.batch_rows)
        if not records:
            return 0.0
        bundle.predict_matrix(bundle.encoder.encode_records(records[:10]))  # warm caches and lazy imports
        best = math.inf
        for _ in range(self.repeats):
            started = time.perf_counter()
            bundle.predict_matrix(bundle.encoder.encode_records(records))
            best = min(best, time.perf_counter() - started)
        return 1000.0 * best / len(records)

    def _one_row_ms(self, bundle: ModelBundle, rows: pd.DataFrame) -> float:
        times = []
        for rec in self._records(bundle, rows, self.single_rows):
            started = time.perf_counter()
            bundle.predict_matrix(bundle.encoder.encode_records([rec]))
            times.append(1000.0 * (time.perf_counter() - started))
        return min(times) if times else 0.0


def cost_check(latency: CheckResult, max_increase: float | None) -> CheckResult:
    """The challenger's serving cost against the champion's, from `latency`'s figures of both.

    Ratios of the one-row time and of the per-row time in a batch (what a prediction costs a core under
    load, `cpu_ms_per_1000` for 1,000 of them); the larger is the cost increase. With no champion figures
    (a first model) there is nothing to compare and the check passes."""
    d = latency.details
    details: dict[str, Any] = {
        "challenger": {"one_row_ms": d["one_row_ms"], "cpu_ms_per_1000": 1000.0 * d["batch_ms_per_row"]},
        "max_increase": max_increase,
    }
    if "champion_one_row_ms" not in d:
        return CheckResult("cost", True, "no champion to compare with", details)
    details["champion"] = {
        "one_row_ms": d["champion_one_row_ms"],
        "cpu_ms_per_1000": 1000.0 * d["champion_batch_ms_per_row"],
    }
    ratios = {
        "one_row": _ratio(d["one_row_ms"], d["champion_one_row_ms"]),
        "batch": _ratio(d["batch_ms_per_row"], d["champion_batch_ms_per_row"]),
    }
    details["ratio"] = ratios
    worst = max(ratios, key=lambda k: ratios[k])
    what = "a one-row request" if worst == "one_row" else "a batch, per row"
    head = f"{ratios[worst]:.2f}x the champion's time in {what}"
    if max_increase is not None and ratios[worst] > max_increase:
        return CheckResult(
            "cost", False, f"costlier to serve: {head} > gate.max_cost_increase={max_increase:g}", details
        )
    return CheckResult("cost", True, head, details)


def _ratio(challenger: float, champion: float) -> float:
    return challenger / champion if champion > 0 else (1.0 if challenger <= 0 else math.inf)


# -- edge inputs --------------------------------------------------------------------------------------------


def edge_records(bundle: ModelBundle, rows: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Inputs a production model meets sooner or later, built from a real row."""
    base = {k: _plain(v) for k, v in rows[bundle.spec.feature_names].iloc[0].items()}
    cases: dict[str, list[dict[str, Any]]] = {
        "all_missing": [dict.fromkeys(base)],
        "one_missing": [{**base, name: None} for name in base],
    }
    extreme: list[dict[str, Any]] = []
    unseen: list[dict[str, Any]] = []
    for f in bundle.spec.features:
        if f.kind == "numeric":
            lo = f.minimum if f.minimum is not None else 0.0
            hi = f.maximum if f.maximum is not None else 1.0
            span = max(hi - lo, 1.0)
            for value in (hi + 1000 * span, lo - 1000 * span, 1e12, -1e12, 0.0):
                extreme.append({**base, f.name: value})
        else:
            unseen.append({**base, f.name: UNSEEN_CATEGORY})
    if extreme:
        cases["extreme_values"] = extreme
    if unseen:
        cases["unseen_categories"] = unseen
    return cases


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


class EdgeInputCheck:
    name = "edge_inputs"

    def evaluate(
        self, challenger: ModelBundle, champion: ModelBundle | None, rows: pd.DataFrame
    ) -> CheckResult:
        problems: list[str] = []
        counts: dict[str, int] = {}
        for case, records in edge_records(challenger, rows).items():
            counts[case] = len(records)
            try:
                out = challenger.predict_records(records)
            except Exception as exc:  # any failure here is the finding, not a bug in the gate
                problems.append(f"{case}: {type(exc).__name__}: {exc}")
                continue
            problem = _malformed(challenger, out, len(records))
            if problem:
                problems.append(f"{case}: {problem}")
        details = {"cases": counts, "problems": problems}
        if problems:
            return CheckResult(self.name, False, "fails on edge inputs: " + "; ".join(problems), details)
        return CheckResult(
            self.name, True, f"well-formed output on {sum(counts.values())} edge inputs", details
        )


def _malformed(bundle: ModelBundle, out: Any, n: int) -> str | None:
    if len(out.labels) != n:
        return f"{len(out.labels)} predictions for {n} rows"
    if not bundle.spec.is_classifier:
        return None if np.all(np.isfinite(out.labels)) else "non-finite prediction"
    proba = np.asarray(out.proba, dtype=np.float64)
    if proba.shape != (n, len(bundle.spec.classes)):
        return f"probabilities of shape {proba.shape}, expected {(n, len(bundle.spec.classes))}"
    if (
        not np.all(np.isfinite(proba))
        or np.any(proba < -1e-9)
        or np.any(np.abs(proba.sum(axis=1) - 1) > 1e-6)
    ):
        return "probabilities not finite, negative or not summing to 1"
    return None


# -- the gate -----------------------------------------------------------------------------------------------


@dataclass
class GateReport:
    passed: bool
    reason: str
    metric: str
    checks: list[CheckResult]
    challenger_version: str | None = None
    champion_version: str | None = None
    forced: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    """Rows the models were compared on, per source (holdout, recent production)."""

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": "pass" if self.passed else "fail",
            "passed": self.passed,
            "forced": self.forced,
            "reason": self.reason,
            "metric": self.metric,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "rows": self.rows,
            "checks": [c.to_dict() for c in self.checks],
            "cost": cost.details if (cost := self.check("cost")) is not None else None,
        }


def run_gate(
    cfg: GateConfig,
    metric: str,
    challenger: ModelBundle,
    champion: ModelBundle,
    holdout: pd.DataFrame,
    *,
    recent: pd.DataFrame | None = None,
    seed: int = 0,
    force: bool = False,
    champion_version: str | None = None,
    challenger_dir: Path | None = None,
) -> GateReport:
    """Judge the challenger against the champion on the holdout rows plus `recent` production rows.

    `challenger_dir`: the challenger's model folder; it is then loaded from there as the server loads it
    (`load_bundle_dir`), and every check, latency included, judges that model: what would be served.
    """
    if challenger_dir is not None:
        challenger = load_bundle_dir(challenger_dir)
    target = challenger.spec.target
    parts = {"holdout": holdout}
    if recent is not None and len(recent):
        parts["recent"] = recent
    missing = [f"{name}: {target!r}" for name, part in parts.items() if target not in part.columns]
    if missing:
        raise ValueError(f"gate rows lack the target column ({', '.join(missing)})")
    rows = pd.concat(list(parts.values()), ignore_index=True)
    rows = rows[rows[target].notna()].reset_index(drop=True)
    latency = LatencyCheck(cfg.max_latency_ms_per_row, served_from=challenger_dir).evaluate(
        challenger, champion, rows
    )
    checks = [
        MetricCheck(metric, cfg, seed=seed).evaluate(challenger, champion, rows),
        latency,
        cost_check(latency, cfg.max_cost_increase),
        EdgeInputCheck().evaluate(challenger, champion, rows),
    ]
    failed = [c for c in checks if not c.passed]
    passed = not failed
    reason = "; ".join(c.reason for c in failed) if failed else checks[0].reason
    if force and not passed:
        reason = f"FORCED past the gate (force=True, a test override); the gate said: {reason}"
        passed = True
    return GateReport(
        passed=passed,
        reason=reason,
        metric=metric,
        checks=checks,
        champion_version=champion_version,
        forced=force,
        rows={name: len(part) for name, part in parts.items()},
    )
