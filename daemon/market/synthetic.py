"""A built-in synthetic market for `bot4d run --sim` without captures, and for benchmarks.

It writes real Binance spot combined-stream messages (REST snapshot, depthUpdate with
consistent U/u ids, trade, bookTicker) from a seeded random walk, so everything downstream
(decoder, book sync, paper venue, strategy) runs exactly as on exchange data. It is not a
model of any real market and must never be used to judge a strategy.
"""
from __future__ import annotations

import random
import time
from typing import Iterator

import orjson


class SyntheticMarket:
    def __init__(self, symbol: str = "BTCUSDT", *, seed: int = 7, mid: float = 60_000.0,
                 tick: float = 0.01, levels: int = 20, start_id: int = 1_000_000) -> None:
        self.symbol = symbol
        self._stream = symbol.lower()
        self._rng = random.Random(seed)
        self._tick = tick
        self._mid_ticks = round(mid / tick)
        self._levels = levels
        self._id = start_id
        self._trade_id = 1
        self._bids: dict[int, float] = {}
        self._asks: dict[int, float] = {}
        self._reshape()

    def _qty(self) -> float:
        return round(self._rng.uniform(0.001, 2.0), 5)

    def _px(self, ticks: int) -> str:
        return f"{ticks * self._tick:.8f}"

    def _reshape(self) -> tuple[list, list]:
        """Move the book around the current mid; return the changed levels (diff)."""
        m = self._mid_ticks
        want_b = {m - 1 - i: None for i in range(self._levels)}
        want_a = {m + 1 + i: None for i in range(self._levels)}
        diff_b, diff_a = [], []
        for side, want, diff in ((self._bids, want_b, diff_b), (self._asks, want_a, diff_a)):
            for p in [p for p in side if p not in want]:
                del side[p]
                diff.append([self._px(p), "0.00000000"])
            for p in want:
                # Refresh new levels always, old ones now and then (orders come and go).
                if p not in side or self._rng.random() < 0.2:
                    side[p] = self._qty()
                    diff.append([self._px(p), f"{side[p]:.8f}"])
        return diff_b, diff_a

    def snapshot(self) -> bytes:
        """The REST depth snapshot body (no "stream" key, like Binance's /api/v3/depth)."""
        return orjson.dumps({
            "lastUpdateId": self._id,
            "bids": [[self._px(p), f"{q:.8f}"] for p, q in sorted(self._bids.items(), reverse=True)],
            "asks": [[self._px(p), f"{q:.8f}"] for p, q in sorted(self._asks.items())]})

    def step(self, now_ns: int | None = None) -> list[bytes]:
        """One market step: a trade at the touch, a depth diff, a bookTicker."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        ms = now_ns // 1_000_000
        out = []
        buyer_maker = self._rng.random() < 0.5
        touch = max(self._bids) if buyer_maker else min(self._asks)
        out.append(orjson.dumps({"stream": f"{self._stream}@trade", "data": {
            "e": "trade", "E": ms, "s": self.symbol, "t": self._trade_id,
            "p": self._px(touch), "q": f"{round(self._rng.uniform(0.0001, 0.05), 5):.8f}",
            "T": ms, "m": buyer_maker, "M": True}}))
        self._trade_id += 1
        self._mid_ticks += self._rng.choice((-2, -1, 0, 0, 0, 1, 2))
        bids, asks = self._reshape()
        first = self._id + 1
        self._id += max(1, len(bids) + len(asks))
        out.append(orjson.dumps({"stream": f"{self._stream}@depth@100ms", "data": {
            "e": "depthUpdate", "E": ms, "s": self.symbol, "U": first, "u": self._id,
            "b": bids, "a": asks}}))
        bb, ba = max(self._bids), min(self._asks)
        out.append(orjson.dumps({"stream": f"{self._stream}@bookTicker", "data": {
            "u": self._id, "s": self.symbol, "b": self._px(bb), "B": f"{self._bids[bb]:.8f}",
            "a": self._px(ba), "A": f"{self._asks[ba]:.8f}"}}))
        return out

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """Endless (recv_ns, raw): one diff first (to be buffered), then the snapshot."""
        first = self.step()
        yield time.time_ns(), first[1]
        yield time.time_ns(), self.snapshot()
        while True:
            for raw in self.step():
                yield time.time_ns(), raw
