"""The trading engine: the one event flow the daemon and a backtest share line for line.

    market event (feed: decode → sanity → book)
      → clock (event time) → venue (paper: requests due, fills on the real book and trades)
      → bars → features, circuit breakers, data quality
      → strategy (after the market-data latency) → intents
      → gateway (sizing, risk, breakers, latch) → venue → journal

Periodic rules (a degraded market, risk limits and breakers, data-quality alerts) run on
the engine's clock: every `check_interval` of event time in a replay or a backtest (so a
replay at any speed decides the same things at the same event times), and on a wall timer
live. What they decide goes to the control (the supervisor's state machine in the daemon,
a small one in a backtest); the engine never decides the trading state itself.

One exception policy: an exception anywhere in what the engine dispatches (feed event,
strategy handler, features, checks, venue reports) goes to `control.error()` unchanged;
the daemon faults, a backtest stops with the error. Nothing is swallowed. A refusal by the
gateway is not an exception here: it is an answer, told to the strategy and counted.

Runs on the event loop (trading state belongs to it); never blocks, never sleeps.
"""
from __future__ import annotations

import asyncio
import logging
import time
from decimal import ROUND_CEILING, Decimal
from typing import Any, Iterable, Protocol

from daemon.config import Config
from daemon.engine.clock import EngineClock
from daemon.engine.executor import ParentOrder
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Fill, Order, OrderType, Side
from daemon.execution.paper import PaperVenue
from daemon.market.bars import TimeBarBuilder
from daemon.market.events import Quote, Trade
from daemon.market.feed import MarketFeed
from daemon.protection import Action, Protection
from daemon.ratelog import RateLimitedLog
from daemon.states import State
from daemon.strategy.api import (Amend, Cancel, Execute, Intent, OrderView, Place,
                                 Strategy)

log = logging.getLogger(__name__)

_BOOK, _TRADE, _BAR = 0, 1, 2


class Control(Protocol):
    """The trading state machine the engine reports to (supervisor or backtest)."""

    state: State
    state_reason: str

    def halt(self, reason: str) -> None: ...
    def reduce(self, reason: str) -> None: ...
    def resume(self, reason: str) -> None: ...
    def finished(self, summary: dict) -> None: ...
    def error(self, where: str, e: BaseException) -> None: ...


class Engine:
    def __init__(self, cfg: Config, *, clock: EngineClock, feed: MarketFeed,
                 venue: PaperVenue, gateway: OrderGateway, protection: Protection,
                 strategy: Strategy | None, control: Control,
                 features: Any = None, quality: Any = None, analytics: Any = None,
                 heartbeat: Any = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.feed = feed
        self.venue = venue
        self.gateway = gateway
        self.protection = protection
        self.strategy = strategy
        self.control = control
        self.features = features
        self.quality = quality
        self.analytics = analytics
        self.heartbeat = heartbeat   # the strategy's watchdog heartbeat (daemon only)
        self.executor: Any = None    # parent orders (daemon/engine/executor.py), by build_core
        self.instruments = gateway.instruments
        bar_ns = int(cfg.strategy.bar_interval_s * 1e9)
        self.bars = {s: TimeBarBuilder(s, bar_ns) for s in feed.symbols}
        self.last_bar: dict[str, dict] = {}
        self.check_ns = int(cfg.watchdog.check_interval_ms * 1e6)
        self._next_check = 0
        self._tags: dict[str, str] = {}      # strategy tag -> client id of its latest order
        self._tag_of: dict[str, str] = {}    # client id -> tag
        self._exec_tags: dict[str, str] = {}   # strategy tag -> its executor parent id
        self._exec_tag_of: dict[str, str] = {}   # parent id -> tag
        self._told: dict[str, Decimal] = {}  # client id -> fill qty told to the strategy
        self._follow_up: list[Intent] = []   # intents a strategy returned from on_refused
        self._stalled_until = 0.0
        self.finished = False
        self.failed: str | None = None   # set by the first error handed to the control
        self.stats = {"intents": 0, "placed": 0, "cancelled": 0, "refused": 0,
                      "pulled": 0, "dropped_not_trading": 0}
        self.refused_by_stage: dict[str, int] = {}
        self._warn = RateLimitedLog(log)
        self.ctx = _Ctx(self)
        feed.sink = self.on_event
        feed.on_finished = self._on_finished
        gateway.listeners.append(self._on_order)

    # -- the event path ----------------------------------------------------------------------
    def on_event(self, ev: Any) -> None:
        """One decoded market event, top to bottom. Any exception goes to the control."""
        if self.failed is not None:
            return   # the control has the error (fault); nothing more is dispatched
        try:
            self._event(ev)
        except Exception as e:
            self._fail(f"engine: {type(ev).__name__} {ev.symbol}", e)

    def _fail(self, where: str, e: BaseException) -> None:
        self.failed = f"{where}: {e!r}"
        self.control.error(where, e)

    def _event(self, ev: Any) -> None:
        feed = self.feed
        route = feed.admit(ev)
        if route is None:
            return
        ts = ev.ts_ns
        self.clock.advance(ts)
        venue = self.venue
        if ts >= venue.next_due_ns:   # requests due by now see the book before this event
            with self.gateway.batch():   # acks and cancel confirmations: one commit
                venue.advance(ts)
        book = feed.apply(ev, route)
        t = type(ev)
        md = venue.md
        if t is Trade:
            venue.on_trade(ev)
            self.protection.on_trade(ev)
            if self.features is not None:
                self.features.on_trade(ev)
            if self.analytics is not None:
                self.analytics.on_trade(ev)
            if self.executor is not None:   # its tape: AC impact, participation
                self.executor.on_trade(ev)
            bar = self.bars[ev.symbol].update(ev)
            if bar is not None:
                self.last_bar[ev.symbol] = {
                    "open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close,
                    "volume": bar.volume, "vwap": bar.vwap, "trades": bar.trades}
            if self.strategy is not None:
                md.push(ts, (_TRADE, ev))
                if bar is not None:
                    md.push(ts, (_BAR, bar))
        elif t is not Quote:   # a depth diff or snapshot
            venue.on_depth(book, ts)
            md.push(ts, (_BOOK, ev.symbol))   # heard md_latency later
        if self.quality is not None:
            self.quality.on_event(ev, book)
        if md.next_ns <= ts:   # checked on every event: the delay is md_latency, not 100 ms
            for due_ns, item in md.pop_due(ts):
                self._deliver(item, due_ns)
        ex = self.executor
        if ex is not None and ts >= ex.wake_ns:   # a parent order's slice is due
            ex.on_time(ts)
        if ts >= self._next_check and self.clock.mode == "event":
            self._next_check = ts + self.check_ns
            self.check()

    def _deliver(self, item: tuple[int, Any], due_ns: int) -> None:
        kind, payload = item
        if kind == _BOOK:
            book = self.feed.books[payload]
            self.protection.on_book(payload, book, due_ns)
            if self.features is not None:
                self.features.on_book(payload, book, due_ns)
            s = self.strategy
            if s is None or payload not in s.symbols:
                return
            if not book.valid:
                self._pull(payload, f"book invalid: {book.invalid_reason}")
                return
            if self._stalled():
                return
            self._run(s.on_book(self.ctx, payload, book))
        elif self.strategy is not None and not self._stalled():
            if kind == _TRADE:
                if payload.symbol in self.strategy.symbols:
                    self._run(self.strategy.on_trade(self.ctx, payload))
            elif payload.symbol in self.strategy.symbols:
                self._run(self.strategy.on_bar(self.ctx, payload))

    # -- intents → gateway -------------------------------------------------------------------
    def _run(self, intents: Iterable[Intent] | None) -> None:
        if not intents:
            return
        with self.gateway.batch():   # everything one handler decided: one fsync
            todo = list(intents)
            while todo:
                self._follow_up = []
                for it in todo:
                    self._one(it)
                # What the strategy answered to refusals (an unwind), in the same commit.
                todo = self._follow_up

    def _one(self, it: Intent) -> None:
        self.stats["intents"] += 1
        self.strategy.stats["intents"] += 1
        t = type(it)
        if t is Cancel:
            self._cancel_tag(it)
        elif self.control.state not in (State.TRADING, State.REDUCING):
            self.stats["dropped_not_trading"] += 1
            self._refused(it, "state", f"not trading ({self.control.state})")
        elif (t is Place or t is Execute) and self.executor is not None \
                and it.symbol in self.executor.holding:
            # A flatten runs on this symbol: the strategy does not trade it until it ends.
            self._refused(it, "execution", self.executor.holding[it.symbol])
        elif t is Place:
            self._place(it)
        elif t is Execute:
            self._execute(it)
        elif t is Amend:
            self._amend(it)
        else:
            raise TypeError(f"strategy {self.strategy.name} returned {it!r}, not an "
                            f"intent (Place, Amend, Cancel, Execute)")

    def _working(self, tag: str) -> Order | None:
        cid = self._tags.get(tag)
        return None if cid is None else self.gateway.open.get(cid)

    def _place(self, it: Place) -> None:
        old = self._working(it.tag)
        if old is not None and not self._cancel_order(it, old, it.reason or "replaced"):
            return
        self._submit(it, it.symbol, it.side, it.qty, it.price, it.tif)

    def _amend(self, it: Amend) -> None:
        old = self._working(it.tag)
        if old is None:
            self._refused(it, "intent", f"amend: no working order {it.tag!r}")
            return
        if not self._cancel_order(it, old, it.reason or "amended"):
            return
        qty = it.qty if it.qty is not None else old.remaining
        price = it.price if it.price is not None else old.price
        self._submit(it, old.symbol, old.side, qty, price, old.tif)

    def _submit(self, it: Intent, symbol: str, side: Side, qty: Decimal,
                price: Decimal | None, tif: Any) -> None:
        try:
            o = self.gateway.submit(symbol, side, qty, price, tif=tif,
                                    type=OrderType.MARKET if price is None else OrderType.LIMIT)
        except Rejected as e:
            self._refused(it, e.stage, e.reason)
            return
        self._tags[it.tag] = o.client_id
        self._tag_of[o.client_id] = it.tag
        self.stats["placed"] += 1

    def _cancel_tag(self, it: Cancel) -> None:
        o = self._working(it.tag)
        if o is not None:
            self._cancel_order(it, o, it.reason or "strategy cancel")
        pid = self._exec_tags.get(it.tag)
        if pid is not None and pid in self.executor.running():
            self.executor.cancel(pid, it.reason or "strategy cancel")

    def _execute(self, it: Execute) -> None:
        """A strategy's parent order, run by the executor (children reach the gateway
        there, with every check); a running execution on the tag is replaced."""
        ex = self.executor
        old = self._exec_tags.get(it.tag)
        if old is not None and old in ex.running():
            ex.cancel(old, it.reason or "replaced")
        try:
            pid = ex.start(ParentOrder(it.symbol, it.side, it.qty, algo=it.algo,
                                       duration_s=it.duration_s,
                                       reason=f"{self.strategy.name}: {it.reason}"))
        except ValueError as e:
            self._refused(it, "execution", str(e))
            return
        if old is not None:
            self._exec_tag_of.pop(old, None)
        self._exec_tags[it.tag] = pid
        self._exec_tag_of[pid] = it.tag
        self.stats["executions"] = self.stats.get("executions", 0) + 1

    def _cancel_order(self, it: Intent, o: Order, reason: str) -> bool:
        try:
            self.gateway.cancel(o.client_id, reason, strategy=True)
        except Rejected as e:   # the cancel-rate limit: the order stays, nothing replaces it
            self._refused(it, e.stage, e.reason)
            return False
        self.stats["cancelled"] += 1
        return True

    def _refused(self, it: Intent, stage: str, reason: str) -> None:
        self.stats["refused"] += 1
        self.refused_by_stage[stage] = self.refused_by_stage.get(stage, 0) + 1
        more = self.strategy.on_refused(self.ctx, it, stage, reason)
        if more:
            self._follow_up.extend(more)
        if stage not in ("latch", "state"):
            self._warn(f"refused:{stage}", self.refused_by_stage[stage],
                       f"{self.strategy.name}: {type(it).__name__} {it.tag} refused by "
                       f"{stage}: {reason}")

    def _pull(self, symbol: str, why: str) -> None:
        """Protective: the strategy's orders on a book that is not valid are cancelled
        (never refused by the cancel-rate limit), and the strategy stands aside."""
        self.strategy.aside(f"{symbol}: {why}")
        orders = [o for o in self.gateway.open.values()
                  if o.symbol == symbol and o.client_id in self._tag_of]
        if not orders:
            return
        with self.gateway.batch():
            for o in orders:
                if self.gateway.cancel(o.client_id, f"pulled: {why}"):
                    self.stats["pulled"] += 1

    def _on_order(self, order: Order, fill: Fill | None) -> None:
        """Gateway listener: a change of one of our orders; fills go to the strategy."""
        cid = order.client_id
        tag = self._tag_of.get(cid)
        if tag is None and fill is not None and self._exec_tag_of:
            # A child of a strategy's Execute: its fills go to the strategy by that tag.
            pid = self.executor.parent_of(cid)
            etag = self._exec_tag_of.get(pid) if pid is not None else None
            if etag is not None and self.strategy is not None:
                self._run(self.strategy.on_fill(self.ctx, etag, fill))
        if fill is not None and tag is not None and self.strategy is not None:
            self._told[cid] = self._told.get(cid, 0) + fill.qty
            self._run(self.strategy.on_fill(self.ctx, tag, fill))
        if self.features is not None and fill is not None:
            self.features.on_own_fill(fill)
        # Listeners hear a batch's reports after all of them were applied: the ack of an
        # IOC that filled at once already sees the order filled. The tag is forgotten only
        # once the strategy was told every fill, or it would never hear them.
        if not order.is_open and self._told.get(cid, 0) >= order.filled_qty:
            self._tag_of.pop(cid, None)
            self._told.pop(cid, None)

    # -- periodic rules ----------------------------------------------------------------------
    def check(self) -> None:
        """A degraded market, risk limits and breakers, data quality: what they decide goes
        to the control (journalled there or by `protection.poll` before it acts)."""
        ctl = self.control
        state = ctl.state
        if state in (State.BOOTING, State.FAULT):
            return
        degraded = self.feed.degraded()
        if state is State.TRADING and degraded:
            ctl.reduce("degraded: " + "; ".join(degraded))
        elif state is State.REDUCING and not degraded and \
                self._reason().startswith("degraded"):
            ctl.resume("market data healthy again")
        marks = {s: self.feed.mark(s) for s in self.feed.symbols}
        for a in self.protection.poll(self.gateway.positions, marks, self.feed.book_validity(),
                                      list(self.gateway.open.values())):
            self._protect(a)
        if self.quality is not None:
            self._check_quality()

    def _reason(self) -> str:
        return self.control.state_reason or ""

    def _protect(self, a: Action) -> None:
        ctl = self.control
        if a.kind == "halt":
            if ctl.state not in (State.HALTED, State.ESTOP, State.FAULT):
                ctl.halt(a.reason)
        elif a.kind == "reducing":
            if ctl.state in (State.TRADING, State.REDUCING):
                ctl.reduce(a.reason)
        elif self.gateway.open:   # cancel_increasing: a breaker opened
            self.gateway.cancel_increasing(a.reason)

    def _check_quality(self) -> None:
        """The validation layers' alerting: journalled first; "breaker" opens the venue's
        breaker (it probes its way closed like any detector's trip), "reducing" only
        reduces exposure until every layer is healthy again."""
        now = self.clock()
        q = self.quality
        if now < q.next_poll_ns:
            return
        venue = self.venue.name
        for a in q.poll(now):
            self.gateway.journal.audit("quality_alert", symbol=a.symbol, layer=a.layer,
                                       action=a.action, reason=a.reason)
            log.warning("data quality %s %s: %s (%s)", a.symbol, a.layer, a.reason, a.action)
            if a.action == "breaker":
                self.protection.board.trip(venue, f"data quality: {a.symbol} {a.layer}: "
                                                  f"{a.reason}", now, manual=False)
            elif self.control.state is State.TRADING:
                self.control.reduce(f"data quality: {a.symbol} {a.layer}: {a.reason}")
        if q.outcome() == "none" and self.control.state is State.REDUCING \
                and self._reason().startswith("data quality"):
            self.control.resume("data quality healthy again")

    # -- time and the end of the data ----------------------------------------------------------
    def settle(self) -> None:
        """Move venue time past the entry latency so every queued request takes effect
        (when no further market event will: the end of a replay, a stop)."""
        v = self.venue
        with self.gateway.batch():
            v.advance(max(v.now_ns, self.clock.event_ns) + v.entry_latency_ns + v.jitter_ns + 1)

    def _on_finished(self) -> None:
        try:
            self.settle()
            self.finished = True
            if self.clock.mode == "event":
                self.check()   # the last rules on the last event time
            self.control.finished(self.summary())
            self.settle()      # cancels the control sent take effect
        except Exception as e:
            self._fail("engine: end of replay", e)

    def summary(self) -> dict:
        g = self.gateway
        return {"lines": self.feed.lines, "event_ns": self.clock.event_ns,
                "orders": g.stats["submitted"], "fills": g.stats["fills"],
                "open_orders_at_end": len(g.open),
                "positions": {s: str(p.qty) for s, p in g.positions.items() if p.qty},
                "realized_pnl": _money(sum((p.realized_pnl for p in g.positions.values()),
                                           Decimal(0))),
                "fees": _money(sum((p.fees for p in g.positions.values()), Decimal(0)))}

    async def run_timers(self) -> None:
        """Live (wall clock): the simulated exchange keeps time when our feed is silent,
        and the periodic rules run on wall time. Also beats the strategy's heartbeat."""
        period = self.check_ns / 1e9
        next_check = 0.0
        while True:
            await asyncio.sleep(0.01)
            try:
                if self.clock.mode == "wall":
                    now_ns = self.clock()
                    if now_ns >= self.venue.next_due_ns:   # reports due: one commit
                        with self.gateway.batch():
                            self.venue.advance(now_ns)
                    else:   # only time moves (no transaction 100 times a second)
                        self.venue.advance(now_ns)
                    ex = self.executor
                    if ex is not None and self.clock() >= ex.wake_ns:
                        ex.on_time(self.clock())
                    now = time.monotonic()
                    if now >= next_check:
                        next_check = now + period
                        self.check()
                if self.heartbeat is not None and not self._stalled():
                    self.heartbeat.beat()
            except Exception as e:
                if self.failed is None:
                    self._fail("engine: timer", e)

    def stall(self, seconds: float) -> None:
        """Simulation hook: the strategy stops working (and beating), as a hung one would."""
        self._stalled_until = time.monotonic() + seconds

    def _stalled(self) -> bool:
        return self._stalled_until != 0.0 and time.monotonic() < self._stalled_until

    # -- sizing for strategies -----------------------------------------------------------------
    def order_qty(self, symbol: str, price: float) -> Decimal:
        """The configured order size of `symbol` (quote currency) as a quantity at `price`,
        rounded UP to the lot so it never falls below the size (and the minimum notional
        the config was checked against)."""
        inst = self.instruments[symbol]
        notional = self.cfg.strategy.notional(symbol)
        cs = inst.contract_size
        if inst.kind == "inverse":
            raw = notional / cs                  # contracts of cs USD each
        else:
            raw = notional / (Decimal(repr(price)) * cs)
        steps = (raw / inst.lot_size).to_integral_value(rounding=ROUND_CEILING)
        return (steps * inst.lot_size).quantize(inst.lot_size)

    # -- what the engine shows ------------------------------------------------------------------
    def core_status(self) -> dict:
        """Every part of the trading core, each from its own status()."""
        feed, gw, q = self.feed, self.gateway, self.quality
        marks = {s: feed.mark(s) for s in feed.symbols}
        return {"orders": gw.status(), "positions": gw.positions_status(),
                **self.protection.status(gw.positions, marks, list(gw.open.values())),
                "quality": None if q is None else {
                    "outcome": q.outcome(),
                    "scores": {k: v.get("score") for k, v in q.status()["symbols"].items()}},
                "analytics": self.analytics.status() if self.analytics is not None else None,
                "market": feed.status(), "engine": self.status()}

    def status(self) -> dict:
        s = self.strategy
        return {"clock": self.clock.status(), "finished": self.finished, "failed": self.failed,
                "strategy": None if s is None else {
                    **s.status(), "tags": {t: c for t, c in self._tags.items()
                                           if c in self.gateway.open}},
                "bars": self.last_bar, **self.stats,
                "refused_by_stage": dict(self.refused_by_stage)}


def _money(d: Decimal) -> str:
    """A sum of money as a person reads it: 8 decimal places (Binance's finest step)."""
    return str(d.quantize(Decimal("0.00000001")))


class _Ctx:
    """The strategy's read-only view (daemon/strategy/api.py Context)."""

    __slots__ = ("_e",)

    def __init__(self, engine: Engine) -> None:
        self._e = engine

    def now_ns(self) -> int:
        return self._e.clock()

    def order(self, tag: str) -> OrderView | None:
        e = self._e
        cid = e._tags.get(tag)
        if cid is None:
            return None
        o = e.gateway.open.get(cid) or e.gateway._find(cid)
        if o is None:
            return None
        return OrderView(tag, o.client_id, o.symbol, o.side, o.price, o.qty, o.filled_qty,
                         o.status.value, o.is_open)

    def working(self, tag: str) -> bool:
        """Whether the tag's order is still working (cheaper than order(): no view)."""
        cid = self._e._tags.get(tag)
        return cid is not None and cid in self._e.gateway.open

    def position(self, symbol: str) -> Decimal:
        return self._e.gateway.position(symbol).qty

    def instrument(self, symbol: str) -> Any:
        return self._e.instruments[symbol]

    def mark(self, symbol: str) -> Decimal | None:
        return self._e.feed.mark(symbol)

    def feature(self, symbol: str, name: str) -> float | None:
        f = self._e.features
        if f is None:
            return None
        return f.get(symbol, name).value

    def spread_floor_bps(self, symbol: str) -> float | None:
        a = self._e.analytics
        return a.floor_bps(symbol) if a is not None else None

    def order_qty(self, symbol: str, price: float) -> Decimal:
        return self._e.order_qty(symbol, price)
