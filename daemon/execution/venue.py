"""The contract between the order gateway and a venue (paper or live).

A venue never decides whether an order may be sent: the gateway is the only caller of
`submit`/`cancel`, after its safety and risk checks. A venue reports back only through the
`VenueListener` it was given, on the event loop, so the gateway can journal every change
before acting on it.
"""
from __future__ import annotations

from typing import Protocol

from daemon.execution.orders import Fill, Order, OrderStatus


class VenueListener(Protocol):
    def on_order_status(self, client_id: str, status: OrderStatus, reason: str | None,
                        ts_ns: int) -> None:
        """The venue changed an order's status (ack, cancel confirmed, reject, expire)."""

    def on_fill(self, fill: Fill) -> None:
        """A (partial) fill. Status FILLED/PARTIALLY_FILLED follows from the quantities."""


class Venue(Protocol):
    name: str

    def bind(self, listener: VenueListener, session: str) -> None:
        """Set the single listener (the gateway) that receives every report. `session` is
        unique to this run of the daemon: venue-made ids (fills) must include it."""

    def submit(self, order: Order) -> None:
        """Send a new order. Outcome arrives later through the listener."""

    def cancel(self, client_id: str) -> None:
        """Ask to cancel one order. Confirmation arrives through the listener."""
