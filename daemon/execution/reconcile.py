"""Crash recovery: the one reconciliation of the journal with the venue, at every boot.

After a restart (orderly or `kill -9` at any instant) the journal may still have orders
open or in flight: PENDING_NEW (journalled, maybe never sent), NEW / PARTIALLY_FILLED
(acknowledged, resting), PENDING_CANCEL (cancel decided, maybe never sent). `reconcile`
settles every one of them, and the same code serves a live venue and the paper venue:

* A venue that keeps its orders while we are down (`venue.survives_restart`, a live
  exchange) is asked what it knows (`venue.query_orders`). Fills it has that the journal
  lacks are applied through the gateway's normal `on_fill` (journal first; a fill id the
  journal has is never applied twice). Then each order is: still working -> adopted as
  open (a PENDING_NEW one became NEW); cancel pending and still working -> kept pending,
  cancel sent again; finished at the venue -> closed with the venue's status; unknown to
  the venue -> PENDING_NEW never reached it: closed REJECTED "not acknowledged before
  restart; never re-sent", PENDING_CANCEL: cancelled, acknowledged (NEW/PARTIALLY_FILLED):
  "lost", closed and reported as a mismatch (its later fills, if any, are unknown).
* The paper venue forgot everything with the process. Its resting orders (NEW /
  PARTIALLY_FILLED limit GTC or post-only) are rebuilt from the journal with `on_restart =
  "restore"` (`venue.restore`; the queue position rule is in daemon/execution/paper.py:
  back of the displayed queue when the book is valid again, cancelled if the market moved
  through the price meanwhile) or closed CANCELLED "cancelled by restart" with `on_restart
  = "cancel"`. In both modes PENDING_NEW is closed as never acknowledged, PENDING_CANCEL is
  cancelled, and an IOC/market order caught between its ack and its end is closed EXPIRED.

Then every position must equal its journalled fills replayed (`journal.positions_from_fills`
vs the positions table, and the gateway's memory vs the table). The result (mode, one
outcome per order, fills applied, positions_ok, mismatches) is journalled in the SAME commit
as the order changes and fills, so a kill during reconciliation leaves either none of it
(the next boot reconciles the same orders again) or all of it.

It must never: send an order (with the same id or a new one), apply a fill twice, change a
position except through a venue fill, "fix" a mismatch, or leave an order out of the result.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from daemon.execution.orders import Order, OrderStatus, OrderType, Position, TimeInForce
from daemon.execution.venue import Venue, VenueOrderState

if TYPE_CHECKING:   # reconcile is called with the gateway; it never constructs one
    from daemon.execution.gateway import OrderGateway
    from daemon.store.journal import Journal

log = logging.getLogger(__name__)

OnRestart = Literal["restore", "cancel"]

# Outcomes, one per order. Every key is present in `ReconcileResult.as_dict()["outcomes"]`.
ADOPTED = "adopted"              # working at the venue: kept open
RESTORED = "restored"            # paper: rebuilt at the venue from the journal, kept open
CANCEL_RESENT = "cancel_resent"  # cancel pending, still working at the venue: sent again
REJECTED = "rejected"            # never acknowledged: closed, never re-sent
CANCELLED = "cancelled"          # closed as cancelled by the restart
EXPIRED = "expired"              # paper: IOC/market caught mid-way; nothing rests to restore
CLOSED = "closed"                # the venue finished it while we were down
LOST = "lost"                    # acknowledged, unknown to a venue that keeps orders
OUTCOMES = (ADOPTED, RESTORED, CANCEL_RESENT, REJECTED, CANCELLED, EXPIRED, CLOSED, LOST)

NOT_ACKED = "not acknowledged before restart; never re-sent"
CANCELLED_BY_RESTART = "cancelled by restart"
CANCEL_PENDING = "cancel pending at restart; the paper venue's orders died with the process"
CANCEL_PENDING_UNKNOWN = "cancel pending at restart; the venue no longer knows the order"
NOT_RESTING = ("not a resting order (IOC or market) when the daemon died; its end died with "
               "the paper venue")
LOST_REASON = "acknowledged before restart but unknown to the venue now"
CLOSED_AT_VENUE = "finished at the venue while the daemon was down"

# Reconciled: every status that is neither terminal nor unknown.
IN_FLIGHT = (OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED,
             OrderStatus.PENDING_CANCEL)
_RESTING_TIF = frozenset({TimeInForce.GTC, TimeInForce.POST_ONLY})
_POSITION_FIELDS = ("qty", "avg_price", "realized_pnl", "fees")
_ZERO = Decimal(0)


@dataclass(slots=True)
class OrderOutcome:
    client_id: str
    symbol: str
    side: str
    was: str            # the journal's status at boot
    now: str            # its status after reconciliation
    outcome: str
    reason: str | None
    filled_qty: str
    fills_applied: int = 0


@dataclass(slots=True)
class ReconcileResult:
    run: int
    mode: str           # "venue" (the venue's answer is the truth), "restore" or "cancel"
    ts_ns: int
    orders: list[OrderOutcome] = field(default_factory=list)
    fills_applied: list[dict[str, str]] = field(default_factory=list)
    fills_already_journalled: int = 0
    positions_ok: bool = True
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when anything did not add up: the daemon must not trade on it (halt)."""
        return self.positions_ok and not self.mismatches

    def ids(self, outcome: str) -> list[str]:
        return [o.client_id for o in self.orders if o.outcome == outcome]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: what is journalled and shown in status."""
        return {"run": self.run, "mode": self.mode, "ts_ns": self.ts_ns, "ok": self.ok,
                "positions_ok": self.positions_ok, "mismatches": list(self.mismatches),
                "outcomes": {k: self.ids(k) for k in OUTCOMES},
                "orders": [asdict(o) for o in self.orders],
                "fills_applied": list(self.fills_applied),
                "fills_already_journalled": self.fills_already_journalled}


def restorable(order: Order) -> bool:
    """A resting order the paper venue can rebuild: limit GTC/post-only with qty left."""
    return (order.type is OrderType.LIMIT and order.tif in _RESTING_TIF
            and order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
            and order.price is not None and order.remaining > 0)


def reconcile(journal: Journal, venue: Venue, gateway: OrderGateway, *, run: int,
              on_restart: OnRestart) -> ReconcileResult:
    """Settle every order the journal has open or in flight; see the module docstring.

    Call once at boot, after the gateway is built and before anything can submit (the
    gateway must have no open order yet). `on_restart` applies to a venue that does not
    survive restarts (paper). Returns the result, already journalled
    (`journal.record_reconciliation(run, result.as_dict())`). Raises JournalError if the
    journal cannot be written (nothing was sent or restored then)."""
    if gateway.journal is not journal or gateway.venue is not venue:
        raise ValueError("reconcile needs the gateway's own journal and venue")
    if gateway.open:
        raise ValueError(f"reconcile runs at boot, before any order: the gateway already has "
                         f"{len(gateway.open)} open")
    if on_restart not in ("restore", "cancel"):
        raise ValueError(f"on_restart must be 'restore' or 'cancel', got {on_restart!r}")
    orders = journal.open_orders()
    ts = gateway.clock()
    mode = "venue" if venue.survives_restart else on_restart
    res = ReconcileResult(run=run, mode=mode, ts_ns=ts)
    # The paper venue is not asked: what it knew died with the process.
    states = venue.query_orders([o.client_id for o in orders]) if venue.survives_restart else {}
    was = {o.client_id: o.status for o in orders}
    # Into memory first (as the journal has them), so the venue's fills find their orders.
    gateway.adopt(orders)
    outcomes: dict[str, tuple[str, int]] = {}
    # ONE commit, all or nothing: the fills, the order changes and the result. (Not the
    # gateway's batch: that one commits what came before an error in its body.)
    with journal.batch():
        changed = []
        for o in orders:
            if venue.survives_restart:
                outcome, n, change = _with_venue(o, states.get(o.client_id), gateway, res)
            else:
                outcome, n = _lost_session(o, on_restart), 0
                change = outcome != RESTORED
            if change:
                o.updated_ns = ts
                changed.append(o)
            outcomes[o.client_id] = (outcome, n)
        journal.record_orders(changed, ts)
        for o in orders:
            outcome, n = outcomes[o.client_id]
            res.orders.append(OrderOutcome(o.client_id, o.symbol, o.side.value,
                                           was[o.client_id].value, o.status.value, outcome,
                                           o.reason, str(o.filled_qty), n))
        _check_positions(journal, gateway, res)
        journal.record_reconciliation(run, res.as_dict())
    # Durable: now memory follows, and the paper venue gets its resting orders back.
    gateway.adopt([o for o in orders if o.status.is_terminal])
    restored = [o for o in orders if outcomes[o.client_id][0] == RESTORED]
    if restored:
        venue.restore(restored)
    _log(res)
    return res


def _lost_session(o: Order, on_restart: OnRestart) -> str:
    """The venue forgot everything (paper): decide from the journal alone."""
    if o.status is OrderStatus.PENDING_NEW:
        o.status, o.reason = OrderStatus.REJECTED, NOT_ACKED
        return REJECTED
    if o.status is OrderStatus.PENDING_CANCEL:
        o.status, o.reason = OrderStatus.CANCELLED, CANCEL_PENDING
        return CANCELLED
    if on_restart == "cancel":
        o.status, o.reason = OrderStatus.CANCELLED, CANCELLED_BY_RESTART
        return CANCELLED
    if restorable(o):
        return RESTORED
    o.status, o.reason = OrderStatus.EXPIRED, NOT_RESTING
    return EXPIRED


def _with_venue(o: Order, st: VenueOrderState | None, gateway: OrderGateway,
                res: ReconcileResult) -> tuple[str, int, bool]:
    """The venue kept its orders: its answer is the truth. Returns (outcome, fills applied,
    whether the order needs a journal record for its reconciliation)."""
    if st is None:
        if o.status is OrderStatus.PENDING_NEW:
            o.status, o.reason = OrderStatus.REJECTED, NOT_ACKED
            return REJECTED, 0, True
        if o.status is OrderStatus.PENDING_CANCEL:
            o.status, o.reason = OrderStatus.CANCELLED, CANCEL_PENDING_UNKNOWN
            return CANCELLED, 0, True
        res.mismatches.append(f"{o.client_id}: {o.status.value} in the journal (filled "
                              f"{o.filled_qty}) but unknown to venue {gateway.venue.name}")
        o.status, o.reason = OrderStatus.CANCELLED, LOST_REASON
        return LOST, 0, True
    applied = 0
    for f in st.fills:
        if gateway.journal.has_fill(f.fill_id):
            res.fills_already_journalled += 1
            continue
        gateway.on_fill(f)   # journal first, position moved exactly once
        applied += 1
        res.fills_applied.append({"fill_id": f.fill_id, "client_id": f.client_id,
                                  "qty": str(f.qty), "price": str(f.price)})
    if o.filled_qty != st.filled_qty:
        res.mismatches.append(f"{o.client_id}: venue reports filled {st.filled_qty}, the "
                              f"journal has {o.filled_qty} after applying the venue's fills")
    if st.status.is_terminal:
        if not o.status.is_terminal:
            o.status, o.reason = st.status, st.reason or CLOSED_AT_VENUE
            return CLOSED, applied, True
        return CLOSED, applied, False   # the last fill closed it (journalled with the fill)
    if o.status is OrderStatus.PENDING_CANCEL:
        return CANCEL_RESENT, applied, False   # gateway.adopt sent the cancel again
    if o.status is OrderStatus.PENDING_NEW:   # acknowledged while we were down (a fill
        o.status = OrderStatus.NEW             # would have made it partially filled)
        return ADOPTED, applied, True
    return ADOPTED, applied, False   # as journalled (its fills, if any, with it)


def _check_positions(journal: Journal, gateway: OrderGateway, res: ReconcileResult) -> None:
    """Every position = its fills replayed; memory = the table. Reported, never fixed."""
    table = journal.positions(gateway.instruments)
    replayed = journal.positions_from_fills(gateway.instruments)
    bad = _diff("positions table", table, "fills replayed", replayed)
    bad += _diff("gateway memory", gateway.positions, "positions table", table)
    if bad:
        res.positions_ok = False
        res.mismatches.extend(bad)


def _diff(a_name: str, a: dict[str, Position], b_name: str, b: dict[str, Position]
          ) -> list[str]:
    out = []
    for sym in sorted(set(a) | set(b)):
        pa, pb = a.get(sym), b.get(sym)   # a missing position is a flat one
        diffs = []
        for k in _POSITION_FIELDS:
            va = _ZERO if pa is None else getattr(pa, k)
            vb = _ZERO if pb is None else getattr(pb, k)
            if va != vb:
                diffs.append(f"{k} {va} != {vb}")
        if diffs:
            out.append(f"position {sym}: {a_name} vs {b_name}: {', '.join(diffs)}")
    return out


def _log(res: ReconcileResult) -> None:
    counts = {k: len(res.ids(k)) for k in OUTCOMES if res.ids(k)}
    if res.orders:
        log.warning("reconciled %d order(s) left by the previous run (%s mode): %s; %d "
                    "fill(s) applied from the venue", len(res.orders), res.mode,
                    ", ".join(f"{k} {n}" for k, n in counts.items()),
                    len(res.fills_applied))
    else:
        log.info("reconciled: nothing was open (%s mode)", res.mode)
    for m in res.mismatches:
        log.error("reconciliation mismatch: %s", m)
