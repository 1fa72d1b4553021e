"""Rolling-window building blocks: a windowed sum and windowed mean/variance, O(1) per
update, bounded memory (a deque with maxlen), and periodically recomputed from the window so
floating-point drift cannot accumulate (an exact recompute every `n` updates costs O(n), i.e.
amortised O(1)).

Callers validate inputs (see `_num.ok`); nothing here checks for NaN. Nothing here reads the
market or keeps anything but the window.
"""
from __future__ import annotations

import math
from collections import deque


class RollingSum:
    """Sum of the last `n` values."""

    __slots__ = ("n", "buf", "total", "_since")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"window must be >= 1, got {n}")
        self.n = n
        self.buf: deque[float] = deque(maxlen=n)
        self.total = 0.0
        self._since = 0

    def add(self, x: float) -> None:
        buf = self.buf
        if len(buf) == self.n:
            self.total -= buf[0]
            self._since += 1
            if self._since >= self.n:      # exact recompute: no drift from add/subtract
                buf.append(x)
                self.total = math.fsum(buf)
                self._since = 0
                return
        buf.append(x)
        self.total += x

    @property
    def full(self) -> bool:
        return len(self.buf) == self.n

    def clear(self) -> None:
        self.buf.clear()
        self.total = 0.0
        self._since = 0


class RollingMoments:
    """Mean and population variance of the last `n` values (Welford, with the sliding-window
    update ``M2 += (x - y) * (x - mean_new + y - mean_old)`` when `y` leaves), so a large
    common level (a price of 60,000 with a spread of 0.01) loses no precision."""

    __slots__ = ("n", "buf", "mean", "m2", "_since")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"window must be >= 1, got {n}")
        self.n = n
        self.buf: deque[float] = deque(maxlen=n)
        self.mean = 0.0
        self.m2 = 0.0
        self._since = 0

    def add(self, x: float) -> None:
        buf = self.buf
        k = len(buf)
        if k < self.n:
            buf.append(x)
            d = x - self.mean
            self.mean += d / (k + 1)
            self.m2 += d * (x - self.mean)
            return
        y = buf[0]
        buf.append(x)
        self._since += 1
        if self._since >= self.n:
            self._recompute()
            return
        old = self.mean
        self.mean = old + (x - y) / self.n
        self.m2 += (x - y) * (x - self.mean + y - old)
        if self.m2 < 0.0:
            self.m2 = 0.0

    def _recompute(self) -> None:
        buf = self.buf
        m = math.fsum(buf) / len(buf)
        self.mean = m
        self.m2 = math.fsum((v - m) * (v - m) for v in buf)
        self._since = 0

    @property
    def count(self) -> int:
        return len(self.buf)

    @property
    def var(self) -> float:
        """Population variance (divide by count), as TA-Lib's STDDEV and BBANDS use."""
        k = len(self.buf)
        return self.m2 / k if k else 0.0

    def clear(self) -> None:
        self.buf.clear()
        self.mean = self.m2 = 0.0
        self._since = 0
