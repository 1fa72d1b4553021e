"""PIN — the probability of informed trading (Easley, Kiefer, O'Hara, Paperman 1996) by
maximum likelihood on per-period counts of buyer- and seller-initiated trades.

Model (EKOP 1996, with separate uninformed buy/sell rates as in Easley, Hvidkjaer, O'Hara
2002). Each period (a trading day in the literature; any fixed period here) an information
event occurs with probability alpha; it is bad news with probability delta. Uninformed
buys and sells arrive as Poisson(eps_b) and Poisson(eps_s); informed traders add
Poisson(mu) sells on bad-news periods and Poisson(mu) buys on good-news periods. For one
period with B buys and S sells:

    L(B,S) = (1-alpha)      P(B; eps_b)    P(S; eps_s)
           + alpha delta    P(B; eps_b)    P(S; eps_s+mu)
           + alpha (1-delta) P(B; eps_b+mu) P(S; eps_s)

with P(k; lam) = e^-lam lam^k / k!, and PIN = alpha mu / (alpha mu + eps_b + eps_s).
Units: mu, eps_b, eps_s are trades per period; alpha, delta, PIN are probabilities.

Numerical stability: with thousands of trades per period, lam^k / k! overflows and e^-lam
underflows (the naive product is 0 * inf). As in the Easley–Hvidkjaer–O'Hara (2010) and
Lin–Ke (2011) factorisations, the common factor e^-(eps_b+eps_s) eps_b^B eps_s^S is taken
out and everything is done in log space:

    log L = B log eps_b + S log eps_s - eps_b - eps_s - log B! - log S!
            + logsumexp( log(1-alpha),
                         log(alpha delta)     - mu + S log1p(mu/eps_s),
                         log(alpha (1-delta)) - mu + B log1p(mu/eps_b) )

which never forms a number larger than the log-likelihood itself. ``loglik`` includes the
log B! + log S! constants (so it is the true log-likelihood); the optimiser does not need
them. The gradient is analytic (posterior weights of the three period types).

Starting points: the Yan–Zhang (2012) grid — alpha, delta, gamma in {0.1,...,0.9}, eps_b =
gamma mean(B), mu = (mean(B) - eps_b) / (alpha (1-delta)), eps_s = mean(S) - alpha delta mu,
sets with eps_s <= 0 dropped — plus an "all uninformed" start. Each start runs L-BFGS-B with
bounds (rates scaled by the mean count so the problem is well conditioned); the best
finite optimum wins. Trade classification: a trade whose buyer is the maker
(``buyer_is_maker``) was initiated by the seller, otherwise by the buyer.

Pure computation: no I/O, no clock, no event loop — run it through `daemon.analytics.heavy`.
It never returns NaN or inf: a fit that cannot be made is ``Outcome(None, reason)``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp

from daemon.analytics.outcome import Outcome, all_finite, fail, ok
from daemon.market.events import Trade

log = logging.getLogger(__name__)

_P_EPS = 1e-9     # alpha, delta kept inside (0, 1): log(alpha) and 1/alpha stay finite
_RATE_MIN = 1e-9  # scaled rates kept positive: log(eps) stays finite
YZ_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True, slots=True)
class PinEstimate:
    """MLE of the EKOP model. Rates are trades per period; ``loglik`` is the full
    log-likelihood (with the log k! constants) at the optimum."""

    alpha: float
    delta: float
    mu: float
    eps_b: float
    eps_s: float
    pin: float
    loglik: float
    n_periods: int
    n_starts: int
    n_converged: int


def pin_value(alpha: float, mu: float, eps_b: float, eps_s: float) -> float | None:
    """PIN = alpha mu / (alpha mu + eps_b + eps_s); None when there is no trading at all."""
    den = alpha * mu + eps_b + eps_s
    if not den > 0 or not math.isfinite(den):
        return None
    return alpha * mu / den


def _check_counts(buys: Sequence[int], sells: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | str:
    b = np.asarray(buys, dtype=np.float64)
    s = np.asarray(sells, dtype=np.float64)
    if b.ndim != 1 or s.ndim != 1 or b.shape != s.shape:
        return "buys and sells must be 1-d sequences of the same length"
    if b.size < 2:
        return f"need at least 2 periods, got {b.size}"
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s))):
        return "non-finite count"
    if np.any(b < 0) or np.any(s < 0) or np.any(b != np.floor(b)) or np.any(s != np.floor(s)):
        return "counts must be non-negative integers"
    if b.sum() == 0 or s.sum() == 0:
        # All-zero buys (or sells): the MLE puts that rate at 0, where PIN is degenerate.
        return "no buys or no sells in the sample"
    return b, s


def loglik(alpha: float, delta: float, mu: float, eps_b: float, eps_s: float,
           buys: Sequence[int], sells: Sequence[int]) -> float:
    """The full EKOP log-likelihood (sum over periods, including -log B! - log S!), computed
    in log space. Parameters must satisfy 0<=alpha,delta<=1 and positive rates."""
    b = np.asarray(buys, dtype=np.float64)
    s = np.asarray(sells, dtype=np.float64)
    a = min(max(alpha, 0.0), 1.0)
    d = min(max(delta, 0.0), 1.0)
    with np.errstate(divide="ignore"):
        la0, la1, la2 = (np.log1p(-a), np.log(a) + np.log(d), np.log(a) + np.log1p(-d))
    common = b * math.log(eps_b) + s * math.log(eps_s) - eps_b - eps_s
    c = np.stack([np.broadcast_to(la0, b.shape),
                  la1 - mu + s * math.log1p(mu / eps_s),
                  la2 - mu + b * math.log1p(mu / eps_b)])
    per = common + logsumexp(c, axis=0) - gammaln(b + 1) - gammaln(s + 1)
    return float(per.sum())


def _neg_ll_and_grad(x: np.ndarray, b: np.ndarray, s: np.ndarray,
                     scale: float) -> tuple[float, np.ndarray]:
    """Negative log-likelihood (without the log k! constants) of scaled parameters and its
    analytic gradient. x = (alpha, delta, mu/scale, eps_b/scale, eps_s/scale).

    Hand-rolled logsumexp over the three period types: this runs thousands of times per fit
    and scipy's general logsumexp costs more than the arithmetic here."""
    a, d = float(x[0]), float(x[1])
    mu, eb, es = float(x[2]) * scale, float(x[3]) * scale, float(x[4]) * scale
    # Relative to the common factor e^-(eb+es) eb^B es^S (EHO/Lin-Ke factorisation).
    r0 = math.log1p(-a)
    r1 = math.log(a) + math.log(d) - mu + s * math.log1p(mu / es)
    r2 = math.log(a) + math.log1p(-d) - mu + b * math.log1p(mu / eb)
    m = np.maximum(np.maximum(r1, r2), r0)
    e0 = np.exp(r0 - m)
    e1 = np.exp(r1 - m)
    e2 = np.exp(r2 - m)
    tot = e0 + e1 + e2
    ll = b * math.log(eb) + s * math.log(es) - eb - es + m + np.log(tot)
    w0, w1, w2 = e0 / tot, e1 / tot, e2 / tot  # posterior probability of each period type
    rb_mu = b / (eb + mu) - 1.0
    rs_mu = s / (es + mu) - 1.0
    sw0, sw1, sw2 = float(w0.sum()), float(w1.sum()), float(w2.sum())
    g_a = -sw0 / (1.0 - a) + (sw1 + sw2) / a
    g_d = sw1 / d - sw2 / (1.0 - d)
    # Elementwise sums, not `@`: BLAS dot on short vectors costs more than it saves.
    g_mu = float(np.sum(w1 * rs_mu + w2 * rb_mu))
    g_eb = float(np.sum((w0 + w1) * (b / eb - 1.0) + w2 * rb_mu))
    g_es = float(np.sum((w0 + w2) * (s / es - 1.0) + w1 * rs_mu))
    grad = -np.array([g_a, g_d, g_mu * scale, g_eb * scale, g_es * scale])
    return -float(ll.sum()), grad


def yan_zhang_starts(buys: Sequence[int], sells: Sequence[int]) -> list[tuple[float, ...]]:
    """The Yan–Zhang (2012) grid of starting points (alpha, delta, mu, eps_b, eps_s)."""
    mb = float(np.mean(buys))
    ms = float(np.mean(sells))
    out: list[tuple[float, ...]] = []
    for a in YZ_GRID:
        for d in YZ_GRID:
            for g in YZ_GRID:
                eb = g * mb
                mu = (mb - eb) / (a * (1.0 - d))
                es = ms - a * d * mu
                if es > 0 and mu > 0:
                    out.append((a, d, mu, eb, es))
    return out


def fit(buys: Sequence[int], sells: Sequence[int], *,
        starts: Iterable[tuple[float, float, float, float, float]] | None = None,
        max_iter: int = 500) -> Outcome[PinEstimate]:
    """Maximum-likelihood EKOP fit on per-period buy and sell counts.

    ``starts``: starting points (alpha, delta, mu, eps_b, eps_s); default the Yan–Zhang
    grid plus an all-uninformed start. Returns the best optimum over all starts, or
    ``Outcome(None, reason)`` for unusable input or when no start converges to a finite
    value."""
    checked = _check_counts(buys, sells)
    if isinstance(checked, str):
        return fail(checked)
    b, s = checked
    mb, ms = float(b.mean()), float(s.mean())
    scale = max(mb, ms, 1.0)
    if starts is None:
        start_list = yan_zhang_starts(b, s) + [(0.01, 0.5, 0.01 * scale, mb, ms)]
    else:
        start_list = list(starts)
    hi = 10.0 * float(max(b.max(), s.max())) / scale + 10.0
    bounds = [(_P_EPS, 1 - _P_EPS), (_P_EPS, 1 - _P_EPS),
              (_RATE_MIN, hi), (_RATE_MIN, hi), (_RATE_MIN, hi)]
    best: tuple[float, np.ndarray] | None = None
    converged = 0
    for st in start_list:
        x0 = np.array([st[0], st[1], st[2] / scale, st[3] / scale, st[4] / scale])
        x0 = np.clip(x0, [lo for lo, _ in bounds], [h for _, h in bounds])
        if not np.all(np.isfinite(x0)):
            continue
        with np.errstate(all="ignore"):
            res = minimize(_neg_ll_and_grad, x0, args=(b, s, scale), jac=True,
                           method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": max_iter})
        if not (np.isfinite(res.fun) and np.all(np.isfinite(res.x))):
            continue
        converged += bool(res.success)
        if best is None or res.fun < best[0]:
            best = (float(res.fun), res.x)
    if best is None:
        return fail("no starting point gave a finite optimum")
    x = best[1]
    a, d = float(x[0]), float(x[1])
    mu, eb, es = (float(v) * scale for v in x[2:])
    p = pin_value(a, mu, eb, es)
    ll = loglik(a, d, mu, eb, es, b, s)
    if p is None or not all_finite(a, d, mu, eb, es, p, ll):
        return fail("optimum is not finite")
    return ok(PinEstimate(a, d, mu, eb, es, p, ll, int(b.size), len(start_list), converged))


def counts_by_period(trades: Iterable[tuple[int, bool]], period_ms: int) -> tuple[list[int], list[int], list[int]]:
    """Bucket trades into fixed periods of exchange time.

    ``trades``: (exchange time in ms, buyer_is_maker). A buyer-is-maker trade was initiated
    by the seller (a sell), otherwise by the buyer. Returns (period start ms, buys, sells)
    for every period from the first trade's to the last trade's, empty periods included
    (they are observations of zero arrivals). Trades out of time order are bucketed by
    their own time."""
    if period_ms <= 0:
        raise ValueError("period_ms must be positive")
    buckets: dict[int, list[int]] = {}
    for t_ms, buyer_is_maker in trades:
        k = t_ms // period_ms
        bs = buckets.setdefault(k, [0, 0])
        bs[1 if buyer_is_maker else 0] += 1
    if not buckets:
        return [], [], []
    lo, hi = min(buckets), max(buckets)
    starts, buys, sells = [], [], []
    for k in range(lo, hi + 1):
        bs = buckets.get(k, (0, 0))
        starts.append(k * period_ms)
        buys.append(bs[0])
        sells.append(bs[1])
    return starts, buys, sells


def counts_from_trades(trades: Iterable[Trade], period_ms: int) -> tuple[list[int], list[int], list[int]]:
    """`counts_by_period` on decoded market trades (exchange time ``exch_ms``, aggressor
    side from ``buyer_is_maker``)."""
    return counts_by_period(((t.exch_ms, t.buyer_is_maker) for t in trades), period_ms)
