"""Builders shared by the risk engine tests: orders, fills and positions by hand."""
from __future__ import annotations

from decimal import Decimal as D

from daemon.config import InstrumentCfg, RiskCfg
from daemon.execution.orders import Fill, Liquidity, Order, OrderType, Position, Side
from daemon.risk.engine import RiskEngine

BTC, ETH = "BTCUSDT", "ETHUSDT"
MIN_NS = 60_000_000_000
DAY_NS = 86_400_000_000_000
T0 = 20_000 * DAY_NS          # 2024-10-04 00:00 UTC: a day boundary

INSTRUMENTS = {
    BTC: InstrumentCfg(tick_size="0.01", lot_size="0.00001", min_notional="5"),
    ETH: InstrumentCfg(tick_size="0.01", lot_size="0.0001", min_notional="5"),
}

_ids = iter(range(1, 10**9))


def order(side: Side = Side.BUY, qty: str = "0.001", price: str | None = "60000",
          symbol: str = BTC, filled: str = "0") -> Order:
    t = OrderType.LIMIT if price is not None else OrderType.MARKET
    return Order(f"c{next(_ids)}", symbol, side, t, D(qty), None if price is None else D(price),
                 filled_qty=D(filled))


def fill(side: Side, qty: str, price: str, fee: str = "0", symbol: str = BTC,
         ts: int = 0) -> Fill:
    return Fill(f"f{next(_ids)}", "c", symbol, side, D(price), D(qty), D(fee), Liquidity.TAKER,
                ts)


def engine(**risk) -> RiskEngine:
    return RiskEngine(RiskCfg(**risk), INSTRUMENTS)


def marks(**m: str):
    """A mark function: marks(BTCUSDT="60000")."""
    table = {k: D(v) for k, v in m.items()}
    return lambda s: table.get(s)


def position(symbol: str = BTC, qty: str = "0", avg: str = "0", realized: str = "0",
             fees: str = "0") -> Position:
    return Position(symbol, D(qty), D(avg), D(realized), D(fees))


def trade(e: RiskEngine, pos: Position, f: Fill, now_ns: int = T0) -> None:
    """Apply a fill to a position the way the gateway does, then tell the engine."""
    pos.apply(f)
    e.on_fill(f, pos, now_ns)
