"""Typed market events decoded from Binance messages.

Prices and quantities are floats here: this is the hot path, and a float parsed from the
exchange's decimal text is exact enough to identify and order levels. The money path
(gateway, venue fills) converts to Decimal with `daemon.execution.orders.to_decimal`.
Events are plain data: nothing here parses, sends or stores anything.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Trade:
    symbol: str
    ts_ns: int            # local receive time
    exch_ms: int          # exchange trade time "T"
    trade_id: int
    price: float
    qty: float
    buyer_is_maker: bool  # True: the aggressor sold

    @property
    def aggressor_buy(self) -> bool:
        return not self.buyer_is_maker


@dataclass(slots=True)
class Quote:
    """bookTicker: the exchange's own best bid/ask at update id `update_id`."""

    symbol: str
    ts_ns: int
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


@dataclass(slots=True)
class DepthDiff:
    """depthUpdate: levels changed between update ids first_id..last_id (qty 0 = remove)."""

    symbol: str
    ts_ns: int
    first_id: int          # "U"
    last_id: int           # "u"
    prev_last_id: int | None  # "pu" (futures only)
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


@dataclass(slots=True)
class DepthSnapshot:
    """REST depth snapshot."""

    symbol: str
    ts_ns: int
    last_update_id: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


MarketEvent = Trade | Quote | DepthDiff | DepthSnapshot
