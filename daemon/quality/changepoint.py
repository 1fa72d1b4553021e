"""Change points (layer 4): a two-sided tabular CUSUM (Page 1954) and Bayesian online
change-point detection (Adams and MacKay 2007), both on one scalar series sampled at a
fixed interval (never per market event).

CUSUM, as in Montgomery, *Introduction to Statistical Quality Control*, section 9.1:
    C+_i = max(0, x_i - (mu0 + K) + C+_i-1),   C-_i = max(0, (mu0 - K) - x_i + C-_i-1)
with K = k sigma and H = h sigma; a signal when either exceeds H, then both restart.
`TabularCusum` takes mu0 and sigma; `Cusum` learns them from its first `warmup` samples
(and learns again after each signal: the new level is the new normal).

BOCPD: Gaussian observations with unknown mean and variance, a Normal-Gamma prior
(mu0 0, kappa0 1, alpha0 1, beta0 1 on the series standardised by its warm-up mean and
standard deviation), so the predictive of each run length is a Student-t. Everything is
kept in log space (log run-length posterior, log-sum-exp), the run length is truncated at
`max_run` (the mass of longer runs is folded into the longest kept run), and the hazard is
constant, 1 / expected_run. Outliers: before it is used, each observation is winsorised
to the MAP run's predictive mean +- `clip` predictive scales, so one extreme value (1e12
sigma, inf) cannot make "a new run began" more likely than "the run goes on"; a real
shift keeps arriving at the clip and moves the posterior within a few samples. NaN
samples are skipped (counted). A change point is reported when the MAP run length drops;
its location is the sample where the new run began.

This module never reads a clock and never raises on numeric input.
"""
from __future__ import annotations

import math

import numpy as np


class TabularCusum:
    __slots__ = ("mu0", "k", "h", "cp", "cm", "np_", "nm", "n", "signals")

    def __init__(self, mu0: float, sigma: float, k: float = 0.5, h: float = 5.0) -> None:
        self.mu0 = mu0
        self.k = k * sigma
        self.h = h * sigma
        self.cp = self.cm = 0.0
        self.np_ = self.nm = 0         # samples since C+ / C- was last zero
        self.n = 0
        self.signals: list[tuple[int, str]] = []   # (1-based sample, "up"|"down")

    def update(self, x: float) -> str | None:
        """One sample; "up"/"down" when it signals (the sums then restart)."""
        self.n += 1
        self.cp = max(0.0, x - (self.mu0 + self.k) + self.cp)
        self.cm = max(0.0, (self.mu0 - self.k) - x + self.cm)
        self.np_ = self.np_ + 1 if self.cp > 0 else 0
        self.nm = self.nm + 1 if self.cm > 0 else 0
        side = "up" if self.cp > self.h else "down" if self.cm > self.h else None
        if side is not None:
            self.signals.append((self.n, side))
        return side

    def reset(self) -> None:
        self.cp = self.cm = 0.0
        self.np_ = self.nm = 0


class Cusum:
    """Two-sided CUSUM with mu0 and sigma learnt from the first `warmup` samples."""

    __slots__ = ("k", "h", "warmup", "_n", "_s", "_ss", "tab", "signals", "n", "skipped")

    def __init__(self, k: float, h: float, warmup: int) -> None:
        self.k, self.h, self.warmup = k, h, warmup
        self._n, self._s, self._ss = 0, 0.0, 0.0
        self.tab: TabularCusum | None = None
        self.signals = 0
        self.n = 0
        self.skipped = 0

    def update(self, x: float) -> str | None:
        if not math.isfinite(x):
            self.skipped += 1
            return None
        self.n += 1
        tab = self.tab
        if tab is None:
            self._n += 1
            self._s += x
            self._ss += x * x
            if self._n >= self.warmup:
                mu = self._s / self._n
                var = max(self._ss / self._n - mu * mu, 0.0)
                # A constant warm-up: any move is a change, but never a division by zero.
                sigma = math.sqrt(var) or max(abs(mu) * 1e-9, 1e-12)
                self.tab = TabularCusum(mu, sigma, self.k, self.h)
            return None
        side = tab.update(x)
        if side is not None:
            self.signals += 1
            self.tab = None               # learn the new level
            self._n, self._s, self._ss = 0, 0.0, 0.0
        return side


class Bocpd:
    """Adams-MacKay BOCPD on standardised samples; see the module docstring."""

    def __init__(self, expected_run: float, max_run: int, clip: float, warmup: int = 30
                 ) -> None:
        self.log_h = math.log(1.0 / expected_run)
        self.log_1mh = math.log1p(-1.0 / expected_run)
        self.max_run = max_run
        self.clip = clip
        self.warmup = warmup
        self._warm: list[float] = []
        self.center = 0.0
        self.spread = 1.0
        self.t = 0                       # samples used (after warm-up)
        self.changes: list[int] = []     # sample index (0-based, after warm-up) of new runs
        self.skipped = 0
        self.clipped = 0
        self.map_run = 0
        # kappa and alpha of run length r are always 1 + r and 1 + r/2 (prior 1, 1, one
        # observation per step), so everything but mu and beta is a table by r.
        r = np.arange(max_run + 2, dtype=float)
        kap, alp = 1.0 + r, 1.0 + 0.5 * r
        nu = 2.0 * alp
        k2 = (kap + 1.0) / (alp * kap)                  # predictive scale^2 = beta * k2
        lgam = np.array([math.lgamma(a + 0.5) - math.lgamma(a) for a in alp])
        self._k2 = k2
        self._c = lgam - 0.5 * np.log(nu * math.pi * k2)
        self._h = (nu + 1.0) / 2.0
        self._d = 1.0 / (nu * k2)
        self._g = 1.0 / (kap + 1.0)                      # mu update
        self._e = kap / (2.0 * (kap + 1.0))              # beta update
        self._reset_posterior()

    def _reset_posterior(self) -> None:
        self.log_r = np.zeros(1)
        self.mu = np.zeros(1)
        self.beta = np.ones(1)

    def ready(self) -> bool:
        return len(self._warm) >= self.warmup

    def update(self, x: float) -> int | None:
        """One sample; the location of a newly detected change point, else None."""
        if x != x:
            self.skipped += 1
            return None
        if not self.ready():
            if math.isfinite(x):
                self._warm.append(x)
                if self.ready():
                    w = np.asarray(self._warm)
                    self.center = float(np.median(w))
                    s = float(np.std(w))
                    self.spread = s if s > 0 else max(abs(self.center) * 1e-9, 1e-12)
            else:
                self.skipped += 1
            return None
        z = (x - self.center) / self.spread if math.isfinite(x) else math.copysign(1e300, x)
        # Winsorise against the MAP run's predictive (Student-t mean and scale).
        i = self.map_run
        scale = math.sqrt(self.beta[i] * self._k2[i])
        lo, hi = self.mu[i] - self.clip * scale, self.mu[i] + self.clip * scale
        if not lo <= z <= hi:
            self.clipped += 1
            z = hi if z > hi else lo
        return self._step(float(z))

    def _step(self, z: float) -> int | None:
        mu, beta, n = self.mu, self.beta, len(self.mu)
        d = z - mu
        d2 = d * d
        # log Student-t predictive of each run length (df 2 alpha, loc mu, scale^2 beta k2)
        log_pred = self._c[:n] - 0.5 * np.log(beta) - self._h[:n] * np.log1p(
            d2 * self._d[:n] / beta)
        lj = self.log_r + log_pred
        m = float(lj.max())
        cp = m + math.log(float(np.exp(lj - m).sum())) + self.log_h
        log_r = np.empty(n + 1)
        log_r[0] = cp
        np.add(lj, self.log_1mh, out=log_r[1:])
        mu_n = np.empty(n + 1)
        mu_n[0] = 0.0
        mu_n[1:] = mu + d * self._g[:n]
        beta_n = np.empty(n + 1)
        beta_n[0] = 1.0
        beta_n[1:] = beta + d2 * self._e[:n]
        if n + 1 > self.max_run + 1:
            # Fold the longest run's mass into the one before it (truncation).
            log_r[-2] = np.logaddexp(log_r[-2], log_r[-1])
            log_r, mu_n, beta_n = log_r[:-1], mu_n[:-1], beta_n[:-1]
        m = float(log_r.max())
        log_r -= m + math.log(float(np.exp(log_r - m).sum()))
        self.log_r, self.mu, self.beta = log_r, mu_n, beta_n
        prev = self.map_run
        new = int(np.argmax(log_r))
        self.map_run = new
        self.t += 1
        if new < prev:
            loc = self.t - new
            if not self.changes or loc > self.changes[-1]:
                self.changes.append(loc)
                return loc
        return None

    def run_length_probability(self) -> np.ndarray:
        return np.exp(self.log_r)
