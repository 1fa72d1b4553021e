"""Live market data of every configured market at once: one `BinanceLiveFeed` connection
per market (spot and USD-M of one asset on one engine, say), each frame handed on tagged
with its market, so the feed decodes it with that market's decoder and its instruments
carry that market's prefix ("usdm:BTCUSDT").

A single market behaves exactly as one `BinanceLiveFeed` (its status is that feed's). With
several, the daemon's one market heartbeat only moves as far as the market that made the
least progress (a wedged USD-M connection is not hidden by a busy spot one), `connected`
means every market is connected, and a snapshot request goes to the connection that
carries the instrument.

What it must never do: decode, reorder or drop a frame (it only routes bytes); touch
trading state; or let one market's failure pass silently: if one connection's `run()`
raises (a bug after the socket: decode, book, strategy), the others are stopped and the
exception goes to the caller, as with one market.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from daemon.config import Config
from daemon.market.binance_live import BinanceLiveFeed
from daemon.market.instruments import parse_id, prefix_of
from daemon.safety.watchdog import Heartbeat

# (market prefix, recv_ns, raw frame, symbol of a REST snapshot or None)
OnMarketMessage = Callable[[str, int, bytes, str | None], None]


class _Share(Heartbeat):
    """One market's part of the shared heartbeat: the shared one is as old as the oldest
    part, so the watchdog sees the slowest market."""

    def __init__(self, name: str, parent: Heartbeat, parts: list[_Share]) -> None:
        super().__init__(name, parent.deadline_s)
        self._parent = parent
        self._parts = parts

    def beat(self) -> None:
        super().beat()
        self._parent.last = min(p.last for p in self._parts)


class LiveMarkets:
    """The live connections of `cfg`'s markets, built from [market] (symbols, exchange,
    ws_base/rest_base for the exchange's own market, [market.endpoints.MARKET] for
    another's, stale_after_s)."""

    def __init__(self, cfg: Config, on_message: OnMarketMessage, *,
                 heartbeat: Heartbeat | None = None) -> None:
        m = cfg.market
        by_market: dict[str, list[tuple[str, str]]] = {}   # market -> [(id, bare symbol)]
        for s in m.symbols:
            market, bare = parse_id(s, m.exchange)
            by_market.setdefault(market, []).append((s, bare))
        parts: list[_Share] = []
        self.feeds: dict[str, BinanceLiveFeed] = {}          # market -> its connection
        self._route: dict[str, tuple[BinanceLiveFeed, str]] = {}   # id -> (feed, bare)
        for market, ids in by_market.items():
            if market == m.exchange:
                ws, rest = m.ws_base, m.rest_base
            else:
                ep = m.endpoints.get(market)   # type: ignore[call-overload]
                ws, rest = (ep.ws_base, ep.rest_base) if ep is not None else ("", "")
            hb: Heartbeat | None = heartbeat
            if heartbeat is not None and len(by_market) > 1:
                hb = _Share(f"{heartbeat.name}:{market}", heartbeat, parts)
                parts.append(hb)
            prefix = prefix_of(market, m.exchange)
            feed = BinanceLiveFeed(
                [bare for _, bare in ids], market=market,   # type: ignore[arg-type]
                on_message=lambda ns, raw, sym, p=prefix: on_message(p, ns, raw, sym),
                heartbeat=hb, stale_after_s=m.stale_after_s,
                ws_base=ws or None, rest_base=rest or None)
            self.feeds[market] = feed
            for sid, bare in ids:
                self._route[sid] = (feed, bare)

    @property
    def connected(self) -> bool:
        return all(f.connected for f in self.feeds.values())

    def request_snapshot(self, instrument_id: str) -> bool:
        """A fresh REST snapshot of one instrument, from its own market's connection."""
        feed, bare = self._route[instrument_id]
        return feed.request_snapshot(bare)

    async def run(self) -> None:
        """Run every connection until `stop()`; the first exception of any one stops the
        others and is raised here."""
        feeds = list(self.feeds.values())
        if len(feeds) == 1:
            await feeds[0].run()
            return
        tasks = [asyncio.create_task(f.run(), name=f"live-{m}")
                 for m, f in self.feeds.items()]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.exception() is not None:
                        raise t.exception()   # type: ignore[misc]
        finally:
            for f in feeds:
                f.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        await asyncio.gather(*(f.stop() for f in self.feeds.values()))

    def status(self) -> dict[str, Any]:
        if len(self.feeds) == 1:
            return next(iter(self.feeds.values())).status()
        return {"connected": self.connected,
                "markets": {m: f.status() for m, f in self.feeds.items()}}
