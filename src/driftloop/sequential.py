"""Always-valid tests: p-values that may be looked at after every observation without inflating errors.

A leaf module: the canary's rollback (loop/rollout.py) and A/B experiments on business outcomes
(monitor/experiment.py) both decide on data that keeps arriving and is judged at every pass.

`always_valid_p(theta_hat, variance, tau)` is the mixture sequential probability ratio test (Robbins;
Johari et al., "Peeking at A/B tests", KDD 2017) with a N(0, tau^2) mixing prior over the effect: under
H0 (theta <= 0) its likelihood ratio is a martingale, so the chance that 1/ratio ever falls below alpha, over
all looks, is at most alpha. A fixed-sample z-test checked at every look is not: with equally good models
the canary rolled back about one time in seven.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np

__all__ = ["EFFECT_SD", "always_valid_p", "boundary_z"]

#: The mixing prior's spread, in units of one observation's standard deviation (a "small" standardized
#: effect): the tests are most sensitive to differences of about this size, and valid for any.
EFFECT_SD = 0.2


@overload
def always_valid_p(theta_hat: float, variance: float, tau: float) -> float: ...
@overload
def always_valid_p(theta_hat: np.ndarray, variance: np.ndarray, tau: np.ndarray | float) -> np.ndarray: ...
def always_valid_p(theta_hat, variance, tau):  # type: ignore[no-untyped-def]
    """One-sided p-value of H0: theta <= 0 from an estimate `theta_hat` with the given variance (normal
    approximation), valid however often it is looked at. Works elementwise on arrays."""
    theta = np.asarray(theta_hat, dtype=float)
    var = np.asarray(variance, dtype=float)
    t2 = np.asarray(tau, dtype=float) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = 0.5 * np.log(var / (var + t2)) + t2 * theta**2 / (2 * var * (var + t2))
        p = np.minimum(1.0, np.exp(-log_ratio))
    p = np.where(var <= 0, 0.0, p)
    p = np.where(theta <= 0, 1.0, p)
    return float(p) if p.ndim == 0 else p


def boundary_z(alpha: float, variance: float, tau: float) -> float:
    """The z (estimate / its standard error) at which `always_valid_p` reaches `alpha` for this variance."""
    r = tau**2 / variance
    # 1/ratio = alpha  <=>  z^2 r / (2 (1 + r)) = ln(1/alpha) + ln(1 + r) / 2
    return math.sqrt((math.log(1 / alpha) + 0.5 * math.log1p(r)) * 2 * (1 + r) / r)
