"""The paper venue: a limit-order-book simulator driven by recorded (or synthetic) market
data, implementing the `Venue` protocol for the gateway.

It is pure matching and reporting. It never decides whether an order may be sent (the
gateway did), never keeps the official positions (the gateway does, from the fills it
journals), never reads the wall clock, and never reports except through the bound listener.
Same inputs + same seed -> the identical sequence of reports.

Clock. Venue time is market time: the receive time `ts_ns` of the events it is fed
(`advance`, `on_depth`, `on_trade`). `submit`/`cancel` happen at the current venue time.

Feeding protocol (per market event at `ts`):
    venue.advance(ts)          # optional but exact: requests due by ts see the book as it
                               # was just before this event
    book.on_diff(...)          # the real reconstructed OrderBook
    venue.on_depth(book, ts)   # or venue.on_trade(trade) for a trade
    venue.md_release(ts, sym)  # what the strategy may see now (market-data latency)
`on_depth`/`on_trade` run due requests themselves, so skipping `advance` only means a
request due strictly between two events sees the book after the later event.

Latency model.
* Order entry: a submit or cancel issued at venue time t takes effect at
  `t + entry_latency_ns (+ U[0, jitter_ns])`, the jitter drawn from `random.Random` seeded
  from `seed`. Requests take effect in the order they were issued (one connection: a later
  request never overtakes an earlier one), so effective times are non-decreasing. A request
  due at exactly the time of a market event takes effect before that event: an order
  submitted at t can be filled by a trade at t + latency but not at t + latency - 1.
* Reports (acks, fills, cancels, rejects, expiries) are delivered synchronously, stamped
  with the venue time at which they happen; the return trip is not delayed.
* Market data: `md_release(ts, symbol)` queues "symbol's book changed at ts" for release at
  `ts + md_latency_ns (+ jitter)` (FIFO, like the entry queue) and returns every
  notification due by `ts`, so the pipeline tells the strategy late. Note that the book the
  pipeline then shows is the current one; a strategy that needs the exact delayed state
  should delay the events themselves with `MarketDataDelay`.

Matching model.
* Taking liquidity (market orders, the marketable part of IOC/GTC limits) walks the
  reconstructed book from the best level up to the limit: each level fills at its own
  price up to its displayed size, taker fee. Slippage therefore comes from real depth.
* Walked liquidity: the quantity we took at a level is remembered as "consumed" and is not
  available to our later orders. The recorded book never saw our trade, so the consumed
  amount is eroded by later decreases of that level's displayed size (we took the front of
  the queue; once the recorded market has removed that much from the level, the recorded
  and the real book agree again) and forgotten when the level disappears. Increases are new
  orders behind ours and are available at once. Market trades between two depth updates do
  not reduce the available depth until the next update shows them.
* Post-only orders that would take liquidity are rejected ("post-only order would take
  liquidity"); a market order cannot be post-only.
* A resting limit order joins the queue behind the displayed size at its price when it
  becomes active (queue_ahead = displayed qty there, 0 on a new level). It fills (maker,
  at its own price) only from:
  - trades at its price whose aggressor is on the other side: each trade first consumes
    queue_ahead; what the trade has beyond that fills us (up to our remaining qty), then the
    orders behind us. Several of our orders at one price keep time priority among them.
  - trades through its price (a sell printed below our bid, a buy above our ask): the level
    was swept, so queue_ahead becomes 0 and the print's quantity, which would have hit us
    first, fills us up to that quantity. One print feeds our better-priced orders first.
  - the book moving through it (best ask <= our bid after a depth update): that displayed
    opposite size would have matched us on arrival, so we fill as maker at our own price
    (price improvement goes to the aggressor, as on the exchange), up to the available
    opposite size at prices through ours; that size is then marked consumed.
* Cancellations ahead: at each depth update, for each level holding our orders, with O the
  displayed size at the previous update, T the market volume traded at that price since,
  and N the new displayed size: if N < O - T the difference is cancellations, assumed
  spread uniformly over the queue, so every queue_ahead there is multiplied by
  N / (O - T). Increases join behind us and change nothing. (A trade whose message arrives
  after the depth update that already shows it is counted twice - once as a cancellation -
  which errs slightly in our favour.)
* Fees: maker/taker bps of the notional in the settlement currency, quantised to
  `fee_quantum` (1e-8), positive = paid (negative maker bps = rebate): price * qty in quote
  currency for a linear instrument; qty * contract_size / price in coin for an inverse one
  (`instruments`; COIN-M quantities are contracts, as in its book and trades). Fill prices are the level's (or our limit's) exact
  decimal; fill quantities are floored to the symbol's lot step (`lot_sizes`, default
  `qty_step`).
* Reports: NEW when an order becomes active and is accepted, then its fills; EXPIRED for
  the unfilled rest of an IOC or market order; CANCELLED when a cancel takes effect on a
  working order. A cancel that finds the order already finished (filled, expired, rejected)
  is a no-op: the gateway already has that outcome (counted in `stats["cancel_unknown"]`).
  FILLED/PARTIALLY_FILLED are never sent: they follow from the fills.
* Our own resting orders are not in the recorded book, so our takers never match them
  (no self-trades); `reduce_only` is not enforced here (the gateway owns positions).

Restart. This venue lives in the daemon's memory, so its orders die with the process
(`survives_restart = False`). Crash recovery (daemon/execution/reconcile.py) may hand it the
journal's resting orders again (`restore`: limit GTC/post-only, NEW or PARTIALLY_FILLED, for
their remaining quantity qty - filled_qty). Queue position re-estimation: a restored order
is not placed at once but at the first depth update after the restore that leaves its
book valid, and then at the BACK of the displayed queue at its price (queue_ahead = the
displayed size there at that moment, as for a new order; 0 on an empty level). What traded
and what was cancelled at that price while we were down is unknown, so the estimate can
only err against us: a real order that kept its place would be nearer the front. If at
that moment the opposite side shows size at or through its price (the market moved
through it during the downtime), the order is CANCELLED with that reason, not filled:
whether and how much it would have filled while we were down is unknown, and a paper fill
must not be invented. Until it is placed, a restored order is working (listed, cancellable,
counted in `query_orders`) but cannot fill.

Queries. `query_orders` answers from the venue's memory of this process: every order it
saw (working, or among the last `history` finished ones) with its status, filled
quantity and fills. After a restart that memory is empty except for restored orders.

Cost. With nothing resting, `on_trade`/`on_depth` are a few attribute reads. With resting
orders, the work is proportional to the number of our orders and only touches the book
levels where we have orders.
"""
from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Generic, TypeVar

from daemon.execution.orders import (Fill, Instrument, Liquidity, Order, OrderStatus, OrderType,
                                     Side, TimeInForce, to_decimal)
from daemon.execution.venue import VenueListener, VenueOrderState
from daemon.market.book import OrderBook
from daemon.market.events import Trade
from daemon.market.sanity import trade_values_problem
from daemon.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
# Module-level: bad prints are rare, and one rate limit for all venues is plenty.
_TRADE_WARN = RateLimitedLog(log)

_NEVER = 1 << 62
_INF = float("inf")
_ZERO = Decimal(0)
_BPS = Decimal(10_000)
# A float quantity within a millionth of a lot step below a whole step is float noise
# (e.g. 0.3 - 0.1 = 0.19999999999999998), not a smaller quantity.
_STEP_TOLERANCE = Decimal("0.000001")

E = TypeVar("E")


class MarketDataDelay(Generic[E]):
    """FIFO delay line for market data: what arrives at ts is released at ts + latency.

    Jitter (uniform in [0, jitter_ns], from `random.Random(seed)`) never reorders the
    stream: a release time is at least the previous one, as on one TCP connection.
    `next_ns` is the release time of the oldest item (a huge number when empty) so a caller
    can test "anything due?" with one comparison.
    """

    __slots__ = ("latency_ns", "jitter_ns", "_rng", "_q", "_last", "next_ns")

    def __init__(self, latency_ns: int, *, jitter_ns: int = 0, seed: int | str = 0) -> None:
        if latency_ns < 0 or jitter_ns < 0:
            raise ValueError("latency and jitter must be >= 0")
        self.latency_ns = int(latency_ns)
        self.jitter_ns = int(jitter_ns)
        self._rng = random.Random(seed)
        self._q: deque[tuple[int, E]] = deque()
        self._last = -_NEVER
        self.next_ns = _NEVER

    def push(self, ts_ns: int, item: E) -> int:
        """Queue an item that arrived at ts_ns; returns its release time."""
        rel = ts_ns + self.latency_ns
        if self.jitter_ns:
            rel += self._rng.randint(0, self.jitter_ns)
        if rel < self._last:
            rel = self._last
        self._last = rel
        if not self._q:
            self.next_ns = rel
        self._q.append((rel, item))
        return rel

    def pop_due(self, now_ns: int) -> list[tuple[int, E]]:
        """Every (release_ns, item) with release_ns <= now_ns, oldest first."""
        if self.next_ns > now_ns:
            return []
        q = self._q
        out = []
        while q and q[0][0] <= now_ns:
            out.append(q.popleft())
        self.next_ns = q[0][0] if q else _NEVER
        return out

    def pop(self) -> tuple[int, E]:
        """The oldest item regardless of time (draining at the end of a replay)."""
        item = self._q.popleft()
        self.next_ns = self._q[0][0] if self._q else _NEVER
        return item

    def __len__(self) -> int:
        return len(self._q)


class _Working:
    """One order as the venue's matching engine holds it (never the gateway's object)."""

    __slots__ = ("client_id", "symbol", "side", "is_buy", "type", "tif", "price", "price_f",
                 "remaining", "step", "ahead", "level")

    def __init__(self, order: Order, step: Decimal) -> None:
        self.client_id = order.client_id
        self.symbol = order.symbol
        self.side = order.side
        self.is_buy = order.side is Side.BUY
        self.type = order.type
        self.tif = order.tif
        self.price = order.price
        self.price_f = float(order.price) if order.price is not None else 0.0
        self.remaining = order.qty
        self.step = step
        self.ahead = 0.0
        self.level: _Level | None = None


class _Level:
    """Our resting orders at one price of one side, in time priority, plus what the book
    showed there at the last depth update and what traded there since."""

    __slots__ = ("price", "is_bid", "orders", "displayed", "traded")

    def __init__(self, price: float, is_bid: bool, displayed: float) -> None:
        self.price = price
        self.is_bid = is_bid
        self.orders: list[_Working] = []
        self.displayed = displayed
        self.traded = 0.0


class _Market:
    """Venue state for one symbol: its book and our levels on each side."""

    __slots__ = ("symbol", "book", "bids", "asks", "top_bid", "top_ask", "consumed",
                 "n_resting")

    def __init__(self, book: OrderBook) -> None:
        self.symbol = book.symbol
        self.book = book
        self.bids: dict[float, _Level] = {}
        self.asks: dict[float, _Level] = {}
        self.top_bid = -float("inf")   # our highest resting bid
        self.top_ask = float("inf")    # our lowest resting ask
        # (level is a bid, price) -> [qty we took there, displayed qty when last seen]
        self.consumed: dict[tuple[bool, float], list[float]] = {}
        self.n_resting = 0


_SUBMIT, _CANCEL, _CANCEL_ALL = 0, 1, 2


class _Unbound:
    """Stands in for the listener until `bind`: any report before that is a bug."""

    def on_order_status(self, client_id: str, status: OrderStatus, reason: str | None,
                        ts_ns: int) -> None:
        raise RuntimeError("PaperVenue has no listener: call bind() first")

    def on_fill(self, fill: Fill) -> None:
        raise RuntimeError("PaperVenue has no listener: call bind() first")


_UNBOUND = _Unbound()


class _Known:
    """The venue's memory of one order, for `query_orders`."""

    __slots__ = ("status", "filled", "fills", "reason", "ts_ns")

    def __init__(self, status: OrderStatus, filled: Decimal, ts_ns: int) -> None:
        self.status = status
        self.filled = filled
        self.fills: list[Fill] = []
        self.reason: str | None = None
        self.ts_ns = ts_ns


_RESTORABLE_TIF = frozenset({TimeInForce.GTC, TimeInForce.POST_ONLY})
_RESTORABLE_STATUS = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
RESTORE_CROSSED = ("restart: the market moved through its price while the daemon was down; "
                   "what it would have filled is unknown, so it is cancelled, not filled")


class PaperVenue:
    """Simulated exchange. See the module docstring for the full model."""

    survives_restart = False   # lives in our memory: see "Restart" in the module docstring

    def __init__(self, *, name: str = "paper", maker_fee_bps: float | Decimal = 1.0,
                 taker_fee_bps: float | Decimal = 1.0, entry_latency_ns: int = 5_000_000,
                 md_latency_ns: int = 2_000_000, jitter_ns: int = 0, seed: int = 1,
                 qty_step: Decimal = Decimal("0.00000001"),
                 lot_sizes: dict[str, Decimal] | None = None,
                 fee_quantum: Decimal = Decimal("0.00000001"), history: int = 10_000,
                 instruments: Mapping[str, Instrument] | None = None) -> None:
        """`instruments` (id -> Instrument): how each symbol settles (inverse fees are coin)
        and its lot step when `lot_sizes` does not name it; a symbol in neither is linear
        with lot step `qty_step`."""
        if entry_latency_ns < 0 or md_latency_ns < 0 or jitter_ns < 0:
            raise ValueError("latencies and jitter must be >= 0")
        if history < 1:
            raise ValueError("history must be >= 1")
        self.name = name
        self.maker_fee_bps = to_decimal(maker_fee_bps)
        self.taker_fee_bps = to_decimal(taker_fee_bps)
        self.entry_latency_ns = int(entry_latency_ns)
        self.jitter_ns = int(jitter_ns)
        self.qty_step = qty_step
        insts = dict(instruments or {})
        self.lot_sizes = {**{s: i.lot_size for s, i in insts.items()}, **(lot_sizes or {})}
        # Inverse symbols -> USD per contract: their fees are bps of qty * cs / price coin.
        self._contract: dict[str, Decimal] = {s: i.contract_size for s, i in insts.items()
                                              if i.inverse}
        self.fee_quantum = fee_quantum
        # Separate streams so adding market-data jitter never changes order-entry draws.
        self._rng = random.Random(f"{seed}/entry")
        self.md = MarketDataDelay[str](md_latency_ns, jitter_ns=jitter_ns, seed=f"{seed}/md")
        self._listener: VenueListener = _UNBOUND
        self._markets: dict[str, _Market] = {}
        self._working: dict[str, _Working] = {}
        self._pending: deque[tuple[int, int, object]] = deque()
        # Venue time at which the oldest queued request takes effect (_NEVER when none);
        # public so the pipeline can skip advance() cheaply. Read-only outside this class.
        self.next_due_ns = _NEVER
        self._last_eff = -_NEVER
        self._now = 0
        self._n_resting = 0
        self._fill_seq = 0
        self._fill_prefix = f"{name}-"
        # Every order seen, oldest first; finished ones beyond `history` are forgotten.
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._history = history
        # Restored orders waiting for their book's next valid depth update, per symbol.
        self._restoring: dict[str, list[_Working]] = {}
        self.stats: dict[str, int] = dict.fromkeys(
            ("submitted", "accepted", "rejected", "fills", "maker_fills", "taker_fills",
             "cancelled", "expired", "cancel_unknown", "restored", "restore_cancelled"), 0)

    # -- Venue protocol ------------------------------------------------------------------
    def bind(self, listener: VenueListener, session: str = "") -> None:
        """`session`: a token unique to this run (the gateway's), put into every fill id so
        fill ids never repeat across restarts on the same journal."""
        self._listener = listener
        self._fill_prefix = f"{self.name}-{session}-" if session else f"{self.name}-"

    def submit(self, order: Order) -> None:
        """Queue a new order; it takes effect after the entry latency."""
        self._require_listener()
        step = self.lot_sizes.get(order.symbol, self.qty_step)
        self.stats["submitted"] += 1
        self._enqueue(_SUBMIT, _Working(order, step))

    def cancel(self, client_id: str) -> None:
        """Queue a cancel; it takes effect after the entry latency."""
        self._require_listener()
        self._enqueue(_CANCEL, client_id)

    def cancel_all(self, symbol: str | None = None) -> None:
        """Queue one request cancelling every order working when it takes effect."""
        self._require_listener()
        self._enqueue(_CANCEL_ALL, symbol)

    def query_orders(self, client_ids: Iterable[str]) -> dict[str, VenueOrderState | None]:
        """What this venue remembers of each order (None: never seen, or forgotten)."""
        out: dict[str, VenueOrderState | None] = {}
        for cid in client_ids:
            k = self._known.get(cid)
            out[cid] = None if k is None else VenueOrderState(
                cid, k.status, k.filled, tuple(k.fills), k.reason, k.ts_ns)
        return out

    def restore(self, orders: list[Order]) -> None:
        """Rebuild resting orders after a restart (see "Restart" in the module docstring).
        All or nothing: an order that is not a resting limit order raises ValueError and
        none is restored."""
        self._require_listener()
        seen: set[str] = set()
        for o in orders:
            problem = self._unrestorable(o, seen)
            if problem is not None:
                raise ValueError(f"cannot restore {o.client_id}: {problem}")
            seen.add(o.client_id)
        for o in orders:
            w = _Working(o, self.lot_sizes.get(o.symbol, self.qty_step))
            w.remaining = o.qty - o.filled_qty
            self._working[o.client_id] = w
            self._restoring.setdefault(o.symbol, []).append(w)
            self._remember(o.client_id, o.status, self._now).filled = o.filled_qty
            self.stats["restored"] += 1

    def _unrestorable(self, o: Order, seen: set[str]) -> str | None:
        if o.type is not OrderType.LIMIT or o.tif not in _RESTORABLE_TIF:
            return f"not a resting order ({o.type} {o.tif})"
        if o.status not in _RESTORABLE_STATUS:
            return f"status {o.status} is not resting"
        if o.price is None or o.price <= 0:
            return "limit order needs a positive price"
        if o.qty - o.filled_qty <= 0:
            return f"nothing left to fill ({o.filled_qty} of {o.qty} filled)"
        if o.client_id in self._working or o.client_id in seen:
            return "already working at this venue"
        return None

    def _place_restored(self, m: _Market, ws: list[_Working], ts: int) -> None:
        """Place restored orders on the now valid book: at the back of the displayed queue,
        or cancelled when the book already shows the other side at or through their price."""
        book = m.book
        for w in ws:
            best = book.best_ask() if w.is_buy else book.best_bid()
            if best is not None and (best[0] <= w.price_f if w.is_buy else best[0] >= w.price_f):
                self._working.pop(w.client_id, None)
                self.stats["restore_cancelled"] += 1
                self._note(w.client_id, OrderStatus.CANCELLED, RESTORE_CROSSED, ts)
                self._listener.on_order_status(w.client_id, OrderStatus.CANCELLED,
                                               RESTORE_CROSSED, ts)
                continue
            self._rest(m, w)

    def _remember(self, cid: str, status: OrderStatus, ts: int) -> _Known:
        k = self._known[cid] = _Known(status, _ZERO, ts)
        if len(self._known) > self._history:
            for old, ko in self._known.items():   # the oldest finished one goes
                if ko.status.is_terminal:
                    del self._known[old]
                    break
        return k

    def _note(self, cid: str, status: OrderStatus, reason: str | None, ts: int) -> None:
        k = self._known.get(cid)
        if k is None:
            k = self._remember(cid, status, ts)
        k.status, k.ts_ns = status, ts
        if reason is not None:
            k.reason = reason

    # -- market data ---------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        """Venue time: the latest market time seen (0 before any event)."""
        return self._now

    def advance(self, ts_ns: int) -> None:
        """Move venue time to ts_ns, applying every request due by then."""
        if ts_ns >= self.next_due_ns:
            self._run_due(ts_ns)
        if ts_ns > self._now:
            self._now = ts_ns

    def on_depth(self, book: OrderBook, ts_ns: int) -> None:
        """The pipeline applied a diff or snapshot to `book` (the real reconstructed book)."""
        if ts_ns >= self.next_due_ns:
            self._run_due(ts_ns)
        if ts_ns > self._now:
            self._now = ts_ns
        m = self._markets.get(book.symbol)
        if m is None:
            m = self._markets[book.symbol] = _Market(book)
        elif m.book is not book:
            m.book = book
        if self._restoring and book.valid:
            ws = self._restoring.pop(book.symbol, None)
            if ws:
                self._place_restored(m, ws, ts_ns)
        if (m.n_resting or m.consumed) and book.valid:
            self._depth_update(m, ts_ns)

    def on_trade(self, trade: Trade) -> None:
        """A market trade printed; it may fill our resting orders (queue model).

        A trade whose price or quantity is not finite and positive (the sanity stage's
        value checks) is no trade: it is counted in ``stats["trades_rejected"]`` and moves
        nothing, not even venue time."""
        if not (0.0 < trade.price < _INF and 0.0 < trade.qty < _INF):
            self._reject_trade(trade)
            return
        ts = trade.ts_ns
        if ts >= self.next_due_ns:
            self._run_due(ts)
        if ts > self._now:
            self._now = ts
        if not self._n_resting:
            return
        m = self._markets.get(trade.symbol)
        if m is None or not m.n_resting:
            return
        p = trade.price
        if trade.buyer_is_maker:          # aggressor sold: hits bids at >= p
            if p <= m.top_bid:
                self._trade_hits(m, m.bids, True, p, trade.qty, ts)
        elif p >= m.top_ask:              # aggressor bought: lifts asks at <= p
            self._trade_hits(m, m.asks, False, p, trade.qty, ts)

    def _reject_trade(self, trade: Trade) -> None:
        self.stats["trades_rejected"] = self.stats.get("trades_rejected", 0) + 1
        _TRADE_WARN("trade_rejected", self.stats["trades_rejected"],
                    f"{trade.symbol} trade id={trade.trade_id!r} price={trade.price!r} "
                    f"qty={trade.qty!r}: {trade_values_problem(trade.price, trade.qty)}")

    def md_release(self, ts_ns: int, symbol: str) -> list[tuple[int, str]]:
        """Note that `symbol`'s book changed at ts_ns; return the (due_ns, symbol)
        notifications the strategy may act on now (market-data latency)."""
        md = self.md
        md.push(ts_ns, symbol)
        if md.next_ns > ts_ns:
            return []
        return md.pop_due(ts_ns)

    # -- introspection (tests, status) ---------------------------------------------------
    def open_orders(self, symbol: str | None = None) -> list[str]:
        """Client ids of orders working at the venue (resting), in arrival order."""
        return [cid for cid, w in self._working.items()
                if symbol is None or w.symbol == symbol]

    def queue_ahead(self, client_id: str) -> float | None:
        """Modelled quantity ahead of a resting order at its price, or None (not working,
        or restored and not placed yet)."""
        w = self._working.get(client_id)
        return None if w is None or w.level is None else w.ahead

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    # -- request queue -------------------------------------------------------------------
    def _require_listener(self) -> None:
        if self._listener is _UNBOUND:
            raise RuntimeError("PaperVenue.bind(listener) must be called before orders")

    def _enqueue(self, kind: int, payload: object) -> None:
        eff = self._now + self.entry_latency_ns
        if self.jitter_ns:
            eff += self._rng.randint(0, self.jitter_ns)
        if eff < self._last_eff:
            eff = self._last_eff          # requests never overtake each other
        self._last_eff = eff
        if not self._pending:
            self.next_due_ns = eff
        self._pending.append((eff, kind, payload))

    def _run_due(self, ts: int) -> None:
        pending = self._pending
        # Listeners may submit/cancel while we run; those land at the back with later
        # effective times (or the same, with zero latency) and are picked up by this loop.
        while pending and pending[0][0] <= ts:
            eff, kind, payload = pending.popleft()
            if eff > self._now:
                self._now = eff
            if kind == _SUBMIT:
                self._activate(payload, eff)  # type: ignore[arg-type]
            elif kind == _CANCEL:
                self._cancel_now(payload, eff)  # type: ignore[arg-type]
            else:
                for cid in [c for c, w in self._working.items()
                            if payload is None or w.symbol == payload]:
                    self._cancel_now(cid, eff)
        self.next_due_ns = pending[0][0] if pending else _NEVER

    # -- order activation ----------------------------------------------------------------
    def _activate(self, w: _Working, ts: int) -> None:
        m = self._markets.get(w.symbol)
        reason = None
        if m is None or not m.book.valid:
            reason = f"no synchronised order book for {w.symbol}"
        elif w.remaining <= 0:
            reason = f"quantity must be positive, got {w.remaining}"
        elif w.type is OrderType.LIMIT and (w.price is None or w.price <= 0):
            reason = "limit order needs a positive price"
        elif w.type is OrderType.MARKET and w.tif is TimeInForce.POST_ONLY:
            reason = "a market order cannot be post-only"
        elif w.client_id in self._working:
            reason = f"duplicate client id {w.client_id}"
        elif w.tif is TimeInForce.POST_ONLY and self._would_take(m, w):
            reason = "post-only order would take liquidity"
        if reason is not None:
            self.stats["rejected"] += 1
            if w.client_id not in self._working:   # a duplicate must not overwrite the original
                self._note(w.client_id, OrderStatus.REJECTED, reason, ts)
            self._listener.on_order_status(w.client_id, OrderStatus.REJECTED, reason, ts)
            return
        self.stats["accepted"] += 1
        self._remember(w.client_id, OrderStatus.NEW, ts)
        self._listener.on_order_status(w.client_id, OrderStatus.NEW, None, ts)
        if w.tif is TimeInForce.POST_ONLY:
            self._rest(m, w)
            return
        limit = None if w.type is OrderType.MARKET else w.price_f
        self._take(m, w, limit, ts)
        if w.remaining <= 0:
            return
        if w.type is OrderType.MARKET or w.tif is TimeInForce.IOC:
            self.stats["expired"] += 1
            why = ("market order found no more liquidity" if w.type is OrderType.MARKET
                   else "IOC remainder not immediately fillable")
            self._note(w.client_id, OrderStatus.EXPIRED, why, ts)
            self._listener.on_order_status(w.client_id, OrderStatus.EXPIRED, why, ts)
            return
        self._rest(m, w)

    def _opposite_levels(self, m: _Market, is_buy: bool, limit: float | None
                         ) -> Iterable[float]:
        """Prices of the opposite side from the best, up to `limit` (None: all)."""
        if is_buy:
            return m.book.asks.irange(maximum=limit)
        return m.book.bids.irange(minimum=limit, reverse=True)

    def _available(self, m: _Market, level_is_bid: bool, price: float, displayed: float
                   ) -> float:
        c = m.consumed.get((level_is_bid, price))
        return displayed - c[0] if c is not None else displayed

    def _would_take(self, m: _Market, w: _Working) -> bool:
        side = m.book.bids if not w.is_buy else m.book.asks
        for price in self._opposite_levels(m, w.is_buy, w.price_f):
            if self._available(m, not w.is_buy, price, side[price]) > 0.0:
                return True
        return False

    def _take(self, m: _Market, w: _Working, limit: float | None, ts: int) -> None:
        """Walk the opposite side of the book as a taker."""
        level_is_bid = not w.is_buy
        side = m.book.bids if level_is_bid else m.book.asks
        # Lazy walk: the book cannot change under us (only the pipeline mutates it, and
        # listeners reached from _fill can only queue requests).
        for price in self._opposite_levels(m, w.is_buy, limit):
            displayed = side[price]
            avail = self._available(m, level_is_bid, price, displayed)
            qty = self._fillable(w, avail)
            if qty <= 0:
                continue
            self._consume(m, level_is_bid, price, float(qty), displayed)
            self._fill(w, to_decimal(price), qty, Liquidity.TAKER, ts)
            if w.remaining <= 0:
                return

    def _consume(self, m: _Market, level_is_bid: bool, price: float, qty: float,
                 displayed: float) -> None:
        c = m.consumed.get((level_is_bid, price))
        if c is None:
            m.consumed[(level_is_bid, price)] = [qty, displayed]
        else:
            c[0] += qty
            c[1] = displayed

    def _rest(self, m: _Market, w: _Working) -> None:
        levels = m.bids if w.is_buy else m.asks
        lvl = levels.get(w.price_f)
        if lvl is None:
            shown = m.book.qty_at(w.is_buy, w.price_f)
            lvl = levels[w.price_f] = _Level(w.price_f, w.is_buy, shown)
            w.ahead = shown
        else:
            # Everything displayed now is ahead of us, less what already traded since the
            # last depth update (the book does not show those trades yet).
            ahead = lvl.displayed - lvl.traded
            w.ahead = ahead if ahead > 0.0 else 0.0
        lvl.orders.append(w)
        w.level = lvl
        self._working[w.client_id] = w
        m.n_resting += 1
        self._n_resting += 1
        if w.is_buy:
            if w.price_f > m.top_bid:
                m.top_bid = w.price_f
        elif w.price_f < m.top_ask:
            m.top_ask = w.price_f

    # -- fills ---------------------------------------------------------------------------
    def _fillable(self, w: _Working, avail: float) -> Decimal:
        """min(remaining, avail floored to the lot step), as a Decimal."""
        if avail <= 0.0:
            return _ZERO
        step = w.step
        steps = (Decimal(repr(avail)) / step + _STEP_TOLERANCE).to_integral_value(ROUND_FLOOR)
        qty = steps * step
        return qty if qty < w.remaining else w.remaining

    def _fill(self, w: _Working, price: Decimal, qty: Decimal, liq: Liquidity, ts: int) -> None:
        maker = liq is Liquidity.MAKER
        bps = self.maker_fee_bps if maker else self.taker_fee_bps
        cs = self._contract.get(w.symbol) if self._contract else None
        notional = price * qty if cs is None else qty * cs / price
        fee = (notional * bps / _BPS).quantize(self.fee_quantum, rounding=ROUND_HALF_EVEN)
        w.remaining -= qty
        if w.remaining <= 0:
            self._retire(w)
        self._fill_seq += 1
        self.stats["fills"] += 1
        self.stats["maker_fills" if maker else "taker_fills"] += 1
        fill = Fill(f"{self._fill_prefix}{self._fill_seq}", w.client_id, w.symbol, w.side,
                    price, qty, fee, liq, ts)
        k = self._known.get(w.client_id)
        if k is not None:
            k.filled += qty
            k.fills.append(fill)
            k.status = OrderStatus.FILLED if w.remaining <= 0 else OrderStatus.PARTIALLY_FILLED
            k.ts_ns = ts
        self._listener.on_fill(fill)

    def _retire(self, w: _Working) -> None:
        """Take a finished or cancelled order off its level and out of the book of work."""
        self._working.pop(w.client_id, None)
        lvl = w.level
        if lvl is None:
            waiting = self._restoring.get(w.symbol) if self._restoring else None
            if waiting and w in waiting:   # restored, not placed yet
                waiting.remove(w)
            return
        w.level = None
        lvl.orders.remove(w)
        m = self._markets[w.symbol]
        m.n_resting -= 1
        self._n_resting -= 1
        if lvl.orders:
            return
        if lvl.is_bid:
            del m.bids[lvl.price]
            m.top_bid = max(m.bids) if m.bids else -float("inf")
        else:
            del m.asks[lvl.price]
            m.top_ask = min(m.asks) if m.asks else float("inf")

    def _trade_hits(self, m: _Market, levels: dict[float, _Level], is_bid: bool, p: float,
                    q: float, ts: int) -> None:
        """A print at p of size q by an aggressor on the other side of `levels`."""
        if len(levels) == 1:   # (usually one level of ours per side: nothing to sort)
            k = next(iter(levels))
            prices = [k] if (k >= p if is_bid else k <= p) else []
        elif is_bid:
            prices = sorted((k for k in levels if k >= p), reverse=True)
        else:
            prices = sorted(k for k in levels if k <= p)
        left = q
        for k in prices:
            lvl = levels.get(k)
            if lvl is None:
                continue
            orders = list(lvl.orders)
            if k != p:
                # Printed through our price: the level was swept, nobody is ahead of us and
                # this print's size would have reached us first.
                for w in orders:
                    w.ahead = 0.0
                for w in orders:
                    if left <= 0.0:
                        break
                    qty = self._fillable(w, left)
                    if qty > 0:
                        left -= float(qty)
                        self._fill(w, w.price, qty, Liquidity.MAKER, ts)
                continue
            lvl.traded += q
            # Queue at our price: market size ahead of each order is consumed first; our
            # orders keep time priority among themselves; `eaten` is market size consumed
            # so far, which every later order's queue_ahead also contains.
            eaten = 0.0
            for w in orders:
                if left <= 0.0:
                    ahead = w.ahead - eaten
                    w.ahead = ahead if ahead > 0.0 else 0.0
                    continue
                gap = w.ahead - eaten
                if gap > 0.0:
                    if left <= gap:
                        eaten += left
                        left = 0.0
                        w.ahead -= eaten
                        continue
                    left -= gap
                    eaten += gap
                w.ahead = 0.0
                qty = self._fillable(w, left)
                if qty > 0:
                    left -= float(qty)
                    self._fill(w, w.price, qty, Liquidity.MAKER, ts)

    # -- depth updates -------------------------------------------------------------------
    def _depth_update(self, m: _Market, ts: int) -> None:
        book = m.book
        if m.consumed:
            self._erode_consumed(m)
        # Each side of ours against the same side of the book (book.qty_at(is_bid, price)
        # is that side's .get(price, 0.0); read here without a call per level).
        for levels, shown in ((m.bids, book.bids), (m.asks, book.asks)):
            for lvl in levels.values():
                now = shown.get(lvl.price, 0.0)
                after_trades = lvl.displayed - lvl.traded
                if now < after_trades:
                    # Cancellations, spread uniformly over the queue (pro rata).
                    f = now / after_trades
                    for w in lvl.orders:
                        w.ahead *= f
                lvl.displayed = now
                lvl.traded = 0.0
        if m.bids:
            best = book.best_ask()
            if best is not None and best[0] <= m.top_bid:
                self._book_crossed(m, True, ts)
        if m.asks:
            best = book.best_bid()
            if best is not None and best[0] >= m.top_ask:
                self._book_crossed(m, False, ts)

    def _erode_consumed(self, m: _Market) -> None:
        book = m.book
        consumed = m.consumed
        for key in list(consumed):
            c = consumed[key]
            now = book.qty_at(key[0], key[1])
            if now <= 0.0:
                del consumed[key]
                continue
            if now < c[1]:
                c[0] -= c[1] - now
                if c[0] <= 0.0:
                    del consumed[key]
                    continue
            c[1] = now

    def _book_crossed(self, m: _Market, our_bids: bool, ts: int) -> None:
        """The opposite side now shows size at or through our resting prices: it would
        have matched us on arrival. Fill as maker at our price, best-priced orders first."""
        levels = m.bids if our_bids else m.asks
        opp_is_bid = not our_bids
        opp = m.book.bids if opp_is_bid else m.book.asks
        for k in sorted(levels, reverse=our_bids):
            lvl = levels.get(k)
            if lvl is None:
                continue
            # Opposite prices from its best, through our price k.
            prices = (opp.irange(maximum=k) if our_bids
                      else opp.irange(minimum=k, reverse=True))
            avail = []
            for price in prices:
                displayed = opp[price]
                a = self._available(m, opp_is_bid, price, displayed)
                if a > 0.0:
                    avail.append([price, a, displayed])
            if not avail:
                break            # worse-priced levels of ours cannot cross either
            for w in list(lvl.orders):
                w.ahead = 0.0
                for slot in avail:
                    if slot[1] <= 0.0:
                        continue
                    qty = self._fillable(w, slot[1])
                    if qty <= 0:
                        continue
                    slot[1] -= float(qty)
                    self._consume(m, opp_is_bid, slot[0], float(qty), slot[2])
                    self._fill(w, w.price, qty, Liquidity.MAKER, ts)
                    if w.remaining <= 0:
                        break

    # -- cancels -------------------------------------------------------------------------
    def _cancel_now(self, client_id: str, ts: int) -> None:
        w = self._working.get(client_id)
        if w is None:
            self.stats["cancel_unknown"] += 1
            return
        self._retire(w)
        self.stats["cancelled"] += 1
        self._note(client_id, OrderStatus.CANCELLED, None, ts)
        self._listener.on_order_status(client_id, OrderStatus.CANCELLED, None, ts)
