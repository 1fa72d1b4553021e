"""Order, fill and instrument types shared by the gateway, the journal and every venue.

Prices and quantities here are Decimal: this is the money path. Nothing in this module
talks to a venue or the journal; it only describes orders and how to quantise them.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    POST_ONLY = "post_only"  # Binance LIMIT_MAKER: rejected if it would take liquidity


class OrderStatus(StrEnum):
    PENDING_NEW = "pending_new"        # journalled, on its way to the venue
    NEW = "new"                        # acknowledged by the venue, resting
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"  # cancel journalled and sent, not yet confirmed
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"                # IOC / market remainder that found no liquidity

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED,
                       OrderStatus.EXPIRED})


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(slots=True)
class Order:
    """One order as the gateway tracks it. Mutated only on the event loop."""

    client_id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    venue: str = "paper"
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    reason: str | None = None
    created_ns: int = 0
    updated_ns: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal


@dataclass(slots=True, frozen=True)
class Fill:
    fill_id: str
    client_id: str
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal          # in quote currency, positive = paid
    liquidity: Liquidity
    ts_ns: int


@dataclass(slots=True, frozen=True)
class Instrument:
    """Venue filters for one symbol (Binance PRICE_FILTER, LOT_SIZE, NOTIONAL)."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Snap a price to the tick, never making it more aggressive than asked."""
        rounding = ROUND_DOWN if side is Side.BUY else ROUND_UP
        steps = (price / self.tick_size).quantize(Decimal(1), rounding=rounding)
        return (steps * self.tick_size).quantize(self.tick_size)

    def round_qty(self, qty: Decimal) -> Decimal:
        """Snap a quantity down to the lot size (never trade more than asked)."""
        steps = (qty / self.lot_size).quantize(Decimal(1), rounding=ROUND_DOWN)
        return (steps * self.lot_size).quantize(self.lot_size)

    def check(self, price: Decimal | None, qty: Decimal, ref_price: Decimal | None) -> str | None:
        """Reason the order breaks a filter after quantisation, or None if it passes."""
        if qty <= 0:
            return f"quantity rounds to zero at lot size {self.lot_size}"
        if price is not None and price <= 0:
            return f"price must be positive, got {price}"
        p = price if price is not None else ref_price
        if p is None:
            return "no price to check the minimum notional against"
        notional = (p * qty).quantize(Decimal("0.00000001"), rounding=ROUND_HALF_EVEN)
        if notional < self.min_notional:
            return f"notional {notional} below minimum {self.min_notional}"
        return None



def to_decimal(x: float | str | Decimal) -> Decimal:
    """Exact decimal of a market-data float: repr() is the shortest round-tripping text."""
    if isinstance(x, Decimal):
        return x
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


@dataclass(slots=True)
class Position:
    symbol: str
    qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    def apply(self, fill: Fill) -> None:
        """Update quantity, average entry and realised PnL with one fill."""
        signed = fill.qty * fill.side.sign
        self.fees += fill.fee
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = self.qty + signed
            self.avg_price = ((self.avg_price * abs(self.qty) + fill.price * fill.qty)
                              / abs(total))
            self.qty = total
            return
        closing = min(abs(signed), abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        self.realized_pnl += (fill.price - self.avg_price) * closing * direction
        self.qty += signed
        if self.qty == 0:
            self.avg_price = Decimal(0)
        elif (self.qty > 0) != (direction > 0):
            self.avg_price = fill.price   # flipped through zero: the rest opens at this price
