"""The market-data sanity stage: what a decoded event must satisfy before it reaches the
order book, the paper venue, the bars or the strategy.

The pipeline is reader → decoder → **sanity** → book → venue/bars/strategy. The decoder
only checks the message format; this stage checks meaning, per configured symbol
(`SymbolGuard`), and rejects what cannot be real:

* values: every price finite, at least one tick and at most ``tick × max_price_ticks``;
  every quantity finite, positive (0 only as a depth-level removal) and at most
  ``lot × max_qty_lots``. NaN, inf, 0, negative and 1e300 never reach the book or the venue.
* update ids: integers, ``U <= u``, and a diff's ``u`` within ``max_update_id_jump`` of the
  symbol's previous diff. A jump is held as a candidate and accepted (a new id base) only
  when the next diff continues from it, so one absurd id is skipped while a real jump (a
  reconnect after an outage) costs one diff, which the book then sees as a gap and resyncs.
* REST snapshots: a snapshot line names no symbol, so one is credited to a symbol only when
  its ``lastUpdateId`` is within ``max_update_id_jump`` of that symbol's own diffs; one that
  arrives before any diff of the symbol is held until the first diff and checked then. A
  symbol that never receives its own diffs therefore never gets a book.
* times: a trade's exchange time within ``max_clock_skew_s`` of its receive time. (The
  capture reader already refuses implausible receive times, see `CaptureReader`.)
* trades: also within ``trade_band_bps`` of the book's last *confirmed* mid (a bookTicker
  agreement or a bridged snapshot), so a print at 1.00 in a 60,000 market fills nothing.
* symbols and markets: events for symbols that are not configured are counted per symbol,
  never silently dropped; a depth diff from the other market (USD-M diffs carry "pu", spot
  diffs do not) is rejected, so a futures capture never builds a spot book.

Every rejection is counted by reason in `Sanity.rejects` (``bot4ctl status`` shows them
under market.sanity), the last one per symbol is kept with its detail, and a rate-limited
warning is logged. The book-level half of the stage (a diff that moves the best price too
far in one step or empties a side makes the book *suspect* until confirmed) lives in
`OrderBook`, because it needs the top of book before and after each diff;
`book_guard_options` turns the [sanity] config into its arguments.

`SymbolGuard.reference` is the price the risk band is measured against: the mid of the
last state the exchange confirmed (bookTicker agreement or bridged snapshot), or else the
median of recent accepted trades, never the raw book mid, and None while the book is not
trusted. A single bad diff cannot move it.

This module never modifies an event, never raises on event content (a field of the wrong
type is a rejection), and never touches the network, files or orders.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from statistics import median
from typing import TYPE_CHECKING, Any

from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from daemon.config import Config, SanityCfg
    from daemon.market.book import OrderBook

log = logging.getLogger(__name__)

REASONS = (
    "unconfigured_symbol",    # event for a symbol that is not in [market] symbols
    "bad_field",              # an id, time or flag of the wrong type
    "price_not_finite", "price_not_positive", "price_out_of_bounds",
    "qty_not_finite", "qty_not_positive", "qty_out_of_bounds",
    "wrong_market",           # a futures diff (with "pu") for a spot config, or vice versa
    "update_id_order",        # U > u, or an id <= 0
    "update_id_jump",         # diff u too far from the symbol's previous diff
    "snapshot_inconsistent",  # snapshot lastUpdateId too far from the symbol's diffs
    "time_skew",              # exchange time too far from the receive time
    "trade_out_of_band",      # trade too far from the confirmed reference price
)
_MAX_UNCONFIGURED_SHOWN = 20


def value_problem(x: float, *, lo: float, hi: float, what: str, zero_ok: bool = False
                  ) -> str | None:
    """Why a price/quantity is unusable (a REASONS name), or None. Slow path only."""
    if not isinstance(x, float) and not isinstance(x, int) or isinstance(x, bool):
        return "bad_field"
    if not math.isfinite(x):
        return f"{what}_not_finite"
    if x < 0 or (x == 0 and not zero_ok):
        return f"{what}_not_positive"
    if x == 0:
        return None
    if x < lo or x > hi:
        return f"{what}_out_of_bounds"
    return None


def trade_values_problem(price: Any, qty: Any) -> str | None:
    """The checks any consumer of trades can make without instrument data: price and
    quantity finite and positive. Used by the paper venue on every trade it is handed."""
    if type(price) is float and type(qty) is float and 0.0 < price < math.inf \
            and 0.0 < qty < math.inf:
        return None
    return (value_problem(price, lo=0.0, hi=math.inf, what="price")
            or value_problem(qty, lo=0.0, hi=math.inf, what="qty") or "bad_field")


class Sanity:
    """Counters and per-symbol guards for every configured symbol."""

    def __init__(self, cfg: Config, books: dict[str, OrderBook]) -> None:
        sc = cfg.sanity
        self.cfg = sc
        self.rejects: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.unconfigured: dict[str, int] = {}
        self.last: dict[str, str] = {}            # symbol -> last rejection, with detail
        self.stats: dict[str, int] = dict.fromkeys(
            ("snapshots_held", "snapshots_released", "update_id_rebases"), 0)
        self._warn = RateLimitedLog(log)
        self.guards: dict[str, SymbolGuard] = {}
        for sym, book in books.items():
            inst = cfg.instruments[sym]
            self.guards[sym] = SymbolGuard(self, sym, book, float(inst.tick_size),
                                           float(inst.lot_size), sc,
                                           futures=book.futures)   # its own market's

    def reject(self, reason: str, symbol: str, detail: str) -> bool:
        """Count one rejection; always returns False (callers `return self.reject(...)`)."""
        n = self.rejects[reason] = self.rejects.get(reason, 0) + 1
        text = f"{reason}: {detail}"
        self.last[symbol] = text
        self._warn(reason, n, f"{symbol} {detail}")
        return False

    def unconfigured_event(self, ev: Any) -> None:
        sym = getattr(ev, "symbol", "?")
        self.rejects["unconfigured_symbol"] += 1
        if sym in self.unconfigured or len(self.unconfigured) < _MAX_UNCONFIGURED_SHOWN:
            self.unconfigured[sym] = self.unconfigured.get(sym, 0) + 1
        else:
            self.unconfigured["(others)"] = self.unconfigured.get("(others)", 0) + 1
        self._warn("unconfigured_symbol", self.rejects["unconfigured_symbol"],
                   f"{type(ev).__name__} for {sym}, which is not in [market] symbols "
                   f"{sorted(self.guards)}")

    def status(self) -> dict:
        out: dict[str, Any] = {"rejects": {k: v for k, v in self.rejects.items() if v}}
        if self.unconfigured:
            out["unconfigured"] = dict(self.unconfigured)
        if self.last:
            out["last"] = dict(self.last)
        st = {k: v for k, v in self.stats.items() if v}
        if st:
            out["stats"] = st
        held = [s for s, g in self.guards.items() if g.held is not None]
        if held:
            out["snapshots_waiting_for_diffs"] = held
        return out


class SymbolGuard:
    """The checks for one configured symbol. The runtime calls exactly one of
    `quote`/`trade`/`diff`/`snapshot` per event; True means "pass it on"."""

    __slots__ = ("sanity", "symbol", "book", "futures", "lo", "hi", "qhi", "jump", "skew_ns",
                 "band", "last_u", "cand_u", "held", "trades", "last_trade_ns",
                 "max_age_ns")

    def __init__(self, sanity: Sanity, symbol: str, book: OrderBook, tick: float, lot: float,
                 sc: SanityCfg, *, futures: bool = False) -> None:
        self.sanity = sanity
        self.symbol = symbol
        self.book = book
        self.futures = futures
        self.lo = tick
        self.hi = tick * sc.max_price_ticks
        self.qhi = lot * sc.max_qty_lots
        self.jump = int(sc.max_update_id_jump)
        self.skew_ns = int(sc.max_clock_skew_s * 1e9)
        self.band = sc.trade_band_bps / 1e4
        self.last_u: int | None = None     # highest accepted diff u
        self.cand_u: int | None = None     # a jumped-to u waiting for a diff that follows it
        self.held: DepthSnapshot | None = None
        self.trades: deque[float] = deque(maxlen=sc.reference_trades)
        self.last_trade_ns = 0
        self.max_age_ns = int(sc.reference_max_age_s * 1e9)

    # -- per event (hot path: the happy case is one chained comparison) -------------------
    def quote(self, q: Quote) -> bool:
        lo, hi, qhi = self.lo, self.hi, self.qhi
        if (lo <= q.bid <= hi and lo <= q.ask <= hi and 0.0 < q.bid_qty <= qhi
                and 0.0 < q.ask_qty <= qhi and type(q.update_id) is int):
            return True
        return self._bad_values("bookTicker", ((q.bid, "price", False), (q.ask, "price", False),
                                               (q.bid_qty, "qty", False),
                                               (q.ask_qty, "qty", False)),
                                f"u={q.update_id!r}")

    def trade(self, t: Trade) -> bool:
        p = t.price
        if not (self.lo <= p <= self.hi and 0.0 < t.qty <= self.qhi):
            return self._bad_values("trade", ((p, "price", False), (t.qty, "qty", False)),
                                    f"id={t.trade_id!r}")
        ms = t.exch_ms
        if type(ms) is not int or type(t.buyer_is_maker) is not bool:
            return self.sanity.reject("bad_field", self.symbol,
                                      f"trade id={t.trade_id!r} T={ms!r} m={t.buyer_is_maker!r}")
        skew = ms * 1_000_000 - t.ts_ns
        if skew > self.skew_ns or -skew > self.skew_ns:
            return self.sanity.reject(
                "time_skew", self.symbol, f"trade id={t.trade_id!r} exchange time {ms} ms is "
                f"{skew / 1e9:+.1f} s from its receive time")
        ref = self.book.confirmed_mid
        if ref is not None and abs(p - ref) > self.band * ref:
            return self.sanity.reject(
                "trade_out_of_band", self.symbol,
                f"trade id={t.trade_id!r} at {p} is more than {self.band * 1e4:g} bps from "
                f"the confirmed mid {ref}")
        self.trades.append(p)
        self.last_trade_ns = t.ts_ns
        return True

    def diff(self, d: DepthDiff) -> bool:
        lo, hi, qhi = self.lo, self.hi, self.qhi
        for p, q in d.bids:
            if not (lo <= p <= hi and 0.0 <= q <= qhi):
                return self._bad_level("bid", p, q, d)
        for p, q in d.asks:
            if not (lo <= p <= hi and 0.0 <= q <= qhi):
                return self._bad_level("ask", p, q, d)
        U, u, pu = d.first_id, d.last_id, d.prev_last_id
        if type(U) is not int or type(u) is not int or (pu is not None and type(pu) is not int):
            return self.sanity.reject("bad_field", self.symbol,
                                      f"depth ids U={U!r} u={u!r} pu={pu!r}")
        if (pu is None) is self.futures:
            return self.sanity.reject(
                "wrong_market", self.symbol,
                f"depth U={U} u={u} {'without' if pu is None else 'with'} pu: a "
                f"{'spot' if pu is None else 'futures'} message, but {self.symbol} is a "
                f"{'futures' if self.futures else 'spot'} instrument")
        if not 0 < U <= u:
            return self.sanity.reject("update_id_order", self.symbol,
                                      f"depth U={U} u={u}: needs 0 < U <= u")
        last = self.last_u
        if last is None:
            self.last_u = u
            return True
        if u - last > self.jump or last - u > self.jump:
            c = self.cand_u
            if c is not None and c < u and u - c <= self.jump:
                # Two diffs agree on the new id range: a real jump (reconnect), not noise.
                self.sanity.stats["update_id_rebases"] += 1
                log.warning("%s: depth update ids jumped from %d to %d and the stream "
                            "continued there; accepting the new range", self.symbol, last, u)
                self.cand_u = None
                self.last_u = u
                return True
            self.cand_u = u
            return self.sanity.reject(
                "update_id_jump", self.symbol,
                f"depth u={u} is {u - last:+d} from the previous u={last} "
                f"(max_update_id_jump {self.jump})")
        self.cand_u = None
        if u > last:
            self.last_u = u
        return True

    def snapshot(self, s: DepthSnapshot) -> bool:
        """True: feed it to the book now. False: rejected, or held until the first diff."""
        lid = s.last_update_id
        if type(lid) is not int:
            return self.sanity.reject("bad_field", self.symbol,
                                      f"snapshot lastUpdateId={lid!r}")
        if lid <= 0:
            return self.sanity.reject("update_id_order", self.symbol,
                                      f"snapshot lastUpdateId={lid}")
        lo, hi, qhi = self.lo, self.hi, self.qhi
        for side, levels in (("bid", s.bids), ("ask", s.asks)):
            for p, q in levels:
                if not (lo <= p <= hi and 0.0 <= q <= qhi):
                    return self._bad_level(f"snapshot {side}", p, q, s)
        if self.last_u is None and self.cand_u is None:
            # No diff of this symbol yet: nothing to check the (symbol-less) snapshot
            # against. Keep the newest one until a diff arrives.
            self.held = s
            self.sanity.stats["snapshots_held"] += 1
            return False
        return self._consistent(s, self.last_u, self.cand_u)

    def release_held(self, d: DepthDiff) -> DepthSnapshot | None:
        """Called with the first accepted diff while a snapshot is held: the snapshot if
        it is consistent with that diff (it goes to the book first), else None."""
        s, self.held = self.held, None
        if s is not None and self._consistent(s, d.last_id, None):
            self.sanity.stats["snapshots_released"] += 1
            return s
        return None

    # -- reference price -------------------------------------------------------------------
    def reference(self, now_ns: int) -> float | None:
        """The confirmed reference price, or None (book not trusted, or nothing recent)."""
        book = self.book
        if not book.valid:
            return None
        age = self.max_age_ns
        if book.confirmed_mid is not None and now_ns - book.confirmed_ns <= age:
            return book.confirmed_mid
        if self.trades and now_ns - self.last_trade_ns <= age:
            return float(median(self.trades))
        return None

    # -- slow paths --------------------------------------------------------------------------
    def _consistent(self, s: DepthSnapshot, last: int | None, cand: int | None) -> bool:
        lid = s.last_update_id
        for ref in (last, cand):
            if ref is not None and abs(lid - ref) <= self.jump:
                return True
        return self.sanity.reject(
            "snapshot_inconsistent", self.symbol,
            f"snapshot lastUpdateId={lid} is not within {self.jump} of this symbol's depth "
            f"updates (last u={last}): another symbol's or market's snapshot, or corrupt")

    def _bad_values(self, what: str, values: tuple, detail: str) -> bool:
        for x, kind, zero_ok in values:
            lo, hi = (self.lo, self.hi) if kind == "price" else (0.0, self.qhi)
            reason = value_problem(x, lo=lo, hi=hi, what=kind, zero_ok=zero_ok)
            if reason is not None:
                return self.sanity.reject(reason, self.symbol, f"{what} {detail}: {kind} {x!r}")
        return self.sanity.reject("bad_field", self.symbol, f"{what} {detail}")

    def _bad_level(self, side: str, p: Any, q: Any, ev: Any) -> bool:
        ident = (f"lastUpdateId={ev.last_update_id!r}" if isinstance(ev, DepthSnapshot)
                 else f"U={ev.first_id!r} u={ev.last_id!r}")
        reason = (value_problem(p, lo=self.lo, hi=self.hi, what="price")
                  or value_problem(q, lo=0.0, hi=self.qhi, what="qty", zero_ok=True)
                  or "bad_field")
        return self.sanity.reject(reason, self.symbol,
                                  f"depth {ident}: {side} level [{p!r}, {q!r}]")


def book_guard_options(sc: SanityCfg) -> dict[str, Any]:
    """OrderBook keyword arguments that switch on its trust checks (suspect books)."""
    return {"jump_bps": sc.book_jump_bps,
            "suspect_timeout_ns": int(sc.suspect_timeout_s * 1e9),
            "bridge_timeout_ns": int(sc.bridge_timeout_s * 1e9),
            "require_bridge": True}
