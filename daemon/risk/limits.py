"""Pre-trade risk limits: pure checks on Decimal values, each returning the reason a limit
is broken (naming the limit and the figures) or None.

Per order: quantity, notional, price band around the mark (fat-finger guard; a limit order
without a trusted mark is refused). Per symbol: worst-case position, open orders. Global:
open orders, gross and net exposure in quote currency, order and cancel rates over a 60 s
window. `daemon/risk/engine.py` combines them for the gateway.

Worst case everywhere means: every open order on the order's side fills, then this one.
An order that does not make a measure worse is never refused by that measure, so an
exposure-reducing order always passes even when a limit was lowered below the book.

Nothing here sends, cancels, journals or reads a clock: time is the `now_ns` passed in.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping

from daemon.execution.orders import Order, OrderType, Side

WINDOW_NS = 60_000_000_000   # the rate limits are per minute


def order_qty(order: Order, max_qty: Decimal) -> str | None:
    if order.qty > max_qty:
        return f"order quantity {order.qty} {order.symbol} above max_order_qty {max_qty}"
    return None


def order_notional(notional: Decimal, max_notional: Decimal) -> str | None:
    if notional > max_notional:
        return f"order notional {notional:f} above max_order_notional {max_notional}"
    return None


def price_band(order: Order, mark: Decimal | None, band_bps: float) -> str | None:
    """Only limit orders have a price to check; a market order is priced at the mark."""
    if order.type is not OrderType.LIMIT:
        return None
    if mark is None or mark <= 0:
        # The mark is None while the book is not trusted (gap, suspect diff, no confirmed
        # reference): without it the band cannot be checked, so no order.
        return "no trusted reference price for the price band"
    price = order.price
    if price is None:
        return "limit order without a price"
    band = mark * Decimal(str(band_bps)) / Decimal(10_000)
    if (order.side is Side.BUY and price > mark + band) or \
       (order.side is Side.SELL and price < mark - band):
        return f"limit price {price} outside the {band_bps} bps band around {mark}"
    return None


def open_orders(n_open: int, max_open: int) -> str | None:
    if n_open >= max_open:
        return f"{n_open} open orders, max_open_orders is {max_open}"
    return None


def symbol_open_orders(symbol: str, n_open: int, max_open: int) -> str | None:
    if n_open >= max_open:
        return f"{n_open} open {symbol} orders, max_open_orders_per_symbol is {max_open}"
    return None


def position(order: Order, position_qty: Decimal, same_side_open: Decimal,
             max_position: Decimal) -> str | None:
    """Worst case: every open order on this side fills, then this one. Refused only when
    that is beyond the limit AND larger than the position now (reducing always passes)."""
    worst = position_qty + order.side.sign * (same_side_open + order.qty)
    if abs(worst) > max_position and abs(worst) > abs(position_qty):
        return (f"position could reach {worst:f} {order.symbol}, "
                f"max_position is {max_position}")
    return None


@dataclass(frozen=True, slots=True)
class Book:
    """One symbol's worst cases: `long` = position + every open buy filled, `short` =
    position - every open sell filled (base currency)."""

    long: Decimal
    short: Decimal

    def add(self, side: Side, qty: Decimal) -> Book:
        if side is Side.BUY:
            return Book(self.long + qty, self.short)
        return Book(self.long, self.short - qty)

    @property
    def gross(self) -> Decimal:
        return max(abs(self.long), abs(self.short))


def books(positions: Mapping[str, Decimal], orders: Iterable[Order]) -> dict[str, Book]:
    """Worst-case books per symbol from positions (symbol -> qty) and open orders."""
    out = {s: Book(q, q) for s, q in positions.items()}
    for o in orders:
        out[o.symbol] = out.get(o.symbol, Book(Decimal(0), Decimal(0))).add(o.side, o.remaining)
    return out


def exposures(books_: Mapping[str, Book], marks: Mapping[str, Decimal]
              ) -> tuple[Decimal, Decimal]:
    """(gross, net) worst-case exposure in quote currency. Gross: sum over symbols of the
    larger side at the mark. Net: the larger of |all longs filled| and |all shorts filled|.
    A symbol without a price counts 0 (the caller supplies a fallback price)."""
    gross = net_long = net_short = Decimal(0)
    for sym, b in books_.items():
        m = marks.get(sym)
        if m is None:
            continue
        gross += b.gross * m
        net_long += b.long * m
        net_short += b.short * m
    return gross, max(abs(net_long), abs(net_short))


def exposure(before: tuple[Decimal, Decimal], after: tuple[Decimal, Decimal],
             max_gross: Decimal, max_net: Decimal) -> str | None:
    """Refused when the order takes a measure beyond its limit and makes it larger."""
    if after[0] > max_gross and after[0] > before[0]:
        return (f"gross exposure could reach {after[0]:f}, max_gross_exposure is "
                f"{max_gross} (now {before[0]:f})")
    if after[1] > max_net and after[1] > before[1]:
        return (f"net exposure could reach {after[1]:f}, max_net_exposure is "
                f"{max_net} (now {before[1]:f})")
    return None


class RateWindow:
    """Events in the last 60 s (an event exactly 60 s old still counts)."""

    def __init__(self) -> None:
        self._ns: deque[int] = deque()

    def count(self, now_ns: int) -> int:
        while self._ns and now_ns - self._ns[0] > WINDOW_NS:
            self._ns.popleft()
        return len(self._ns)

    def note(self, now_ns: int) -> None:
        self._ns.append(now_ns)

    def check(self, now_ns: int, limit: int, what: str, key: str) -> str | None:
        n = self.count(now_ns)
        if n >= limit:
            return f"{what} rate: {n} in the last 60 s, {key} is {limit}"
        return None
