"""A/B experiments on business outcomes: which arm converts or earns more, with a test you may peek at.

Clients report named outcomes of earlier requests with their feedback (`POST /v1/feedback` items with
`"outcomes": {"conversion": 1, "revenue": 12.5}`), written to the `outcomes` log. For one outcome, each
served arm (champion, challenger) gets its requests in the window, the mean outcome per request and a 95 %
interval. A request with no report counts as 0 (`missing="zero"`: nothing happened, the usual meaning of a
conversion or a revenue that is reported when it happens) or is left out (`missing="skip"`).

The comparison is sequential: `sequential.always_valid_p` on the difference of means, one test per
direction at half the level, so a product owner may look every minute and still declare a winner wrongly at
most 1 - confidence of the time when the arms do not differ (tests/unit/test_experiment.py simulates 1,000
peeked experiments). The guidance says how many requests per arm the test needs to find a lift of
`min_lift` with 80 % power (from the always-valid boundary at that size, so a conservative figure: the test
may stop earlier) and how many more that is than the smaller arm has.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from scipy import stats as sps

from driftloop.sequential import EFFECT_SD, always_valid_p, boundary_z
from driftloop.stores.logfiles import LABEL_SKEW, log_files, model_span, parquet_source, read_retrying

__all__ = ["ArmOutcome", "Comparison", "compare", "outcome_by_arm", "requests_needed"]

POWER = 0.8
Missing = Literal["zero", "skip"]


@dataclass(frozen=True)
class ArmOutcome:
    model_version: str
    arm: str
    requests: int
    """Requests counted (with missing="skip": those with a report)."""
    reported: int
    """Requests with a reported value of the outcome."""
    mean: float
    sd: float

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        half = float(sps.norm.isf((1 - confidence) / 2)) * self.sd / math.sqrt(max(self.requests, 1))
        return self.mean - half, self.mean + half

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval()
        return asdict(self) | {"ci_low": low, "ci_high": high}


@dataclass(frozen=True)
class Comparison:
    outcome: str
    champion: ArmOutcome
    challenger: ArmOutcome
    lift: float
    """Challenger mean minus champion mean."""
    p_better: float
    """Always-valid p-value that the challenger's mean is higher."""
    p_worse: float
    verdict: Literal["challenger wins", "champion wins", "no decision yet"]
    confidence: float
    min_lift: float
    needed_per_arm: int | None
    """Requests per arm for 80 % power at `min_lift` (None: no spread to plan with yet, or no lift to plan for)."""
    more_per_arm: int | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["champion"], out["challenger"] = self.champion.to_dict(), self.challenger.to_dict()
        return out


def _variance(a: ArmOutcome, b: ArmOutcome) -> float:
    return a.sd**2 / max(a.requests, 1) + b.sd**2 / max(b.requests, 1)


def _row_sd(a: ArmOutcome, b: ArmOutcome) -> float:
    return math.sqrt((a.sd**2 + b.sd**2) / 2)


def requests_needed(row_sd: float, min_lift: float, *, confidence: float = 0.95, power: float = POWER) -> int:
    """Requests per arm at which a true lift of `min_lift` crosses the always-valid boundary (one direction,
    half the level) with probability `power` at that size: the smallest n with
    min_lift / se(n) >= boundary_z(n) + z(power)."""
    alpha = (1 - confidence) / 2
    tau = EFFECT_SD * row_sd
    z_power = float(sps.norm.ppf(power))

    def enough(n: int) -> bool:
        variance = 2 * row_sd**2 / n
        return min_lift / math.sqrt(variance) >= boundary_z(alpha, variance, tau) + z_power

    high = 2
    while not enough(high):
        high *= 2
        if high > 10**12:
            raise ValueError("no sample size finds that lift")
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def compare(
    outcome: str,
    champion: ArmOutcome,
    challenger: ArmOutcome,
    *,
    confidence: float = 0.95,
    min_lift: float,
) -> Comparison:
    """The sequential verdict on challenger vs champion, and how many requests the test still needs."""
    alpha = (1 - confidence) / 2
    variance = _variance(champion, challenger)
    row_sd = _row_sd(champion, challenger)
    lift = challenger.mean - champion.mean
    tau = EFFECT_SD * row_sd
    if champion.requests < 2 or challenger.requests < 2 or row_sd == 0:
        p_better = p_worse = 1.0
    else:
        p_better = always_valid_p(lift, variance, tau)
        p_worse = always_valid_p(-lift, variance, tau)
    verdict: Literal["challenger wins", "champion wins", "no decision yet"] = "no decision yet"
    if p_better < alpha:
        verdict = "challenger wins"
    elif p_worse < alpha:
        verdict = "champion wins"
    needed = requests_needed(row_sd, min_lift, confidence=confidence) if row_sd > 0 and min_lift > 0 else None
    more = None if needed is None else max(0, needed - min(champion.requests, challenger.requests))
    return Comparison(
        outcome, champion, challenger, lift, p_better, p_worse, verdict, confidence, min_lift, needed, more
    )


def outcome_by_arm(
    log_dir: Path,
    model_name: str,
    outcome: str,
    *,
    start: datetime | None,
    end: datetime | None,
    missing: Missing = "zero",
) -> list[ArmOutcome]:
    """Per served (version, arm) in [start, end): requests and the outcome's mean and spread."""
    import duckdb

    where, params = model_span(model_name, start, end)
    where.append("arm IN ('champion', 'challenger')")
    value = "coalesce(o.value, 0)" if missing == "zero" else "o.value"

    def read() -> list[tuple[Any, ...]]:
        preds = log_files(log_dir, "predictions", start=start, end=end)
        reports = log_files(log_dir, "outcomes", start=None if start is None else start - LABEL_SKEW)
        if not preds:
            return []
        latest = (
            f"SELECT request_id, arg_max(value, ts) AS value FROM {parquet_source(reports)} "
            "WHERE name = ? GROUP BY request_id"
            if reports
            else "SELECT NULL::VARCHAR AS request_id, NULL::DOUBLE AS value WHERE FALSE"
        )
        sql = (
            f"WITH served AS (SELECT DISTINCT request_id, model_version, arm FROM {parquet_source(preds)} "
            f"WHERE {' AND '.join(where)}), o AS ({latest}) "
            f"SELECT model_version, arm, count({value}), count(o.value), avg({value}), stddev_samp({value}) "
            "FROM served LEFT JOIN o USING (request_id) GROUP BY ALL ORDER BY ALL"
        )
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql, [*params, *([outcome] if reports else [])]).fetchall()

    out = []
    for version, arm, n, reported, mean, sd in read_retrying(read):
        if n:
            out.append(
                ArmOutcome(str(version), str(arm), int(n), int(reported), float(mean), float(sd or 0.0))
            )
    return out
