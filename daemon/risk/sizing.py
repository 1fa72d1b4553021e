"""Position sizing: fractional Kelly from a strategy's stated edge and variance, capped by
the headroom every pre-trade limit leaves. Risk may shrink a requested size, never grow it.

Kelly: for a trade whose return has expected value `edge` and variance `variance` (both per
trade, as fractions of the money put in), the growth-optimal fraction of equity is
f* = edge / variance. We take `kelly_fraction` of it (a quarter by default: full Kelly on
an estimated edge is far too aggressive), so the Kelly size in base currency is
kelly_fraction * f* * equity / price. The answer is min(requested, Kelly, every cap),
quantised DOWN to the lot, and 0 when edge <= 0 or variance <= 0.

Caps are computed so that an order of that size passes the same limit in
`daemon.risk.limits` (worst case, "reducing always passes"). Pure Decimal arithmetic: no
I/O, no clock.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Iterable

from daemon.execution.orders import Side
from daemon.risk.limits import Book


def kelly_qty(edge: Decimal, variance: Decimal, kelly_fraction: Decimal, equity: Decimal,
              price: Decimal) -> Decimal:
    """Fractional-Kelly quantity in base currency; 0 when there is no edge to size (edge,
    variance, equity or price not positive)."""
    if variance <= 0 or price <= 0:
        return Decimal(0)
    return max(Decimal(0), kelly_fraction * (edge / variance) * equity / price)


def floor_lot(qty: Decimal, lot: Decimal) -> Decimal:
    """Down to a whole number of lots, never below 0."""
    steps = (qty / lot).quantize(Decimal(1), rounding=ROUND_DOWN)
    return (max(steps, Decimal(0)) * lot).quantize(lot)


def side_headroom(side: Side, book: Book, room: Decimal) -> Decimal:
    """Most base quantity one more order on `side` may add to `book` before its worst
    case on that side passes `room`. The caller makes `room` at least what the limit
    itself lets through (the limit, or the size now when that is larger: an order that
    does not make things worse is allowed). May be negative."""
    return room - book.long if side is Side.BUY else room + book.short


def net_headroom(side: Side, net_long: Decimal, net_short: Decimal, max_net: Decimal,
                 mark: Decimal) -> Decimal:
    """Same as side_headroom for the net exposure across symbols (quote currency),
    converted to base quantity at `mark`."""
    room = max(max_net, abs(net_long), abs(net_short))
    q = room - net_long if side is Side.BUY else room + net_short
    return q / mark


def size(requested: Decimal, kelly: Decimal, caps: Iterable[Decimal], lot: Decimal
         ) -> Decimal:
    """min(requested, Kelly, every cap), down to the lot: never more than requested."""
    return floor_lot(min([requested, kelly, *caps]), lot)
