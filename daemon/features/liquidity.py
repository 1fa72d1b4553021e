"""Liquidity and price-impact estimates from trades and bars: Kyle's lambda, Roll's
effective spread, the Corwin-Schultz high-low spread and Amihud's illiquidity.

Kyle's lambda (Kyle 1985; estimated as in Hasbrouck 2009 / Goyenko, Holden & Trzcinka 2009):
  the OLS slope of bar log returns r_i on signed dollar volume S_i = (buy - sell base volume)
  * VWAP_i over the last n bars, r_i = a + lambda * S_i + e_i. Reported in bps of price per
  1,000,000 units of quote currency (lambda * 1e10). Ready after n bars with var(S) > 0.
Roll (1984, "A simple implicit measure of the effective bid-ask spread"): with trade price
  changes dp_t (here of log prices, in bps), spread = 2 * sqrt(-cov(dp_t, dp_{t-1})) in bps
  over the last n pairs (population covariance). When the covariance is >= 0 the model does
  not identify a spread; we report 0 (Harris 1990 / Hasbrouck's convention). Ready after n
  pairs.
Corwin & Schultz (2012, "A simple way to estimate bid-ask spreads from daily high and low
  prices", JF 67(2)), eqs. (14), (18), (19) per pair of consecutive bars:
    beta  = ln(H_t/L_t)^2 + ln(H_{t+1}/L_{t+1})^2,  gamma = ln(H_{t,t+1}/L_{t,t+1})^2,
    alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2)),
    S = 2 (e^alpha - 1) / (1 + e^alpha);
  negative S are set to 0 (their section II.C), and the gap adjustment of their section
  II.B is applied (if the bar's low is above the previous close, both its high and low are
  lowered by the difference; if its high is below, raised). Reported as the mean over the
  last n pairs, in bps. Ready after n pairs.
Amihud (2002, "Illiquidity and stock returns", JFM 5(1)): mean of |r_i| / DollarVolume_i over
  the last n bars (bars with zero dollar volume are skipped), reported per 1,000,000 units
  of quote currency (|r| * 1e6 / V). Ready after n usable bars.

Degenerate input: constant prices give lambda 0 (if S varies) or not ready (if S does not),
Roll 0, Corwin-Schultz 0, Amihud 0; NaN/inf/non-positive prices and negative volumes are
dropped (counted); every output passes `_num.out`.

This module never reads the clock or the market; the engine feeds it trades and bars.
"""
from __future__ import annotations

import math
from collections import deque

from daemon.features._num import MAX_INPUT, MIN_PRICE, ok, ok_price, out
from daemon.features.rolling import RollingSum

_K = 3.0 - 2.0 * math.sqrt(2.0)
_log = math.log   # (a global, not math.log's two lookups, in RollSpread.update: per trade)


class RollingCov:
    """Means, population variance of x and covariance of (x, y) over the last n pairs;
    sliding Welford updates, exact recompute every n removals (amortised O(1))."""

    __slots__ = ("n", "buf", "mx", "my", "cxx", "cxy", "_since")

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"a rolling covariance needs n >= 2, got {n}")
        self.n = n
        self.buf: deque[tuple[float, float]] = deque(maxlen=n)
        self.mx = self.my = self.cxx = self.cxy = 0.0
        self._since = 0

    def add(self, x: float, y: float) -> None:
        buf = self.buf
        if len(buf) == self.n:
            x0, y0 = buf[0]
            buf.append((x, y))
            self._since += 1
            if self._since >= self.n:
                self._recompute()
                return
            k = self.n - 1
            # remove (x0, y0): the inverse of a Welford add
            mx1 = (self.mx * self.n - x0) / k
            my1 = (self.my * self.n - y0) / k
            self.cxy -= (x0 - mx1) * (y0 - self.my)
            self.cxx -= (x0 - mx1) * (x0 - self.mx)
            self.mx, self.my = mx1, my1
            self._welford(x, y, self.n)
        else:
            buf.append((x, y))
            self._welford(x, y, len(buf))
        if self.cxx < 0.0:
            self.cxx = 0.0

    def _welford(self, x: float, y: float, k: int) -> None:
        dx = x - self.mx
        self.mx += dx / k
        self.my += (y - self.my) / k
        self.cxy += dx * (y - self.my)
        self.cxx += dx * (x - self.mx)

    def _recompute(self) -> None:
        buf = self.buf
        k = len(buf)
        mx = math.fsum(p[0] for p in buf) / k
        my = math.fsum(p[1] for p in buf) / k
        self.mx, self.my = mx, my
        self.cxx = math.fsum((p[0] - mx) * (p[0] - mx) for p in buf)
        self.cxy = math.fsum((p[0] - mx) * (p[1] - my) for p in buf)
        self._since = 0

    @property
    def full(self) -> bool:
        return len(self.buf) == self.n

    @property
    def cov(self) -> float:
        return self.cxy / len(self.buf) if self.buf else 0.0

    def slope(self) -> float | None:
        """OLS slope of y on x; None when x has no variance."""
        # relative floor: a variance that is rounding noise of the mean is no variance
        if not self.cxx > 1e-24 * (self.mx * self.mx * len(self.buf) + 1e-300):
            return None
        return self.cxy / self.cxx


class KyleLambda:
    __slots__ = ("_reg", "_prev", "dropped")

    def __init__(self, n: int) -> None:
        self._reg = RollingCov(n)
        self._prev: float | None = None
        self.dropped = 0

    def update(self, close: float, signed_quote_volume: float) -> float | None:
        if not (ok_price(close) and ok(signed_quote_volume)):
            self.dropped += 1
            return self.value
        prev, self._prev = self._prev, close
        if prev is not None:
            self._reg.add(signed_quote_volume, math.log(close / prev))
        return self.value

    @property
    def value(self) -> float | None:
        if not self._reg.full:
            return None
        s = self._reg.slope()
        return None if s is None else out(s * 1e10)


class RollSpread:
    """Running sums over the last n pairs: changes are in bps of a liquid price (small, mean
    near 0), so the raw-moment covariance sum(xy)/n - mean(x) mean(y) loses no precision;
    an exact recompute every n pairs stops drift."""

    __slots__ = ("n", "_dp", "_xy", "_sdp", "_sxy", "_since", "_prev", "dropped")

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"Roll needs n >= 2 pairs, got {n}")
        self.n = n
        self._dp: deque[float] = deque(maxlen=n + 1)   # the n+1 changes behind n pairs
        self._xy: deque[float] = deque(maxlen=n)       # dp_{t-1} * dp_t
        self._sdp = self._sxy = 0.0
        self._since = 0
        self._prev: float | None = None
        self.dropped = 0

    def update(self, price: float) -> float | None:
        if not MIN_PRICE <= price <= MAX_INPUT:   # _num.ok_price, inlined (per trade)
            self.dropped += 1
            return self.value
        prev, self._prev = self._prev, price
        if prev is None:
            return None
        # trades often repeat the last price (one taker order against several makers)
        dp = 0.0 if price == prev else _log(price / prev) * 1e4
        d = self._dp
        n = self.n
        if d:
            xy = self._xy
            if len(xy) == n:
                self._sxy -= xy[0]
            p = d[-1] * dp
            xy.append(p)
            self._sxy += p
        if len(d) == n + 1:
            self._sdp -= d[0]
            self._since += 1
        d.append(dp)
        self._sdp += dp
        if self._since > n:
            self._sdp = math.fsum(d)
            self._sxy = math.fsum(self._xy)
            self._since = 0
        if len(d) <= n:
            return None
        # the value property, inlined: this runs on every trade
        sdp = self._sdp
        cov = self._sxy / n - ((sdp - d[-1]) / n) * ((sdp - d[0]) / n)
        if cov >= 0.0:
            return 0.0
        return out(2.0 * math.sqrt(-cov))

    @property
    def cov(self) -> float | None:
        d = self._dp
        n = self.n
        if len(d) < n + 1:
            return None
        sx = self._sdp - d[-1]      # dp_{t-1} over the pairs: all but the newest change
        sy = self._sdp - d[0]       # dp_t over the pairs: all but the oldest
        return self._sxy / n - (sx / n) * (sy / n)

    @property
    def value(self) -> float | None:
        cov = self.cov
        if cov is None:
            return None
        return out(2.0 * math.sqrt(-cov)) if cov < 0.0 else 0.0


def corwin_schultz(h0: float, l0: float, h1: float, l1: float) -> float:
    """The Corwin-Schultz spread (a fraction, >= 0) of two consecutive bars' highs/lows."""
    b = math.log(h0 / l0) ** 2 + math.log(h1 / l1) ** 2
    g = math.log(max(h0, h1) / min(l0, l1)) ** 2
    a = (math.sqrt(2.0 * b) - math.sqrt(b)) / _K - math.sqrt(g / _K)
    if a > 700.0:      # e^a overflows; S -> 2
        return 2.0
    ea = math.exp(a)
    s = 2.0 * (ea - 1.0) / (1.0 + ea)
    return s if s > 0.0 else 0.0


class CorwinSchultz:
    __slots__ = ("_s", "_prev", "dropped")

    def __init__(self, n: int) -> None:
        self._s = RollingSum(n)
        self._prev: tuple[float, float, float] | None = None   # high, low, close
        self.dropped = 0

    def update(self, high: float, low: float, close: float) -> float | None:
        if not (ok_price(high) and ok_price(low) and ok_price(close)) \
                or not low <= close <= high:
            self.dropped += 1
            return self.value
        prev = self._prev
        self._prev = (high, low, close)
        if prev is None:
            return self.value
        h0, l0, c0 = prev
        # section II.B: remove a gap between the previous close and this bar's range
        if low > c0:
            high, low = high - (low - c0), c0
        elif high < c0:
            high, low = c0, low + (c0 - high)
        # the shift is additive: across a huge jump rounding can leave high below the new
        # low or at 0 (a 9e15 bar after a 1.0 close); such a pair says nothing about spreads
        if not (ok_price(low) and ok_price(high) and high >= low):
            self.dropped += 1
            return self.value
        self._s.add(corwin_schultz(h0, l0, high, low))
        return self.value

    @property
    def value(self) -> float | None:
        s = self._s
        return out(s.total / s.n * 1e4) if s.full else None


class Amihud:
    __slots__ = ("_x", "_prev", "dropped")

    def __init__(self, n: int) -> None:
        self._x = RollingSum(n)
        self._prev: float | None = None
        self.dropped = 0

    def update(self, close: float, quote_volume: float) -> float | None:
        if not (ok_price(close) and ok(quote_volume) and quote_volume >= 0.0):
            self.dropped += 1
            return self.value
        prev, self._prev = self._prev, close
        if prev is not None and quote_volume > 0.0:
            self._x.add(abs(math.log(close / prev)) * 1e6 / quote_volume)
        return self.value

    @property
    def value(self) -> float | None:
        x = self._x
        if not x.full:
            return None
        v = x.total / x.n
        return out(v if v > 0.0 else 0.0)
