"""A real trading core fed by hand: the engine, feed, paper venue, gateway, risk, breakers
and a real SQLite journal, built by daemon/engine/build.py exactly as the daemon and a
backtest build them, with the backtest's state machine (daemon/backtest/run.py) as control.

Tests push hand-made market events (`snapshot`, `diff`, `quote`, `trade`) through
`engine.on_event` in event time and look at what the strategy's intents became (orders in
the gateway and the journal). Nothing here is mocked.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon import config
from daemon.backtest.run import BacktestControl
from daemon.engine.build import Core, build_core
from daemon.execution.orders import Order
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.safety.latch import KillLatch
from daemon.store.journal import Journal

T0 = 1_723_161_254_000_000_000   # 2024-08-08 23:54:14 UTC, like the shared captures
MS = 1_000_000


class EngineRig:
    def __init__(self, tmp_path: Path, *, symbols: tuple[str, ...] = ("BTCUSDT",),
                 strategy: dict | None = None, overrides: dict | None = None,
                 strategy_obj: Any = None, base: config.Config | None = None) -> None:
        """`base`: the config to start from (default: the built-in defaults), e.g. one
        whose [market] exchange brings other default instruments."""
        over: dict[str, dict] = {"market": {"source": "replay", "symbols": list(symbols)},
                                 "paper": {"entry_latency_ms": 0.0, "md_latency_ms": 0.0},
                                 "analytics": {"enabled": False}}
        for section, values in (overrides or {}).items():
            over[section] = {**over.get(section, {}), **values}
        if strategy is not None:
            over["strategy"] = strategy
        self.cfg = config.with_overrides(base or config.Config(), **over)
        self.journal = Journal(tmp_path / "journal.sqlite3")
        self.run = self.journal.begin_run()
        self.latch = KillLatch()
        self.control = BacktestControl(self.journal, self.latch)
        self.core: Core = build_core(self.cfg, journal=self.journal, latch=self.latch,
                                     control=self.control, state=lambda: self.control.state,
                                     run_number=self.run, replay=[])
        self.control.gateway = self.core.gateway
        self.engine = self.core.engine
        if strategy_obj is not None:   # a test's own strategy instead of the configured one
            self.engine.strategy = strategy_obj
        self.gw = self.core.gateway
        self.t = T0
        # Each book has its own update-id sequence (a shared one would be a gap in every
        # other book); futures books also get `pu`, the previous final id, as Binance sends.
        self.ids: dict[str, int] = {}
        self.trade_id = 1

    # -- events -------------------------------------------------------------------------------
    def last_id(self, symbol: str = "BTCUSDT") -> int:
        return self.ids.setdefault(symbol, 100)

    def _pu(self, symbol: str, prev: int) -> int | None:
        return None if self.core.feed.market_of[symbol] == "spot" else prev

    def _ts(self, dt_ms: float) -> int:
        self.t += int(dt_ms * MS)
        return self.t

    def snapshot(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], *,
                 symbol: str = "BTCUSDT", dt_ms: float = 1) -> None:
        """A first diff, then the snapshot it continues: the book is valid afterwards."""
        u = self.last_id(symbol)
        self.engine.on_event(DepthDiff(symbol, self._ts(dt_ms), u, u + 1,
                                       self._pu(symbol, u - 1), [], []))
        self.engine.on_event(DepthSnapshot(symbol, self._ts(dt_ms), u, list(bids),
                                           list(asks)))
        self.ids[symbol] = u + 1
        self.diff([], [], symbol=symbol, dt_ms=dt_ms)

    def start(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], *,
              symbol: str = "BTCUSDT") -> None:
        """A valid book, then time for the periodic check to see it (before it, the empty
        book of the first event put the engine in reducing: "degraded"), then one more
        diff for the strategy to hear."""
        self.snapshot(bids, asks, symbol=symbol)
        self.idle(self.engine.check_ns / MS + 1, symbol=symbol)
        self.idle(1000, symbol=symbol)
        assert self.control.state.value == "trading", self.control.state_reason

    def diff(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], *,
             symbol: str = "BTCUSDT", dt_ms: float = 1, gap: bool = False) -> None:
        first = self.last_id(symbol) + (5 if gap else 1)
        self.ids[symbol] = first
        self.engine.on_event(DepthDiff(symbol, self._ts(dt_ms), first, first,
                                       self._pu(symbol, first - 1), list(bids), list(asks)))

    def quote(self, bid: float, ask: float, *, symbol: str = "BTCUSDT", dt_ms: float = 1,
              qty: float = 1.0) -> None:
        self.engine.on_event(Quote(symbol, self._ts(dt_ms), self.last_id(symbol), bid, qty,
                                   ask, qty))

    def trade(self, price: float, qty: float, *, buyer_is_maker: bool = True,
              symbol: str = "BTCUSDT", dt_ms: float = 1) -> None:
        ts = self._ts(dt_ms)
        self.engine.on_event(Trade(symbol, ts, ts // MS, self.trade_id, price, qty,
                                   buyer_is_maker))
        self.trade_id += 1

    def idle(self, dt_ms: float, *, symbol: str = "BTCUSDT") -> None:
        """Time passes with an empty diff (the venue and the checks see it)."""
        self.diff([], [], symbol=symbol, dt_ms=dt_ms)

    def settle(self) -> None:
        self.engine.settle()

    # -- reading --------------------------------------------------------------------------------
    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.gw.open.values() if symbol is None or o.symbol == symbol]

    def prices(self) -> dict[str, Decimal | None]:
        return {o.side.value: o.price for o in self.gw.open.values()}
