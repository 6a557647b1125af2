"""What an estimate is: per-metric values with their band, one window's result, and the fitted-estimator
interface both methods implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "MIN_CLASS_ROWS",
    "MIN_REFERENCE_ROWS",
    "EstimateResult",
    "MetricEstimate",
    "PerformanceEstimator",
    "Task",
]

Task = Literal["binary", "multiclass", "regression"]
MIN_REFERENCE_ROWS = 50
"""Fewer labelled reference rows than this cannot calibrate scores or learn a loss: fitting refuses."""
MIN_CLASS_ROWS = 2
"""Each class needs this many reference rows: isotonic regression cannot calibrate a class never seen."""


@dataclass(frozen=True)
class MetricEstimate:
    value: float
    low: float
    high: float
    realised: float | None = None
    """The metric on the window's labels, when the caller had them (for comparison)."""

    def to_dict(self) -> dict[str, float | None]:
        """Plain floats; a value that could not be computed (NaN) as None, so the JSON stays strict."""
        return {
            k: (float(v) if v is not None and np.isfinite(v) else None)
            for k, v in (
                ("value", self.value),
                ("low", self.low),
                ("high", self.high),
                ("realised", self.realised),
            )
        }


@dataclass
class EstimateResult:
    task: str
    method: str
    """`cbpe` or `dle`."""
    rows: int
    confidence: float
    metrics: dict[str, MetricEstimate] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "method": self.method,
            "rows": self.rows,
            "confidence": self.confidence,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "detail": dict(self.detail),
        }


class PerformanceEstimator:
    """A fitted estimator: `estimate(outputs, features, labels=None)` for each window."""

    task: Task
    method: str
    confidence: float

    def estimate(
        self, outputs: Any, features: pd.DataFrame | np.ndarray | None = None, labels: Any = None
    ) -> EstimateResult:
        raise NotImplementedError
