"""Estimates of the Almgren–Chriss impact parameters from the book, trades and mids.

How each parameter is estimated (all in the caller's time unit, the one T and tau use):
- epsilon (fixed cost per unit): the half spread (best ask - best bid)/2. Add the taker fee
  per unit yourself if the schedule pays it.
- eta (temporary impact): the cost of walking the book. A child order of n units swept at
  once pays, per unit, c(n) = VWAP(n) - mid on the ask side (mid - VWAP(n) on the bid
  side). The model says c(n) = epsilon + eta * n / tau (slice n traded over one period
  tau), so eta is the least-squares slope through the origin of c(n) - epsilon against
  n / tau over the child sizes given, both sides pooled. It describes the book *now*; it
  ignores refill between slices, so it overstates eta for slow schedules on a
  resilient book.
- gamma (permanent impact): Kyle's lambda. Over a window cut into buckets, regress the mid
  change of each bucket on that bucket's signed traded volume (buys +, sells -) by OLS
  with an intercept; the slope is price per unit traded, exactly the model's gamma.
  Standard error and R^2 come with it: a slope that is not several standard errors from
  zero is not an estimate.
- sigma: standard deviation (ddof = 1) of mid *changes* sampled on a regular grid (last mid
  at or before each grid time), scaled to one time unit: price per sqrt(time unit), the
  absolute volatility of the model's arithmetic random walk.

Inputs are plain: trades as (ts_ns, price, qty, is_buy), mids as (ts_ns, mid), book levels
as (price, qty) best first. Prices and quantities may be Decimal or float; the outputs are
floats because they are statistical estimates, not money.

What it never does: fetch data, send orders, or decide anything; it only measures.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

Number = float | int | Decimal
Level = tuple[Number, Number]                 # (price, qty), best first
Trade = tuple[int, Number, Number, bool]      # (ts_ns, price, qty, is_buy)
Mid = tuple[int, Number]                      # (ts_ns, mid)


class InsufficientData(ValueError):
    """Not enough book depth, trades or mids for the estimate asked for."""


def half_spread(bids: Sequence[Level], asks: Sequence[Level]) -> float:
    """(best ask - best bid) / 2: the model's epsilon, before fees."""
    if not bids or not asks:
        raise InsufficientData("need both sides of the book")
    spread = float(asks[0][0]) - float(bids[0][0])
    if spread <= 0:
        raise ValueError(f"crossed or locked book: bid {bids[0][0]} ask {asks[0][0]}")
    return spread / 2


def walk_vwap(levels: Sequence[Level], qty: Number) -> float:
    """Average price of taking `qty` from `levels` (best first), level by level."""
    want = float(qty)
    if want <= 0:
        raise ValueError(f"qty must be positive, got {qty}")
    left, cost = want, 0.0
    for price, size in levels:
        take = min(left, float(size))
        cost += take * float(price)
        left -= take
        if left <= 0:
            return cost / want
    raise InsufficientData(f"book holds {want - left} of the {want} asked for")


@dataclass(frozen=True, slots=True)
class TemporaryImpact:
    epsilon: float                    # half spread
    eta: float                        # price per (unit per time unit)
    costs: tuple[tuple[float, float, float], ...]   # (n, buy cost/unit, sell cost/unit)


def temporary_impact(bids: Sequence[Level], asks: Sequence[Level],
                     child_sizes: Sequence[Number], tau: float) -> TemporaryImpact:
    """epsilon and eta from walking both sides of the book with each child size (above)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if not child_sizes:
        raise ValueError("give at least one child size")
    eps = half_spread(bids, asks)
    mid = (float(bids[0][0]) + float(asks[0][0])) / 2
    num = den = 0.0
    rows = []
    for n in child_sizes:
        nf = float(n)
        buy = walk_vwap(asks, n) - mid
        sell = mid - walk_vwap(bids, n)
        rows.append((nf, buy, sell))
        v = nf / tau
        for c in (buy, sell):
            num += v * (c - eps)
            den += v * v
    # A book thin beyond the touch gives a positive slope; a flat one (all size at the
    # touch) gives zero. Never negative: walking the book cannot get cheaper.
    return TemporaryImpact(eps, max(0.0, num / den), tuple(rows))


@dataclass(frozen=True, slots=True)
class Regression:
    slope: float
    intercept: float
    slope_se: float       # OLS standard error of the slope (nan when n <= 2)
    r2: float
    n: int


def ols(x: Sequence[float], y: Sequence[float]) -> Regression:
    """Ordinary least squares y = a + b x with the textbook standard error of b."""
    n = len(x)
    if n != len(y):
        raise ValueError("x and y differ in length")
    if n < 2:
        raise InsufficientData(f"need at least 2 points, got {n}")
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxx = math.fsum((a - mx) ** 2 for a in x)
    if sxx == 0:
        raise InsufficientData("x does not vary: no slope to estimate")
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    b = sxy / sxx
    a = my - b * mx
    sse = math.fsum((yy - a - b * xx) ** 2 for xx, yy in zip(x, y))
    syy = math.fsum((yy - my) ** 2 for yy in y)
    se = math.sqrt(sse / (n - 2) / sxx) if n > 2 else math.nan
    r2 = 1 - sse / syy if syy > 0 else 1.0
    return Regression(b, a, se, r2, n)


def _mid_at(ts: list[int], vals: list[float], t: int) -> float | None:
    i = bisect.bisect_right(ts, t) - 1
    return vals[i] if i >= 0 else None


def _sorted_mids(mids: Sequence[Mid]) -> tuple[list[int], list[float]]:
    pts = sorted((int(t), float(m)) for t, m in mids)
    return [t for t, _ in pts], [m for _, m in pts]


def bucket_series(trades: Sequence[Trade], mids: Sequence[Mid], bucket_ns: int,
                  start_ns: int | None = None,
                  end_ns: int | None = None) -> tuple[list[float], list[float]]:
    """(signed volume, mid change) per whole bucket [start + j B, start + (j+1) B) of the
    window [start, end).

    A bucket's mid change is the sum of the changes of the mid updates stamped inside it,
    the same half-open rule as its trades, so a move at a boundary is counted once, in the
    bucket whose trades could have caused it. The window defaults to first..last mid and
    may not start before the first mid (there is no mid to change from).
    """
    if bucket_ns <= 0:
        raise ValueError(f"bucket_ns must be positive, got {bucket_ns}")
    ts, vals = _sorted_mids(mids)
    if not ts:
        raise InsufficientData("no mids")
    start = ts[0] if start_ns is None else start_ns
    end = ts[-1] if end_ns is None else end_ns
    if start < ts[0]:
        raise ValueError(f"window starts at {start}, before the first mid at {ts[0]}")
    n_buckets = max(0, (end - start) // bucket_ns)
    flow = [0.0] * n_buckets
    move = [0.0] * n_buckets
    for t, _price, qty, is_buy in trades:
        j = (int(t) - start) // bucket_ns
        if 0 <= j < n_buckets:
            flow[j] += float(qty) if is_buy else -float(qty)
    for i in range(1, len(ts)):
        j = (ts[i] - start) // bucket_ns
        if 0 <= j < n_buckets:
            move[j] += vals[i] - vals[i - 1]
    return flow, move


def kyle_lambda(trades: Sequence[Trade], mids: Sequence[Mid], bucket_ns: int,
                start_ns: int | None = None, end_ns: int | None = None) -> Regression:
    """gamma: OLS slope of bucket mid change on bucket signed volume (see module doc)."""
    xs, ys = bucket_series(trades, mids, bucket_ns, start_ns, end_ns)
    return ols(xs, ys)


def mid_volatility(mids: Sequence[Mid], sample_ns: int, time_unit_ns: int,
                   start_ns: int | None = None, end_ns: int | None = None) -> float:
    """sigma: std (ddof=1) of mid changes on a grid of `sample_ns`, per sqrt(time unit)."""
    if sample_ns <= 0 or time_unit_ns <= 0:
        raise ValueError("sample_ns and time_unit_ns must be positive")
    ts, vals = _sorted_mids(mids)
    if not ts:
        raise InsufficientData("no mids")
    start = ts[0] if start_ns is None else start_ns
    end = ts[-1] if end_ns is None else end_ns
    grid = []
    t = start
    while t <= end:
        m = _mid_at(ts, vals, t)
        if m is not None:
            grid.append(m)
        t += sample_ns
    diffs = [b - a for a, b in zip(grid, grid[1:])]
    if len(diffs) < 2:
        raise InsufficientData(f"need at least 3 grid points, got {len(grid)}")
    mean = math.fsum(diffs) / len(diffs)
    var = math.fsum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return math.sqrt(var * time_unit_ns / sample_ns)


@dataclass(frozen=True, slots=True)
class ImpactEstimate:
    """Everything `almgren_chriss.ACParams` needs besides X, T, N and lambda."""

    epsilon: float
    eta: float
    gamma: float
    gamma_se: float
    sigma: float


def estimate_impact(bids: Sequence[Level], asks: Sequence[Level],
                    child_sizes: Sequence[Number], tau: float,
                    trades: Sequence[Trade], mids: Sequence[Mid], *,
                    bucket_ns: int, sample_ns: int, time_unit_ns: int) -> ImpactEstimate:
    """All four parameters at once, each by the method in the module docstring. A Kyle
    slope below zero (noise) is reported as gamma = 0, with its standard error kept."""
    tmp = temporary_impact(bids, asks, child_sizes, tau)
    kyle = kyle_lambda(trades, mids, bucket_ns)
    sigma = mid_volatility(mids, sample_ns, time_unit_ns)
    return ImpactEstimate(tmp.epsilon, tmp.eta, max(0.0, kyle.slope), kyle.slope_se, sigma)
