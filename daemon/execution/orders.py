"""Order, fill, instrument and position types shared by the gateway, the journal, risk and
every venue.

Prices and quantities here are Decimal: this is the money path. Nothing in this module
talks to a venue or the journal; it only describes orders, how to quantise them and what a
fill does to a position.

Two kinds of contract:
* linear (spot, USD-M): qty in base currency, price in quote; notional = price * qty in
  quote, PnL and fees in quote.
* inverse (COIN-M): qty in contracts of `contract_size` USD each, price in USD per coin;
  notional = qty * contract_size USD = qty * contract_size / price coin. PnL and fees are
  in coin (the settlement currency): a long of q contracts from entry e to exit x makes
  q * contract_size * (1/e - 1/x) coin, and the average entry of several fills is the
  contract-weighted harmonic mean of their prices.
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


LINEAR = "linear"
INVERSE = "inverse"
KINDS = (LINEAR, INVERSE)
_ONE = Decimal(1)


@dataclass(slots=True, frozen=True)
class Instrument:
    """Venue filters for one instrument (Binance PRICE_FILTER, LOT_SIZE, NOTIONAL) and its
    contract: `kind` linear or inverse, `contract_size` (quote currency per contract for an
    inverse one, e.g. 100 USD for COIN-M BTCUSD_PERP; 1 for linear). `symbol` is the
    instrument id the rest of the daemon uses (daemon/market/instruments.py)."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal
    kind: str = LINEAR
    contract_size: Decimal = _ONE

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.symbol}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.contract_size > 0:
            raise ValueError(f"{self.symbol}: contract_size must be positive, "
                             f"got {self.contract_size}")
        if self.kind == LINEAR and self.contract_size != _ONE:
            # A linear contract of size k is the same as a lot of k: say it with lot_size.
            raise ValueError(f"{self.symbol}: contract_size is for inverse instruments "
                             f"(linear ones trade base quantity), got {self.contract_size}")
        if self.min_notional < 0:
            raise ValueError(f"{self.symbol}: min_notional must be >= 0, "
                             f"got {self.min_notional}")

    @property
    def inverse(self) -> bool:
        return self.kind == INVERSE

    def notional_quote(self, price: Decimal, qty: Decimal) -> Decimal:
        """Value of `qty` at `price` in quote currency (USDT, or USD for inverse): price * qty
        for linear, qty * contract_size for inverse (where it does not depend on price)."""
        if self.kind == INVERSE:
            return qty * self.contract_size
        return price * qty

    def notional_settle(self, price: Decimal, qty: Decimal) -> Decimal:
        """Value of `qty` at `price` in the settlement currency, the one fees and PnL are
        paid in: quote for linear (= notional_quote), coin for inverse
        (qty * contract_size / price)."""
        if self.kind == INVERSE:
            return qty * self.contract_size / price
        return price * qty

    def new_position(self) -> Position:
        """An empty position that applies fills the way this instrument settles them."""
        return Position(self.symbol, kind=self.kind, contract_size=self.contract_size)

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
        """Reason the order breaks a filter after quantisation, or None if it passes.
        The minimum notional is in quote currency for both kinds; an inverse contract's
        quote notional does not depend on the price, so it needs no reference price."""
        if qty <= 0:
            return f"quantity rounds to zero at lot size {self.lot_size}"
        if price is not None and price <= 0:
            return f"price must be positive, got {price}"
        if self.kind == INVERSE:
            notional = qty * self.contract_size   # USD: the same at any price
        else:
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
    """One instrument's position. `realized_pnl` and `fees` are in the settlement currency
    (quote for linear, coin for inverse); `qty` in base currency (linear) or contracts
    (inverse). Build it with `Instrument.new_position()` so it settles like its instrument;
    `Position(symbol)` is linear."""

    symbol: str
    qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    kind: str = LINEAR
    contract_size: Decimal = _ONE

    @property
    def inverse(self) -> bool:
        return self.kind == INVERSE

    def apply(self, fill: Fill) -> None:
        """Update quantity, average entry and realised PnL with one fill."""
        signed = fill.qty * fill.side.sign
        self.fees += fill.fee
        inverse = self.kind == INVERSE
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = self.qty + signed
            if inverse:
                # Harmonic mean weighted by contracts: the entry whose coin value equals
                # the sum of the fills' coin values (qty / price each).
                if self.qty == 0:
                    self.avg_price = fill.price
                else:
                    self.avg_price = abs(total) / (abs(self.qty) / self.avg_price
                                                   + fill.qty / fill.price)
            else:
                self.avg_price = ((self.avg_price * abs(self.qty) + fill.price * fill.qty)
                                  / abs(total))
            self.qty = total
            return
        closing = min(abs(signed), abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        if inverse:
            self.realized_pnl += (closing * self.contract_size
                                  * (1 / self.avg_price - 1 / fill.price) * direction)
        else:
            self.realized_pnl += (fill.price - self.avg_price) * closing * direction
        self.qty += signed
        if self.qty == 0:
            self.avg_price = Decimal(0)
        elif (self.qty > 0) != (direction > 0):
            self.avg_price = fill.price   # flipped through zero: the rest opens at this price

    def unrealized(self, mark: Decimal) -> Decimal:
        """PnL of the open quantity if closed at `mark`, in the settlement currency."""
        if self.qty == 0:
            return Decimal(0)
        if self.kind == INVERSE:
            return self.qty * self.contract_size * (1 / self.avg_price - 1 / mark)
        return (mark - self.avg_price) * self.qty

    def notional_quote(self, mark: Decimal) -> Decimal:
        """Signed value of the open quantity in quote currency: qty * mark (linear),
        qty * contract_size USD (inverse)."""
        if self.kind == INVERSE:
            return self.qty * self.contract_size
        return self.qty * mark

    def pnl_quote(self, mark: Decimal) -> Decimal:
        """Realised - fees + unrealised at `mark`, in quote currency: an inverse position's
        coin amounts are converted at `mark`."""
        pnl = self.realized_pnl - self.fees + self.unrealized(mark)
        return pnl * mark if self.kind == INVERSE else pnl
