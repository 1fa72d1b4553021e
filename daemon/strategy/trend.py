"""Trend following: an EMA crossover on bars with an ATR stop and take-profit.

On every [strategy] bar (bar_interval_s, built from trades) the fast and slow EMAs of the
close and the ATR are updated (daemon/features/indicators.py: TA-Lib's conventions). When
the fast EMA crosses above the slow one the strategy buys the configured size
(ctx.order_qty); when it crosses below, it sells short if `allow_short` (never on spot:
the config refuses it). One position at a time per symbol. Once filled, the stop is
entry -/+ k_stop x ATR and the target entry +/- k_tp x ATR (ATR of the signal bar); they
are checked on every trade, and a cross against the position closes it too (and, with
shorts allowed, the opposite position is entered once the close has filled and the EMAs
still agree). Entries and exits are IOC limits max_slippage_bps through the mark
(daemon/strategy/one_position.py): marketable, but never filled beyond that price.

It stands aside, saying why, while warming up (fewer bars than the slow EMA and the ATR
need), without a mark, after a stop or target until the next cross, while a position is
open that it did not open, and when the entry was refused (position limit, state).

It only returns intents; it never touches the gateway, the venue or the clock.
"""
from __future__ import annotations

from typing import Any, Iterable

from daemon.config import TrendCfg
from daemon.features.indicators import ATR, EMA
from daemon.strategy.api import Context, Intent, Strategy
from daemon.strategy.one_position import OnePosition


class _Sym:
    """Indicators and position bookkeeping of one symbol."""

    __slots__ = ("fast", "slow", "atr", "bars", "diff", "pos", "wait_cross")

    def __init__(self, p: TrendCfg, symbol: str) -> None:
        self.fast, self.slow, self.atr = EMA(p.fast), EMA(p.slow), ATR(p.atr_period)
        self.bars = 0
        self.diff: float | None = None        # fast - slow of the last bar
        self.pos = OnePosition(symbol, p.max_slippage_bps)
        self.wait_cross: str | None = None    # why we wait for the next cross (stop, target)


class Trend(Strategy):
    name = "trend"

    def __init__(self, params: TrendCfg, symbols: list[str]) -> None:
        super().__init__(params, symbols)
        self.p = params
        self.warmup = max(params.slow + 1, params.atr_period + 1)   # bars before a cross counts
        self._s = {s: _Sym(params, s) for s in symbols}
        self._reverse: dict[str, int] = {}    # symbol -> side to enter once the close fills
        self.stats.update(entries=0, stops=0, targets=0, cross_exits=0)

    # -- bars: indicators and signals --------------------------------------------------------
    def on_bar(self, ctx: Context, bar: Any) -> Iterable[Intent]:
        st = self._s.get(bar.symbol)
        if st is None:
            return ()
        st.bars += 1
        f = st.fast.update(bar.close)
        sl = st.slow.update(bar.close)
        atr = st.atr.update(bar.high, bar.low, bar.close)
        prev = st.diff
        st.diff = None if f is None or sl is None else f - sl
        reversal = self._sync(ctx, st)
        if reversal:   # the close before a reversal filled: the new entry goes first
            return reversal
        if st.bars < self.warmup or prev is None or st.diff is None or atr is None:
            self.aside(f"{bar.symbol}: warming up ({st.bars}/{self.warmup} bars)")
            return ()
        cross = 1 if prev <= 0 < st.diff else -1 if prev >= 0 > st.diff else 0
        return self._decide(ctx, st, bar.symbol, cross, atr)

    def _decide(self, ctx: Context, st: _Sym, sym: str, cross: int, atr: float
                ) -> list[Intent]:
        pos = st.pos
        if pos.phase in ("entering", "exiting"):
            return []
        if pos.phase == "open":
            if cross == -pos.side:
                self.stats["cross_exits"] += 1
                if self.p.allow_short or cross > 0:
                    self._reverse[sym] = cross
                self.intent = f"{sym}: close on the cross against the position"
                return pos.exit(ctx, "cross against the position")
            return []
        held = ctx.position(sym)
        if held != 0:
            self.aside(f"{sym}: a position of {held} is open that this strategy did not "
                       f"open (one position at a time)")
            return []
        if cross == 0:
            if st.wait_cross is None:   # flat and ready: waiting is not standing aside
                self.aside(None)
                self.intent = f"{sym}: waiting for a cross (fast - slow = {st.diff:.6g})"
            return []
        if cross < 0 and not self.p.allow_short:
            if st.wait_cross is None:   # after a stop or target that reason stays shown
                self.aside(f"{sym}: down-cross, long-only (allow_short = false)")
            return []
        st.wait_cross = None
        return self._enter(ctx, st, sym, cross, atr, "cross")

    def _enter(self, ctx: Context, st: _Sym, sym: str, side: int, atr: float, why: str
               ) -> list[Intent]:
        p = self.p
        out = st.pos.enter(ctx, side, stop_dist=p.k_stop * atr, target_dist=p.k_tp * atr,
                           reason=f"EMA {p.fast}/{p.slow} {why} {'up' if side > 0 else 'down'}"
                                  f", ATR {atr:.6g}")
        if not out:
            self.aside(f"{sym}: no mark (cannot price the entry)")
            return []
        self.aside(None)
        self.stats["entries"] += 1
        self.intent = f"{sym}: {'buy' if side > 0 else 'sell'} on the {why}"
        return out

    # -- trades: stops and targets -----------------------------------------------------------
    def on_trade(self, ctx: Context, trade: Any) -> Iterable[Intent]:
        st = self._s.get(trade.symbol)
        if st is None:
            return ()
        out = self._sync(ctx, st)
        if out:
            return out
        pos = st.pos
        if pos.phase != "open":
            return ()
        if pos.exit_why:   # an exit that did not (fully) fill: send the rest again
            return pos.exit(ctx, pos.exit_why)
        hit = pos.hit(trade.price)
        if hit is None:
            return ()
        self.stats["stops" if hit == "stop" else "targets"] += 1
        level = pos.stop if hit == "stop" else pos.target
        self.intent = f"{trade.symbol}: close at the {hit} {level:.8g}"
        return pos.exit(ctx, f"{hit} {level:.8g} hit at {trade.price:.8g}")

    def _sync(self, ctx: Context, st: _Sym) -> list[Intent]:
        pos = st.pos
        sym = pos.symbol
        what = pos.sync(ctx)
        if what == "entered":
            self.intent = (f"{sym}: {'long' if pos.side > 0 else 'short'} from "
                           f"{pos.entry_price:.8g}, stop {pos.stop:.8g}, target "
                           f"{pos.target:.8g}")
        elif what == "missed":
            self.aside(f"{sym}: the entry IOC found nothing within max_slippage_bps; "
                       f"waiting for the next cross")
            st.wait_cross = "missed"
        elif what == "closed":
            why = pos.exit_why
            side = self._reverse.pop(sym, 0)
            if why.startswith(("stop", "target")):
                st.wait_cross = why
                self.aside(f"{sym}: {why}; waiting for the next cross")
                self.intent = None
            elif side and st.diff is not None and st.diff * side > 0 \
                    and st.atr.value is not None:
                return self._enter(ctx, st, sym, side, st.atr.value, "reversal")
            else:
                self.intent = None
                self.aside(f"{sym}: closed ({why}); waiting for a cross")
        return []

    # -- what it hears about its orders ------------------------------------------------------
    def on_fill(self, ctx: Context, tag: str, fill: Any) -> Iterable[Intent]:
        st = self._s.get(fill.symbol)
        if st is not None:
            st.pos.on_fill(tag, fill)
        return ()

    def on_refused(self, ctx: Context, intent: Intent, stage: str, reason: str
                   ) -> Iterable[Intent]:
        super().on_refused(ctx, intent, stage, reason)
        sym = intent.tag.partition(":")[2]
        st = self._s.get(sym)
        if st is None:
            return ()
        st.pos.on_refused(intent.tag)
        if intent.tag == st.pos.entry_tag:
            st.wait_cross = "refused"
            self._reverse.pop(sym, None)
            what = "position limit" if "max_position" in reason else f"entry refused ({stage})"
            self.aside(f"{sym}: {what}: {reason}; waiting for the next cross")
        return ()

    def status(self) -> dict:
        out = super().status()
        out["symbols_state"] = {
            s: {"bars": st.bars, "ema_fast": st.fast.value, "ema_slow": st.slow.value,
                "atr": st.atr.value, **st.pos.status()} for s, st in self._s.items()}
        return out
