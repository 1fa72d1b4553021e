"""A deliberately simple market maker: one post-only bid and one post-only ask around the
mid of the reconstructed book, re-quoted when the mid moves.

It exists so the appliance has open orders to manage (and to cancel on an e-stop); it is
not a strategy to make money with. Like every strategy it only returns intents (tags
"bid:SYMBOL" and "ask:SYMBOL"); the engine sends them through the gateway, and only while
trading is allowed. It never retries an order the gateway refused.
"""
from __future__ import annotations

from typing import Any, Iterable

from daemon.config import QuoterCfg
from daemon.execution.orders import Side, TimeInForce, to_decimal
from daemon.strategy.api import Context, Intent, Place, Strategy


class Quoter(Strategy):
    name = "quoter"

    def __init__(self, params: QuoterCfg, symbols: list[str]) -> None:
        super().__init__(params, symbols)
        self._hs = params.half_spread_bps / 1e4
        self._requote = params.requote_bps / 1e4
        self._min_gap_ns = int(params.requote_min_interval_ms * 1e6)
        self._last: dict[str, tuple[float, int]] = {}   # symbol -> (mid, ts) of last quote
        self.stats["requotes"] = 0

    def on_book(self, ctx: Context, symbol: str, book: Any) -> Iterable[Intent]:
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            self.aside(f"{symbol}: one side of the book is empty")
            return ()
        self.aside(None)
        mid = (bb[0] + ba[0]) * 0.5
        now = ctx.now_ns()
        prev = self._last.get(symbol)
        if prev is not None:
            pmid, pts = prev
            if abs(mid - pmid) < self._requote * pmid and (
                    ctx.working(f"bid:{symbol}") or ctx.working(f"ask:{symbol}")):
                return ()
            if now - pts < self._min_gap_ns:
                return ()
        hs = self.half_spread(ctx, symbol)
        qty = ctx.order_qty(symbol, mid)
        self._last[symbol] = (mid, now)
        self.stats["requotes"] += 1
        why = f"requote at mid {mid:.8g}"
        self.intent = f"{symbol}: quote {hs * 1e4:.3g} bps either side of {mid:.8g}"
        return (Place(f"bid:{symbol}", symbol, Side.BUY, qty, to_decimal(round(mid * (1 - hs), 8)),
                      TimeInForce.POST_ONLY, why),
                Place(f"ask:{symbol}", symbol, Side.SELL, qty,
                      to_decimal(round(mid * (1 + hs), 8)), TimeInForce.POST_ONLY, why))

    def half_spread(self, ctx: Context, symbol: str) -> float:
        """The half spread to quote `symbol` at, as a fraction of the mid: the configured
        one, widened to half the spread floor (Glosten-Milgrom, from daemon/analytics)
        when a floor is known."""
        floor = ctx.spread_floor_bps(symbol)
        if floor is None or not floor > 0:   # also refuses NaN: never quote on it
            return self._hs
        return max(self._hs, floor / 2e4)
