"""A deliberately trivial market maker: one post-only bid and one post-only ask around the
mid of the reconstructed book, re-quoted when the mid moves.

It exists so the appliance has open orders to manage (and to cancel on an e-stop); it is
not a strategy to make money with. It trades only through the gateway, only while the
supervisor says trading is allowed, and never retries an order the gateway refused.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from daemon.config import StrategyCfg
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Side, TimeInForce, to_decimal
from daemon.safety.watchdog import Heartbeat

log = logging.getLogger(__name__)


class Quoter:
    def __init__(self, cfg: StrategyCfg, gateway: OrderGateway, market: Any,
                 can_trade: Callable[[], bool], heartbeat: Heartbeat | None = None,
                 spread_floor: Callable[[str], float | None] | None = None) -> None:
        self.cfg = cfg
        # A floor on the quoted spread in bps of the mid (the Glosten-Milgrom spread from
        # daemon/analytics): the half spread is max(configured, floor / 2). None: no floor.
        self.spread_floor = spread_floor
        self.gateway = gateway
        self.market = market
        self.can_trade = can_trade
        self.heartbeat = heartbeat
        self._hs = cfg.half_spread_bps / 1e4
        self._requote = cfg.requote_bps / 1e4
        self._min_gap_ns = int(cfg.requote_min_interval_ms * 1e6)
        self._quotes: dict[str, tuple[float, int, list[str]]] = {}  # sym -> (mid, ts, ids)
        self._stalled_until = 0.0
        self.stats = {"requotes": 0, "refused": 0}

    def on_market(self, symbol: str, book: Any, ts_ns: int) -> None:
        """Called by the market runtime after the book of `symbol` changed."""
        if not self.can_trade() or time.monotonic() < self._stalled_until:
            return
        prev = self._quotes.get(symbol)
        if not book.valid:
            if prev:
                self._pull(symbol, "book invalid", protective=True)
            return
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            return
        mid = (bb[0] + ba[0]) * 0.5
        if prev is not None:
            pmid, pts, ids = prev
            live = any(i in self.gateway.open for i in ids)
            if live and abs(mid - pmid) < self._requote * pmid:
                return
            if ts_ns - pts < self._min_gap_ns:
                return
        ids = []
        qty = self.cfg.quote_qty
        hs = self.half_spread(symbol)
        with self.gateway.batch():   # the two cancels and two new quotes: one fsync
            if not self._pull(symbol, "requote"):
                return   # cancel rate limit: keep the quotes we have, place nothing new
            for side, px in ((Side.BUY, mid * (1 - hs)), (Side.SELL, mid * (1 + hs))):
                try:
                    o = self.gateway.submit(symbol, side, qty, to_decimal(round(px, 8)),
                                            tif=TimeInForce.POST_ONLY)
                    ids.append(o.client_id)
                except Rejected as e:
                    self.stats["refused"] += 1
                    if e.stage not in ("latch", "state"):
                        log.debug("quote refused: %s", e)
        self._quotes[symbol] = (mid, ts_ns, ids)
        self.stats["requotes"] += 1

    def half_spread(self, symbol: str) -> float:
        """The half spread to quote `symbol` at, as a fraction of the mid: the configured
        one, widened to half the spread floor when a floor is known."""
        if self.spread_floor is None:
            return self._hs
        floor = self.spread_floor(symbol)
        if floor is None or not floor > 0:   # also refuses NaN: never quote on it
            return self._hs
        return max(self._hs, floor / 2e4)

    def _pull(self, symbol: str, why: str, protective: bool = False) -> bool:
        """Cancel this symbol's quotes. A requote's cancels count toward the cancel-rate
        limit (False when refused: the quotes stay); pulling quotes off an invalid book is
        protective and never refused."""
        prev = self._quotes.pop(symbol, None)
        if prev:
            for cid in prev[2]:
                try:
                    self.gateway.cancel(cid, why, strategy=not protective)
                except Rejected as e:
                    self.stats["refused"] += 1
                    log.debug("requote cancel refused: %s", e)
                    self._quotes[symbol] = prev
                    return False
        return True

    def stall(self, seconds: float) -> None:
        """Simulation hook: stop working (and beating) for a while, as a hung strategy would."""
        self._stalled_until = time.monotonic() + seconds

    async def run(self) -> None:
        """The strategy's own timer: beats the watchdog while the strategy is healthy."""
        while True:
            if time.monotonic() >= self._stalled_until and self.heartbeat is not None:
                self.heartbeat.beat()
            await asyncio.sleep(0.1)


