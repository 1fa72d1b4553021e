"""Exact PELT change-point detection (Killick, Fearnhead, Eckley 2012) for offline reports.

Finds the segmentation of a 1-d series y[0:n] that minimises

    sum over segments of C(segment) + penalty x (number of segments)

(equivalently, penalty per change point), every segment at least `min_size` long. Costs:

- ``"l2"``: changes in the mean, C = sum (y - mean)^2 (the same cost as ruptures' "l2").
- ``"normal"``: changes in mean and variance, C = len x log(max(var, var_floor)), twice the
  negative maximised Gaussian log-likelihood less its additive constant. The floor keeps a
  constant stretch from costing -inf (state it in reports: a segment's variance is never
  taken below `var_floor`).

Optimal partitioning F(t) = min_tau F(tau) + C(tau, t) + penalty, with PELT's pruning: a
candidate tau with F(tau) + C(tau, t) > F(t) can never be optimal again (both costs are
sub-additive: C(a, c) >= C(a, b) + C(b, c)). With a minimum segment length that argument
only holds for ends s >= t + min_size, so a candidate found prunable at t is dropped from
t + min_size on: the result is the exact optimum, not an approximation (ruptures' Pelt
drops it at once). Ties go to the earliest candidate.

Segment costs come from cumulative sums of the centred, scaled series; a sum of squares
below their rounding error (1e-13 of the cumulative sum of squares) counts as zero.

Returns breakpoints as ruptures does: the end index of each segment, the last one n.
Pure computation, O(n) to O(n^2) time depending on how much pruning bites: for offline
reports and the heavy worker, never on the event loop. Never returns NaN/inf; unusable
input is ``Outcome(None, reason)``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from daemon.analytics.outcome import Outcome, fail, ok

COSTS = ("l2", "normal")


class _Cost:
    def __init__(self, y: np.ndarray, kind: str, var_floor: float):
        self.kind = kind
        self.var_floor = var_floor
        self.s1 = np.concatenate(([0.0], np.cumsum(y)))
        self.s2 = np.concatenate(([0.0], np.cumsum(y * y)))

    def __call__(self, taus: np.ndarray, t: int) -> np.ndarray:
        """Cost of the segments y[tau:t] for every tau in `taus`."""
        n = t - taus
        d1 = self.s1[t] - self.s1[taus]
        d2 = self.s2[t] - self.s2[taus]
        sse = d2 - d1 * d1 / n
        # Below the rounding error of the cumulative sums it is zero (or it would be noise
        # that a small penalty turns into spurious change points, e.g. next to an outlier).
        noise = 1e-13 * (self.s2[t] + self.s2[taus])
        sse = np.where(sse > noise, sse, 0.0)
        if self.kind == "l2":
            return sse
        return n * np.log(np.maximum(sse / n, self.var_floor))


def pelt(signal: Sequence[float], penalty: float, *, cost: str = "l2", min_size: int = 2,
         var_floor: float = 1e-12) -> Outcome[list[int]]:
    """Exact PELT segmentation of `signal`; returns the breakpoints (segment ends, last = n)."""
    if cost not in COSTS:
        return fail(f"cost must be one of {COSTS}")
    y = np.asarray(signal, dtype=np.float64)
    if y.ndim != 1:
        return fail("signal must be 1-d")
    if not np.all(np.isfinite(y)):
        return fail("non-finite value in the signal")
    if not (math.isfinite(penalty) and penalty >= 0):
        return fail("penalty must be finite and non-negative")
    if min_size < 1 or (cost == "normal" and min_size < 2):
        return fail("min_size must be >= 1 (>= 2 for the normal cost)")
    if not (math.isfinite(var_floor) and var_floor > 0):
        return fail("var_floor must be positive")
    n = int(y.size)
    if n < min_size:
        return fail(f"need at least min_size={min_size} points, got {n}")
    # Centre and scale: the cumulative sums then lose no precision to a large level.
    sd = float(np.std(y))
    y = (y - float(np.mean(y))) / (sd if sd > 0 else 1.0)
    if cost == "l2":
        pen = penalty / (sd * sd) if sd > 0 else penalty
    else:
        pen = penalty
        var_floor = var_floor / (sd * sd) if sd > 0 else var_floor
    c = _Cost(y, cost, var_floor)
    F = np.full(n + 1, math.inf)
    F[0] = 0.0
    last = np.zeros(n + 1, dtype=np.int64)
    cand: list[int] = []          # admissible segment starts, increasing
    drop_at: dict[int, int] = {}  # tau -> first end at which it may be removed
    for t in range(min_size, n + 1):
        new = t - min_size
        if new == 0 or new >= min_size:  # F(new) exists: 0 or a valid segmentation end
            cand.append(new)
        if drop_at:
            cand = [tau for tau in cand if drop_at.get(tau, t + 1) > t]
        if not cand:
            continue
        taus = np.fromiter(cand, dtype=np.int64, count=len(cand))
        vals = F[taus] + c(taus, t)
        k = int(np.argmin(vals + pen))
        F[t] = float(vals[k]) + pen
        last[t] = taus[k]
        for tau, v in zip(cand, vals):
            if v > F[t] and tau not in drop_at:
                drop_at[tau] = t + min_size
    if not math.isfinite(F[n]):
        return fail("no admissible segmentation")
    bkps = [n]
    t = n
    while last[t] > 0:
        t = int(last[t])
        bkps.append(t)
    return ok(sorted(bkps))


def segmentation_cost(signal: Sequence[float], bkps: Sequence[int], penalty: float, *,
                      cost: str = "l2", var_floor: float = 1e-12) -> float:
    """Penalised cost of a segmentation in the original units (for tests and reports)."""
    y = np.asarray(signal, dtype=np.float64)
    c = _Cost(y, cost, var_floor)
    total, start = 0.0, 0
    for end in bkps:
        total += float(c(np.array([start]), end)[0]) + penalty
        start = end
    return total
