"""Local order book for one symbol, rebuilt from Binance diff-depth events plus REST snapshots.

Sync follows Binance's rules (see FIELD-NOTES "Market data"): diffs are buffered until a
snapshot arrives; diffs with ``u <= lastUpdateId`` are dropped; the first applied diff must
bridge the snapshot (``U <= lastUpdateId + 1 <= u``); afterwards every diff must follow the
previous one (spot: ``U == prev_u + 1``; futures: ``pu == prev_u``). Any break is a gap:
the book is cleared and marked invalid with a reason, ``needs_snapshot`` turns True, the
``on_needs_snapshot`` callback fires once, diffs are buffered again and the next snapshot
resyncs. A book that is crossed after an update is treated the same way.

Futures bridging: Binance's futures docs keep a diff whose ``u`` equals ``lastUpdateId``
(first diff ``U <= lastUpdateId <= u``). We drop it instead (it is wholly inside the
snapshot) and then also accept a first diff with ``pu == lastUpdateId``: futures ids are not
contiguous, so the field-note rule alone would report a false gap right after such a
snapshot. Both forms describe the same state.

``on_quote`` cross-checks the exchange's bookTicker against the rebuilt top of book (see
its docstring for when a quote is comparable).

Trust (switched on by ``jump_bps``; the market runtime does, from [sanity]). ``synced``
means the sync rules hold; ``valid`` means the book may be traded on and marked: synced,
the snapshot bridged by a diff of the book's own symbol (``require_bridge``: a snapshot
that no diff of this symbol ever continues, e.g. another market's, never makes the book
valid), and not *suspect*. A diff that moves the best bid or ask more than ``jump_bps``
from the previous top in one step, or leaves a side empty, makes the book suspect; so does
a comparable bookTicker that disagrees. A suspect book keeps applying diffs (so it can be
confirmed) but is not valid. It is confirmed by the next comparable bookTicker that agrees
with it, or by a new snapshot; a disagreeing bookTicker while suspect, or no confirmation
within ``suspect_timeout_ns`` of receive time, invalidates it (resync from a snapshot). A
snapshot whose lastUpdateId is ahead of the diff stream (diffs received
``bridge_timeout_ns`` after it are all still older) would freeze the book: it is
invalidated as ``snapshot_ahead``. ``confirmed_mid``/``confirmed_ns`` are the mid and
receive time of the last state the exchange confirmed (agreeing bookTicker, bridged
snapshot): a reference a single bad diff cannot move.

This module never fetches snapshots itself (the live feed does, when asked through
``needs_snapshot``/the callback), never reads files or sockets, and never offers prices
from a book that lost sync: invalidation clears both sides, so readers see None, not stale
data. (A suspect book keeps its levels so following events can confirm it, but it is not
``valid``: whoever trades or marks must check ``valid`` first, as the quoter, the paper
venue and `MarketRuntime.mark` do.)
Prices and quantities are floats (hot path), keyed exactly as parsed from the exchange's
decimal text.
"""
from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from heapq import nlargest, nsmallest
from typing import Any

from daemon.market.events import DepthDiff, DepthSnapshot, MarketEvent, Quote
from daemon.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

Level = tuple[float, float]
Top = tuple[float, float, float, float]   # bid, bid_qty, ask, ask_qty

# Dict methods taken unbound: BookSide overrides the mutators (so outside writers keep the
# best price right), and the book's own hot loop must reach the plain C versions.
_dict_set = dict.__setitem__
_dict_pop = dict.pop
_dict_clear = dict.clear
_dict_update = dict.update
_dict_keys = dict.keys
_INF = float("inf")
_INFS = (-_INF, _INF)
# The shortest top list a side keeps (twice the largest top(n) asked, if more): long enough
# that deletes at the best rarely force a rebuild and the paper venue's walks stay inside
# it, short enough that an insert moves at most ~1 KiB, not a whole side of thousands of
# levels (spot BTCUSDT, top(5) after every diff plus walks: 16 -> 0.26 s, 64 -> 0.20 s,
# 256 -> 0.21 s per 100k lines; the full list alone 0.27 s).
_TOP_MIN = 64


class BookSide(dict):
    """One side of the book: a plain dict price -> qty plus its best price, kept as it goes.

    Why not a sorted container: a real diff changes ~46 levels, most of them inserts and
    deletes deep in the book, and every insert/delete in a SortedDict is a Python-level list
    insort/remove. Here a level change is one C dict operation; the best price is updated
    by one compare, and recomputed (one C ``max``/``min`` over the keys) only when the best
    level itself is removed.

    Ordered reads (``levels``, iteration, ``keys()``/``values()``/``items()``, ``irange``,
    ``peekitem``) behave as SortedDict's did: keys ascending on both sides. They come from
    one of two sorted key lists, each kept only while someone reads it:

    * the *top*: the best few prices (at least ``2 n`` for the largest ``top(n)`` asked, at
      least `_TOP_MIN`), kept with C bisect/insort on a short list. It holds exactly the
      keys on the good side of its *edge* price (bids: ``p >= edge``, asks: ``p <= edge``;
      edge ∓inf: every key), so a diff level beyond the edge costs one compare. It serves
      ``top(n)`` (the per-diff read of the features and the executor) and any ``irange``/
      ``peekitem`` that stays inside the edge (the paper venue's walks from the best to an
      order's price). It is rebuilt (one pass over the keys) when deletes leave it shorter
      than a read needs, trimmed back when inserts make it long.
    * the *full* list of every key, built by the first read that needs more (``keys()``,
      iteration, an ``irange`` past the top's edge) and kept with C insort while such reads
      keep coming (a read the top could have served does not count). If none comes for
      about half a book's worth of level changes it is dropped (becoming the top), so a
      pipeline that reads only the top never pays a memmove of a whole side per inserted
      level.

    Both are exactly the dict's keys in order (tests/market/test_book_fast.py checks every
    read against a re-sorted reference after random diffs). Keys are assumed orderable
    (finite floats, as the sanity stage guarantees); a NaN key makes the lists be rebuilt
    rather than trusted.

    Writes from outside the book (``side[p] = q``, ``del``, ``pop``, ``update``, ...) work
    and keep the best price right, but the book is meant to be fed events, not edited.
    """

    __slots__ = ("best_is_max", "best", "_keys", "_unread", "_top", "_edge", "_k")

    def __init__(self, best_is_max: bool) -> None:
        super().__init__()
        self.best_is_max = best_is_max
        # Best price; -inf (bids) / +inf (asks) while empty, so one compare updates it.
        self.best = -_INF if best_is_max else _INF
        self._keys: list[float] | None = None   # all keys sorted, while someone reads them
        self._unread = 0                         # levels applied since the last full read
        self._top: list[float] | None = None    # the best keys sorted (see the docstring)
        self._edge = -_INF if best_is_max else _INF   # the top's edge price
        self._k = _TOP_MIN                       # the top's target length

    # -- the feed ----------------------------------------------------------------------------

    def apply(self, levels: list[tuple[float, float]]) -> None:
        """Apply one diff's levels of this side in order (qty 0 removes the level)."""
        keys = self._keys
        if keys is not None:
            self._apply_full(levels, keys)
            return
        top = self._top
        if top is not None:
            self._apply_top(levels, top)
            return
        best = self.best
        lost = False   # the best level was removed and nothing better came after it
        # One C dict operation per level and one compare for the best price. A level
        # beyond the removed best is the new best outright (all others are worse).
        if self.best_is_max:
            for p, q in levels:
                if q:
                    _dict_set(self, p, q)
                    if p > best:
                        best = p
                        lost = False
                elif _dict_pop(self, p, None) is not None and p == best:
                    lost = True
        else:
            for p, q in levels:
                if q:
                    _dict_set(self, p, q)
                    if p < best:
                        best = p
                        lost = False
                elif _dict_pop(self, p, None) is not None and p == best:
                    lost = True
        if lost:
            self._rebest()
        else:
            self.best = best

    def _apply_top(self, levels: list[tuple[float, float]], top: list[float]) -> None:
        # The top holds every key on the good side of `edge`: a new key there is inserted,
        # a removed one deleted; anything beyond the edge is a dict operation only.
        edge = self._edge
        if self.best_is_max:
            for p, q in levels:
                if q:
                    if p >= edge and p not in self:
                        insort(top, p)
                    _dict_set(self, p, q)
                elif _dict_pop(self, p, None) is not None and p >= edge:
                    i = bisect_left(top, p)
                    if i < len(top) and top[i] == p:
                        del top[i]
                    else:   # unorderable key (NaN): never trust the list, rebuild on demand
                        self._top = None
                        self._apply_rest(levels, p)
                        return
            k = self._k
            if len(top) > 2 * k:   # keep it short: the worst keys leave, the edge moves up
                del top[:len(top) - k]
                self._edge = top[0]
            if top:
                self.best = top[-1]
                return
        else:
            for p, q in levels:
                if q:
                    if p <= edge and p not in self:
                        insort(top, p)
                    _dict_set(self, p, q)
                elif _dict_pop(self, p, None) is not None and p <= edge:
                    i = bisect_left(top, p)
                    if i < len(top) and top[i] == p:
                        del top[i]
                    else:
                        self._top = None
                        self._apply_rest(levels, p)
                        return
            k = self._k
            if len(top) > 2 * k:
                del top[k:]
                self._edge = top[-1]
            if top:
                self.best = top[0]
                return
        # Nothing left inside the edge: the best is somewhere beyond it (or the side is
        # empty); the next read of the top rebuilds it.
        self._rebest()

    def _apply_rest(self, levels: list[tuple[float, float]], failed: float) -> None:
        """Finish a diff whose level `failed` (already removed) broke the top list: the
        remaining levels as plain dict operations, then the best from scratch."""
        rest = iter(levels)
        for p, _ in rest:
            if p is failed:
                break
        for p, q in rest:
            if q:
                _dict_set(self, p, q)
            else:
                _dict_pop(self, p, None)
        self._rebest()

    def _apply_full(self, levels: list[tuple[float, float]], keys: list[float]) -> None:
        # Someone reads every key in order: keep them all sorted (C bisect/insort).
        for p, q in levels:
            if q:
                if p not in self:
                    insort(keys, p)
                _dict_set(self, p, q)
            elif _dict_pop(self, p, None) is not None:
                i = bisect_left(keys, p)
                if i < len(keys) and keys[i] == p:
                    del keys[i]
                else:   # unorderable key (NaN): never trust the list, rebuild on demand
                    self._keys = None
                    self._apply_rest(levels, p)
                    return
        if keys:
            self.best = keys[-1] if self.best_is_max else keys[0]
        else:
            self.best = -_INF if self.best_is_max else _INF
        # Nobody has read every key for a while: stop paying for the full list; the top
        # of it goes on serving the top reads.
        self._unread += len(levels)
        if self._unread > 64 + (len(self) >> 1):
            self._keys = None
            self._top_from(keys)

    # -- ordered reads ---------------------------------------------------------------------

    def _sorted(self) -> list[float]:
        """The full ascending key list, up to date (never handed out: callers copy or
        slice)."""
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(_dict_keys(self))
            self._top = None   # the full list serves the top reads while it lives
        self._unread = 0
        return keys

    def _top_from(self, keys: list[float]) -> None:
        """Make the top from a sorted list of every key."""
        k = self._k
        if len(keys) <= k:
            self._top = list(keys)
            self._edge = -_INF if self.best_is_max else _INF
        elif self.best_is_max:
            self._top = keys[-k:]
            self._edge = self._top[0]
        else:
            self._top = keys[:k]
            self._edge = self._top[-1]

    def _top_for(self, n: int) -> list[float]:
        """A sorted list holding at least the best `n` keys (or every key): the full list
        while it lives, else the top, rebuilt if deletes left it too short."""
        keys = self._keys
        if keys is not None:
            return keys
        top = self._top
        if top is not None and (len(top) >= n or self._edge in _INFS):
            return top
        if 2 * n > self._k:
            self._k = 2 * n
        k = self._k
        if len(self) <= k:
            top = sorted(_dict_keys(self))
            self._edge = -_INF if self.best_is_max else _INF
        elif self.best_is_max:
            top = nlargest(k, _dict_keys(self))
            top.reverse()
            self._edge = top[0]
        else:
            top = nsmallest(k, _dict_keys(self))
            self._edge = top[-1]
        self._top = top
        return top

    def top(self, n: int) -> list[tuple[float, float]]:
        """The best `n` levels, best first."""
        keys = self._top_for(n) if n >= 0 else self._sorted()
        picked = keys[:-n - 1:-1] if self.best_is_max else keys[:n]
        return [(p, self[p]) for p in picked]

    def keys(self) -> list[float]:            # type: ignore[override]
        return list(self._sorted())

    def values(self) -> list[float]:          # type: ignore[override]
        return [self[p] for p in self._sorted()]

    def items(self) -> list[tuple[float, float]]:   # type: ignore[override]
        return [(p, self[p]) for p in self._sorted()]

    def __iter__(self) -> Iterator[float]:
        return iter(list(self._sorted()))

    def __reversed__(self) -> Iterator[float]:
        return reversed(list(self._sorted()))

    def irange(self, minimum: float | None = None, maximum: float | None = None,
               inclusive: tuple[bool, bool] = (True, True), reverse: bool = False
               ) -> Iterator[float]:
        """Keys between `minimum` and `maximum` (None: unbounded) in order, as
        SortedDict.irange."""
        keys = self._keys
        if keys is None:
            # A range that ends inside the top's edge on the worse side is all in the top
            # (the paper venue's walk from the best to an order's price).
            top, edge = self._top, self._edge
            if top is not None and (edge in _INFS or (
                    minimum is not None and minimum >= edge if self.best_is_max
                    else maximum is not None and maximum <= edge)):
                keys = top
            else:
                keys = self._sorted()
        else:
            # Only a range past what the top would hold keeps the full list alive.
            k = self._k
            if len(keys) > k and (minimum is None or minimum < keys[-k] if self.best_is_max
                                  else maximum is None or maximum > keys[k - 1]):
                self._unread = 0
        lo = 0 if minimum is None else (
            bisect_left if inclusive[0] else bisect_right)(keys, minimum)
        hi = len(keys) if maximum is None else (
            bisect_right if inclusive[1] else bisect_left)(keys, maximum)
        part = keys[lo:hi]
        return reversed(part) if reverse else iter(part)

    def peekitem(self, index: int = -1) -> tuple[float, float]:
        """(price, qty) at sorted position `index`, as SortedDict.peekitem."""
        if self and index == (-1 if self.best_is_max else 0):
            best = self.best
            return best, self[best]
        p = self._sorted()[index]
        return p, self[p]

    # -- writes ----------------------------------------------------------------------------

    def clear(self) -> None:
        _dict_clear(self)
        self.best = -_INF if self.best_is_max else _INF
        self._keys = None
        self._top = None

    def load(self, levels: Iterable[tuple[float, float]]) -> None:
        """Replace the contents with the levels of non-zero quantity (a snapshot)."""
        self.clear()
        _dict_update(self, (lv for lv in levels if lv[1]))
        self._rebest()

    def _rebest(self) -> None:
        if self:
            self.best = max(_dict_keys(self)) if self.best_is_max else min(_dict_keys(self))
        else:
            self.best = -_INF if self.best_is_max else _INF

    def _changed(self) -> None:
        # An outside write: recompute everything from the dict (slow, but never the feed).
        self._rebest()
        self._keys = None
        self._top = None

    def __setitem__(self, price: float, qty: float) -> None:
        _dict_set(self, price, qty)
        self._changed()

    def __delitem__(self, price: float) -> None:
        dict.__delitem__(self, price)
        self._changed()

    def pop(self, *args: Any) -> Any:
        out = _dict_pop(self, *args)
        self._changed()
        return out

    def popitem(self) -> tuple[float, float]:
        out = dict.popitem(self)
        self._changed()
        return out

    def setdefault(self, price: float, qty: float) -> float:   # type: ignore[override]
        out = dict.setdefault(self, price, qty)
        self._changed()
        return out

    def update(self, *args: Any, **kwargs: Any) -> None:
        _dict_update(self, *args, **kwargs)
        self._changed()

    def __ior__(self, other: Any) -> BookSide:   # type: ignore[override]
        _dict_update(self, other)
        self._changed()
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle/deepcopy as the levels plus the direction (the default protocol would
        # restore the dict items before the slots, through __setitem__).
        return _restore_side, (self.best_is_max, list(dict.items(self)))

    def copy(self) -> dict[float, float]:     # type: ignore[override]
        """A plain dict copy in price order (SortedDict.copy kept the order too)."""
        return {p: self[p] for p in self._sorted()}


@dataclass(slots=True, frozen=True)
class Disagreement:
    """A comparable bookTicker that did not match the rebuilt top of book."""

    quote: Quote
    book_top: Top | None
    book_update_id: int     # the diff/snapshot id the book top was taken at (== quote u)
    fields: tuple[str, ...]  # which of bid, bid_qty, ask, ask_qty differ


def _restore_side(best_is_max: bool, items: list[tuple[float, float]]) -> BookSide:
    side = BookSide(best_is_max)
    _dict_update(side, items)
    side._rebest()
    return side


class OrderBook:
    """Bids and asks as `BookSide` price -> qty (dicts that keep their best price; ordered
    reads ascending on both sides, so the best bid is the last bid key and the best ask the
    first ask key). Only meaningful while ``synced``; only to be traded on while
    ``valid`` (see "Trust" in the module docstring; without ``jump_bps`` the two are equal).

    ``stats`` counters: diffs_applied, diffs_dropped (u <= last id), diffs_buffered,
    buffer_overflow, gaps, crossed, stale_snapshots, snapshots, snapshots_ignored, syncs
    (first valid state), resyncs (valid again after a gap/crossing), wrong_symbol, the
    quote cross-check: quotes_comparable, quotes_agree, quotes_disagree,
    quotes_not_comparable, quotes_book_invalid, quotes_pending_overflow, and trust:
    suspect, confirmed, contradicted, suspect_timeouts, snapshot_ahead.
    """

    def __init__(self, symbol: str, futures: bool, *,
                 on_needs_snapshot: Callable[[OrderBook], None] | None = None,
                 max_buffer: int = 10_000, top_history: int = 256,
                 max_pending_quotes: int = 4096, keep_disagreements: int = 100,
                 jump_bps: float | None = None, suspect_timeout_ns: int = 5_000_000_000,
                 bridge_timeout_ns: int = 2_000_000_000, require_bridge: bool = False,
                 on_suspect: Callable[[OrderBook], None] | None = None) -> None:
        self.symbol = symbol
        self.futures = futures
        self.bids = BookSide(best_is_max=True)
        self.asks = BookSide(best_is_max=False)
        self.synced = False        # the Binance sync rules hold
        self.valid = False         # synced and trusted (see the module docstring)
        self.last_update_id = 0
        self.invalid_reason: str | None = "no snapshot yet"
        self.on_needs_snapshot = on_needs_snapshot
        self.on_suspect = on_suspect
        self.stats: dict[str, int] = dict.fromkeys(
            ("diffs_applied", "diffs_dropped", "diffs_buffered", "buffer_overflow", "gaps",
             "crossed", "stale_snapshots", "snapshots", "snapshots_ignored", "syncs",
             "resyncs", "wrong_symbol", "quotes_comparable", "quotes_agree",
             "quotes_disagree", "quotes_not_comparable", "quotes_book_invalid",
             "quotes_pending_overflow", "suspect", "confirmed", "contradicted",
             "suspect_timeouts", "snapshot_ahead"), 0)
        # Trust checks (off when jump_bps is None: the book then behaves as a plain sync
        # engine, valid == synced).
        self._guard = jump_bps is not None
        self._jump = (jump_bps or 0.0) / 1e4
        self._suspect_timeout_ns = suspect_timeout_ns
        self._bridge_timeout_ns = bridge_timeout_ns
        self.require_bridge = require_bridge
        self.suspect_reason: str | None = None
        self._suspect_since = 0
        self._snapshot_ns = 0
        # Best bid/ask must stay inside these after the next diff (set from the last top).
        self._bid_lo = self._ask_lo = -float("inf")
        self._bid_hi = self._ask_hi = float("inf")
        self.confirmed_mid: float | None = None
        self.confirmed_ns = 0
        self.disagreements: deque[Disagreement] = deque(maxlen=keep_disagreements)
        self._max_buffer = max_buffer
        self._buffer: deque[DepthDiff] = deque()
        self._bridging = False     # the next applied diff must bridge the snapshot
        self._requested = False    # the callback already fired for this invalid episode
        self._ever_valid = False
        # Top of book after each recent applied diff/snapshot, by its final update id, so a
        # bookTicker that arrives after later diffs can still be checked.
        self._tops: dict[int, Top | None] = {}
        self._tops_order: deque[int] = deque()
        self._top_history = top_history
        # bookTickers whose id the book has not reached yet, oldest first.
        self._pending: deque[Quote] = deque()
        self._max_pending = max_pending_quotes
        self._warn = RateLimitedLog(log)

    # -- reading -----------------------------------------------------------------------

    @property
    def needs_snapshot(self) -> bool:
        """True while the book cannot become valid without a (new) REST snapshot."""
        return not self.synced

    @property
    def bridged(self) -> bool:
        """A diff of this symbol has continued the last snapshot."""
        return self.synced and not self._bridging

    @property
    def pending_quotes(self) -> int:
        """bookTickers waiting for the book to reach their update id."""
        return len(self._pending)

    def best_bid(self) -> Level | None:
        bids = self.bids
        if not bids:
            return None
        p = bids.best
        return p, bids[p]

    def best_ask(self) -> Level | None:
        asks = self.asks
        if not asks:
            return None
        p = asks.best
        return p, asks[p]

    def qty_at(self, is_bid: bool, price: float) -> float:
        return (self.bids if is_bid else self.asks).get(price, 0.0)

    def levels(self, is_bid: bool, n: int) -> list[Level]:
        """Top `n` levels of one side, best first."""
        if n <= 0:
            return []
        return (self.bids if is_bid else self.asks).top(n)

    def depth(self, is_bid: bool, n: int) -> float:
        """Total quantity of the top `n` levels of one side."""
        return sum(q for _, q in self.levels(is_bid, n))

    def mid(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids.best + self.asks.best) * 0.5

    def microprice(self) -> float | None:
        """Size-weighted mid: leans toward the side with less size (the one likely to go)."""
        if not self.bids or not self.asks:
            return None
        bids, asks = self.bids, self.asks
        bp, ap = bids.best, asks.best
        bq, aq = bids[bp], asks[ap]
        return (bp * aq + ap * bq) / (bq + aq)

    def spread(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return self.asks.best - self.bids.best

    def crossed(self) -> bool:
        return bool(self.bids and self.asks
                    and self.bids.best >= self.asks.best)

    # -- feeding -----------------------------------------------------------------------

    def on_event(self, ev: MarketEvent) -> bool | None:
        """Route any decoded event; returns on_quote's answer for quotes, else None."""
        if isinstance(ev, Quote):
            return self.on_quote(ev)
        if isinstance(ev, DepthDiff):
            self.on_diff(ev)
        elif isinstance(ev, DepthSnapshot):
            self.on_snapshot(ev)
        return None

    def on_diff(self, diff: DepthDiff) -> None:
        if diff.symbol != self.symbol:
            self._wrong_symbol(diff.symbol)
            return
        if not self.synced:
            self._buffer_diff(diff)
            return
        u = diff.last_id
        last = self.last_update_id
        if u <= last:
            self.stats["diffs_dropped"] += 1
            if self._bridging and self._guard \
                    and diff.ts_ns - self._snapshot_ns > self._bridge_timeout_ns:
                # Diffs received well after the snapshot are all still older than it: its
                # lastUpdateId is ahead of the stream and would freeze the book for good.
                self._invalidate(
                    f"snapshot lastUpdateId={last} is ahead of the diff stream: diff u={u} "
                    f"received {(diff.ts_ns - self._snapshot_ns) / 1e9:.1f} s after it is "
                    f"still older", "snapshot_ahead")
                self._request()
            return
        if self._bridging:
            if not (diff.first_id <= last + 1
                    or (self.futures and diff.prev_last_id == last)):
                self._invalidate(
                    f"snapshot too old: lastUpdateId={last} but the first diff after it "
                    f"has U={diff.first_id} u={u} pu={diff.prev_last_id}",
                    "stale_snapshots")
                self._buffer_diff(diff)
                return
            self._bridging = False
            if self._guard:
                self._apply(diff)
                if self.synced:
                    self._bridged_now(diff.ts_ns)
                return
        elif self.futures:
            if diff.prev_last_id != last:
                self._invalidate(f"gap: pu={diff.prev_last_id} != previous u={last} "
                                 f"(U={diff.first_id} u={u})", "gaps")
                self._buffer_diff(diff)
                return
        elif diff.first_id != last + 1:
            self._invalidate(f"gap: U={diff.first_id} != previous u+1={last + 1} (u={u})",
                             "gaps")
            self._buffer_diff(diff)
            return
        self._apply(diff)

    def on_snapshot(self, snap: DepthSnapshot) -> None:
        if snap.symbol != self.symbol:
            self._wrong_symbol(snap.symbol)
            return
        self.stats["snapshots"] += 1
        lid = snap.last_update_id
        if self.synced and lid <= self.last_update_id:
            # The book is already at or past this state; rewinding would lose diffs.
            self.stats["snapshots_ignored"] += 1
            return
        was_valid = self.synced
        recovering = self._ever_valid and not was_valid
        bids, asks = self.bids, self.asks
        # Reloading in place keeps the BookSide objects: other code may hold references.
        bids.load(snap.bids)
        asks.load(snap.asks)
        self.last_update_id = lid
        self._bridging = True
        self.synced = True
        self.suspect_reason = None
        self._snapshot_ns = snap.ts_ns
        self._set_valid()
        self._pending.clear()
        self._tops.clear()
        self._tops_order.clear()
        if bids and asks and bids.best >= asks.best:
            self._invalidate(f"crossed snapshot {lid}: bid {bids.best} >= ask "
                             f"{asks.best}", "crossed")
            self._request()
            return
        self._record_top(lid)
        buffered = self._buffer
        self._buffer = deque()
        for diff in buffered:
            self.on_diff(diff)  # goes back into the buffer if the book turns invalid again
        if self.synced:
            self._requested = False
            self._ever_valid = True
            if not was_valid:   # a newer snapshot for a valid book is a refresh, not a sync
                self.stats["resyncs" if recovering else "syncs"] += 1

    def on_quote(self, quote: Quote) -> bool | None:
        """Compare a bookTicker with the rebuilt top of book.

        A bookTicker's ``u`` is the order-book update id its best bid/ask reflect. After
        applying a diff whose final id is ``u_d`` the book reflects every update <= ``u_d``
        and none after, so the quote is comparable exactly when its ``u`` equals the final
        id of a diff we applied (or the snapshot's lastUpdateId). A ``u`` strictly inside a
        diff's ``U..u`` range (or between diffs) names an intermediate state the diff
        stream never shows us: not comparable. Arrival order does not matter: a quote ahead
        of the book waits (``_pending``) until the diff with its id is applied, and a quote
        behind it is checked against the recorded top after that diff (last
        ``top_history`` diffs). Agreement means bid, bid qty, ask and ask qty are all equal.

        Returns True/False for a comparison made now, None otherwise (deferred or not
        comparable); the counters and ``disagreements`` hold the full picture.
        """
        if quote.symbol != self.symbol:
            self._wrong_symbol(quote.symbol)
            return None
        if not self.synced:
            self.stats["quotes_book_invalid"] += 1
            return None
        if self.suspect_reason is not None \
                and quote.ts_ns - self._suspect_since > self._suspect_timeout_ns:
            self._suspect_expired(quote.ts_ns)
            return None
        uid = quote.update_id
        last = self.last_update_id
        if uid > last:
            pending = self._pending
            if len(pending) >= self._max_pending:
                pending.popleft()
                self.stats["quotes_pending_overflow"] += 1
            pending.append(quote)
            return None
        tops = self._tops
        if uid in tops:
            return self._compare(quote, tops[uid], uid)
        self.stats["quotes_not_comparable"] += 1
        return None

    # -- internals ---------------------------------------------------------------------

    def _apply(self, diff: DepthDiff) -> None:
        bids, asks = self.bids, self.asks
        if diff.bids:
            bids.apply(diff.bids)
        if diff.asks:
            asks.apply(diff.asks)
        u = diff.last_id
        self.last_update_id = u
        self.stats["diffs_applied"] += 1
        if bids and asks:
            bp = bids.best
            ap = asks.best
            bq = bids[bp]
            aq = asks[ap]
            if bp >= ap:
                self._invalidate(f"crossed after diff U={diff.first_id} u={u}: bid {bp} >= "
                                 f"ask {ap}", "crossed")
                self._request()
                return
            top: Top | None = (bp, bq, ap, aq)
            if self._guard:
                if self.suspect_reason is None:
                    if self._bid_lo <= bp <= self._bid_hi and self._ask_lo <= ap <= self._ask_hi:
                        self._set_band(bp, ap)
                    else:
                        self._suspect(f"diff U={diff.first_id} u={u} moved the top to bid {bp} "
                                      f"ask {ap}, more than {self._jump * 1e4:g} bps from "
                                      f"bid {self._prev_top()} in one step", diff.ts_ns)
                elif diff.ts_ns - self._suspect_since > self._suspect_timeout_ns:
                    self._suspect_expired(diff.ts_ns)
                    return
        else:
            top = None
            if self._guard:
                if self.suspect_reason is None:
                    self._suspect(f"diff U={diff.first_id} u={u} left the "
                                  f"{'bid' if not bids else 'ask'} side empty", diff.ts_ns)
                elif diff.ts_ns - self._suspect_since > self._suspect_timeout_ns:
                    self._suspect_expired(diff.ts_ns)
                    return
        tops = self._tops
        tops[u] = top
        order = self._tops_order
        order.append(u)
        if len(order) > self._top_history:
            del tops[order.popleft()]
        pending = self._pending
        while pending and pending[0].update_id <= u:
            q = pending.popleft()
            if q.update_id == u:
                self._compare(q, top, u)   # may invalidate (and clear `pending`)
            else:
                self.stats["quotes_not_comparable"] += 1

    def _record_top(self, uid: int) -> None:
        bids, asks = self.bids, self.asks
        if bids and asks:
            bp = bids.best
            ap = asks.best
            bq = bids[bp]
            aq = asks[ap]
            self._tops[uid] = (bp, bq, ap, aq)
            self._set_band(bp, ap)
        else:
            self._tops[uid] = None
            self._bid_lo = self._ask_lo = -float("inf")
            self._bid_hi = self._ask_hi = float("inf")
        self._tops_order.append(uid)

    def _compare(self, q: Quote, top: Top | None, uid: int) -> bool:
        stats = self.stats
        stats["quotes_comparable"] += 1
        if top is not None and (q.bid, q.bid_qty, q.ask, q.ask_qty) == top:
            stats["quotes_agree"] += 1
            if self._guard:
                self._confirmed(q, uid)
            return True
        stats["quotes_disagree"] += 1
        if top is None:
            fields: tuple[str, ...] = ("bid", "bid_qty", "ask", "ask_qty")
        else:
            fields = tuple(name for name, a, b in zip(
                ("bid", "bid_qty", "ask", "ask_qty"), (q.bid, q.bid_qty, q.ask, q.ask_qty), top)
                if a != b)
        self.disagreements.append(Disagreement(q, top, uid, fields))
        if self._guard:
            what = (f"bookTicker u={uid} (bid {q.bid} ask {q.ask}) disagrees with the book "
                    f"on {', '.join(fields)}")
            if self.suspect_reason is None:
                self._suspect(what, q.ts_ns)
            else:
                self._invalidate(f"suspect book contradicted: {what} "
                                 f"(suspect since: {self.suspect_reason})", "contradicted")
                self._request()
        return False

    # -- trust -----------------------------------------------------------------------------

    def _set_valid(self) -> None:
        """Derive ``valid`` and ``invalid_reason`` for a synced book."""
        if not self.synced:
            self.valid = False
        elif self.suspect_reason is not None:
            self.valid = False
            self.invalid_reason = f"suspect: {self.suspect_reason}"
        elif self.require_bridge and self._bridging:
            self.valid = False
            self.invalid_reason = (f"snapshot lastUpdateId={self.last_update_id} not yet "
                                   f"continued by a {self.symbol} diff")
        else:
            self.valid = True
            self.invalid_reason = None

    def _set_band(self, bp: float, ap: float) -> None:
        j = self._jump
        self._bid_lo = bp * (1.0 - j)
        self._bid_hi = bp * (1.0 + j)
        self._ask_lo = ap * (1.0 - j)
        self._ask_hi = ap * (1.0 + j)

    def _prev_top(self) -> str:
        # The band is centred on the previous top; recover it for the message.
        return f"{(self._bid_lo + self._bid_hi) / 2:g} ask {(self._ask_lo + self._ask_hi) / 2:g}"

    def _suspect(self, reason: str, ts_ns: int) -> None:
        self.suspect_reason = reason
        self._suspect_since = ts_ns
        self.stats["suspect"] += 1
        self._set_valid()
        self._warn("suspect", self.stats["suspect"], f"{self.symbol}: book suspect: {reason}")
        cb = self.on_suspect
        if cb is not None:
            try:
                cb(self)
            except Exception:
                log.exception("%s: on_suspect callback failed", self.symbol)

    def _confirmed(self, q: Quote, uid: int) -> None:
        """A comparable bookTicker agreed with the book: the exchange confirms this top."""
        self.confirmed_mid = (q.bid + q.ask) * 0.5
        self.confirmed_ns = q.ts_ns
        if self.suspect_reason is not None:
            self.stats["confirmed"] += 1
            log.info("%s: suspect book confirmed by bookTicker u=%d (was: %s)", self.symbol,
                     uid, self.suspect_reason)
            self.suspect_reason = None
            self._set_band(q.bid, q.ask)
            self._set_valid()

    def _suspect_expired(self, ts_ns: int) -> None:
        self._invalidate(f"suspect for {(ts_ns - self._suspect_since) / 1e9:.1f} s without "
                         f"confirmation: {self.suspect_reason}", "suspect_timeouts")
        self._request()

    def _bridged_now(self, ts_ns: int) -> None:
        """The snapshot was continued by our own diff: a fresh, exchange-given state."""
        mid = self.mid()
        if mid is not None and self.suspect_reason is None:
            self.confirmed_mid = mid
            self.confirmed_ns = ts_ns
        self._set_valid()

    def _buffer_diff(self, diff: DepthDiff) -> None:
        buf = self._buffer
        if len(buf) >= self._max_buffer:
            # Oldest first: a fresh snapshot is newer than them anyway.
            buf.popleft()
            self.stats["buffer_overflow"] += 1
        buf.append(diff)
        self.stats["diffs_buffered"] += 1
        if not self._requested:
            self._request()

    def _invalidate(self, reason: str, counter: str) -> None:
        self.synced = False
        self.valid = False
        self.suspect_reason = None
        self.invalid_reason = reason
        self.stats[counter] += 1
        self.bids.clear()
        self.asks.clear()
        self._bridging = False
        # Pending quotes can no longer be matched against this book's history.
        self.stats["quotes_book_invalid"] += len(self._pending)
        self._pending.clear()
        self._tops.clear()
        self._tops_order.clear()
        self._warn(counter, self.stats[counter], f"{self.symbol}: {reason}")
        # The caller buffers the offending diff (if any) and only then asks for a snapshot:
        # a requester that answers synchronously must find that diff already buffered.
        self._requested = False

    def _request(self) -> None:
        self._requested = True
        cb = self.on_needs_snapshot
        if cb is None:
            return
        try:
            cb(self)
        except Exception:
            # The book's state is already consistent; a failing requester must not undo
            # that or stop the feed, but it must be seen.
            log.exception("%s: on_needs_snapshot callback failed", self.symbol)

    def _wrong_symbol(self, symbol: str) -> None:
        self.stats["wrong_symbol"] += 1
        self._warn("wrong_symbol", self.stats["wrong_symbol"],
                   f"book {self.symbol} got an event for {symbol}")
