"""The contract between the order gateway and a venue (paper or live).

A venue never decides whether an order may be sent: the gateway is the only caller of
`submit`/`cancel`, after its safety and risk checks. A venue reports back only through the
`VenueListener` it was given, on the event loop, so the gateway can journal every change
before acting on it.

After a restart, crash recovery (daemon/execution/reconcile.py) asks the venue what it knows
about the orders the journal still has open (`query_orders`): a live venue keeps its orders
while we are down (`survives_restart = True`) and its answer is the truth; the paper venue
lives in our memory and forgets everything with the process (`survives_restart = False`),
so recovery rebuilds its resting orders from the journal (`restore`) or closes them.
A venue never re-sends an order by itself, before or after a restart.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from daemon.execution.orders import Fill, Order, OrderStatus


class VenueListener(Protocol):
    def on_order_status(self, client_id: str, status: OrderStatus, reason: str | None,
                        ts_ns: int) -> None:
        """The venue changed an order's status (ack, cancel confirmed, reject, expire)."""

    def on_fill(self, fill: Fill) -> None:
        """A (partial) fill. Status FILLED/PARTIALLY_FILLED follows from the quantities."""


@dataclass(frozen=True, slots=True)
class VenueOrderState:
    """What a venue knows about one order (the answer to `query_orders`).

    `status` is the venue's own: NEW or PARTIALLY_FILLED while it works, else FILLED,
    CANCELLED, REJECTED or EXPIRED. `fills` are every fill the venue made for it (a live
    venue: its trade list for the order), each with its venue fill id, so the caller can
    apply those its journal lacks and skip those it has."""

    client_id: str
    status: OrderStatus
    filled_qty: Decimal
    fills: tuple[Fill, ...] = ()
    reason: str | None = None
    ts_ns: int = 0

    @property
    def working(self) -> bool:
        return not self.status.is_terminal


class Venue(Protocol):
    name: str
    # True when orders outlive our process (a real exchange): recovery then takes the
    # venue's answer to `query_orders` as the truth. False for the in-memory paper venue.
    survives_restart: bool

    def bind(self, listener: VenueListener, session: str) -> None:
        """Set the single listener (the gateway) that receives every report. `session` is
        unique to this run of the daemon: venue-made ids (fills) must include it."""

    def submit(self, order: Order) -> None:
        """Send a new order. Outcome arrives later through the listener."""

    def cancel(self, client_id: str) -> None:
        """Ask to cancel one order. Confirmation arrives through the listener."""

    def query_orders(self, client_ids: Iterable[str]) -> dict[str, VenueOrderState | None]:
        """What the venue knows about each order, None for one it never saw (or has
        forgotten). Every id asked for is a key of the answer. A live venue answers from its
        REST order and trade queries; it must never create or re-send anything."""

    def restore(self, orders: list[Order]) -> None:
        """Only for a venue with `survives_restart = False`: rebuild these resting orders
        (limit GTC/post-only, NEW or PARTIALLY_FILLED in the journal) after a restart, for
        their remaining quantity. How their queue position is estimated is the venue's to
        state. Later reports about them go to the bound listener as usual."""
