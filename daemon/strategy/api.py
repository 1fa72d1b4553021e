"""The strategy API: what a strategy hears, what it may say, and nothing more.

A strategy receives market events (book, trade, bar) and its own fills, and answers with
intents: place, amend or cancel an order it names by a tag of its own ("bid", "entry",
"leg:spot"), or execute a quantity over time (TWAP / Almgren-Chriss), each with a
reason. It never touches the gateway, a venue, the journal or the clock: the engine
turns intents into gateway calls, so sizing, risk limits, breakers and the kill latch
apply to every strategy alike, and the same strategy runs line for line live, in paper
trading and in a backtest.

What a strategy may read comes through `Context` (read-only views the engine provides):
the engine's time, its own orders by tag, positions, instruments, marks, features. A
strategy says why it stands aside with `self.aside(...)`; `status()` shows its parameters,
its current intent and that reason to the operator (`bot4ctl status`).

This module defines types only; it imports nothing from the engine, the gateway or venues.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Iterable, Protocol, Union

from daemon.execution.orders import Instrument, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class Place:
    """Put an order named `tag` on the book. A tag names at most one working order: placing
    a tag that is still working replaces it (cancel, then the new order, in one commit)."""
    tag: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal | None = None            # None: a market order
    tif: TimeInForce = TimeInForce.GTC
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Amend:
    """Change the working order `tag`: a new price and/or quantity (the rest kept). Venues
    here have no native amend, so it is a cancel and a new order journalled together; if
    the cancel is refused (cancel-rate limit) the old order stays and nothing is placed."""
    tag: str
    price: Decimal | None = None
    qty: Decimal | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the working order `tag` (nothing happens if none is working)."""
    tag: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Execute:
    """Trade `qty` over `duration_s` seconds on a schedule instead of at once: a TWAP or
    Almgren-Chriss parent order run by the engine's executor (daemon/engine/executor.py),
    its children marketable limit IOC within [execution] max_slippage_bps. None takes the
    [execution] default. `tag` names the execution: Cancel(tag) stops it, an Execute on a
    running tag replaces it; its children's fills come to on_fill with this tag. Refused
    (on_refused, stage "execution") when it cannot run at all."""
    tag: str
    symbol: str
    side: Side
    qty: Decimal
    algo: str | None = None                 # "twap" | "ac"
    duration_s: float | None = None
    reason: str = ""


Intent = Union[Place, Amend, Cancel, Execute]


@dataclass(frozen=True, slots=True)
class OrderView:
    """A strategy's view of one of its orders."""
    tag: str
    client_id: str
    symbol: str
    side: Side
    price: Decimal | None
    qty: Decimal
    filled: Decimal
    status: str
    working: bool


class Context(Protocol):
    """What the engine lets a strategy read. Every method is cheap and never blocks."""

    def now_ns(self) -> int: ...
    def order(self, tag: str) -> OrderView | None: ...
    def working(self, tag: str) -> bool: ...
    def position(self, symbol: str) -> Decimal: ...
    def instrument(self, symbol: str) -> Instrument: ...
    def mark(self, symbol: str) -> Decimal | None: ...
    def feature(self, symbol: str, name: str) -> float | None: ...
    def spread_floor_bps(self, symbol: str) -> float | None: ...
    def order_qty(self, symbol: str, price: float) -> Decimal: ...


class Strategy:
    """Base class. Override the handlers you need; each returns intents (or nothing).

    `name` is the key in the config (`[strategy] name = ...`); `params` is the validated
    table `[strategy.<name>]`; `symbols` the instruments it trades."""

    name: ClassVar[str] = ""

    def __init__(self, params: Any, symbols: list[str]) -> None:
        self.params = params
        self.symbols = list(symbols)
        self.standing_aside: str | None = "no market data yet"
        self.intent: str | None = None
        self.stats = {"intents": 0, "refused": 0}

    # -- what it hears ---------------------------------------------------------------------
    def on_book(self, ctx: Context, symbol: str, book: Any) -> Iterable[Intent]:
        """The book of `symbol` changed (after the simulated market-data latency). Only
        called on a valid book: while a book is invalid the engine itself pulls this
        strategy's orders on it and says so."""
        return ()

    def on_trade(self, ctx: Context, trade: Any) -> Iterable[Intent]:
        return ()

    def on_bar(self, ctx: Context, bar: Any) -> Iterable[Intent]:
        return ()

    def on_fill(self, ctx: Context, tag: str, fill: Any) -> Iterable[Intent]:
        return ()

    def on_refused(self, ctx: Context, intent: Intent, stage: str, reason: str
                   ) -> Iterable[Intent]:
        """The engine could not carry out `intent` (refused by a check, or not trading).
        Intents returned here run right after, in the same commit (a strategy that must
        not keep half of a pair unwinds the first leg here)."""
        self.stats["refused"] += 1
        return ()

    # -- what it says about itself ---------------------------------------------------------
    def aside(self, reason: str | None) -> None:
        """Record why the strategy stands aside now (None: it does not)."""
        self.standing_aside = reason

    def params_dict(self) -> dict:
        p = self.params
        if p is None:
            return {}
        dump = getattr(p, "model_dump", None)
        raw = dump() if dump is not None else dict(vars(p))
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in raw.items()}

    def status(self) -> dict:
        return {"name": self.name, "symbols": self.symbols, "params": self.params_dict(),
                "intent": self.intent, "standing_aside": self.standing_aside,
                **self.stats}
