"""Volatility of bar log returns: EWMA (RiskMetrics), realised volatility over a window, and
the GARCH(1,1) one-step variance forecast between maximum-likelihood fits.

All three take log returns r_t = ln(close_t / close_{t-1}) of consecutive bars (the caller,
`LogReturns`, makes them) and report a volatility (standard deviation) in log-return units
per bar; square it for the variance, multiply by sqrt(bars per year) to annualise.

EWMA (J.P. Morgan RiskMetrics 1996): sigma2_{t+1} = lam * sigma2_t + (1 - lam) * r_t^2.
  Initial variance: the mean of the first `warmup` squared returns; ready from then on, and
  the value is the forecast for the next return. This is arch's EWMAVariance recursion with
  that seed as its backcast (tested against it).
Realised volatility: sqrt(sum of the last n squared returns), ready after n returns.
GARCH(1,1) (Bollerslev 1986): sigma2_{t+1} = omega + alpha * r_t^2 + beta * sigma2_t, with
  (omega, alpha, beta) from the latest fit (the heavy-analytics worker; passed in through
  `set_params`, never fitted here). Initial variance convention: the fit's last conditional
  variance when the fitter supplies it, else the unconditional variance
  omega / (1 - alpha - beta) (requires alpha + beta < 1). Returns are multiplied by `scale`
  before the recursion, so parameters fitted on percent returns (scale 100, arch's advice)
  work; the output is divided back to log-return units. Not ready until parameters exist.
  A fit made on bars up to some point arrives later (it runs in a worker): the engine rolls
  the forecast forward over the returns that came after the fit's window
  (`FeatureEngine.set_garch_fit`), so the forecast is the one the fitted model gives now.
  daemon.analytics.garch uses the same recursion (e = r - mu) and reports `next_variance`,
  the forecast after the window's last return: that is the `sigma2` handed over here.

Degenerate input: NaN/inf/|x| > 1e100 returns are dropped; constant prices give zero returns
and a variance decaying to 0 (EWMA, realised) or to omega / (1 - beta) (GARCH); a variance
that would be negative or non-finite is never reported.

This module never fits anything, reads the clock or the market.
"""
from __future__ import annotations

import math

from daemon.features._num import ok, ok_price, out
from daemon.features.rolling import RollingSum


class LogReturns:
    """Turns a series of positive prices into log returns; prices <= 0 or non-finite are
    dropped (counted)."""

    __slots__ = ("prev", "dropped")

    def __init__(self) -> None:
        self.prev: float | None = None
        self.dropped = 0

    def update(self, price: float) -> float | None:
        if not ok_price(price):
            self.dropped += 1
            return None
        prev, self.prev = self.prev, price
        if prev is None:
            return None
        return math.log(price / prev)


class EwmaVol:
    """RiskMetrics EWMA volatility of log returns (per bar)."""

    __slots__ = ("lam", "warmup", "var", "_k", "_sum", "dropped")

    def __init__(self, lam: float = 0.94, warmup: int = 20) -> None:
        if not 0.0 < lam < 1.0 or warmup < 1:
            raise ValueError(f"EWMA needs 0 < lambda < 1 and warmup >= 1, got {lam}, {warmup}")
        self.lam, self.warmup = lam, warmup
        self.var: float | None = None
        self._k = 0
        self._sum = 0.0
        self.dropped = 0

    def update(self, r: float) -> float | None:
        if not ok(r):
            self.dropped += 1
            return self.value
        r2 = r * r
        if self._k < self.warmup:
            self._k += 1
            self._sum += r2
            if self._k == self.warmup:
                self.var = self._sum / self.warmup
            return self.value
        v = self.lam * self.var + (1.0 - self.lam) * r2
        self.var = v if math.isfinite(v) else self.var
        return self.value

    @property
    def value(self) -> float | None:
        return None if self.var is None else out(math.sqrt(self.var))


class RealisedVol:
    """sqrt(sum of the last n squared log returns): the volatility over n bars."""

    __slots__ = ("n", "_s", "dropped")

    def __init__(self, n: int) -> None:
        self.n = n
        self._s = RollingSum(n)
        self.dropped = 0

    def update(self, r: float) -> float | None:
        if not ok(r):
            self.dropped += 1
        else:
            self._s.add(r * r)
        return self.value

    @property
    def value(self) -> float | None:
        if not self._s.full:
            return None
        t = self._s.total
        return out(math.sqrt(t)) if t > 0.0 else 0.0


class Garch11:
    """Streaming GARCH(1,1) variance forecast with externally fitted parameters."""

    __slots__ = ("omega", "alpha", "beta", "mu", "scale", "var", "fit_ts_ns", "dropped")

    def __init__(self) -> None:
        self.omega = self.alpha = self.beta = self.mu = 0.0
        self.scale = 1.0
        self.var: float | None = None       # forecast for the next return, scaled units
        self.fit_ts_ns = 0
        self.dropped = 0

    def set_params(self, omega: float, alpha: float, beta: float, *, ts_ns: int,
                   sigma2: float | None = None, scale: float = 1.0, mu: float = 0.0) -> None:
        """Take a new fit. `sigma2` (scaled units) is the fit's conditional variance for the
        next return; without it the unconditional variance is used, which needs
        alpha + beta < 1 (with it, alpha + beta <= 1 is enough, as arch and
        daemon.analytics.garch allow). `mu` (unscaled) is the fit's constant mean: the
        recursion uses e = r - mu. Raises ValueError on unusable parameters."""
        vals = (omega, alpha, beta, scale, mu)
        p = alpha + beta
        if not all(ok(v) for v in vals) or omega <= 0.0 or alpha < 0.0 or beta < 0.0 \
                or scale <= 0.0 or p > 1.0 or (sigma2 is None and p >= 1.0):
            raise ValueError(f"GARCH(1,1) needs omega > 0, alpha, beta >= 0, alpha + beta < 1"
                             f" (<= 1 with an initial variance), scale > 0; got {omega}, "
                             f"{alpha}, {beta}, scale {scale}, mu {mu}")
        if sigma2 is not None and not (ok(sigma2) and sigma2 > 0.0):
            raise ValueError(f"initial variance must be positive and finite, got {sigma2}")
        self.omega, self.alpha, self.beta, self.scale, self.mu = omega, alpha, beta, scale, mu
        self.var = sigma2 if sigma2 is not None else omega / (1.0 - p)
        self.fit_ts_ns = ts_ns

    def update(self, r: float) -> float | None:
        if self.var is None:
            return None
        if not ok(r):
            self.dropped += 1
            return self.value
        x = (r - self.mu) * self.scale
        v = self.omega + self.alpha * x * x + self.beta * self.var
        if math.isfinite(v):
            self.var = v
        return self.value

    @property
    def value(self) -> float | None:
        return None if self.var is None else out(math.sqrt(self.var) / self.scale)
