"""The executor: runs parent orders on the engine clock and sends their child orders
through the gateway.

A parent order ("sell 0.5 BTCUSDT over 10 minutes", `bot4ctl flatten`, a strategy's
Execute intent) becomes one `daemon.execution.algos.twap.Schedule`: a TWAP plan, or the
Almgren–Chriss optimal trajectory (`almgren_chriss.optimal_trajectory`). The engine calls
`on_time(now)` on every event and timer tick (only once `now >= wake_ns`: nothing to do
before); each slice that falls due is sent as ONE child order:

- a marketable limit IOC at the touch plus the slippage cap: a sell at best bid x (1 -
  max_slippage_bps), a buy at best ask x (1 + max_slippage_bps), rounded by the
  instrument to the less aggressive tick. Never a market order: a child takes what the
  book holds within the cap and no more;
- reduce-only when the parent is (a flatten), and never more than the position left
  after the other orders already working on that side (the gateway would refuse it);
- through `OrderGateway.submit`: every check (latch, state, filters, risk, breakers)
  applies to every child, and every child is journalled before it leaves.

Fills and ends come back through the gateway's listeners: fills count into the schedule
(`Schedule.filled`); what an IOC child did not fill goes back to the schedule
(`Schedule.unfilled`), which spreads it over the slices still to come. A slice that
cannot be sent now (book not valid, below the minimum notional, no room under the
position) goes back the same way. What is left after the last slot is the parent's
`unfinished`: it is reported, never escalated. A tripped kill latch at a slot, or a
child refused by the latch or the trading state (halt, e-stop, fault, reducing for a
parent that adds exposure), stops the parent for good: a stop always wins over a
schedule. While a reduce-only parent (a flatten) runs on a symbol, `holding` names it
and the engine refuses the strategy's new orders there: the two would fight over the
position.

AC impact parameters ([execution] impact = "estimate"): measured when the parent starts
by `impact.estimate_impact` with seconds as the time unit: epsilon and eta by walking
the current book (20 levels a side) with half, one and two TWAP child sizes; gamma
(Kyle's lambda) and sigma from the trades of the last `impact_window_s` seconds that
this executor taped (`on_trade`, with the book mid at each trade; the mid seen at a
trade is put at the time of the trade before it, so a move lands in the bucket of the
trade that preceded it), in 1 s buckets (a slope per unit traded does not depend on the
bucket; short ones give the regression enough points) and on a 1 s grid. When the data
is insufficient, or the estimate is unusable (eta - gamma tau / 2 <= 0: a book that
holds every child size at the touch measures no temporary impact, or the measured
permanent impact is too large for it at this slice interval), the configured
sigma/eta/gamma/epsilon are used, and when those are unset the parent runs as TWAP; the
parent's status says which and why.

What it never does: decide to trade (the operator or a strategy starts a parent), reach a
venue except through the gateway, or take part in the e-stop: flatten_on_estop is
`OrderGateway.flatten`, one market IOC per symbol for the whole position at once, never a
schedule.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping

from daemon.config import ExecutionCfg
from daemon.execution.algos.almgren_chriss import ACParams, optimal_trajectory
from daemon.execution.algos.impact import InsufficientData, estimate_impact
from daemon.execution.algos.twap import Schedule, lots_down
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Fill, Order, OrderType, Side, TimeInForce, to_decimal
from daemon.market.events import Trade

log = logging.getLogger(__name__)

NEVER = 1 << 62            # wake_ns when no parent waits for a time
_S = 1_000_000_000
_TAPE = 50_000             # trades kept per symbol for the impact estimate and participation
_BOOK_LEVELS = 20
_KEEP_FINISHED = 20        # finished parents still shown in status
_MAX_REJECTS = 3           # consecutive refusals of one parent's children: it stops
ALGOS = ("twap", "ac")


@dataclass(frozen=True, slots=True)
class ParentOrder:
    """What to execute. None fields take the [execution] defaults."""

    symbol: str
    side: Side
    qty: Decimal
    algo: str | None = None              # "twap" | "ac"
    duration_s: float | None = None
    slices: int | None = None
    max_slice: Decimal | None = None     # per child, instrument quantity; None: from config
    max_participation: float | None = None
    risk_aversion: float | None = None   # AC lambda
    reduce_only: bool = False
    reason: str = ""


@dataclass(slots=True)
class _Parent:
    id: str
    order: ParentOrder
    algo: str
    schedule: Schedule
    interval_ns: int
    started_ns: int
    end_ns: int
    plan: list[tuple[int, Decimal]]
    notes: list[str] = field(default_factory=list)
    impact: dict[str, float] | None = None
    children: dict[str, Order] = field(default_factory=dict)
    told: dict[str, Decimal] = field(default_factory=dict)   # child -> fill qty heard
    state: str = "running"            # running | done | unfinished | cancelled | stopped
    end_reason: str = ""
    ended_ns: int | None = None
    sent: int = 0
    rejects: int = 0                  # consecutive refusals
    filled_value: Decimal = Decimal(0)
    participation: bool = False       # the schedule's limit needs the recent volume

    def note(self, text: str) -> None:
        # Deferrals repeat every slice; keep the newest few, without repeats in a row.
        if not self.notes or self.notes[-1] != text:
            self.notes.append(text)
            del self.notes[:-8]


class Executor:
    def __init__(self, gateway: OrderGateway, clock: Callable[[], int],
                 books: Mapping[str, Any], *, max_slippage_bps: float,
                 cfg: ExecutionCfg | None = None, run: int = 0) -> None:
        """`run`: the daemon's run number, written into every execution audit row so the
        next run can tell which parents this one left unfinished (`interrupted_parents`)."""
        if not (0 < max_slippage_bps <= 1000):
            raise ValueError(f"max_slippage_bps must be in (0, 1000], got {max_slippage_bps}")
        self.cfg = cfg or ExecutionCfg()
        self.run = run
        # Parents an earlier run started and never ended (shown in status, never resumed).
        self.interrupted: list[dict[str, Any]] = []
        self._gw = gateway
        self._clock = clock
        self._books = books
        self._slip = Decimal(repr(float(max_slippage_bps))) / 10_000
        self.wake_ns = NEVER          # the engine calls on_time only once now >= wake_ns
        self._active: dict[str, _Parent] = {}
        self._finished: deque[_Parent] = deque(maxlen=_KEEP_FINISHED)
        self._child_of: dict[str, _Parent] = {}
        self._n = 0
        # symbol -> why: a reduce-only parent (a flatten) runs on it; the engine refuses the
        # strategy's new orders there until it ends (they would fight over the position).
        self.holding: dict[str, str] = {}
        # (ts_ns, price, qty, aggressor_buy, mid or None) per symbol, oldest first.
        self._tape: dict[str, deque[tuple[int, float, float, bool, float | None]]] = {
            s: deque(maxlen=_TAPE) for s in books}
        gateway.listeners.append(self._on_order)

    @property
    def active(self) -> bool:
        return bool(self._active)

    # -- market data ---------------------------------------------------------------------
    def on_trade(self, t: Trade) -> None:
        """A market trade (the engine's trade path): taped for the AC impact estimate and
        for the participation limit. O(1)."""
        tape = self._tape.get(t.symbol)
        if tape is not None:
            book = self._books[t.symbol]
            tape.append((t.ts_ns, t.price, t.qty, not t.buyer_is_maker,
                         book.mid() if book.valid else None))

    def _volume(self, symbol: str, since_ns: int) -> Decimal:
        total = 0.0
        for rec in reversed(self._tape[symbol]):
            if rec[0] <= since_ns:
                break
            total += rec[2]
        return to_decimal(total)

    # -- starting ------------------------------------------------------------------------
    def start(self, parent: ParentOrder) -> str:
        """Plan `parent` and start it now (its first slice goes out on this call). Raises
        ValueError, saying why, when it cannot be executed at all."""
        p = parent
        gw, cfg = self._gw, self.cfg
        inst = gw.instruments.get(p.symbol)
        if inst is None or p.symbol not in self._books:
            raise ValueError(f"unknown symbol {p.symbol}")
        if not isinstance(p.side, Side):
            raise ValueError(f"side must be a Side, got {p.side!r}")
        if not isinstance(p.qty, Decimal) or not p.qty > 0:
            raise ValueError(f"qty must be a positive Decimal, got {p.qty!r}")
        algo = p.algo or cfg.algo
        if algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
        duration = cfg.duration_s if p.duration_s is None else p.duration_s
        if not (0 < duration <= 86_400 and math.isfinite(duration)):
            raise ValueError(f"duration must be in (0, 86400] seconds, got {duration}")
        n = cfg.slices if p.slices is None else p.slices
        if not (isinstance(n, int) and 1 <= n <= 10_000):
            raise ValueError(f"slices must be an integer in [1, 10000], got {n!r}")
        lot = inst.lot_size
        total = lots_down(p.qty, lot)
        notes: list[str] = []
        if p.reduce_only:
            pos = gw.position(p.symbol).qty
            if pos == 0 or (pos > 0) == (p.side is Side.BUY):
                raise ValueError(f"{p.side} {p.symbol} would not reduce position {pos}")
            if total > abs(pos):
                notes.append(f"qty {total} cut to the position {abs(pos)}")
                total = lots_down(abs(pos), lot)
        if total == 0:
            raise ValueError(f"{p.qty} {p.symbol} is less than one lot ({lot})")
        mark = gw.mark(p.symbol)
        if mark is None:
            mid = self._books[p.symbol].mid() if self._books[p.symbol].valid else None
            mark = to_decimal(mid) if mid is not None else None
        if not inst.inverse and mark is None:
            raise ValueError(f"{p.symbol}: no mark price to size the slices against")
        # Every child must clear the minimum notional: fewer, larger slices if needed.
        px = mark if mark is not None else Decimal(1)
        if inst.min_notional > 0:
            worth = inst.notional_quote(px, total)
            if worth < inst.min_notional:
                raise ValueError(f"{total} {p.symbol} is worth {worth:.2f}, below the minimum "
                                 f"notional {inst.min_notional}: no order can carry it")
            fit = int(worth / inst.min_notional)
            if fit < n:
                notes.append(f"slices {n} -> {fit}: each must clear the minimum notional "
                             f"{inst.min_notional}")
                n = fit
        n = min(n, int(total / lot))
        max_slice = p.max_slice
        if max_slice is None and cfg.max_slice_notional is not None:
            raw = (cfg.max_slice_notional / inst.contract_size if inst.inverse
                   else cfg.max_slice_notional / px)
            max_slice = max(lots_down(raw, lot), lot)
        elif max_slice is not None:
            max_slice = max(lots_down(max_slice, lot), lot)
        part = cfg.max_participation if p.max_participation is None else p.max_participation
        participation = Decimal(repr(float(part))) if part and part > 0 else None
        now = self._clock()
        span = int(duration * _S)
        impact = None
        try:
            if algo == "ac":
                lam = cfg.risk_aversion if p.risk_aversion is None else p.risk_aversion
                impact, why = self._impact(p.symbol, total, duration, n)
                notes.append(why)
                sched = None
                if impact is not None:
                    try:
                        params = ACParams(X=total, T=duration, N=n, lam=float(lam), **impact)
                        tr = optimal_trajectory(params)
                        sched = tr.schedule(now, _S, lot, max_slice=max_slice,
                                            max_participation=participation)
                        notes.append(f"AC kappa {tr.kappa:.4g}/s, lambda {lam:g}")
                    except ValueError as e:
                        if "cannot fit" in str(e):
                            raise
                        notes.append(f"AC not usable ({e}): running TWAP")
                        impact = None
                if sched is None:
                    algo = "twap"
            if algo == "twap":
                sched = Schedule.twap(total, now, now + span, lot=lot, n_slices=n,
                                      max_slice=max_slice, max_participation=participation)
        except ValueError as e:
            raise ValueError(f"{p.symbol}: {e}") from None
        self._n += 1
        pid = f"x{self._n}"
        par = _Parent(pid, p, algo, sched, max(span // n, 1), now, now + span, sched.plan(),
                      notes, impact, participation=participation is not None)
        self._active[pid] = par
        if p.reduce_only:
            self.holding[p.symbol] = f"{p.symbol} is being flattened ({pid}: {p.reason})"
        self._audit("execution_start", par, qty=str(total), algo=algo, slices=n,
                    duration_s=duration, max_slice=str(max_slice) if max_slice else None,
                    notes="; ".join(notes))
        log.info("execution %s: %s %s %s by %s over %gs in %d slices (%s)%s", pid, p.side,
                 total, p.symbol, algo, duration, n, p.reason,
                 f": {'; '.join(notes)}" if notes else "")
        self.wake_ns = min(self.wake_ns, now)
        self.on_time(now)
        return pid

    def _impact(self, symbol: str, total: Decimal, duration: float, n: int
                ) -> tuple[dict[str, float] | None, str]:
        """(sigma, eta, gamma, epsilon) for ACParams, and a note saying where they came
        from (see the module docstring)."""
        cfg = self.cfg
        conf = {"sigma": cfg.sigma, "eta": cfg.eta, "gamma": cfg.gamma, "epsilon": cfg.epsilon}
        if cfg.impact == "configured":
            return conf, "AC impact: configured"   # type: ignore[return-value]
        tau = duration / n
        book = self._books[symbol]
        now = self._clock()
        since = now - int(cfg.impact_window_s * _S)
        tape = [r for r in self._tape[symbol] if r[0] > since]
        # The mid seen at each trade stamped at the trade before it (and the mid now at
        # the last trade): the move between two trades goes to the bucket of the trade
        # that came before it, the one that (as far as trades tell) caused it.
        mid_now = book.mid() if book.valid else None
        seen = [r[4] for r in tape[1:]] + [mid_now]
        mids = [(a[0], m) for a, m in zip(tape, seen) if m is not None]
        child = float(total) / n
        try:
            if not book.valid:
                raise InsufficientData("the book is not valid")
            est = estimate_impact(book.levels(True, _BOOK_LEVELS),
                                  book.levels(False, _BOOK_LEVELS),
                                  [child / 2, child, 2 * child], tau,
                                  [(r[0], r[1], r[2], r[3]) for r in tape],
                                  mids,
                                  bucket_ns=_S, sample_ns=_S,
                                  time_unit_ns=_S)
            vals = {"sigma": est.sigma, "eta": est.eta, "gamma": est.gamma,
                    "epsilon": est.epsilon}
            if vals["eta"] - vals["gamma"] * tau / 2 <= 0:
                raise InsufficientData(
                    f"eta - gamma tau/2 = {est.eta:.4g} - {est.gamma:.4g} x {tau:.4g}/2 "
                    f"<= 0: " + ("the book holds every child size at the touch"
                                 if est.eta == 0 else "the permanent impact measured is "
                                 "too large for the book's temporary impact at this "
                                 "slice interval"))
            return vals, (f"AC impact estimated from the book and {len(tape)} trades of "
                          f"the last {cfg.impact_window_s:g}s")
        except (InsufficientData, ValueError) as e:
            unset = [k for k, v in conf.items() if v is None]
            if unset:
                return None, (f"AC impact: data insufficient ({e}) and {', '.join(unset)} "
                              f"not configured: running TWAP")
            return (conf,   # type: ignore[return-value]
                    f"AC impact: data insufficient ({e}): configured values used")

    # -- driving -------------------------------------------------------------------------
    def on_time(self, now_ns: int) -> None:
        """Send every slice due by `now_ns` (one child per parent at most). Cheap when
        nothing is due: one comparison."""
        if now_ns < self.wake_ns:
            return
        with self._gw.batch():   # every child decided now: one journal commit
            for par in list(self._active.values()):
                if par.state == "running":
                    self._drive(par, now_ns)
        self._rewake()

    def _rewake(self) -> None:
        wake = NEVER
        for par in self._active.values():
            due = par.schedule.next_due_ns
            if par.state == "running" and due is not None and due < wake:
                wake = due
        self.wake_ns = wake

    def _drive(self, par: _Parent, now: int) -> None:
        s = par.schedule
        latch = self._gw.latch
        if latch.tripped:   # a stop wins over any schedule, for good
            self._end(par, "stopped", f"latch: {latch.kind.value}: {latch.reason}")
            return
        vol = self._volume(par.order.symbol, now - par.interval_ns) \
            if par.participation else None
        for sl in s.due(now, vol):
            self._send(par, sl.qty)
            if par.state != "running":
                return
        self._maybe_done(par)

    def _send(self, par: _Parent, qty: Decimal) -> None:
        p, s, gw = par.order, par.schedule, self._gw
        book = self._books[p.symbol]
        touch = (book.best_bid() if p.side is Side.SELL else book.best_ask()) \
            if book.valid else None
        if touch is None:
            s.unfilled(qty)
            par.note("slice deferred: the book is not valid")
            return
        if p.reduce_only:
            pos = gw.position(p.symbol).qty
            if pos == 0 or (pos > 0) == (p.side is Side.BUY):
                s.unfilled(qty)
                self._end(par, "done", f"position {pos}: nothing left to reduce")
                return
            working = sum((o.remaining for o in gw.open.values()
                           if o.symbol == p.symbol and o.side is p.side), Decimal(0))
            room = lots_down(max(abs(pos) - working, Decimal(0)), s.lot)
            if room < qty:
                s.unfilled(qty - room)
                par.note(f"slice cut to {room}: {working} already working on the "
                         f"position {pos}")
                qty = room
                if qty == 0:
                    return
        t = to_decimal(touch[0])
        inst = gw.instruments[p.symbol]
        price = inst.round_price(t * (1 - self._slip) if p.side is Side.SELL
                                 else t * (1 + self._slip), p.side)
        why = inst.check(price, qty, gw.mark(p.symbol))
        if why:
            s.unfilled(qty)
            par.note(f"slice deferred: {why}")
            return
        try:
            o = gw.submit(p.symbol, p.side, qty, price, type=OrderType.LIMIT,
                          tif=TimeInForce.IOC, reduce_only=p.reduce_only)
        except Rejected as e:
            s.unfilled(qty)
            if e.stage in ("latch", "state"):
                self._end(par, "stopped", f"{e.stage}: {e.reason}")
                return
            par.rejects += 1
            par.note(f"child refused by {e.stage}: {e.reason}")
            if par.rejects >= _MAX_REJECTS:
                self._end(par, "stopped", f"{par.rejects} children refused in a row "
                                          f"(last by {e.stage}: {e.reason})")
            return
        par.rejects = 0
        par.sent += 1
        par.children[o.client_id] = o
        self._child_of[o.client_id] = par
        if o.qty < qty:   # the gateway rounds to the lot: cannot happen for lot multiples
            s.unfilled(qty - o.qty)

    def _on_order(self, order: Order, fill: Fill | None) -> None:
        """Gateway listener: fills of our children count; what an ended child did not
        fill goes back to its schedule.

        The listeners hear a batch's reports after all of them were applied, so the ack
        of an IOC that filled at once already shows it ended: the child is settled only
        once every fill of it was heard, or those fills would be lost to the schedule."""
        cid = order.client_id
        par = self._child_of.get(cid)
        if par is None:
            return
        s = par.schedule
        if fill is not None:
            s.filled(fill.qty)
            par.filled_value += fill.price * fill.qty
            par.told[cid] = par.told.get(cid, Decimal(0)) + fill.qty
        if not order.is_open and par.told.get(cid, Decimal(0)) >= order.filled_qty:
            del self._child_of[cid]
            par.children.pop(cid, None)
            par.told.pop(cid, None)
            left = order.qty - order.filled_qty
            if left > 0:
                s.unfilled(left)
        if par.state == "running":
            self._maybe_done(par)

    def _maybe_done(self, par: _Parent) -> None:
        s = par.schedule
        if not s.done:
            return
        if s.filled_qty == s.total:
            self._end(par, "done", "filled")
        elif par.order.reduce_only and self._gw.position(par.order.symbol).qty == 0:
            self._end(par, "done", "position flat")
        else:
            self._end(par, "unfinished", f"{s.unfinished} left after the last slice")

    def _end(self, par: _Parent, state: str, why: str) -> None:
        par.state, par.end_reason, par.ended_ns = state, why, self._clock()
        self._active.pop(par.id, None)
        self._finished.append(par)
        if par.order.reduce_only and not self.running(par.order.symbol, reduce_only=True):
            self.holding.pop(par.order.symbol, None)
        self._rewake()
        level = logging.INFO if state == "done" else logging.WARNING
        log.log(level, "execution %s %s: %s (filled %s of %s)", par.id, state, why,
                par.schedule.filled_qty, par.schedule.total)
        self._audit("execution_end", par, state=state, why=why,
                    filled=str(par.schedule.filled_qty), total=str(par.schedule.total))

    def _audit(self, kind: str, par: _Parent, **detail: Any) -> None:
        p = par.order
        self._gw.journal.audit(kind, id=par.id, run=self.run, symbol=p.symbol,
                               side=p.side.value, reduce_only=p.reduce_only, reason=p.reason,
                               **detail)

    # -- stopping ------------------------------------------------------------------------
    def cancel(self, parent_id: str, reason: str) -> None:
        """Stop a parent: no further slice, its working children cancelled (their fills
        still count). KeyError for an id that is not running."""
        par = self._active.get(parent_id)
        if par is None:
            raise KeyError(f"no running execution {parent_id!r}")
        with self._gw.batch():
            for cid in list(par.children):
                self._gw.cancel(cid, f"execution cancelled: {reason}")
            self._end(par, "cancelled", reason)

    def cancel_all(self, reason: str, symbol: str | None = None,
                   reduce_only: bool | None = None) -> list[str]:
        ids = [pid for pid, par in self._active.items()
               if (symbol is None or par.order.symbol == symbol)
               and (reduce_only is None or par.order.reduce_only == reduce_only)]
        for pid in ids:
            self.cancel(pid, reason)
        return ids

    def parent_of(self, client_id: str) -> str | None:
        """The parent id of a child order still being accounted, else None."""
        par = self._child_of.get(client_id)
        return None if par is None else par.id

    def running(self, symbol: str | None = None, reduce_only: bool | None = None
                ) -> list[str]:
        """Ids of the running parents (of one symbol, of one kind)."""
        return [pid for pid, par in self._active.items()
                if (symbol is None or par.order.symbol == symbol)
                and (reduce_only is None or par.order.reduce_only == reduce_only)]

    # -- what it shows -------------------------------------------------------------------
    def status(self) -> list[dict]:
        """Running parents first, then the last finished ones, then those an earlier run
        left unfinished; Decimals as strings."""
        return [*(self._row(par) for par in
                  [*self._active.values(), *reversed(self._finished)]),
                *self.interrupted]

    def note_interrupted(self, parents: list[dict[str, Any]], positions: Mapping[str, Any]
                         ) -> list[str]:
        """Record the parents `interrupted_parents` found (an earlier run stopped while
        they ran: a crash, kill -9, a power cut): journalled, shown in status with state
        "interrupted", and described for the log and the alert. Never resumed: the market,
        the position and maybe the operator's mind changed while the daemon was down."""
        texts = []
        for d in parents:
            pos = positions.get(d["symbol"])
            qty = "?" if pos is None else str(pos.qty)
            why = (f"run {d['run']} stopped before it ended; not resumed (position "
                   f"{d['symbol']} is {qty} now)")
            self._gw.journal.audit("execution_interrupted", id=d["id"], run=d["run"],
                                   symbol=d["symbol"], side=d["side"], qty=d.get("qty"),
                                   reduce_only=d.get("reduce_only"), reason=d.get("reason"),
                                   position=qty, found_by_run=self.run)
            self.interrupted.append({
                "id": f"{d['id']}@run{d['run']}", "symbol": d["symbol"], "side": d["side"],
                "algo": d.get("algo"), "reduce_only": d.get("reduce_only"),
                "reason": d.get("reason"), "state": "interrupted", "end_reason": why,
                "qty": d.get("qty"), "filled": None, "remaining": None, "in_flight": None,
                "unfinished": None, "avg_price": None, "children_sent": None,
                "slices_left": None, "next_due_ns": None, "started_ns": None,
                "end_ns": None, "ended_ns": None, "plan": [], "impact": None, "notes": []})
            texts.append(f"execution {d['id']} of run {d['run']} ({d['side']} {d.get('qty')} "
                         f"{d['symbol']}{' reduce-only' if d.get('reduce_only') else ''}: "
                         f"{d.get('reason') or 'no reason'}) was interrupted: {why}; "
                         f"`bot4ctl flatten` starts a new one")
        return texts

    def _row(self, par: _Parent) -> dict:
        p, s = par.order, par.schedule
        avg = par.filled_value / s.filled_qty if s.filled_qty else None
        return {"id": par.id, "symbol": p.symbol, "side": p.side.value, "algo": par.algo,
                "reduce_only": p.reduce_only, "reason": p.reason, "state": par.state,
                "end_reason": par.end_reason or None, "qty": str(s.total),
                "filled": str(s.filled_qty), "remaining": str(s.remaining),
                "in_flight": str(s.in_flight), "unfinished": str(s.unfinished),
                "avg_price": None if avg is None else str(avg.quantize(Decimal("1e-8"))),
                "children_sent": par.sent, "slices_left": s.slots_left,
                "next_due_ns": s.next_due_ns if par.state == "running" else None,
                "started_ns": par.started_ns, "end_ns": par.end_ns, "ended_ns": par.ended_ns,
                "plan": [[t, str(q)] for t, q in par.plan[:50]],
                "impact": par.impact, "notes": list(par.notes)}


# How far before the previous run's boot row its executions may be stamped: audit times are
# wall time, which a Pi without a clock battery may step back at boot (fake-hwclock) or
# later (NTP). The run number, not the time, decides; the time only bounds the read.
_CLOCK_SLACK_NS = 86_400 * _S


def interrupted_parents(journal: Any, run: int) -> list[dict[str, Any]]:
    """The parents run `run - 1` started and never ended, from the journal's audit rows
    (execution_start without an execution_end of the same id and run), oldest first."""
    prev = run - 1
    boot = [ts for ts, _, d in journal.audit_rows("boot", limit=2) if d.get("run") == prev]
    if not boot:
        return []
    since = boot[0] - _CLOCK_SLACK_NS
    ended = {d["id"] for _, _, d in journal.audit_rows("execution_end", since_ns=since)
             if d.get("run") == prev}
    return [d for _, _, d in journal.audit_rows("execution_start", since_ns=since)
            if d.get("run") == prev and d["id"] not in ended]

