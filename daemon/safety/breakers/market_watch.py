"""Market figures for the market breakers, from top-of-book and trade events of one symbol.

- spread in basis points of the mid, with its rolling median over a time window;
- order-flow imbalance (OFI), Cont, Kukanov & Stoikov (2014), level 1: for consecutive tops
  (b, B, a, A) -> (b', B', a', A') the event contributes
      e = [b' >= b] B' - [b' <= b] B - [a' <= a] A' + [a' >= a] A,
  summed over a time window and divided by the median level-1 depth (B + A) / 2 of that
  window (the median, so that one huge resting order does not rescale the whole window);
- traded volume per fixed interval, with its robust z-score against the previous
  intervals: z = (x - median) / (1.4826 * MAD).

Figures only: thresholds and trip decisions are in `detectors.py`. Values that cannot be
real (NaN, inf, a price or depth that is zero or negative, a crossed or locked top, a
negative quantity) are ignored and counted in `ignored`, never folded into a statistic.
Every time comes from the caller (`ts_ns`: the engine's clock, event time in replay); this
module never reads a clock, does no I/O and never decides anything.
"""
from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter, deque
from dataclasses import dataclass
from typing import NamedTuple

from sortedcontainers import SortedList

MAD_SCALE = 1.4826   # MAD -> standard deviation for normal data


# Up to this many values a RollingMedian keeps them in a plain sorted list (bisect: an
# insert or delete is one memmove in C, several times cheaper than SortedList's Python
# bookkeeping at a few thousand values); beyond it, a SortedList (a window of a day of
# updates would make every memmove long). Either holds the same values in the same order,
# so the median is the same.
_LIST_MAX = 8192


class RollingMedian:
    """Median of the values added in the last `window_ns` (by their timestamps)."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._items: deque[tuple[int, float]] = deque()
        self._sorted: list[float] | SortedList = []

    def add(self, ts_ns: int, value: float) -> None:
        self._items.append((ts_ns, value))
        s = self._sorted
        if type(s) is list:
            insort(s, value)
            if len(s) > _LIST_MAX:
                self._sorted = SortedList(s)
        else:
            s.add(value)
        self.expire(ts_ns)

    def expire(self, now_ns: int) -> None:
        items = self._items
        window = self.window_ns
        while items and now_ns - items[0][0] > window:
            value = items.popleft()[1]
            s = self._sorted
            if type(s) is list:
                # (bisect_left finds an equal value: the one added; any equal one is the
                # same to a median, as SortedList.remove would pick)
                del s[bisect_left(s, value)]
            else:
                s.remove(value)

    def __len__(self) -> int:
        return len(self._items)

    def median(self) -> float | None:
        n = len(self._sorted)
        if n == 0:
            return None
        mid = n // 2
        if n % 2:
            return self._sorted[mid]
        return (self._sorted[mid - 1] + self._sorted[mid]) / 2


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def robust_z(x: float, history: list[float]) -> tuple[float, float, float | None]:
    """(median, MAD, z) of `x` against `history` (non-empty); z is None when MAD is 0
    (the history is mostly one value: no scale to measure a deviation by)."""
    med = median(history)
    mad = median([abs(v - med) for v in history])
    if mad <= 0:
        return med, mad, None
    return med, mad, (x - med) / (MAD_SCALE * mad)


class BookFigures(NamedTuple):
    """The figures of one top of book. Immutable; a named tuple rather than a frozen
    dataclass because one is built for every top of book (a frozen dataclass's __init__
    sets each field through object.__setattr__: several times the cost)."""
    ts_ns: int
    spread_bps: float
    spread_median_bps: float        # over the spread window, this sample included
    ofi: float                      # sum of OFI events over the OFI window
    depth_median: float             # median level-1 depth (B + A) / 2 over the OFI window
    ofi_norm: float                 # ofi / depth_median
    first_ns: int                   # time of the first valid sample (for warm-up)


# BookFigures(*fields) without the named tuple's Python-level __new__ (the same object).
_new_figures = tuple.__new__


@dataclass(frozen=True, slots=True)
class VolumeFigures:
    start_ns: int                   # the interval [start, start + interval)
    volume: float
    median: float | None
    mad: float | None
    z: float | None                 # None: not enough history, or MAD = 0
    history: int                    # intervals the figures were computed from


_NUM = (int, float)
_isfinite = math.isfinite
_NEVER = 1 << 62


# Whether four values are all real numbers (int or float, finite), unrolled for the hot
# path of a top of book (thousands a second in a replay): no generator per call.
def _real4(a: float, b: float, c: float, d: float) -> bool:
    return (isinstance(a, _NUM) and _isfinite(a) and isinstance(b, _NUM) and _isfinite(b)
            and isinstance(c, _NUM) and _isfinite(c) and isinstance(d, _NUM)
            and _isfinite(d))


class MarketWatch:
    """The figures of one symbol. `on_book` and `on_trade` return what they measured, or
    None for a sample that was ignored (see `ignored` for why)."""

    def __init__(self, *, spread_window_ns: int, ofi_window_ns: int, volume_interval_ns: int,
                 volume_window: int) -> None:
        self.spread_median = RollingMedian(spread_window_ns)
        self.ofi_window_ns = ofi_window_ns
        self._ofi: deque[tuple[int, float]] = deque()
        self._ofi_sum = 0.0
        self.depth_median = RollingMedian(ofi_window_ns)
        self._prev: tuple[float, float, float, float] | None = None
        self.first_ns: int | None = None
        self.volume_interval_ns = volume_interval_ns
        self.volumes: deque[float] = deque(maxlen=volume_window)
        self._bucket_start: int | None = None
        self._bucket = 0.0
        # Before this time `tick` has nothing to do (no interval ends; the first tick
        # aligns the intervals, so it is due at once): the end of the open interval, kept
        # by `tick` whenever the interval moves.
        self.due_ns = -_NEVER
        self.ignored: Counter[str] = Counter()

    # -- book ------------------------------------------------------------------------------
    def on_book(self, bid: float, bid_qty: float, ask: float, ask_qty: float, ts_ns: int
                ) -> BookFigures | None:
        if not _real4(bid, bid_qty, ask, ask_qty):
            self.ignored["not_finite"] += 1
            return None
        if bid <= 0 or ask <= 0:
            self.ignored["price_not_positive"] += 1
            return None
        if bid_qty <= 0 or ask_qty <= 0:
            self.ignored["zero_depth"] += 1
            return None
        if bid >= ask:
            self.ignored["crossed"] += 1
            return None
        if self.first_ns is None:
            self.first_ns = ts_ns
        mid = (bid + ask) / 2
        spread_bps = (ask - bid) / mid * 1e4
        self.spread_median.add(ts_ns, spread_bps)
        prev = self._prev
        if prev is not None:
            pb, pbq, pa, paq = prev
            e = ((bid_qty if bid >= pb else 0.0) - (pbq if bid <= pb else 0.0)
                 - (ask_qty if ask <= pa else 0.0) + (paq if ask >= pa else 0.0))
            self._ofi.append((ts_ns, e))
            self._ofi_sum += e
        self._prev = (bid, bid_qty, ask, ask_qty)
        ofi = self._ofi
        while ofi and ts_ns - ofi[0][0] > self.ofi_window_ns:
            self._ofi_sum -= ofi.popleft()[1]
        if not ofi:
            self._ofi_sum = 0.0   # no float residue once the window is empty
        self.depth_median.add(ts_ns, (bid_qty + ask_qty) / 2)
        depth = self.depth_median.median()
        return _new_figures(BookFigures, (ts_ns, spread_bps, self.spread_median.median(),
                                          self._ofi_sum, depth, self._ofi_sum / depth,
                                          self.first_ns))

    # -- trades ----------------------------------------------------------------------------
    def on_trade(self, price: float, qty: float, ts_ns: int) -> list[VolumeFigures] | None:
        """Add a trade; returns the figures of every interval this trade (or `tick`) closed,
        oldest first (empty intervals included: no trade is a volume of 0)."""
        # (_real2 inlined: the same tests in the same order, one call less per trade)
        if not (isinstance(price, _NUM) and _isfinite(price) and isinstance(qty, _NUM)
                and _isfinite(qty)) or price <= 0 or qty <= 0:
            self.ignored["bad_trade"] += 1
            return None
        if ts_ns < self.due_ns:
            # tick(ts_ns) with nothing to close (most trades): it would return [] and
            # change nothing.
            self._bucket += qty
            return []
        closed = self.tick(ts_ns)
        self._bucket += qty
        return closed

    def tick(self, now_ns: int) -> list[VolumeFigures]:
        """Close every interval that ended by `now_ns`."""
        step = self.volume_interval_ns
        if self._bucket_start is None:
            self._bucket_start = now_ns - now_ns % step
            self.due_ns = self._bucket_start + step
            return []
        out: list[VolumeFigures] = []
        if now_ns < self._bucket_start + step:
            return out
        out.append(self._close(self._bucket))
        self._bucket = 0.0
        empty = (now_ns - self._bucket_start) // step
        # A long silence: empty intervals older than the history would be pushed out of it
        # by the later ones anyway.
        skip = max(0, empty - self.volumes.maxlen)
        self._bucket_start += skip * step
        empty -= skip
        for _ in range(empty):
            out.append(self._close(0.0))
        self.due_ns = self._bucket_start + step
        return out

    def _close(self, volume: float) -> VolumeFigures:
        """Figures of the interval at `_bucket_start` against the history before it; then
        it joins the history and the next interval begins."""
        hist = list(self.volumes)
        med = mad = z = None
        if hist:
            med, mad, z = robust_z(volume, hist)
        fig = VolumeFigures(self._bucket_start, volume, med, mad, z, len(hist))
        self.volumes.append(volume)
        self._bucket_start += self.volume_interval_ns
        return fig
