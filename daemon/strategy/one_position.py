"""One position at a time on one instrument, entered and exited with marketable IOC limits:
the order bookkeeping the bar strategies (trend, mean reversion) share.

A directional bar strategy decides *when* to be long, short or flat; this module turns
that into intents and keeps track of where it stands:

    flat --enter()--> entering --(IOC done, filled)--> open --exit()--> exiting --> flat
                          \\--(IOC done, nothing filled)--> flat

Every order is an IOC limit `max_slippage_bps` through the mark (a buy at mark x (1 + s),
a sell at mark x (1 - s)): it takes what the book offers up to that price at once and
never rests, so a gap never fills it at any price (what a stop market order would do).
The unfilled rest of an exit is sent again on a later trade, at most once per
`RETRY_NS` of engine time, until the position is flat. Entry price = the average price of
the entry fills; the stop and target are set from it and the distances the strategy gave
when it entered.

The position itself is always read from `ctx.position` (the gateway's), never counted
here, so a fill this module missed cannot make it trade a position that is not there.
It never reads the clock or the book, only the Context.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from daemon.execution.orders import Side, TimeInForce
from daemon.strategy.api import Context, Intent, Place

RETRY_NS = 1_000_000_000   # at most one exit retry per second of engine time


class OnePosition:
    """Order bookkeeping for one symbol (see the module docstring)."""

    def __init__(self, symbol: str, max_slippage_bps: float) -> None:
        self.symbol = symbol
        self._slip = Decimal(repr(max_slippage_bps)) / Decimal(10_000)
        self.entry_tag = f"entry:{symbol}"
        self.exit_tag = f"exit:{symbol}"
        self.phase = "flat"             # flat | entering | open | exiting
        self.side = 0                   # +1 long, -1 short (while not flat)
        self.entry_price: float | None = None
        self.stop: float | None = None
        self.target: float | None = None
        self.exit_why = ""              # why the position is being closed (stop, target...)
        self._dist: tuple[float | None, float | None] = (None, None)
        self._fill_qty = Decimal(0)
        self._fill_notional = Decimal(0)
        self._last_exit_ns = -RETRY_NS

    # -- orders ------------------------------------------------------------------------------
    def _price(self, ctx: Context, side: Side) -> Decimal | None:
        mark = ctx.mark(self.symbol)
        if mark is None:
            return None
        tick = ctx.instrument(self.symbol).tick_size
        raw = mark * (1 + self._slip) if side is Side.BUY else mark * (1 - self._slip)
        # Round away from the mark: the order stays at least as marketable as asked.
        steps = (raw / tick).quantize(Decimal(1), rounding=ROUND_UP if side is Side.BUY
                                      else ROUND_DOWN)
        return (steps * tick).quantize(tick)

    def enter(self, ctx: Context, side: int, *, stop_dist: float | None,
              target_dist: float | None, reason: str) -> list[Intent]:
        """An entry (side +1 buy / -1 sell) of the configured size; [] with `no_mark` set
        when there is no mark to price it. The stop/target are entry price -/+ the
        distances (price units) once the entry has filled."""
        s = Side.BUY if side > 0 else Side.SELL
        px = self._price(ctx, s)
        if px is None:
            return []
        qty = ctx.order_qty(self.symbol, float(px))
        self.phase, self.side = "entering", side
        self._dist = (stop_dist, target_dist)
        self._fill_qty = Decimal(0)
        self._fill_notional = Decimal(0)
        self.entry_price = self.stop = self.target = None
        self.exit_why = ""
        return [Place(self.entry_tag, self.symbol, s, qty, px, TimeInForce.IOC, reason)]

    def exit(self, ctx: Context, why: str) -> list[Intent]:
        """Close the whole position now (IOC through the mark); [] without a mark or a
        position, or within RETRY_NS of the last exit order."""
        pos = ctx.position(self.symbol)
        if pos == 0:
            return []
        now = ctx.now_ns()
        if now - self._last_exit_ns < RETRY_NS:
            return []
        s = Side.SELL if pos > 0 else Side.BUY
        px = self._price(ctx, s)
        if px is None:
            return []
        self._last_exit_ns = now
        self.phase = "exiting"
        self.exit_why = why
        return [Place(self.exit_tag, self.symbol, s, abs(pos), px, TimeInForce.IOC, why)]

    # -- what happened -----------------------------------------------------------------------
    def on_fill(self, tag: str, fill: Any) -> None:
        if tag == self.entry_tag:
            self._fill_qty += fill.qty
            self._fill_notional += fill.qty * fill.price

    def on_refused(self, tag: str) -> None:
        """An order of ours was refused: an entry never happened; a refused exit is sent
        again on a later trade."""
        if tag == self.entry_tag and self.phase == "entering":
            self.phase, self.side = "flat", 0
        elif tag == self.exit_tag and self.phase == "exiting":
            self.phase = "open"

    def sync(self, ctx: Context) -> str | None:
        """Bring the phase up to date with the orders and the position. Returns what
        changed: "entered", "missed" (the entry IOC filled nothing), "closed" or None."""
        if self.phase == "entering":
            o = ctx.order(self.entry_tag)
            if o is not None and o.working:
                return None
            if ctx.position(self.symbol) == 0 or self._fill_qty == 0:
                self.phase, self.side = "flat", 0
                return "missed"
            self.entry_price = float(self._fill_notional / self._fill_qty)
            sd, td = self._dist
            self.stop = None if sd is None else self.entry_price - self.side * sd
            self.target = None if td is None else self.entry_price + self.side * td
            self.phase = "open"
            return "entered"
        if self.phase == "exiting":
            o = ctx.order(self.exit_tag)
            if o is not None and o.working:
                return None
            if ctx.position(self.symbol) == 0:
                self.phase, self.side = "flat", 0
                return "closed"
            self.phase = "open"   # part (or none) of the exit filled: sent again later
        elif self.phase == "open" and ctx.position(self.symbol) == 0:
            # Closed by someone else (an operator's flatten, the e-stop): nothing to manage.
            self.phase, self.side = "flat", 0
            self.exit_why = self.exit_why or "closed outside the strategy"
            return "closed"
        return None

    def hit(self, price: float) -> str | None:
        """"stop" or "target" when `price` reached one of the open position's levels."""
        if self.phase != "open":
            return None
        if self.stop is not None and (price - self.stop) * self.side <= 0:
            return "stop"
        if self.target is not None and (price - self.target) * self.side >= 0:
            return "target"
        return None

    def status(self) -> dict:
        return {"phase": self.phase, "side": self.side, "entry_price": self.entry_price,
                "stop": self.stop, "target": self.target, "exit_why": self.exit_why or None}
