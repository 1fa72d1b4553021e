"""The order gateway: the single door between strategies and every venue.

Before any submit it checks, in this order: kill latch, trading state (and whether the
daemon is stopping), instrument filters (quantised Decimal tick/lot/min-notional), risk
limits (daemon/risk/engine.py), circuit breakers last (a half-open breaker counts the order
as a probe, so only an order that will leave may be counted). Every order
state change and fill is journalled (synchronous=FULL) before anything acts on it, and the
latch is checked again right before the order leaves, because the e-stop may trip from the
GPIO thread while the journal commit runs. Venues are reached through here only.

Failure rules (a fault may happen anywhere, so these hold on every path):
- ids are unique across restarts by construction: client order ids carry the run number the
  journal hands out at boot (`session`), and so do the venue's fill ids;
- cancelling never depends on a successful journal write: a cancel that was decided is sent
  even when its journal record fails (the caller then faults);
- after a failed batch the gateway's memory equals the journal: orders built in the batch
  but not yet sent are withdrawn (never sent), decided cancels still go out, and the
  exception goes on to the caller;
- a fill the journal already has (a venue repeating itself) is not applied twice.

Runs on the event loop. It never decides the trading state; it reads it.
"""
from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from typing import Callable, ContextManager, Iterator

from daemon.execution.orders import (Fill, Instrument, Order, OrderStatus, OrderType, Position,
                                     Side, TimeInForce)
from daemon.execution.venue import Venue
from daemon.ratelog import RateLimitedLog
from daemon.risk.engine import RiskEngine
from daemon.safety.breakers import BreakerBoard
from daemon.safety.latch import KillLatch
from daemon.states import State
from daemon.store.journal import Journal, JournalError

log = logging.getLogger(__name__)


class Rejected(Exception):
    """The gateway refused an order; `stage` says which check (latch, state, ...)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


_RECENT = 2048
_JOINED = nullcontext()   # a batch inside an open batch joins it (see batch())


class OrderGateway:
    def __init__(self, *, latch: KillLatch, state: Callable[[], State], breakers: BreakerBoard,
                 risk: RiskEngine, instruments: dict[str, Instrument], journal: Journal,
                 venue: Venue, session: str, clock: Callable[[], int],
                 mark: Callable[[str], Decimal | None] = lambda s: None) -> None:
        """`session`: this run's token from the journal (`journal.begin_run()`), so that
        every id built here or by the venue is new across restarts. `clock`: the engine's
        clock (daemon/engine/clock.py), required so no rule can fall back to a second one."""
        if not session:
            raise ValueError("the gateway needs a session token unique to this run")
        self.latch = latch
        self._state = state
        self.breakers = breakers
        self.risk = risk
        self.instruments = instruments
        self.journal = journal
        self.venue = venue
        self.clock = clock
        self.mark = mark
        self.open: dict[str, Order] = {}
        self._recent: OrderedDict[str, Order] = OrderedDict()
        # Each position settles like its instrument (inverse: PnL in coin).
        self.positions: dict[str, Position] = journal.positions(instruments)
        self._ids = itertools.count(1)
        self._prefix = f"b4-{session}-"
        self.listeners: list[Callable[[Order, Fill | None], None]] = []
        self.stats = {"submitted": 0, "rejected": 0, "fills": 0, "cancels": 0}
        self.rejects_by_stage: dict[str, int] = {}   # /metrics: rejects by reason
        self._after: list[Callable[[], None]] | None = None   # actions waiting for a commit
        self._batch_new: list[Order] = []   # orders journalled in the open batch, not yet sent
        self._sent_ns: dict[str, int] = {}   # client id -> when it left (ack latency)
        self.closed: str | None = None   # set for good by close(): the daemon is stopping
        self._warn = RateLimitedLog(log)
        venue.bind(self, session=session)

    def close(self, reason: str) -> None:
        """Refuse every new order from now on (orderly stop). Cancels still go through."""
        self.closed = reason

    # -- group commit ----------------------------------------------------------------------
    def batch(self) -> ContextManager[None]:
        """Journal every order change made inside in ONE commit (one fsync). What acts on
        those changes (sending to the venue, telling listeners) waits until the commit is
        durable, so journal-before-act holds for every order in the batch."""
        if self._after is not None:
            # Already inside one: join it. A do-nothing context (exceptions go through
            # unchanged), reused, instead of a generator per call on the order path.
            return _JOINED
        return self._open_batch()

    @contextmanager
    def _open_batch(self) -> Iterator[None]:
        self._after, self._batch_new = [], []
        error: BaseException | None = None
        try:
            with self.journal.batch():
                try:
                    yield
                except JournalError:
                    raise
                except BaseException as e:
                    # The caller failed (not the journal): commit what it journalled so
                    # far, with the withdrawal of the orders it had not sent yet.
                    self._withdraw_unsent(f"not sent: batch failed ({e!r})", journal=True)
                    error = e
        except JournalError as e:
            # Rolled back: orders of this batch never existed; cancels decided in it are
            # in doubt in the journal but are sent all the same (below).
            self._withdraw_unsent(f"not sent: journal failed ({e})", journal=False)
            error = e
        finally:
            after, self._after, self._batch_new = self._after, None, []
        self._run_all(after, error)

    def _run_all(self, acts: list[Callable[[], None]], error: BaseException | None) -> None:
        """Run every act even if one fails (a failed venue call must not swallow the
        cancels queued after it); then raise the first error."""
        for act in acts:
            try:
                act()
            except BaseException as e:
                if error is None:
                    error = e
                else:
                    log.error("after a failure, a further action failed too: %r", e)
        if error is not None:
            raise error

    def _withdraw_unsent(self, reason: str, journal: bool) -> None:
        withdrawn = [o for o in self._batch_new if o.status is OrderStatus.PENDING_NEW]
        for o in withdrawn:
            o.status, o.reason, o.updated_ns = OrderStatus.REJECTED, reason, self.clock()
            self.open.pop(o.client_id, None)
        if withdrawn:
            log.error("%d order(s) withdrawn before sending: %s", len(withdrawn), reason)
            if journal:
                self.journal.record_orders(withdrawn, self.clock())

    def _act(self, act: Callable[[], None]) -> None:
        if self._after is None:
            act()
        else:
            self._after.append(act)

    # -- submit --------------------------------------------------------------------------
    def submit(self, symbol: str, side: Side, qty: Decimal, price: Decimal | None = None, *,
               type: OrderType = OrderType.LIMIT, tif: TimeInForce = TimeInForce.GTC,
               reduce_only: bool = False) -> Order:
        if self.latch.tripped:
            raise Rejected("latch", f"kill latch tripped ({self.latch.kind}: {self.latch.reason})")
        if self.closed:
            raise Rejected("state", f"gateway closed: {self.closed}")
        state = self._state()
        if state not in (State.TRADING, State.REDUCING):
            raise Rejected("state", f"state is {state}, orders need trading")
        order = self._build(symbol, side, qty, price, type, tif, reduce_only)
        pos = self.position(symbol).qty
        reducing = state is State.REDUCING or reduce_only
        if reducing:
            reason = self._reduce_check(order, pos)
            if reason:
                raise self._reject("state" if state is State.REDUCING else "risk", reason)
        now = order.created_ns
        reason = self.risk.check(order, positions=self.positions, open_orders=self.open.values(),
                                 mark=self.mark, now_ns=now)
        if reason:
            raise self._reject("risk", reason)
        # A market order has a mark here: risk refused it above otherwise.
        ref = order.price if order.price is not None else self.mark(symbol)
        # The probe budget is in quote currency: an inverse contract's is qty x contract size.
        notional = self.instruments[symbol].notional_quote(ref, order.qty)
        reason = self.breakers.allow(self.venue.name, notional, reducing, now,
                                     order.client_id)
        if reason:
            raise self._reject("breaker", reason)
        return self._send(order)

    def _build(self, symbol: str, side: Side, qty: Decimal, price: Decimal | None,
               type: OrderType, tif: TimeInForce, reduce_only: bool) -> Order:
        inst = self.instruments.get(symbol)
        if inst is None:
            raise self._reject("instrument", f"unknown symbol {symbol}")
        if not isinstance(qty, Decimal) or (price is not None and not isinstance(price, Decimal)):
            raise self._reject("instrument", "price and quantity must be Decimal")
        if type is OrderType.LIMIT and price is None:
            raise self._reject("instrument", "limit order without a price")
        q = inst.round_qty(qty)
        p = None if type is OrderType.MARKET else inst.round_price(price, side)
        reason = inst.check(p, q, self.mark(symbol))
        if reason:
            raise self._reject("instrument", f"{symbol}: {reason}")
        now = self.clock()
        return Order(client_id=f"{self._prefix}{next(self._ids)}", symbol=symbol, side=side,
                     type=type, qty=q, price=p, tif=tif, reduce_only=reduce_only,
                     venue=self.venue.name, created_ns=now, updated_ns=now)

    def _reduce_check(self, order: Order, pos: Decimal) -> str | None:
        if pos == 0 or (pos > 0) == (order.side is Side.BUY):
            return f"{order.side} {order.symbol} would not reduce position {pos}"
        pending = sum((o.remaining for o in self.open.values()
                       if o.symbol == order.symbol and o.side is order.side), Decimal(0))
        if pending + order.qty > abs(pos):
            return f"reducing orders {pending + order.qty} would exceed position {abs(pos)}"
        return None

    def _reject(self, stage: str, reason: str) -> Rejected:
        self.stats["rejected"] += 1
        self.rejects_by_stage[stage] = self.rejects_by_stage.get(stage, 0) + 1
        if stage in ("risk", "instrument"):
            # A strategy that keeps sending orders the checks refuse is a reject storm of
            # its own making: the venue's breaker counts it like the venue's rejects.
            self.breakers.on_reject(self.venue.name, "(pre-trade)", f"{stage}: {reason}",
                                    self.clock(), pre_trade=True)
        # A strategy can hit the same check thousands of times: one line per stage per
        # interval, with the count (the totals are in status and /metrics).
        self._warn(f"order rejected at {stage}", self.rejects_by_stage[stage], reason)
        return Rejected(stage, reason)

    def _send(self, order: Order, past_latch: bool = False) -> Order:
        """Journal, then send (after the batch commits, if one is open). `past_latch` only
        for flatten: exposure-reducing orders the e-stop itself decided to send."""
        self.journal.record_order(order, order.created_ns)   # durable before it leaves
        if self._after is None and self.latch.tripped and not past_latch:
            self._refuse_after_commit(order)                 # tripped during the commit
            raise Rejected("latch", order.reason)
        self.open[order.client_id] = order
        if self._after is not None:
            self._batch_new.append(order)
        self.risk.note_sent(order, order.created_ns)
        self.stats["submitted"] += 1
        self._act(lambda: self._release(order, past_latch))
        return order

    def _release(self, order: Order, past_latch: bool) -> None:
        if order.status is OrderStatus.PENDING_CANCEL:
            # Cancelled inside the same batch before it ever left: it never will. Close it
            # here, since no venue will ever confirm a cancel of an order it never saw.
            order.status, order.updated_ns = OrderStatus.CANCELLED, self.clock()
            order.reason = f"{order.reason or 'cancelled'} (before it was sent)"
            self.journal.record_order(order, order.updated_ns)
            self._settle(order, None)
            return
        if order.status is not OrderStatus.PENDING_NEW:
            return   # withdrawn (failed batch) or refused: it never leaves
        if self.latch.tripped and not past_latch:   # the last check before it leaves
            self._refuse_after_commit(order)
            self.open.pop(order.client_id, None)
            return
        now = self.clock()
        self._sent_ns[order.client_id] = now
        try:
            self.venue.submit(order)
        except Exception as e:
            # The venue call itself failed (a live venue's connection): the breaker counts
            # it; the caller's batch records the failure. No ack will come for it.
            self._sent_ns.pop(order.client_id)
            self.breakers.on_error(self.venue.name, f"submit {order.client_id}: {e!r}", now)
            raise

    def _refuse_after_commit(self, order: Order) -> None:
        order.status, order.reason = OrderStatus.REJECTED, "kill latch tripped before send"
        self.journal.record_order(order, self.clock())

    # -- cancel --------------------------------------------------------------------------
    def cancel(self, client_id: str, reason: str = "requested", *,
               strategy: bool = False) -> bool:
        """Cancel one order. `strategy`: a strategy's own cancel, subject to the cancel-rate
        limit (raises Rejected); cancels the safety chain decides never are."""
        order = self.open.get(client_id)
        if order is None or order.status is OrderStatus.PENDING_CANCEL:
            return False
        now = self.clock()
        if strategy:
            why = self.risk.check_cancel(now)
            if why:
                raise self._reject("risk", why)
        self.risk.note_cancel(now)
        with self.batch():
            # Queued before the journal write: if that write fails, the batch still sends it.
            self._act(lambda: self.venue.cancel(client_id))
            self._mark_pending_cancel([order], reason)
        return True

    def cancel_all(self, reason: str, symbol: str | None = None,
                   record_with: Callable[[], None] | None = None) -> list[str]:
        """Journal PENDING_CANCEL for every open order in ONE commit, then send the cancels.
        `record_with` journals more in that same commit (the e-stop trip: one fsync on the
        path from the edge to the cancels). Allowed whatever the latch and state say.

        Orders already PENDING_CANCEL get their cancel sent again (a retry: a venue ignores a
        cancel of an order it no longer has). The cancels are sent even when the journal
        write fails; the JournalError then goes on to the caller."""
        todo = [o for o in self.open.values() if symbol is None or o.symbol == symbol]
        queued = False
        try:
            with self.batch():
                for o in todo:
                    self._act(lambda cid=o.client_id: self.venue.cancel(cid))
                queued = True
                if record_with is not None:
                    record_with()
                fresh = [o for o in todo if o.status is not OrderStatus.PENDING_CANCEL]
                if fresh:
                    self._mark_pending_cancel(fresh, reason)
        except JournalError:
            if not queued and self._after is None:
                # The journal could not even begin (locked, I/O error): the batch body never
                # ran, so send the cancels here; they stay in doubt in the journal.
                self._force_cancels(todo, reason)
            raise
        return [o.client_id for o in todo]

    def _force_cancels(self, orders: list[Order], reason: str) -> None:
        now = self.clock()
        for o in orders:
            if o.status is not OrderStatus.PENDING_CANCEL:
                o.status, o.reason, o.updated_ns = OrderStatus.PENDING_CANCEL, reason, now
        self._run_all([lambda cid=o.client_id: self.venue.cancel(cid) for o in orders], None)

    def cancel_increasing(self, reason: str) -> list[str]:
        """Cancel every open order that would grow |position| if it filled (entering
        `reducing`); orders that reduce exposure stay."""
        ids = []
        with self.batch():
            for o in list(self.open.values()):
                pos = self.position(o.symbol).qty
                if o.status is not OrderStatus.PENDING_CANCEL and \
                        (pos == 0 or (pos > 0) == (o.side is Side.BUY)):
                    self.cancel(o.client_id, reason)
                    ids.append(o.client_id)
        return ids

    def _mark_pending_cancel(self, orders: list[Order], reason: str) -> None:
        now = self.clock()
        for o in orders:
            o.status, o.reason, o.updated_ns = OrderStatus.PENDING_CANCEL, reason, now
        self.journal.record_orders(orders, now)
        self.stats["cancels"] += len(orders)

    def flatten(self, reason: str) -> tuple[list[Order], dict[str, str]]:
        """Market orders that close every position. Allowed while latched: it only ever
        reduces exposure, and the caller (e-stop with flatten_on_estop) decided it.

        Each symbol on its own: one that cannot be closed (below the minimum notional, no
        mark price, unknown instrument) does not keep the others open. Returns the orders
        sent and, per symbol left open, why."""
        sent: list[Order] = []
        failed: dict[str, str] = {}
        for sym, pos in self.positions.items():
            if pos.qty == 0:
                continue
            side = Side.SELL if pos.qty > 0 else Side.BUY
            try:
                order = self._build(sym, side, abs(pos.qty), None, OrderType.MARKET,
                                    TimeInForce.IOC, True)
                order.reason = reason
                sent.append(self._send(order, past_latch=True))
            except Rejected as e:
                failed[sym] = f"{pos.qty} {sym} left open: {e.reason}"
        return sent, failed

    # -- venue reports (VenueListener) -----------------------------------------------------
    def _find(self, client_id: str) -> Order | None:
        return self.open.get(client_id) or self._recent.get(client_id)

    def on_order_status(self, client_id: str, status: OrderStatus, reason: str | None,
                        ts_ns: int) -> None:
        order = self._find(client_id)
        if order is None:
            log.error("venue reported %s for unknown order %s", status, client_id)
            self.journal.audit("unknown_order_report", client_id=client_id, status=status.value)
            return
        sent = self._sent_ns.pop(client_id, None)   # any report ends the wait for the ack
        if status is OrderStatus.NEW and order.status is not OrderStatus.PENDING_NEW:
            return  # ack after a cancel request or a fill: the later state stands
        order.status, order.updated_ns = status, ts_ns
        if reason:
            order.reason = reason
        self.journal.record_order(order, ts_ns)
        if status is OrderStatus.REJECTED:
            self.breakers.on_reject(self.venue.name, client_id, reason or "rejected", ts_ns)
        elif status is OrderStatus.NEW and sent is not None:
            self.breakers.on_ack(self.venue.name, client_id, ts_ns - sent, ts_ns)
        self._act(lambda: self._settle(order, None))

    def on_fill(self, fill: Fill) -> None:
        if self.journal.has_fill(fill.fill_id):
            # A venue that repeats a fill (reconnect, replayed report) must not move the
            # position twice; the journal is the record of what was applied.
            log.warning("fill %s reported again; already applied, ignored", fill.fill_id)
            self.journal.audit("duplicate_fill", fill_id=fill.fill_id,
                               client_id=fill.client_id)
            return
        order = self._find(fill.client_id)
        if order is None:
            log.error("fill for unknown order %s", fill.client_id)
            self.journal.audit("unknown_fill", fill_id=fill.fill_id, client_id=fill.client_id,
                               price=str(fill.price), qty=str(fill.qty))
            return
        prev = order.filled_qty
        order.filled_qty = prev + fill.qty
        order.avg_price = ((order.avg_price or Decimal(0)) * prev + fill.price * fill.qty) \
            / order.filled_qty
        if order.filled_qty >= order.qty:
            order.status = OrderStatus.FILLED
        elif order.status is not OrderStatus.PENDING_CANCEL:
            order.status = OrderStatus.PARTIALLY_FILLED
        order.updated_ns = fill.ts_ns
        pos = self.position(fill.symbol)
        pos.apply(fill)
        self.journal.record_fill(fill, order, pos)
        self.stats["fills"] += 1
        self._sent_ns.pop(fill.client_id, None)
        self.risk.on_fill(fill, pos, fill.ts_ns)
        self.breakers.on_fill(self.venue.name, fill.client_id, fill.ts_ns)
        self._act(lambda: self._settle(order, fill))

    def _settle(self, order: Order, fill: Fill | None) -> None:
        if order.status.is_terminal:
            self._finished(order)
        for cb in self.listeners:
            cb(order, fill)

    def _finished(self, order: Order) -> None:
        """A finished order leaves `open` for the bounded list of recently finished ones
        (a late report about it is still recognised)."""
        self.open.pop(order.client_id, None)
        self._recent[order.client_id] = order
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            inst = self.instruments.get(symbol)
            pos = self.positions[symbol] = (inst.new_position() if inst is not None
                                            else Position(symbol))
        return pos

    # -- what it shows ---------------------------------------------------------------------
    def status(self) -> dict:
        """Open orders (each with its state) and the counters."""
        return {"open": len(self.open),
                "list": [{"id": o.client_id, "symbol": o.symbol, "side": o.side.value,
                          "price": str(o.price), "qty": str(o.qty), "status": o.status.value}
                         for o in self.open.values()],
                **self.stats}

    def positions_status(self) -> dict:
        """Per symbol: quantity, average price, realised and unrealised PnL (at the trusted
        mark, in the settlement currency; None without a mark), fees, the mark itself.
        Decimals as strings."""
        out = {}
        for sym, p in self.positions.items():
            mark = self.mark(sym)
            upnl = None if mark is None else p.unrealized(mark)
            out[sym] = {"qty": str(p.qty), "avg_price": str(p.avg_price),
                        "realized_pnl": str(p.realized_pnl),
                        "unrealized_pnl": None if upnl is None else str(upnl),
                        "fees": str(p.fees), "mark": None if mark is None else str(mark)}
        return out

    def adopt(self, orders: list[Order]) -> None:
        """Crash recovery (daemon/execution/reconcile.py): make memory equal to the journal
        for these orders of an earlier run. Open ones (working at the venue, or restored
        there) go into `open`, so the venue's reports, risk and cancels find them; finished
        ones leave `open` for the recently finished, so a late report about them is
        recognised. Journals nothing: the caller journalled their state first. On a venue
        that keeps its orders across restarts, an adopted order whose cancel was decided
        before the restart (PENDING_CANCEL) gets that cancel sent again: the cancel of the
        dead run may never have left, and a venue ignores a cancel of an order it no
        longer has. (A venue that forgot everything has nothing to cancel.)"""
        resend = []
        for o in orders:
            if o.status.is_terminal:
                self._finished(o)
            else:
                self.open[o.client_id] = o
                if o.status is OrderStatus.PENDING_CANCEL and self.venue.survives_restart:
                    resend.append(o.client_id)
        self._run_all([lambda cid=cid: self.venue.cancel(cid) for cid in resend], None)
