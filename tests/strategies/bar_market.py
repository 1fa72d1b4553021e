"""A hand-made market for the bar strategies' tests: OHLC bars turned into trades on a
real core (tests/engine_rig.py), with the book moved to each trade's price first so the
paper venue can fill IOC orders there and the mark follows the price.

Each bar of `interval_s` seconds (exchange time, aligned to the bar grid) is four trades
at open, high, low and close; a bar reaches the strategy when the first trade of the
next bar arrives (daemon/market/bars.py), so `bars()` ends with the next bar's open. Every
bar the strategy heard is recorded with its status right after (`heard`), so indicator
values can be compared with TA-Lib on exactly the bars the engine built.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.engine_rig import MS, EngineRig

HALF_SPREAD = 0.5        # the book: bid = price - 0.5, ask = price + 0.5, 2 BTC each side
OFFSETS_MS = (100, 300, 500, 700)


class BarMarket:
    def __init__(self, tmp_path: Path, name: str, params: dict, *, interval_s: int = 1,
                 overrides: dict | None = None, price: float = 60_000.0) -> None:
        over = {"quality": {"enabled": False}}   # hand-made jumps are not data faults here
        for k, v in (overrides or {}).items():
            over[k] = {**over.get(k, {}), **v}
        self.rig = EngineRig(tmp_path, strategy={"name": name, "bar_interval_s": float(
            interval_s), name: params}, overrides=over)
        self.interval_ns = interval_s * 1_000_000_000
        self.price = price
        self._open_start: int | None = None
        self.rig.start(*self._levels(price))
        self.strategy = self.rig.engine.strategy
        self.heard: list[tuple[Any, dict, int]] = []   # (bar, status after it, engine time)
        self.trades: list[tuple[int, float]] = []      # (time, price) of every trade sent
        self.fills_told: list[tuple[str, Any]] = []
        s = self.strategy
        on_bar, on_fill = s.on_bar, s.on_fill

        def record_bar(ctx, bar):
            out = on_bar(ctx, bar)
            self.heard.append((bar, s.status(), ctx.now_ns()))
            return out

        def record_fill(ctx, tag, fill):
            self.fills_told.append((tag, fill))
            return on_fill(ctx, tag, fill)
        s.on_bar, s.on_fill = record_bar, record_fill
        # Start on the bar grid: the first bar below is a whole bar.
        r = self.rig
        nxt = (r.t // self.interval_ns + 1) * self.interval_ns
        r.idle((nxt - r.t) / MS)

    @staticmethod
    def _levels(p: float) -> tuple[list, list]:
        return ([(round(p - HALF_SPREAD, 2), 2.0), (round(p - 5, 2), 2.0)],
                [(round(p + HALF_SPREAD, 2), 2.0), (round(p + 5, 2), 2.0)])

    def move(self, p: float) -> None:
        """The book around `p` (old levels removed) and a bookTicker confirming it."""
        old_b, old_a = self._levels(self.price)
        new_b, new_a = self._levels(p)
        nb = {q: 0.0 for q, _ in old_b} | dict(new_b)
        na = {q: 0.0 for q, _ in old_a} | dict(new_a)
        self.rig.diff(list(nb.items()), list(na.items()), dt_ms=1)
        self.rig.quote(new_b[0][0], new_a[0][0], dt_ms=1, qty=2.0)
        self.price = p

    def trade_at(self, t_ns: int, p: float) -> None:
        """Move the book to `p` just before `t_ns`, then a trade at `p` at `t_ns`."""
        r = self.rig
        if r.t + 3 * MS > t_ns:
            raise ValueError("trades must be at least 3 ms apart")
        r.t = t_ns - 3 * MS
        self.move(p)
        r.trade(p, 0.001, dt_ms=(t_ns - r.t) / MS)
        self.trades.append((t_ns, p))

    def bars(self, ohlc: list[tuple[float, float, float, float]], *, close_last: bool = True
             ) -> None:
        """One bar per (open, high, low, close); with `close_last`, the next bar's first
        trade (at the last close) so the last bar reaches the strategy too. A bar after
        that trade continues it (its open is already traded)."""
        for o, h, l_, c in ohlc:
            if self._open_start is not None:
                start, self._open_start = self._open_start, None
                todo = list(zip(OFFSETS_MS[1:], (h, l_, c)))
            else:
                start = (self.rig.t // self.interval_ns + 1) * self.interval_ns
                todo = list(zip(OFFSETS_MS, (o, h, l_, c)))
            for off, p in todo:
                self.trade_at(start + off * MS, p)
        if close_last:
            self.next_open(ohlc[-1][3])

    def next_open(self, p: float) -> None:
        """The first trade of the next bar: the bar before it reaches the strategy."""
        start = (self.rig.t // self.interval_ns + 1) * self.interval_ns
        self.trade_at(start + OFFSETS_MS[0] * MS, p)
        self._open_start = start

    def closes(self, closes: list[float], wick: float = 2.0) -> None:
        """Bars opening at the previous close, wicks `wick` beyond open and close."""
        out, prev = [], self.price
        for c in closes:
            out.append((prev, max(prev, c) + wick, min(prev, c) - wick, c))
            prev = c
        self.bars(out)

    def settle(self, dt_ms: float = 1) -> None:
        """Time passes (an empty diff): orders sent on the last event reach the venue."""
        self.rig.idle(dt_ms)

    # -- reading -------------------------------------------------------------------------
    def orders(self) -> list[sqlite3.Row]:
        """Every order the core journalled, oldest first (the real SQLite journal)."""
        con = sqlite3.connect(f"file:{self.rig.journal.path}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            return con.execute("SELECT * FROM orders ORDER BY created_ns, client_id").fetchall()
        finally:
            con.close()

    def position(self):
        return self.rig.gw.position("BTCUSDT").qty

    @property
    def aside(self) -> str | None:
        return self.strategy.standing_aside
