"""Technical indicators on a stream of bars (or any series): EMA, SMA, RSI, MACD, ATR,
Bollinger bands, rolling VWAP. Each update is O(1) (amortised for the windowed ones) with
bounded memory.

Conventions follow TA-Lib (the reference the tests compare against), so a value here equals
TA-Lib's on the same input from the first index TA-Lib reports:

* EMA(n): alpha = 2/(n+1), seeded with the simple average of the first n inputs; ready after
  n inputs (TA-Lib's lookback n-1).
* RSI(n): Wilder smoothing (alpha = 1/n) of gains and losses, seeded with their simple
  averages over the first n changes; ready after n+1 inputs (lookback n).
* MACD(f, s, g): like TA-Lib, the fast EMA is seeded at the same input as the slow one (the
  average of the last f inputs at input s), the signal is an EMA(g) of MACD seeded with the
  average of its first g values; ready after s+g-1 inputs.
* ATR(n): true range from the second bar; seeded with the average of the first n true
  ranges, then Wilder; ready after n+1 bars.
* Bollinger(n, k): SMA(n) +- k * population standard deviation; ready after n inputs.

TA-Lib's "unstable period" (TA_SetUnstablePeriod for EMA, RSI, ATR...) only hides more of
the first outputs; it does not change the values, which keep the seed above. An EMA seeded
with the first input instead (pandas ewm(adjust=False)) differs from these during warm-up by
(1-alpha)^k times the seed difference after k further inputs (tested).

Degenerate input: NaN, +-inf and |x| > 1e100 are dropped (not folded in, counted in
`dropped`); constant input gives constant averages, zero band width, RSI 50 (TA-Lib reports
0 when there is no gain and no loss; 50 -- no direction -- is the meaning we want), ATR 0;
nothing here divides by a quantity that can be zero without checking it. Values only leave
through `_num.out` (finite or None).

This module never reads the market or the clock; callers pass values and event times.
"""
from __future__ import annotations

from collections import deque

from daemon.features._num import ok, out
from daemon.features.rolling import RollingMoments, RollingSum


class EMA:
    """Exponential moving average, SMA-seeded (units: those of the input)."""

    __slots__ = ("n", "alpha", "value", "_k", "_sum", "dropped")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"EMA period must be >= 1, got {n}")
        self.n = n
        self.alpha = 2.0 / (n + 1)
        self.value: float | None = None
        self._k = 0
        self._sum = 0.0
        self.dropped = 0

    def update(self, x: float) -> float | None:
        if not ok(x):
            self.dropped += 1
            return self.value
        if self._k < self.n:
            self._k += 1
            self._sum += x
            if self._k == self.n:
                self.value = out(self._sum / self.n)
            return self.value
        v = self.value
        self.value = out(v + self.alpha * (x - v)) if v is not None else None
        return self.value

    def seed(self, value: float) -> None:
        """Start from a given average (used by MACD's aligned seeding)."""
        self._k = self.n
        self.value = out(value)

    @property
    def ready(self) -> bool:
        return self.value is not None


class SMA:
    """Simple moving average of the last n inputs; ready after n."""

    __slots__ = ("n", "_w", "dropped")

    def __init__(self, n: int) -> None:
        self.n = n
        self._w = RollingSum(n)
        self.dropped = 0

    def update(self, x: float) -> float | None:
        if not ok(x):
            self.dropped += 1
        else:
            self._w.add(x)
        return self.value

    @property
    def value(self) -> float | None:
        return out(self._w.total / self.n) if self._w.full else None


class RSI:
    """Wilder's relative strength index, 0..100; ready after n+1 inputs."""

    __slots__ = ("n", "_prev", "_k", "_gain", "_loss", "value", "dropped")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"RSI period must be >= 1, got {n}")
        self.n = n
        self._prev: float | None = None
        self._k = 0
        self._gain = self._loss = 0.0
        self.value: float | None = None
        self.dropped = 0

    def update(self, x: float) -> float | None:
        if not ok(x):
            self.dropped += 1
            return self.value
        prev, self._prev = self._prev, x
        if prev is None:
            return None
        d = x - prev
        g = d if d > 0.0 else 0.0
        l_ = -d if d < 0.0 else 0.0
        n = self.n
        if self._k < n:
            self._k += 1
            self._gain += g
            self._loss += l_
            if self._k < n:
                return None
            self._gain /= n
            self._loss /= n
        else:
            self._gain = (self._gain * (n - 1) + g) / n
            self._loss = (self._loss * (n - 1) + l_) / n
        tot = self._gain + self._loss
        self.value = out(100.0 * self._gain / tot) if tot > 0.0 else 50.0
        return self.value


class MACD:
    """MACD line, signal line and histogram (units of the input); TA-Lib's seeding."""

    __slots__ = ("fast", "slow", "signal_n", "_fast", "_slow", "_sig", "_recent", "_k",
                 "macd", "signal", "hist", "dropped")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if not 1 <= fast < slow or signal < 1:
            raise ValueError(f"MACD needs 1 <= fast < slow and signal >= 1, got "
                             f"{fast}/{slow}/{signal}")
        self.fast, self.slow, self.signal_n = fast, slow, signal
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._sig = EMA(signal)
        self._recent: deque[float] = deque(maxlen=fast)   # the fast EMA's seed window
        self._k = 0
        self.macd = self.signal = self.hist = None
        self.dropped = 0

    def update(self, x: float) -> float | None:
        """Returns the MACD line once the signal is ready (all three outputs set), else None."""
        if not ok(x):
            self.dropped += 1
            return self.macd if self.signal is not None else None
        self._k += 1
        s = self._slow.update(x)
        if s is None:
            self._recent.append(x)
            return None
        if self._k == self.slow:
            self._recent.append(x)
            self._fast.seed(sum(self._recent) / self.fast)
            self._recent.clear()
            f = self._fast.value
        else:
            f = self._fast.update(x)
        if f is None:
            return None
        m = f - s
        sig = self._sig.update(m)
        if sig is None:
            return None
        self.macd, self.signal, self.hist = out(m), out(sig), out(m - sig)
        return self.macd


class ATR:
    """Average true range (price units) from bars' high, low, close; ready after n+1 bars."""

    __slots__ = ("n", "_prev_close", "_k", "_sum", "value", "dropped")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"ATR period must be >= 1, got {n}")
        self.n = n
        self._prev_close: float | None = None
        self._k = 0
        self._sum = 0.0
        self.value: float | None = None
        self.dropped = 0

    def update(self, high: float, low: float, close: float) -> float | None:
        if not (ok(high) and ok(low) and ok(close)) or high < low:
            self.dropped += 1
            return self.value
        pc, self._prev_close = self._prev_close, close
        if pc is None:
            return None
        tr = (high if high > pc else pc) - (low if low < pc else pc)
        n = self.n
        if self._k < n:
            self._k += 1
            self._sum += tr
            if self._k == n:
                self.value = out(self._sum / n)
            return self.value
        v = self.value
        self.value = out((v * (n - 1) + tr) / n) if v is not None else None
        return self.value


class Bollinger:
    """Bollinger bands: mid = SMA(n), upper/lower = mid +- k * population stdev."""

    __slots__ = ("n", "k", "_m", "mid", "upper", "lower", "dropped")

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        if n < 1 or not k > 0:
            raise ValueError(f"Bollinger needs n >= 1 and k > 0, got {n}, {k}")
        self.n, self.k = n, k
        self._m = RollingMoments(n)
        self.mid = self.upper = self.lower = None
        self.dropped = 0

    def update(self, x: float) -> float | None:
        if not ok(x):
            self.dropped += 1
            return self.mid
        m = self._m
        m.add(x)
        if m.count < self.n:
            return None
        sd = m.var ** 0.5
        self.mid = out(m.mean)
        self.upper = out(m.mean + self.k * sd)
        self.lower = out(m.mean - self.k * sd)
        if self.mid is None or self.upper is None or self.lower is None:
            self.mid = self.upper = self.lower = None
        return self.mid


class RollingVWAP:
    """Volume-weighted average price over the last n bars: sum(quote volume) / sum(volume)
    (price units); ready once n bars are in and their volume is positive."""

    __slots__ = ("n", "_qv", "_v", "dropped")

    def __init__(self, n: int) -> None:
        self.n = n
        self._qv = RollingSum(n)
        self._v = RollingSum(n)
        self.dropped = 0

    def update(self, quote_volume: float, volume: float) -> float | None:
        if not (ok(quote_volume) and ok(volume)) or volume < 0.0 or quote_volume < 0.0:
            self.dropped += 1
            return self.value
        self._qv.add(quote_volume)
        self._v.add(volume)
        return self.value

    @property
    def value(self) -> float | None:
        v = self._v.total
        if not self._v.full or not v > 0.0:
            return None
        return out(self._qv.total / v)
