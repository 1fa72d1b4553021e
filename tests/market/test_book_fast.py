"""The dict-per-side order book (`BookSide`) against a plain reference: a dict per side whose
best price and depth are recomputed from scratch (max/min, sorted) after every step.

Covers the book's own feed (snapshots and diffs, including crossings that invalidate it),
every ordered read (with and without a live sorted key list, and across the point where
the list is dropped because nobody read in order), writes from outside the book, and a
whole real capture replayed with the reference alongside.
"""
from __future__ import annotations

import copy
import pickle
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.market.book import _INF, BookSide, OrderBook
from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import DepthDiff, DepthSnapshot

SYM = "BTCUSDT"

# Few distinct prices, so inserts, updates, deletes of present and absent levels, and
# removals of the best level all happen often; quantities include 0 (remove).
PRICE = st.integers(0, 30).map(lambda t: 100.0 + t * 0.5)
QTY = st.sampled_from([0.0, 0.0, 0.0, 0.25, 1.0, 3.0])
LEVELS = st.lists(st.tuples(PRICE, QTY), max_size=12)


class RefSide:
    """The reference: a dict, everything else recomputed on demand."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.d: dict[float, float] = {}

    def apply(self, levels: list[tuple[float, float]]) -> None:
        for p, q in levels:
            if q:
                self.d[p] = q
            else:
                self.d.pop(p, None)

    def load(self, levels: list[tuple[float, float]]) -> None:
        self.d = {p: q for p, q in levels if q}

    def best(self) -> float | None:
        if not self.d:
            return None
        return max(self.d) if self.is_bid else min(self.d)

    def top(self, n: int) -> list[tuple[float, float]]:
        keys = sorted(self.d, reverse=self.is_bid)[:max(n, 0)]
        return [(p, self.d[p]) for p in keys]


def check_side(side: BookSide, ref: RefSide, rnd: random.Random) -> None:
    """Compare one side with the reference through a random subset of the ordered reads
    (a random subset, so that some steps leave the sorted key list unread and others
    rebuild or use it)."""
    # (dict(side) would be an ordered read: dict() iterates a subclass through keys())
    assert dict(dict.items(side)) == ref.d
    assert len(side) == len(ref.d)
    best = ref.best()
    if best is None:
        assert not side
    else:
        assert side.best == best
        assert side.peekitem(-1 if ref.is_bid else 0) == (best, ref.d[best])
    asc = sorted(ref.d)
    reads = rnd.randrange(8)
    if reads == 0:
        return   # no ordered read this step
    if reads == 1 or reads >= 6:
        n = rnd.randrange(0, 8)
        assert side.top(n) == ref.top(n)
        if reads == 7:   # the paper venue's walk from the best to a price (in the top or not)
            x = rnd.uniform(99, 116)
            if ref.is_bid:
                assert list(side.irange(minimum=x, reverse=True)) == \
                    [p for p in asc if p >= x][::-1]
            else:
                assert list(side.irange(maximum=x)) == [p for p in asc if p <= x]
    elif reads == 2:
        assert side.keys() == asc and list(side) == asc
        assert list(reversed(side)) == asc[::-1]
        assert side.items() == [(p, ref.d[p]) for p in asc]
        assert side.values() == [ref.d[p] for p in asc]
    elif reads == 3:
        lo, hi = sorted((rnd.uniform(99, 116), rnd.uniform(99, 116)))
        assert list(side.irange(minimum=lo, maximum=hi)) == [p for p in asc if lo <= p <= hi]
        assert list(side.irange(maximum=hi)) == [p for p in asc if p <= hi]
        assert list(side.irange(minimum=lo, reverse=True)) == [p for p in asc if p >= lo][::-1]
        assert list(side.irange(lo, hi, inclusive=(False, False))) == \
            [p for p in asc if lo < p < hi]
    elif reads == 4 and asc:
        i = rnd.randrange(-len(asc), len(asc))
        assert side.peekitem(i) == (asc[i], ref.d[asc[i]])
    else:
        assert side.copy() == {p: ref.d[p] for p in asc}
        assert list(side.copy()) == asc


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["apply", "apply", "apply", "load", "clear"]),
                              LEVELS), max_size=40),
       is_bid=st.booleans(), seed=st.integers(0, 2**32 - 1),
       top_k=st.sampled_from([1, 2, 3, 16]))
def test_side_equals_reference(ops: list[tuple[str, list[tuple[float, float]]]],
                               is_bid: bool, seed: int, top_k: int) -> None:
    rnd = random.Random(seed)
    side, ref = BookSide(best_is_max=is_bid), RefSide(is_bid)
    side._k = top_k   # a short top list: trims, rebuilds and edge reads happen often
    for op, levels in ops:
        if op == "apply":
            side.apply(levels)
            ref.apply(levels)
        elif op == "load":
            side.load(levels)
            ref.load(levels)
        else:
            side.clear()
            ref.d.clear()
        check_side(side, ref, rnd)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["set", "del", "pop", "update", "setdefault",
                                               "popitem", "ior", "apply"]),
                              LEVELS), max_size=30),
       is_bid=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_writes_from_outside_keep_the_best_right(ops: list, is_bid: bool, seed: int) -> None:
    """SortedDict could be written to directly; a BookSide written to keeps its best price
    and order right (the book itself never does this)."""
    rnd = random.Random(seed)
    side, ref = BookSide(best_is_max=is_bid), RefSide(is_bid)
    for op, levels in ops:
        nonzero = [(p, q) for p, q in levels if q]
        if op == "set" and nonzero:
            p, q = nonzero[0]
            side[p] = q
            ref.d[p] = q
        elif op == "del" and ref.d:
            p = rnd.choice(sorted(ref.d))
            del side[p]
            del ref.d[p]
        elif op == "pop" and levels:
            p = levels[0][0]
            assert side.pop(p, None) == ref.d.pop(p, None)
        elif op == "update":
            side.update(nonzero)
            ref.d.update(nonzero)
        elif op == "setdefault" and nonzero:
            p, q = nonzero[0]
            assert side.setdefault(p, q) == ref.d.setdefault(p, q)
        elif op == "popitem" and ref.d:
            p, q = side.popitem()
            assert ref.d.pop(p) == q
        elif op == "ior":
            side |= dict(nonzero)
            ref.d |= dict(nonzero)
        else:
            side.apply(levels)
            ref.apply(levels)
        check_side(side, ref, rnd)


def test_sorted_keys_are_dropped_when_nobody_reads_and_rebuilt_on_demand() -> None:
    side, ref = BookSide(best_is_max=False), RefSide(False)
    side.load([(100.0 + i, 1.0) for i in range(100)])
    ref.load([(100.0 + i, 1.0) for i in range(100)])
    assert side.keys() == sorted(ref.d)              # builds the full sorted list
    assert side._keys is not None
    rnd = random.Random(7)
    for _ in range(40):                              # many changes, no full read
        levels = [(100.0 + rnd.randrange(150), rnd.choice([0.0, 2.0])) for _ in range(10)]
        side.apply(levels)
        ref.apply(levels)
    assert side._keys is None                        # stopped paying for it...
    assert side._top is not None                     # ...but kept its best keys
    assert side.best == ref.best() and side.keys() == sorted(ref.d)
    for _ in range(40):                              # full reads after every diff: kept
        levels = [(100.0 + rnd.randrange(150), rnd.choice([0.0, 2.0])) for _ in range(10)]
        side.apply(levels)
        ref.apply(levels)
        assert list(side.irange(maximum=300.0)) == sorted(ref.d)
        assert side._keys is not None


def test_top_reads_alone_use_the_short_top_list() -> None:
    """Reading only the top levels (the features, every diff) drops the full list and keeps
    a short one: its inserts move a few keys, not a whole side."""
    for is_bid in (True, False):
        side, ref = BookSide(best_is_max=is_bid), RefSide(is_bid)
        levels = [(100.0 + i, 1.0) for i in range(1000)]
        side.load(levels)
        ref.load(levels)
        rnd = random.Random(3)
        for step in range(400):
            diff = [(100.0 + rnd.randrange(1000), rnd.choice([0.0, 0.0, 2.0]))
                    for _ in range(20)]
            # deletes at the best too, so the top runs short and is rebuilt
            diff.append((ref.best(), 0.0))
            side.apply(diff)
            ref.apply(diff)
            assert side.top(5) == ref.top(5)
            assert side.best == ref.best()
            assert side._keys is None and side._top is not None
            assert len(side._top) <= 2 * side._k
        assert side.top(200) == ref.top(200)         # a deeper read grows the top
        assert side._k >= 400 and len(side._top) >= 200


def test_top_list_against_reference_many_keys() -> None:
    """The short top list through trims (inserts push it past twice its length), rebuilds
    (deletes at the best empty it) and edge reads, on a grid wide enough that the top never
    holds every key: each read compared with the re-sorted reference, including ranges
    that end exactly on, just inside and just past the top's edge."""
    grid = [100.0 + 0.5 * i for i in range(120)]
    checked = 0
    for seed in range(60):
        rnd = random.Random(seed)
        for is_bid in (True, False):
            side, ref = BookSide(best_is_max=is_bid), RefSide(is_bid)
            start = [(p, 1.0) for p in grid if rnd.random() < 0.6]
            side.load(start)
            ref.load(start)
            side._k = rnd.choice([1, 2, 3])
            for _ in range(60):
                diff = [(rnd.choice(grid), rnd.choice([0.0, 0.0, 1.0, 2.0]))
                        for _ in range(rnd.randrange(1, 25))]
                if ref.d and rnd.random() < 0.3:
                    diff.append((ref.best(), 0.0))
                side.apply(diff)
                ref.apply(diff)
                assert dict(dict.items(side)) == ref.d
                assert side.best == (ref.best() if ref.d else (-1 if is_bid else 1) * _INF)
                asc = sorted(ref.d)
                n = rnd.choice([0, 1, 1, 2, 3])
                assert side.top(n) == ref.top(n)
                top, edge = side._top, side._edge
                if top is None or side._keys is not None:
                    continue
                # the invariant itself: exactly the keys on the good side of the edge
                assert top == [p for p in asc if (p >= edge if is_bid else p <= edge)]
                # Ranges inside the edge are served by the top; one past it (now and
                # then: it builds the full list, which then serves reads for a while).
                inside = (0.0, 0.25, 0.5) if is_bid else (0.0, -0.25, -0.5)
                xs = [edge + d for d in inside]
                if rnd.random() < 0.05:
                    xs.append(edge - inside[2])
                for x in xs:
                    if is_bid:
                        assert list(side.irange(minimum=x, reverse=True)) == \
                            [p for p in asc if p >= x][::-1]
                        assert list(side.irange(x, inclusive=(False, True))) == \
                            [p for p in asc if p > x]
                    else:
                        assert list(side.irange(maximum=x)) == [p for p in asc if p <= x]
                        assert list(side.irange(maximum=x, inclusive=(True, False))) == \
                            [p for p in asc if p < x]
                    assert side._keys is None or side._top is None
                checked += 1
    assert checked > 3000   # the top list itself was checked, not only the full one


def test_pickle_and_deepcopy_keep_levels_direction_and_best() -> None:
    for is_bid in (True, False):
        side = BookSide(best_is_max=is_bid)
        side.load([(101.0, 1.0), (99.0, 2.0), (100.0, 3.0)])
        side.top(2)                                  # with a live sorted key list too
        for twin in (pickle.loads(pickle.dumps(side)), copy.deepcopy(side)):
            assert type(twin) is BookSide and twin.best_is_max == is_bid
            assert dict(twin) == dict(side) and twin.best == side.best
            assert twin.keys() == [99.0, 100.0, 101.0]
            twin.apply([(twin.best, 0.0)])           # independent of the original
            assert twin.best != side.best
    book = OrderBook(SYM, futures=False)
    book.on_snapshot(DepthSnapshot(SYM, 0, 1, [(99.0, 1.0)], [(101.0, 1.0)]))
    twin = copy.deepcopy(book)
    assert twin.best_bid() == (99.0, 1.0) and twin.best_ask() == (101.0, 1.0)


# -- the whole book: snapshots and diffs, crossings included -------------------------------

@st.composite
def book_ops(draw: st.DrawFn) -> list[tuple[str, list, list]]:
    ops = [("snap", draw(LEVELS), draw(LEVELS))]
    for _ in range(draw(st.integers(0, 40))):
        ops.append((draw(st.sampled_from(["diff"] * 8 + ["snap"])), draw(LEVELS),
                    draw(LEVELS)))
    return ops


@settings(max_examples=300, deadline=None)
@given(ops=book_ops(), futures=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_book_equals_reference_on_random_streams(ops: list, futures: bool, seed: int) -> None:
    """Any snapshot/diff sequence (levels may cross): whenever the book is synced its best
    prices, depth and every reader equal the reference; a crossed state leaves it
    unsynced and empty until the next snapshot (newer than every buffered diff)."""
    rnd = random.Random(seed)
    book = OrderBook(SYM, futures=futures)
    rb, ra = RefSide(True), RefSide(False)
    synced = False
    last = 0
    for op, bids, asks in ops:
        if op == "snap":
            last += 5                     # newer than any buffered diff: they are dropped
            book.on_snapshot(DepthSnapshot(SYM, 0, last, bids, asks))
            rb.load(bids)
            ra.load(asks)
            synced = True
        else:
            first, last = last + 1, last + 1 + rnd.randrange(3)
            book.on_diff(DepthDiff(SYM, 0, first, last, first - 1 if futures else None,
                                   bids, asks))
            if synced:
                rb.apply(bids)
                ra.apply(asks)
        bb, ba = rb.best(), ra.best()
        if synced and bb is not None and ba is not None and bb >= ba:
            synced = False                # crossed: invalidated and cleared
            rb.d.clear()
            ra.d.clear()
        assert book.synced == synced
        check_side(book.bids, rb, rnd)
        check_side(book.asks, ra, rnd)
        assert book.best_bid() == (None if bb is None or not synced else (bb, rb.d[bb]))
        assert book.best_ask() == (None if ba is None or not synced else (ba, ra.d[ba]))
        n = rnd.randrange(0, 6)
        assert book.levels(True, n) == rb.top(n)
        assert book.levels(False, n) == ra.top(n)
        assert book.depth(True, n) == sum(q for _, q in rb.top(n))
        if rb.d and ra.d:
            bb, ba = rb.best(), ra.best()
            assert book.mid() == (bb + ba) * 0.5
            assert book.spread() == ba - bb
            bq, aq = rb.d[bb], ra.d[ba]
            assert book.microprice() == (bb * aq + ba * bq) / (bq + aq)
            assert not book.crossed()
        else:
            assert book.mid() is None and book.spread() is None
            assert book.microprice() is None and not book.crossed()
        for p in (100.0, 105.5, 115.0):
            assert book.qty_at(True, p) == rb.d.get(p, 0.0)
            assert book.qty_at(False, p) == ra.d.get(p, 0.0)


def test_real_capture_against_reference(binance_dir: Path) -> None:
    """Spot BTCUSDT 0808+0809 through the book with the reference alongside: best prices
    after every diff, full depth at random diffs (so the sorted key list is built, kept
    and dropped many times on a real stream), and the bookTicker cross-check unchanged."""
    rnd = random.Random(1)
    paths = [binance_dir / "spot_btcusdt_20240808.gz", binance_dir / "spot_btcusdt_20240809.gz"]
    dec = Decoder()
    book = OrderBook(SYM, futures=False)
    rb, ra = RefSide(True), RefSide(False)
    diffs = 0
    waiting: list[DepthDiff] = []     # diffs before the snapshot: the book buffers them
    for ns, raw in CaptureReader(paths):
        ev = dec.decode(ns, raw)
        if ev is None:
            continue
        applied = book.stats["diffs_applied"]
        book.on_event(ev)
        if isinstance(ev, DepthSnapshot):
            rb.load(ev.bids)
            ra.load(ev.asks)
            for d in waiting:             # this capture has no gap: newer ones apply
                if d.last_id > ev.last_update_id:
                    rb.apply(d.bids)
                    ra.apply(d.asks)
            waiting.clear()
        elif isinstance(ev, DepthDiff) and not book.synced:
            waiting.append(ev)
        elif isinstance(ev, DepthDiff) and book.stats["diffs_applied"] > applied:
            rb.apply(ev.bids)
            ra.apply(ev.asks)
            diffs += 1
            assert book.best_bid() == (rb.best(), rb.d[rb.best()])
            assert book.best_ask() == (ra.best(), ra.d[ra.best()])
            if rnd.random() < 0.2:
                n = rnd.choice([1, 5, 20, 10_000])
                assert book.levels(True, n) == rb.top(n)
                assert book.levels(False, n) == ra.top(n)
    assert diffs + book.stats["diffs_buffered"] == 6495 and diffs > 6400
    assert book.stats["quotes_agree"] == book.stats["quotes_comparable"] == 1072
    assert book.stats["gaps"] == book.stats["crossed"] == 0


def test_real_capture_top_reads_and_walks(binance_dir: Path) -> None:
    """The backtest's read pattern on a real stream (top 5 of each side after every diff,
    the executor's top 20, the paper venue's walks from the best to a price): equal to the
    reference throughout, and served by the short top list; a rare deep walk sorts every
    key, and that full list is dropped again (walks the top could serve do not keep it)."""
    rnd = random.Random(2)
    paths = [binance_dir / "spot_btcusdt_20240808.gz", binance_dir / "spot_btcusdt_20240809.gz"]
    dec = Decoder()
    book = OrderBook(SYM, futures=False)
    sides = {True: book.bids, False: book.asks}
    full_sorts = 0
    compared = 0
    for ns, raw in CaptureReader(paths):
        ev = dec.decode(ns, raw)
        if ev is None:
            continue
        book.on_event(ev)
        if not isinstance(ev, DepthDiff) or not book.synced:
            continue
        for is_bid, side in sides.items():
            got5 = book.levels(is_bid, 5)
            got20 = book.levels(is_bid, 20) if rnd.random() < 0.1 else None
            best = side.best
            # an order at or near the touch (a level among the best 20, or between two),
            # now and then one deep in the book
            near = got20 or got5
            x = rnd.choice(near)[0] + rnd.choice([0.0, 0.005, -0.005]) if near else best
            if rnd.random() < 0.001:
                x = best - 500.0 if is_bid else best + 500.0
            walk = list(side.irange(minimum=x, reverse=True) if is_bid
                        else side.irange(maximum=x))
            full_sorts += side._keys is not None
            if rnd.random() < 0.15:
                compared += 1
                asc = sorted(dict.keys(side))
                top = asc[::-1] if is_bid else asc
                assert got5 == [(p, side[p]) for p in top[:5]]
                if got20 is not None:
                    assert got20 == [(p, side[p]) for p in top[:20]]
                assert walk == ([p for p in top if p >= x] if is_bid
                                else [p for p in top if p <= x])
    # the full sorted list lives only a while after each deep walk (0.1% of the walks)
    assert compared > 1500 and full_sorts < 0.1 * 2 * 6400


def test_a_diff_that_breaks_the_sorted_list_is_still_applied_whole() -> None:
    """A NaN key cannot be found again in the full sorted list: the list is dropped, and
    the rest of that diff's levels must still be applied (they used to be skipped). (The
    sanity stage never lets a NaN price reach a book; ordered reads assume none.)"""
    nan = float("nan")
    side = BookSide(best_is_max=True)
    side.apply([(nan, 1.0), (100.0, 1.0), (99.0, 1.0)])
    side.keys()                                      # the full sorted list
    side.apply([(nan, 0.0), (101.0, 2.0), (99.0, 0.0)])
    assert dict(dict.items(side)) == {100.0: 1.0, 101.0: 2.0}
    assert side.best == 101.0
    assert side.keys() == [100.0, 101.0]
