"""Bar builders: time bars, volume bars and a volatility-adaptive time sampler.

Each builder folds `Trade` events into OHLCV bars (plus VWAP, trade count and aggressor
buy/sell volume) and hands every completed bar to an optional `on_bar` callback as well as
returning it from `update`. This is the replay hot path (every trade of every symbol goes
through here), so the builders keep their running sums in plain float attributes and
allocate a `Bar` object only when a bar completes; nothing here uses Decimal.

Clock. Bars are timed by the exchange trade time ("T", milliseconds, converted to ns) by
default: it is the instant the trade happened, it is monotonic per symbol, and bars made
from it are identical whatever network delay a capture suffered (Binance klines use it
too). `BarClock.RECEIVE` uses the local receive time `Trade.ts_ns` instead, for a strategy
that wants bars in the same clock as its own decisions. No clock ever looks ahead: a bar
completes only when a trade at or after its end arrives (or when `advance` is told that the
clock has passed the end), so a consumer sees a bar no earlier than it could have in live.

Empty intervals produce no bar (a quiet market yields a gap, not a run of flat bars).
A trade stamped before the open bar's start (a late print) is folded into the open bar:
closed bars are never reopened.

This module never sends orders, touches the book or does I/O; it only aggregates trades.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from daemon.market.events import Trade

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


class BarClock(StrEnum):
    EXCHANGE = "exchange"  # Trade.exch_ms * 1e6: when the trade happened
    RECEIVE = "receive"    # Trade.ts_ns: when we received it


@dataclass(slots=True)
class Bar:
    """One completed bar. Times are ns in the builder's clock.

    For time bars `start_ns`/`end_ns` are the interval bounds [start, end); for volume bars
    they are the times of the first and last trade in the bar. `first_ts_ns`/`last_ts_ns`
    are always the first and last trade times.
    """

    symbol: str
    start_ns: int
    end_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float         # base quantity
    quote_volume: float   # sum(price * qty)
    buy_volume: float     # aggressor bought (taker buy)
    sell_volume: float    # aggressor sold
    trades: int
    first_ts_ns: int
    last_ts_ns: int

    @property
    def vwap(self) -> float:
        return self.quote_volume / self.volume if self.volume > 0.0 else self.close


BarCallback = Callable[[Bar], None]


class _Accumulator:
    """Running sums of the open bar, shared by the builders (plain attributes: cheap)."""

    __slots__ = ("symbol", "_exch", "on_bar", "_n", "_o", "_h", "_l", "_c", "_v", "_qv",
                 "_bv", "_sv", "_first", "_last", "_start", "_end")

    def __init__(self, symbol: str, clock: BarClock, on_bar: BarCallback | None) -> None:
        self.symbol = symbol
        self._exch = BarClock(clock) is BarClock.EXCHANGE
        self.on_bar = on_bar
        self._n = 0
        self._o = self._h = self._l = self._c = 0.0
        self._v = self._qv = self._bv = self._sv = 0.0
        self._first = self._last = 0
        self._start = 0
        # -1 with _n == 0 means "no bar open": the first trade opens one.
        self._end = -1

    def _open(self, t: int, p: float) -> None:
        self._n = 0
        self._o = self._h = self._l = p
        self._v = self._qv = self._bv = self._sv = 0.0
        self._first = t

    def _fold(self, t: int, p: float, q: float, buyer_is_maker: bool) -> None:
        """Add one trade to the open bar (opened by `_open` if it was empty)."""
        if p > self._h:
            self._h = p
        elif p < self._l:
            self._l = p
        self._c = p
        self._n += 1
        self._v += q
        self._qv += p * q
        if buyer_is_maker:
            self._sv += q
        else:
            self._bv += q
        self._last = t

    def _emit(self, start_ns: int, end_ns: int) -> Bar:
        bar = Bar(self.symbol, start_ns, end_ns, self._o, self._h, self._l, self._c, self._v,
                  self._qv, self._bv, self._sv, self._n, self._first, self._last)
        self._n = 0
        if self.on_bar is not None:
            self.on_bar(bar)
        return bar

    def partial(self) -> Bar | None:
        """The open bar as it stands (not emitted, callback not called), or None if empty."""
        if self._n == 0:
            return None
        return Bar(self.symbol, self._start, self._end, self._o, self._h, self._l, self._c,
                   self._v, self._qv, self._bv, self._sv, self._n, self._first, self._last)


class TimeBarBuilder(_Accumulator):
    """Fixed-interval bars aligned to `offset_ns + k * interval_ns` in the chosen clock."""

    __slots__ = ("interval_ns", "offset_ns")

    def __init__(self, symbol: str, interval_ns: int, *, clock: BarClock = BarClock.EXCHANGE,
                 offset_ns: int = 0, on_bar: BarCallback | None = None) -> None:
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, got {interval_ns}")
        super().__init__(symbol, clock, on_bar)
        self.interval_ns = int(interval_ns)
        self.offset_ns = int(offset_ns)

    def update(self, trade: Trade) -> Bar | None:
        """Fold one trade in; return the bar it completed (at most one), else None."""
        t = trade.exch_ms * _NS_PER_MS if self._exch else trade.ts_ns
        p = trade.price
        bar = None
        if t >= self._end or not self._n:
            if self._n:
                bar = self._emit(self._start, self._end)
            # After `advance` closed a bar, a late trade still belongs after that bar.
            tt = t if t >= self._end else self._end
            iv = self.interval_ns
            start = tt - (tt - self.offset_ns) % iv
            self._start = start
            self._end = start + iv
            self._open(t, p)
        self._fold(t, p, trade.qty, trade.buyer_is_maker)
        return bar

    def advance(self, now_ns: int) -> Bar | None:
        """Close the open bar if the clock (same clock as the bars) has reached its end.

        Lets a quiet market still deliver the last bar on time instead of waiting for the
        next trade.
        """
        if self._n and now_ns >= self._end:
            return self._emit(self._start, self._end)
        return None

    def finish(self) -> Bar | None:
        """Emit the open bar regardless of the clock (end of a replay)."""
        return self._emit(self._start, self._end) if self._n else None


class VolumeBarBuilder(_Accumulator):
    """Bars that each hold exactly `threshold` base volume.

    A trade that overflows the open bar is split: the part that fills the bar closes it and
    the rest opens the next bar at the same price and time (a very large trade can complete
    several bars). Splitting keeps every bar at equal volume, which is the point of a volume
    clock. A split trade counts once in `trades` of every bar it contributes to; its
    aggressor side carries over to each part. Float rounding is absorbed by a relative
    tolerance of 1e-9 of the threshold so no dust bars appear.
    """

    __slots__ = ("threshold", "_eps")

    def __init__(self, symbol: str, threshold: float, *, clock: BarClock = BarClock.EXCHANGE,
                 on_bar: BarCallback | None = None) -> None:
        if not threshold > 0.0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        super().__init__(symbol, clock, on_bar)
        self.threshold = float(threshold)
        self._eps = self.threshold * 1e-9

    def update(self, trade: Trade) -> list[Bar] | None:
        """Fold one trade in; return the bars it completed (usually None)."""
        t = trade.exch_ms * _NS_PER_MS if self._exch else trade.ts_ns
        p = trade.price
        q = trade.qty
        sell = trade.buyer_is_maker
        if self._n == 0:
            self._open(t, p)
        need = self.threshold - self._v
        if q < need - self._eps:   # common case: the bar is not full yet
            self._fold(t, p, q, sell)
            return None
        if p > self._h:
            self._h = p
        elif p < self._l:
            self._l = p
        self._c = p
        self._last = t
        out: list[Bar] = []
        while True:
            take = q if q < need else need
            self._n += 1
            self._qv += p * take
            if sell:
                self._sv += take
            else:
                self._bv += take
            q -= take
            # Set the volume exactly to the threshold: the bar is full by construction.
            self._v = self.threshold
            out.append(self._emit(self._first, t))
            if q <= self._eps:
                return out
            self._open(t, p)
            self._c = p
            self._last = t
            need = self.threshold
            if q < need - self._eps:
                self._n = 1
                self._v = q
                self._qv = p * q
                if sell:
                    self._sv = q
                else:
                    self._bv = q
                return out

    def finish(self) -> Bar | None:
        """Emit the partly filled bar (end of a replay)."""
        return self._emit(self._first, self._last) if self._n else None


class EwmaVol:
    """Time-weighted EWMA of the variance rate of log returns, in 1/s.

    Each observation is a log return `r` over `dt_ns`; its variance-rate sample is
    `r*r / dt_seconds`, so a return over a longer interval is not mistaken for higher
    volatility. The weight of the new sample is `alpha = 1 - 2**(-dt_ns / halflife_ns)`:
    after one half-life of elapsed time, older samples carry half the weight. The first
    sample seeds the estimate. `vol` is the square root: volatility per sqrt(second).
    """

    __slots__ = ("halflife_ns", "var")

    def __init__(self, halflife_ns: int) -> None:
        if halflife_ns <= 0:
            raise ValueError(f"halflife_ns must be positive, got {halflife_ns}")
        self.halflife_ns = int(halflife_ns)
        self.var: float | None = None

    def update(self, log_return: float, dt_ns: int) -> float:
        """Add one return over `dt_ns` (> 0) and return the new volatility."""
        if dt_ns <= 0:
            raise ValueError(f"dt_ns must be positive, got {dt_ns}")
        x = log_return * log_return * _NS_PER_S / dt_ns
        if self.var is None:
            self.var = x
        else:
            alpha = 1.0 - 2.0 ** (-dt_ns / self.halflife_ns)
            self.var += alpha * (x - self.var)
        return math.sqrt(self.var)

    @property
    def vol(self) -> float | None:
        return None if self.var is None else math.sqrt(self.var)


class AdaptiveBarSampler(_Accumulator):
    """Time bars whose length shrinks as volatility rises.

    Definition. The first bar starts at the first trade's time and lasts `base_interval_ns`.
    When a bar closes (a trade arrives at or after its end, or `advance` passes its end):

    1. If a previous bar exists, `r = ln(close_k / close_{k-1})` over
       `dt = end_k - end_{k-1}` updates an `EwmaVol` with half-life `halflife_ns`.
    2. The next interval is `clamp(base * target_vol / ewma_vol, min, max)`; with no
       estimate yet it is `base`, with an estimate of exactly 0 it is `max`.
       `target_vol` is in the same unit as `EwmaVol.vol` (log-return volatility per
       sqrt(second); e.g. 50 % a year is about 8.9e-5).
    3. The next bar starts at the closed bar's end, or at the triggering trade's time if
       that trade lies beyond the next bar's end too (a quiet gap is skipped, not filled
       with empty bars).

    So the interval changes only at bar boundaries, and higher volatility (larger
    returns per unit time) gives a larger `ewma_vol` and hence a shorter next interval.
    """

    __slots__ = ("base_interval_ns", "min_interval_ns", "max_interval_ns", "target_vol",
                 "ewma", "interval_ns", "_prev_close", "_prev_end")

    def __init__(self, symbol: str, *, base_interval_ns: int, min_interval_ns: int,
                 max_interval_ns: int, target_vol: float, halflife_ns: int,
                 clock: BarClock = BarClock.EXCHANGE,
                 on_bar: BarCallback | None = None) -> None:
        if not 0 < min_interval_ns <= base_interval_ns <= max_interval_ns:
            raise ValueError("need 0 < min_interval_ns <= base_interval_ns <= max_interval_ns")
        if not target_vol > 0.0:
            raise ValueError(f"target_vol must be positive, got {target_vol}")
        super().__init__(symbol, clock, on_bar)
        self.base_interval_ns = int(base_interval_ns)
        self.min_interval_ns = int(min_interval_ns)
        self.max_interval_ns = int(max_interval_ns)
        self.target_vol = float(target_vol)
        self.ewma = EwmaVol(halflife_ns)
        self.interval_ns = self.base_interval_ns
        self._prev_close: float | None = None
        self._prev_end = 0

    def interval_for_vol(self, vol: float | None) -> int:
        """The interval rule alone: clamp(base * target / vol, min, max)."""
        if vol is None:
            return self.base_interval_ns
        if vol <= 0.0:
            return self.max_interval_ns
        iv = self.base_interval_ns * self.target_vol / vol
        if iv <= self.min_interval_ns:
            return self.min_interval_ns
        if iv >= self.max_interval_ns:
            return self.max_interval_ns
        return int(iv)

    def _close(self) -> Bar:
        end = self._end
        bar = self._emit(self._start, end)
        if self._prev_close is not None and end > self._prev_end and self._prev_close > 0.0:
            self.ewma.update(math.log(bar.close / self._prev_close), end - self._prev_end)
            self.interval_ns = self.interval_for_vol(self.ewma.vol)
        self._prev_close = bar.close
        self._prev_end = end
        self._start = end
        self._end = end + self.interval_ns
        return bar

    def update(self, trade: Trade) -> Bar | None:
        """Fold one trade in; return the bar it completed (at most one), else None."""
        t = trade.exch_ms * _NS_PER_MS if self._exch else trade.ts_ns
        p = trade.price
        bar = None
        if t >= self._end or not self._n:
            if self._n:
                bar = self._close()
            if t >= self._end:
                # First trade ever, or a quiet gap longer than the next bar: restart here.
                self._start = t
                self._end = t + self.interval_ns
            self._open(t, p)
        self._fold(t, p, trade.qty, trade.buyer_is_maker)
        return bar

    def advance(self, now_ns: int) -> Bar | None:
        """Close the open bar if the clock (bar clock) has reached its end."""
        if self._n and now_ns >= self._end:
            return self._close()
        return None
