"""Portfolio VaR and CVaR (expected shortfall) over a rolling window of marks.

Window: `MarkWindow` keeps the marks of every symbol sampled at most once per
`var_sample_interval_s` (event time from `now_ns`), `var_window` returns deep. A return
step counts for the symbols that have a mark at both of its ends; a symbol missing at
either end contributes 0 to that step (it cannot be priced, and leaving the step out would
drop the other symbols' moves too).

P&L scenarios: the CURRENT holdings revalued with each past step's simple returns,
pnl_t = sum_s exposure_s * r_{s,t}, with exposure_s = quantity_s * mark_s (quote currency).
So VaR answers "what could the book I hold now lose over one sample interval", and a
hypothetical order is priced by changing the exposures. Losses are L = -pnl.

Three estimators at each level a (e.g. 0.95, 0.99), VaR and CVaR as positive losses:
- historical: VaR = the a-quantile of L with linear interpolation between order
  statistics (numpy's default "linear" method); CVaR = mean of the losses >= VaR;
- gaussian: mean m and standard deviation s (ddof=1) of the P&L, z = Phi^-1(a):
  VaR = -m + s*z, CVaR = -m + s*phi(z)/(1-a);
- cornish_fisher: the P&L quantile at p = 1-a is m + s*w with the four-moment
  Cornish-Fisher expansion w = z + (z^2-1)S/6 + (z^3-3z)K/24 - (2z^3-5z)S^2/36, where
  z = Phi^-1(p), S the skewness and K the excess kurtosis of the P&L (moment estimators,
  bias=True); VaR = -(m + s*w). CVaR is the CF quantile averaged over the tail,
  -(1/p) * integral_0^p (m + s*w(u)) du, which the substitution u = Phi(z) turns into
  Gaussian integrals of a cubic in z, done in closed form (see `cf_tail_mean`); exact,
  no numerical integration.
Needs at least MIN_RETURNS returns; fewer gives None ("warming up").

Pure: numpy arithmetic on the samples given, no I/O, no clock.
"""
from __future__ import annotations

import math
from collections import deque
from decimal import Decimal
from statistics import NormalDist
from typing import Iterable, Mapping

import numpy as np

MIN_RETURNS = 30
METHODS = ("historical", "gaussian", "cornish_fisher")
_N = NormalDist()


class MarkWindow:
    """Marks sampled at most once per interval; `window` returns (window + 1 samples)."""

    def __init__(self, window: int, interval_ns: int) -> None:
        self.interval_ns = interval_ns
        self.samples: deque[tuple[int, dict[str, float]]] = deque(maxlen=window + 1)
        self._version = 0   # bumped by every change: the returns cache's key
        self._cache: tuple[tuple, np.ndarray] | None = None

    def sample(self, marks: Mapping[str, Decimal | None], now_ns: int) -> bool:
        """Keep `marks` if an interval has passed since the last sample; True if kept.
        A last sample later than `now_ns` (the clock stepped back: a replay's event time
        after a sample taken on the wall clock at boot, or a wall clock set back) does not
        hold sampling back until the clock reaches it again."""
        if self.samples and 0 <= now_ns - self.samples[-1][0] < self.interval_ns:
            return False
        self.samples.append((now_ns, {s: float(m) for s, m in marks.items()
                                      if m is not None and m > 0}))
        self._version += 1
        return True

    def replace(self, samples: Iterable[tuple[int, dict[str, float]]]) -> None:
        """Put back the samples of a snapshot (restart). The only other way to change the
        window besides `sample`: both keep the returns cache honest."""
        self.samples.clear()
        self.samples.extend(samples)
        self._version += 1

    @property
    def n_returns(self) -> int:
        return max(0, len(self.samples) - 1)

    def returns(self, symbols: list[str]) -> np.ndarray:
        """Simple returns, one row per step, one column per symbol (0 where unpriced).

        Cached until the window changes: the pre-trade VaR check asks for the same matrix
        on every order, and building it walks every sample (1,440 by default) in Python.
        The key is the window's version (`sample` and `replace` bump it) and the symbols.
        Callers must not modify the array (it is read-only)."""
        key = (self._version, tuple(symbols))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = self._build(symbols)
        out.flags.writeable = False
        self._cache = (key, out)
        return out

    def _build(self, symbols: list[str]) -> np.ndarray:
        out = np.zeros((self.n_returns, len(symbols)))
        prev = None
        for i, (_, marks) in enumerate(self.samples):
            if prev is not None:
                for j, s in enumerate(symbols):
                    a, b = prev.get(s), marks.get(s)
                    if a is not None and b is not None:
                        out[i - 1, j] = b / a - 1.0
            prev = marks
        return out


def pnl(returns: np.ndarray, exposures: Iterable[float]) -> np.ndarray:
    """P&L of the current exposures (quote currency) under each past step."""
    return returns @ np.asarray(list(exposures), dtype=float)


def historical(p: np.ndarray, level: float) -> tuple[float, float]:
    losses = np.sort(-p)
    h = (len(losses) - 1) * level
    lo = math.floor(h)
    hi = min(lo + 1, len(losses) - 1)
    var = losses[lo] + (h - lo) * (losses[hi] - losses[lo])
    return float(var), float(losses[losses >= var].mean())


def _moments(p: np.ndarray) -> tuple[float, float, float, float]:
    """mean, standard deviation (ddof=1), skewness and excess kurtosis (biased)."""
    m = float(p.mean())
    d = p - m
    m2 = float((d ** 2).mean())
    s = float(p.std(ddof=1))
    if m2 == 0.0:
        return m, s, 0.0, 0.0
    return m, s, float((d ** 3).mean()) / m2 ** 1.5, float((d ** 4).mean()) / m2 ** 2 - 3.0


def gaussian(p: np.ndarray, level: float) -> tuple[float, float]:
    m, s, _, _ = _moments(p)
    z = _N.inv_cdf(level)
    return -m + s * z, -m + s * _N.pdf(z) / (1.0 - level)


def cf_z(z: float, skew: float, exkurt: float) -> float:
    """The four-moment Cornish-Fisher quantile of a standardised variable at the level
    whose normal quantile is z."""
    return (z + (z * z - 1.0) * skew / 6.0 + (z ** 3 - 3.0 * z) * exkurt / 24.0
            - (2.0 * z ** 3 - 5.0 * z) * skew * skew / 36.0)


def cf_tail_mean(t: float, skew: float, exkurt: float) -> float:
    """E[w(Z) | Z <= t] for the Cornish-Fisher polynomial w and Z standard normal, from
    the truncated moments: int z phi = -phi(t), int (z^2-1) phi = -t phi(t),
    int (z^3-3z) phi = (1-t^2) phi(t), int (2z^3-5z) phi = (1-2t^2) phi(t)."""
    phi, p = _N.pdf(t), _N.cdf(t)
    return phi * (-1.0 - skew * t / 6.0 + exkurt * (1.0 - t * t) / 24.0
                  - skew * skew * (1.0 - 2.0 * t * t) / 36.0) / p


def cornish_fisher(p: np.ndarray, level: float) -> tuple[float, float]:
    m, s, skew, exkurt = _moments(p)
    t = _N.inv_cdf(1.0 - level)
    return -(m + s * cf_z(t, skew, exkurt)), -(m + s * cf_tail_mean(t, skew, exkurt))


ESTIMATORS = {"historical": historical, "gaussian": gaussian, "cornish_fisher": cornish_fisher}


def to_decimal(x: float) -> Decimal:
    """A float figure as a Decimal to the cent's millionth (display and limits)."""
    return Decimal(repr(round(x, 8)))


def estimate(p: np.ndarray, method: str, level: float) -> tuple[Decimal, Decimal] | None:
    """(VaR, CVaR) as positive losses, or None while there are too few returns."""
    if len(p) < MIN_RETURNS:
        return None
    var, cvar = ESTIMATORS[method](p, level)
    return to_decimal(var), to_decimal(cvar)


def table(p: np.ndarray, levels: Iterable[float]) -> dict[str, dict[str, dict[str, str]]]:
    """Every method at every level, as strings for status; {} while warming up."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    if len(p) < MIN_RETURNS:
        return out
    for method in METHODS:
        out[method] = {}
        for level in levels:
            var, cvar = estimate(p, method, level)
            out[method][f"{level:g}"] = {"var": str(var), "cvar": str(cvar)}
    return out
