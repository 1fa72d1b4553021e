"""VPIN, the volume-synchronised probability of informed trading (Easley, Lopez de Prado &
O'Hara 2012, "Flow toxicity and liquidity in a high-frequency world", RFS 25(5)), with bulk
volume classification.

Bulk volume classification (ELO 2012, section 2): each time bar i with price change
dP_i = close_i - close_{i-1} and volume V_i has buy volume V_i * Z(dP_i / sigma) and sell
volume V_i * (1 - Z(dP_i / sigma)), Z the standard normal CDF and sigma the standard
deviation of the bar price changes (here over the last `sigma_bars` changes, the current one
included: nothing after bar i is used).
Volume buckets: the classified volume fills buckets of exactly `bucket_volume` (in quote
currency, e.g. USDT, so one setting suits every symbol); a bar that overflows a bucket
spills, with the same buy fraction, into the next ones.
VPIN = sum over the last n buckets of |V_buy - V_sell| / (n * bucket_volume), in [0, 1].

Warm-up: bars are classified from the second bar on (the first has no dP); VPIN is ready
once n buckets are full. Degenerate input: sigma = 0 (constant prices) classifies every
bar half buy, half sell (Z(0) = 1/2); zero-volume bars fill nothing; NaN/inf/negative
volume or prices <= 0 are dropped (counted); a bar large enough to fill more than n buckets
only needs its last n, so a huge outlier costs O(n), never a loop over its volume.

This module never reads the clock or the market; the engine feeds it bars.
"""
from __future__ import annotations

import math

from daemon.features._num import ok, ok_price, out
from daemon.features.rolling import RollingMoments, RollingSum

_SQRT2 = math.sqrt(2.0)


def bvc_buy_fraction(dp: float, sigma: float) -> float:
    """Z(dp / sigma); 1/2 when sigma is 0."""
    if not sigma > 0.0:
        return 0.5
    return 0.5 * (1.0 + math.erf(dp / (sigma * _SQRT2)))


class VPIN:
    __slots__ = ("bucket_volume", "n", "_dp", "_prev", "_fill", "_buy", "_imb", "buckets",
                 "dropped")

    def __init__(self, bucket_volume: float, n: int = 50, sigma_bars: int = 50) -> None:
        if not (ok(bucket_volume) and bucket_volume > 0.0) or n < 1 or sigma_bars < 2:
            raise ValueError(f"VPIN needs bucket_volume > 0, n >= 1, sigma_bars >= 2; got "
                             f"{bucket_volume}, {n}, {sigma_bars}")
        self.bucket_volume = float(bucket_volume)
        self.n = n
        self._dp = RollingMoments(sigma_bars)
        self._prev: float | None = None
        self._fill = 0.0          # volume in the open bucket
        self._buy = 0.0           # of which buy
        self._imb = RollingSum(n)  # |buy - sell| of the last n full buckets
        self.buckets = 0
        self.dropped = 0

    def update(self, close: float, volume: float) -> float | None:
        """One bar: its close and its volume in quote currency."""
        if not (ok_price(close) and ok(volume) and volume >= 0.0):
            self.dropped += 1
            return self.value
        prev, self._prev = self._prev, close
        if prev is None:
            return self.value
        dp = close - prev
        self._dp.add(dp)
        f = bvc_buy_fraction(dp, math.sqrt(self._dp.var))
        self._add(volume, f)
        return self.value

    def _add(self, v: float, f: float) -> None:
        vb = self.bucket_volume
        room = vb - self._fill
        if v < room:
            self._fill += v
            self._buy += v * f
            return
        # close the open bucket with `room` of this bar
        buy = self._buy + room * f
        self._close(abs(2.0 * buy - vb))
        v -= room
        full = int(v // vb)
        if full:
            # every whole bucket made of this bar alone has the same imbalance
            same = abs(2.0 * f - 1.0) * vb
            for _ in range(min(full, self.n)):
                self._close(same)
            self.buckets += full - min(full, self.n)
            v -= full * vb
            if v < 0.0:
                v = 0.0
        self._fill = v
        self._buy = v * f

    def _close(self, imbalance: float) -> None:
        self._imb.add(imbalance)
        self.buckets += 1

    @property
    def value(self) -> float | None:
        if not self._imb.full:
            return None
        x = self._imb.total / (self.n * self.bucket_volume)
        return out(0.0 if x < 0.0 else 1.0 if x > 1.0 else x)
