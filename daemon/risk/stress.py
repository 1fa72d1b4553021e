"""Stress: the book of positions and open orders revalued under configured shocks.

Scenarios (from [risk]):
- "price -10%", ... : every mark moves by the shock at once (all symbols together: the
  crypto book is one bet on the market). Positions are revalued at the shocked mark m'.
  A resting order fills, at its own price, when the move crosses it (a buy priced at or
  above m', a sell at or below m'); a market order fills at the mark now. Everything
  filled is then valued at m'. Orders the move never reaches stay unfilled;
- "spread x5": every position closed across a spread `stress_spread_mult` times today's
  (the given bid-ask spread, else `stress_default_spread_bps` of the mark): it costs
  mult * spread / 2 per unit;
- "fill all": every open order fills at its price (market orders at the mark) and the
  book is valued at the marks now.
Each scenario's P&L is against the book at the marks now; the worst loss is the largest
loss over the scenarios (0 if none loses). Decimal throughout; pure: no I/O, no clock.

Inverse instruments (`contract_sizes`: symbol -> USD per contract) are valued in quote
currency too: their coin P&L converted at the shocked mark, so q contracts from mark m to
m' make q * cs * (m'/m - 1), an order filled at p then valued at m' makes
q * cs * (m'/p - 1), and closing across a half spread h costs |q| * cs * h / m.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping

from daemon.execution.orders import Order, Side

_BPS = Decimal(10_000)


@dataclass(frozen=True)
class Scenario:
    name: str
    price_shock: Decimal | None = None   # fraction of the mark
    spread_mult: Decimal | None = None
    fill_all: bool = False


def scenarios(shocks: Iterable[Decimal], spread_mult: Decimal, fill_all: bool
              ) -> list[Scenario]:
    out = [Scenario(f"price {float(s * 100):+g}%", price_shock=s) for s in shocks]
    out.append(Scenario(f"spread x{float(spread_mult):g}", spread_mult=spread_mult))
    if fill_all:
        out.append(Scenario("fill all", fill_all=True))
    return out


def _fills(o: Order, shocked: Decimal | None, mark: Decimal) -> Decimal | None:
    """The price `o` fills at in a scenario whose mark is `shocked` (None: fill all)."""
    if o.price is None:
        return mark
    if shocked is None:
        return o.price
    if (o.side is Side.BUY and o.price >= shocked) or (o.side is Side.SELL and o.price <= shocked):
        return o.price
    return None


def scenario_pnl(sc: Scenario, positions: Mapping[str, Decimal], orders: Iterable[Order],
                 marks: Mapping[str, Decimal], spreads: Mapping[str, Decimal],
                 default_spread_bps: Decimal,
                 contract_sizes: Mapping[str, Decimal] | None = None) -> Decimal:
    """P&L of one scenario in quote currency. Symbols without a mark are left out.
    `contract_sizes`: the inverse instruments (see the module docstring)."""
    total = Decimal(0)
    inv = contract_sizes or {}
    if sc.spread_mult is not None:
        for sym, q in positions.items():
            m = marks.get(sym)
            if m is None:
                continue
            spread = spreads.get(sym)
            if spread is None:
                spread = m * default_spread_bps / _BPS
            cost = abs(q) * sc.spread_mult * spread / 2
            total -= cost * inv[sym] / m if sym in inv else cost
        return total
    shocked: dict[str, Decimal] = {}
    for sym, m in marks.items():
        shocked[sym] = m if sc.price_shock is None else m * (1 + sc.price_shock)
    for sym, q in positions.items():
        if sym in shocked:
            if sym in inv:
                total += q * inv[sym] * (shocked[sym] / marks[sym] - 1)
            else:
                total += q * (shocked[sym] - marks[sym])
    for o in orders:
        if o.symbol not in shocked:
            continue
        at = _fills(o, None if sc.fill_all else shocked[o.symbol], marks[o.symbol])
        if at is not None:
            if o.symbol in inv:
                total += o.side.sign * o.remaining * inv[o.symbol] * (shocked[o.symbol] / at - 1)
            else:
                total += o.side.sign * o.remaining * (shocked[o.symbol] - at)
    return total


def run(scs: Iterable[Scenario], positions: Mapping[str, Decimal], orders: Iterable[Order],
        marks: Mapping[str, Decimal], spreads: Mapping[str, Decimal],
        default_spread_bps: Decimal, contract_sizes: Mapping[str, Decimal] | None = None
        ) -> list[tuple[str, Decimal]]:
    orders = list(orders)
    return [(sc.name, scenario_pnl(sc, positions, orders, marks, spreads, default_spread_bps,
                                   contract_sizes))
            for sc in scs]


def worst(results: Iterable[tuple[str, Decimal]]) -> tuple[str | None, Decimal]:
    """(scenario, loss) of the worst scenario; (None, 0) when none loses."""
    name, loss = None, Decimal(0)
    for n, p in results:
        if -p > loss:
            name, loss = n, -p
    return name, loss
