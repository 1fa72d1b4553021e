"""GARCH(1,1) maximum-likelihood fit on a window of returns (Bollerslev 1986), Gaussian.

    r_t = mu + e_t,   e_t = sigma_t z_t,  z_t ~ N(0, 1)
    sigma2_t = omega + alpha e2_{t-1} + beta sigma2_{t-1}
    log L = -1/2 sum_t ( log 2 pi + log sigma2_t + e2_t / sigma2_t )

Mean: ``"zero"`` (mu = 0, the usual choice for short-horizon returns) or ``"constant"``.
Constraints as in the `arch` package: omega > 0, alpha >= 0, beta >= 0, alpha + beta <= 1.

Initial-variance convention (state it, because the likelihood depends on it): the
pre-sample squared residual e2_{-1} and the pre-sample variance sigma2_{-1} are both the
**sample variance** of the window, b = mean(e_t^2) with e_t = r_t (zero mean) or
r_t - mean(r) (constant mean), ddof = 0, computed once. So sigma2_0 = omega + (alpha + beta) b.
This is `arch`'s recursion with its ``backcast`` argument set to b; arch's own default
backcast is different (an exponentially weighted mean of the first 75 squared residuals,
weights 0.94^i), so arch's default fit is not the same likelihood.

Variance targeting (optional): omega = b (1 - alpha - beta), which leaves two free
parameters.

The fit runs on returns divided by sqrt(b) (well conditioned whatever the units), from the
best of a small grid of (alpha, beta) starts, with SLSQP; the parameters and the
log-likelihood are mapped back to the original units. Units: omega and the variances are
in (units of the returns)^2 per step; mu in units of the returns.

Pure computation: no I/O, no clock — run it through `daemon.analytics.heavy`. It never
returns NaN or inf: a fit that cannot be made is ``Outcome(None, reason)``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter

from daemon.analytics.outcome import Outcome, all_finite, fail, ok

MIN_OBS = 30
_LOG_2PI = math.log(2.0 * math.pi)
_START_ALPHA = (0.02, 0.05, 0.1, 0.2)
_START_PERSIST = (0.5, 0.8, 0.9, 0.98)


@dataclass(frozen=True, slots=True)
class GarchFit:
    mu: float
    omega: float
    alpha: float
    beta: float
    loglik: float
    n_obs: int
    backcast: float          # b: the sample variance used as e2_{-1} and sigma2_{-1}
    last_variance: float     # sigma2 of the window's last return
    next_variance: float     # one-step-ahead forecast: omega + alpha e2_T + beta sigma2_T
    converged: bool

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta

    @property
    def unconditional_variance(self) -> float | None:
        """omega / (1 - alpha - beta); None when the process is not covariance-stationary."""
        p = self.alpha + self.beta
        return self.omega / (1.0 - p) if p < 1.0 else None


def variance_path(omega: float, alpha: float, beta: float, e: np.ndarray, backcast: float) -> np.ndarray:
    """sigma2_t for t = 0..n-1 under the convention above (linear filter, no Python loop)."""
    x = np.empty_like(e)
    x[0] = omega + alpha * backcast
    x[1:] = omega + alpha * e[:-1] ** 2
    y, _ = lfilter([1.0], [1.0, -beta], x, zi=[beta * backcast])
    return y


def _nll(e: np.ndarray, omega: float, alpha: float, beta: float, b: float) -> float:
    s2 = variance_path(omega, alpha, beta, e, b)
    if not np.all(s2 > 0):
        return math.inf
    return 0.5 * float(np.sum(_LOG_2PI + np.log(s2) + e * e / s2))


def fit(returns: Sequence[float], *, mean: str = "zero", variance_targeting: bool = False,
        min_obs: int = MIN_OBS) -> Outcome[GarchFit]:
    """Maximum-likelihood GARCH(1,1) on `returns` (oldest first)."""
    if mean not in ("zero", "constant"):
        return fail("mean must be 'zero' or 'constant'")
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        return fail("returns must be 1-d")
    if r.size < min_obs:
        return fail(f"need at least {min_obs} returns, got {r.size}")
    if not np.all(np.isfinite(r)):
        return fail("non-finite return in the window")
    m0 = float(r.mean()) if mean == "constant" else 0.0
    b = float(np.mean((r - m0) ** 2))
    # Relative test: demeaning constant returns leaves rounding noise (~1e-36), not variance.
    if not math.isfinite(b) or not b > 1e-20 * max(float(np.mean(r * r)), 1e-300):
        return fail("zero variance: constant returns")
    scale = math.sqrt(b)
    z = r / scale
    # In scaled units the backcast is exactly 1.
    const = mean == "constant"
    mz0 = m0 / scale

    def unpack(th: np.ndarray) -> tuple[float, float, float, float]:
        i = 0
        mu = float(th[0]) if const else 0.0
        i = 1 if const else 0
        if variance_targeting:
            a, bb = float(th[i]), float(th[i + 1])
            om = 1.0 - a - bb
        else:
            om, a, bb = float(th[i]), float(th[i + 1]), float(th[i + 2])
        return mu, om, a, bb

    def objective(th: np.ndarray) -> float:
        mu, om, a, bb = unpack(th)
        if om <= 0:
            return 1e300
        v = _nll(z - mu, om, a, bb, 1.0)
        return v if math.isfinite(v) else 1e300

    bounds: list[tuple[float, float]] = [(-10.0, 10.0)] if const else []
    if not variance_targeting:
        bounds.append((1e-8, 10.0))
    bounds += [(0.0, 1.0), (0.0, 1.0)]
    ia = (1 if const else 0) + (0 if variance_targeting else 1)
    cons = [{"type": "ineq", "fun": lambda th: 1.0 - th[ia] - th[ia + 1],
             "jac": lambda th: np.array([-1.0 if k in (ia, ia + 1) else 0.0 for k in range(len(th))])}]
    if variance_targeting:
        # omega = 1 - a - b must stay positive.
        cons = [{"type": "ineq", "fun": lambda th: 1.0 - 1e-8 - th[ia] - th[ia + 1]}]
    best_start, best_val = None, math.inf
    for a in _START_ALPHA:
        for p in _START_PERSIST:
            if a >= p:
                continue
            th = ([mz0] if const else []) + ([] if variance_targeting else [1.0 - p]) + [a, p - a]
            v = objective(np.array(th))
            if v < best_val:
                best_start, best_val = th, v
    if best_start is None:
        return fail("no finite starting point")
    with np.errstate(all="ignore"):
        res = minimize(objective, np.array(best_start), method="SLSQP", bounds=bounds,
                       constraints=cons, options={"maxiter": 500, "ftol": 1e-12})
    # SLSQP may stop (unconverged) slightly outside the inequality constraint: only a
    # feasible optimum counts, else the best start (feasible by construction) stands.
    usable = np.all(np.isfinite(res.x)) and res.fun <= best_val
    if usable:
        _, _, ra, rb = unpack(res.x)
        usable = max(ra, 0.0) + max(rb, 0.0) <= 1.0
    th = res.x if usable else np.array(best_start)
    mu_z, om_z, a, bb = unpack(th)
    a, bb = max(a, 0.0), max(bb, 0.0)
    nll_z = _nll(z - mu_z, om_z, a, bb, 1.0)
    if not math.isfinite(nll_z) or om_z <= 0:
        return fail("optimum is not finite")
    mu = mu_z * scale
    omega = om_z * b
    e = r - mu
    s2 = variance_path(omega, a, bb, e, b)
    ll = -nll_z - r.size * math.log(scale)
    last = float(s2[-1])
    nxt = omega + a * float(e[-1]) ** 2 + bb * last
    if not all_finite(mu, omega, a, bb, ll, last, nxt):
        return fail("fit is not finite")
    return ok(GarchFit(mu, omega, a, bb, ll, int(r.size), b, last, nxt,
                       bool(res.success and usable)))
