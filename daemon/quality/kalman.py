"""Kalman-filter outlier and gap detection on prices (layer 2).

The model is the local level (random walk plus noise), as statsmodels'
``UnobservedComponents(level="local level")``:

    y_t = mu_t + eps_t,      eps_t ~ N(0, r)
    mu_t+1 = mu_t + eta_t,   eta_t ~ N(0, q * dt)

`LocalLevel` is the exact filter (predict, then update), with a missing observation
(None/NaN) handled as a gap: predict only, so the level's variance grows over it. Time
steps can be uneven (dt in any unit q is per); with dt = 1 and the same q, r and initial
state it equals statsmodels' filtered states.

`PriceFilter` runs it on trade prices in basis points of the first price, and tests each
innovation v = y - mu_pred against its variance F = P_pred + r scaled by `scale`, an
exponentially weighted mean of recent v^2 / F (floored at 1): the test adapts to the
volatility of the day instead of relying on fixed variances. |v| / sqrt(F * scale) > z
is an outlier: counted, and not used to update the level (treated as missing), so one
bad print cannot drag the filter. O(1) per price; never raises; no clock reads.
"""
from __future__ import annotations

import math

# (globals, not math.x's two lookups, in PriceFilter.update: once per trade)
_INF = math.inf
_sqrt = math.sqrt


class LocalLevel:
    __slots__ = ("q", "r", "a", "p", "initialised")

    def __init__(self, q: float, r: float, a0: float | None = None, p0: float = 1e7) -> None:
        self.q, self.r = q, r
        self.a = 0.0 if a0 is None else a0   # filtered level
        self.p = p0                           # its variance
        self.initialised = a0 is not None

    def predict(self, dt: float = 1.0) -> tuple[float, float]:
        """The level and its variance predicted dt ahead (the state is not changed)."""
        return self.a, self.p + self.q * dt

    def step(self, y: float | None, dt: float = 1.0) -> tuple[float, float]:
        """Predict dt ahead and update with y (None/NaN: a gap, predict only). Returns the
        innovation and its variance (0.0, F for a gap)."""
        a, p = self.a, self.p + self.q * dt
        f = p + self.r
        if y is None or y != y:
            self.p = p
            return 0.0, f
        v = y - a
        k = p / f
        self.a = a + k * v
        self.p = p * (1.0 - k)
        return v, f


class PriceFilter:
    """Outlier (innovation test) and gap detection on one price series."""

    __slots__ = ("q", "r", "z", "alpha", "gap_ns", "base", "kf", "last_ns", "scale",
                 "observations", "outliers", "gaps", "last_z", "worst_z", "rejected")

    def __init__(self, q_bps2_per_s: float, r_bps2: float, z: float, adapt_n: int,
                 gap_s: float) -> None:
        self.q, self.r, self.z = q_bps2_per_s, r_bps2, z
        self.alpha = 2.0 / (adapt_n + 1.0)
        self.gap_ns = int(gap_s * 1e9)
        self.base = 0.0
        self.kf: LocalLevel | None = None
        self.last_ns = 0
        self.scale = 1.0
        self.observations = 0
        self.outliers = 0
        self.gaps = 0
        self.last_z = 0.0
        self.worst_z = 0.0      # the largest outlier |z| since the owner last reset it
        self.rejected = 0       # non-finite or non-positive prices

    def level(self) -> float | None:
        """The filtered price (not bps), None before the first price."""
        if self.kf is None:
            return None
        return self.base * (1.0 + self.kf.a * 1e-4)

    def update(self, price: float, ts_ns: int) -> bool:
        """Feed one price; True if it is an outlier."""
        if not (price > 0 and price < _INF):
            self.rejected += 1
            return False
        kf = self.kf
        if kf is None:
            self.base = price
            self.kf = LocalLevel(self.q, self.r, 0.0, self.r)
            self.last_ns = ts_ns
            self.observations = 1
            return False
        dt_ns = ts_ns - self.last_ns
        if dt_ns < 0:
            dt_ns = 0
        if dt_ns > self.gap_ns:
            self.gaps += 1
        dt = dt_ns * 1e-9
        y = (price / self.base - 1.0) * 1e4
        a, p = kf.a, kf.p + kf.q * dt
        f = p + kf.r
        v = y - a
        zz = v * v / (f * self.scale)
        self.last_z = _sqrt(zz) if zz < 1e300 else 1e150
        self.observations += 1
        if zz > self.z * self.z:
            self.outliers += 1
            if self.last_z > self.worst_z:
                self.worst_z = self.last_z
            kf.step(None, dt)          # the outlier is treated as a missing observation
            self.last_ns = ts_ns
            return True
        kf.step(y, dt)
        self.last_ns = ts_ns
        # The scale learns from accepted innovations only, each capped at z^2.
        s = self.scale + self.alpha * (v * v / f - self.scale)
        self.scale = s if s > 1.0 else 1.0
        return False
