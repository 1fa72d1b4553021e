"""OrderBook: every Binance sync rule and gap (spot and futures), resync, crossing, the
bookTicker cross-check, and property tests on random update streams."""
from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade

SYM = "BTCUSDT"
Levels = Sequence[tuple[float, float]]


def diff(U: int, u: int, bids: Levels = (), asks: Levels = (),
         pu: int | None = None, sym: str = SYM) -> DepthDiff:
    return DepthDiff(sym, 0, U, u, pu, list(bids), list(asks))


def snap(lid: int, bids: Levels, asks: Levels, sym: str = SYM) -> DepthSnapshot:
    return DepthSnapshot(sym, 0, lid, list(bids), list(asks))


def quote(uid: int, bid: float, bq: float, ask: float, aq: float, sym: str = SYM) -> Quote:
    return Quote(sym, 0, uid, bid, bq, ask, aq)


BIDS = [(99.0, 1.0), (98.0, 2.0), (97.0, 3.0)]
ASKS = [(101.0, 1.0), (102.0, 2.0)]


class Requests:
    """Records on_needs_snapshot calls (what the live feed would turn into REST requests)."""

    def __init__(self) -> None:
        self.reasons: list[str | None] = []

    def __call__(self, book: OrderBook) -> None:
        assert not book.valid and book.needs_snapshot
        self.reasons.append(book.invalid_reason)


def spot_book(lid: int = 100) -> tuple[OrderBook, Requests]:
    req = Requests()
    book = OrderBook(SYM, futures=False, on_needs_snapshot=req)
    book.on_snapshot(snap(lid, BIDS, ASKS))
    return book, req


def nonzero(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if v}


# -- reading ---------------------------------------------------------------------------

def test_snapshot_then_diffs_and_every_reader() -> None:
    book, req = spot_book()
    assert book.valid and not book.needs_snapshot and book.invalid_reason is None
    book.on_diff(diff(101, 105, bids=[(99.0, 0.0), (100.0, 5.0)], asks=[(101.0, 0.5)]))
    assert book.valid and book.last_update_id == 105
    assert book.best_bid() == (100.0, 5.0)
    assert book.best_ask() == (101.0, 0.5)
    assert book.qty_at(True, 98.0) == 2.0
    assert book.qty_at(True, 99.0) == 0.0          # removed
    assert book.qty_at(False, 98.0) == 0.0         # never on that side
    assert book.levels(True, 2) == [(100.0, 5.0), (98.0, 2.0)]
    assert book.levels(True, 10) == [(100.0, 5.0), (98.0, 2.0), (97.0, 3.0)]
    assert book.levels(False, 5) == [(101.0, 0.5), (102.0, 2.0)]
    assert book.levels(False, 0) == []
    assert book.depth(True, 2) == 7.0
    assert book.depth(False, 1) == 0.5
    assert book.mid() == 100.5
    assert book.spread() == 1.0
    assert book.microprice() == pytest.approx((100.0 * 0.5 + 101.0 * 5.0) / 5.5)
    assert not book.crossed()
    assert list(book.bids.keys()) == [97.0, 98.0, 100.0]   # ascending on both sides
    assert list(book.asks.keys()) == [101.0, 102.0]
    assert req.reasons == []
    assert nonzero(book.stats) == {"snapshots": 1, "syncs": 1, "diffs_applied": 1}


def test_empty_book_readers() -> None:
    book = OrderBook(SYM, futures=False)
    assert (book.best_bid(), book.best_ask(), book.mid(), book.microprice(), book.spread()) \
        == (None, None, None, None, None)
    assert not book.crossed() and book.depth(True, 5) == 0.0 and book.levels(False, 3) == []
    assert not book.valid and book.invalid_reason == "no snapshot yet"


def test_qty_zero_removes_level_and_absent_removal_is_harmless() -> None:
    book, _ = spot_book()
    book.on_diff(diff(101, 101, bids=[(98.0, 0.0), (50.0, 0.0)], asks=[(150.0, 0.0)]))
    assert 98.0 not in book.bids and len(book.bids) == 2
    assert 50.0 not in book.bids and 150.0 not in book.asks
    assert book.valid
    # Zero-qty levels in a snapshot are not stored either.
    b2 = OrderBook(SYM, futures=False)
    b2.on_snapshot(snap(5, [(1.0, 0.0), (2.0, 1.0)], [(3.0, 0.0), (4.0, 1.0)]))
    assert list(b2.bids.items()) == [(2.0, 1.0)] and list(b2.asks.items()) == [(4.0, 1.0)]


# -- sync: spot -------------------------------------------------------------------------

def test_diffs_before_snapshot_are_buffered_dropped_and_bridged() -> None:
    req = Requests()
    book = OrderBook(SYM, futures=False, on_needs_snapshot=req)
    book.on_diff(diff(90, 95, bids=[(50.0, 9.0)]))        # entirely before the snapshot
    book.on_diff(diff(96, 100, bids=[(99.0, 7.0)]))       # bridges lastUpdateId=98
    book.on_diff(diff(101, 110, asks=[(103.0, 4.0)]))
    assert not book.valid and book.needs_snapshot
    assert req.reasons == ["no snapshot yet"]              # asked once, not per diff
    book.on_snapshot(snap(98, BIDS, ASKS))
    assert book.valid and book.last_update_id == 110
    assert 50.0 not in book.bids                           # the dropped diff left no trace
    assert book.qty_at(True, 99.0) == 7.0 and book.qty_at(False, 103.0) == 4.0
    assert nonzero(book.stats) == {"diffs_buffered": 3, "diffs_dropped": 1,
                                   "diffs_applied": 2, "snapshots": 1, "syncs": 1}


def test_first_diff_must_bridge_exactly_at_last_update_id_plus_one() -> None:
    book, _ = spot_book(100)
    book.on_diff(diff(101, 101))                           # U == lastUpdateId+1: bridges
    assert book.valid
    book2, req2 = spot_book(100)
    book2.on_diff(diff(100, 100))                          # u <= lastUpdateId: dropped
    book2.on_diff(diff(95, 104))                           # U < lid+1 <= u: bridges
    assert book2.valid and book2.last_update_id == 104 and book2.stats["diffs_dropped"] == 1
    book3, req3 = spot_book(100)
    book3.on_diff(diff(102, 110))                          # misses update 101
    assert not book3.valid and book3.stats["stale_snapshots"] == 1
    assert "snapshot too old" in (book3.invalid_reason or "")
    assert req3.reasons == [book3.invalid_reason]


def test_stale_snapshot_then_newer_snapshot() -> None:
    req = Requests()
    book = OrderBook(SYM, futures=False, on_needs_snapshot=req)
    book.on_diff(diff(120, 130, bids=[(99.5, 1.0)]))
    book.on_diff(diff(131, 140, bids=[(99.6, 1.0)]))
    book.on_snapshot(snap(110, BIDS, ASKS))                # older than the buffered stream
    assert not book.valid and book.stats["stale_snapshots"] == 1
    assert book.bids == {} and book.asks == {}             # nothing stale is offered
    assert len(req.reasons) == 2                           # initial + stale: ask again
    book.on_snapshot(snap(125, BIDS, ASKS))
    assert book.valid and book.last_update_id == 140
    assert book.best_bid() == (99.6, 1.0)
    assert book.stats["syncs"] == 1 and book.stats["resyncs"] == 0


def test_snapshot_newer_than_every_buffered_diff() -> None:
    book = OrderBook(SYM, futures=False)
    book.on_diff(diff(90, 95))
    book.on_snapshot(snap(200, BIDS, ASKS))
    assert book.valid and book.last_update_id == 200
    book.on_diff(diff(150, 199))                           # older: dropped
    book.on_diff(diff(190, 210, bids=[(100.0, 1.0)]))      # still has to bridge
    assert book.valid and book.best_bid() == (100.0, 1.0)
    book.on_diff(diff(211, 220))
    assert book.valid and book.stats["diffs_dropped"] == 2


def test_spot_gap_invalidates_then_resyncs() -> None:
    book, req = spot_book(100)
    book.on_diff(diff(101, 105, bids=[(100.0, 1.0)]))
    book.on_diff(diff(107, 110, asks=[(101.5, 2.0)]))      # 106 is missing
    assert not book.valid and book.needs_snapshot
    assert book.invalid_reason == "gap: U=107 != previous u+1=106 (u=110)"
    assert book.best_bid() is None and book.bids == {} and book.asks == {}
    assert book.stats["gaps"] == 1
    assert req.reasons == [book.invalid_reason]
    book.on_diff(diff(111, 115, bids=[(100.5, 3.0)]))      # buffered, no second request
    assert len(req.reasons) == 1
    book.on_snapshot(snap(108, BIDS, ASKS))                # bridged by the gap diff 107..110
    assert book.valid and book.last_update_id == 115 and book.invalid_reason is None
    assert book.best_bid() == (100.5, 3.0) and book.qty_at(False, 101.5) == 2.0
    assert book.stats["resyncs"] == 1 and book.stats["syncs"] == 1
    # A later gap asks again.
    book.on_diff(diff(117, 118))
    assert len(req.reasons) == 2


def test_requester_answering_synchronously_finds_the_gap_diff_buffered() -> None:
    book, _ = spot_book(100)
    answers = [snap(108, BIDS, ASKS)]

    def answer_now(b: OrderBook) -> None:
        if answers:
            b.on_snapshot(answers.pop())

    book.on_needs_snapshot = answer_now
    book.on_diff(diff(101, 105))
    book.on_diff(diff(107, 110, asks=[(101.5, 2.0)]))      # gap, answered inside the call
    assert book.valid and book.last_update_id == 110
    assert book.qty_at(False, 101.5) == 2.0
    assert book.stats["gaps"] == 1 and book.stats["resyncs"] == 1
    book.on_diff(diff(111, 112))
    assert book.valid and book.last_update_id == 112


def test_spot_ignores_pu_and_old_diffs_while_valid() -> None:
    book, _ = spot_book(100)
    book.on_diff(diff(101, 105, pu=3))                     # pu means nothing on spot
    book.on_diff(diff(103, 105))                           # already applied: dropped
    book.on_diff(diff(106, 106))
    assert book.valid and book.stats["diffs_dropped"] == 1 and book.last_update_id == 106


# -- sync: futures -----------------------------------------------------------------------

def fut_book(lid: int = 1000) -> tuple[OrderBook, Requests]:
    req = Requests()
    book = OrderBook(SYM, futures=True, on_needs_snapshot=req)
    book.on_snapshot(snap(lid, BIDS, ASKS))
    return book, req


def test_futures_chain_by_pu_not_by_contiguous_ids() -> None:
    book, req = fut_book(1000)
    book.on_diff(diff(990, 1010, pu=980, bids=[(100.0, 1.0)]))   # bridges 1001
    book.on_diff(diff(1050, 1060, pu=1010))                      # ids jump: fine on futures
    assert book.valid and book.last_update_id == 1060
    book.on_diff(diff(1061, 1070, pu=1059))                      # contiguous but pu wrong
    assert not book.valid and book.stats["gaps"] == 1
    assert book.invalid_reason == "gap: pu=1059 != previous u=1060 (U=1061 u=1070)"
    assert len(req.reasons) == 1
    # The same jump is a gap on spot.
    spot, _ = spot_book(1000)
    spot.on_diff(diff(990, 1010, pu=980))
    spot.on_diff(diff(1050, 1060, pu=1010))
    assert not spot.valid and spot.stats["gaps"] == 1


def test_futures_bridge_after_a_diff_ending_exactly_at_last_update_id() -> None:
    book = OrderBook(SYM, futures=True)
    book.on_diff(diff(900, 1000, pu=890, bids=[(99.0, 8.0)]))   # wholly in the snapshot
    book.on_diff(diff(1040, 1050, pu=1000, bids=[(100.0, 1.0)]))
    book.on_snapshot(snap(1000, BIDS, ASKS))
    assert book.valid and book.last_update_id == 1050
    assert book.best_bid() == (100.0, 1.0) and book.qty_at(True, 99.0) == 1.0
    assert book.stats["diffs_dropped"] == 1
    # Spot has no pu: the same ids there mean updates 1001..1039 are missing.
    spot = OrderBook(SYM, futures=False)
    spot.on_diff(diff(900, 1000))
    spot.on_diff(diff(1040, 1050))
    spot.on_snapshot(snap(1000, BIDS, ASKS))
    assert not spot.valid and spot.stats["stale_snapshots"] == 1


def test_futures_stale_snapshot_and_resync() -> None:
    req = Requests()
    book = OrderBook(SYM, futures=True, on_needs_snapshot=req)
    book.on_diff(diff(1040, 1050, pu=1020))
    book.on_snapshot(snap(1000, BIDS, ASKS))               # 1001..1039 unknown, pu != lid
    assert not book.valid and book.stats["stale_snapshots"] == 1 and len(req.reasons) == 2
    book.on_diff(diff(1060, 1070, pu=1050))
    book.on_snapshot(snap(1045, BIDS, ASKS))
    assert book.valid and book.last_update_id == 1070


def test_futures_gap_then_resync() -> None:
    book, req = fut_book(1000)
    book.on_diff(diff(1001, 1005, pu=999))
    book.on_diff(diff(1020, 1030, pu=1010, asks=[(101.0, 9.0)]))   # missed 1006..1010
    assert not book.valid and book.stats["gaps"] == 1
    book.on_diff(diff(1031, 1040, pu=1030))
    book.on_snapshot(snap(1025, BIDS, ASKS))
    assert book.valid and book.last_update_id == 1040 and book.stats["resyncs"] == 1
    assert book.best_ask() == (101.0, 9.0)


# -- crossing, snapshots while valid, limits ---------------------------------------------

def test_crossed_after_diff_invalidates() -> None:
    book, req = spot_book(100)
    book.on_diff(diff(101, 102, bids=[(101.5, 1.0)]))       # bid above the best ask
    assert not book.valid and book.stats["crossed"] == 1
    assert book.invalid_reason == "crossed after diff U=101 u=102: bid 101.5 >= ask 101.0"
    assert req.reasons == [book.invalid_reason]
    assert not book.crossed() and book.best_bid() is None   # cleared, nothing stale
    book.on_diff(diff(103, 104))
    book.on_snapshot(snap(102, BIDS, ASKS))
    assert book.valid and book.stats["resyncs"] == 1


def test_locked_book_counts_as_crossed() -> None:
    book, _ = spot_book(100)
    book.on_diff(diff(101, 101, asks=[(99.0, 1.0)]))        # ask == best bid
    assert not book.valid and book.stats["crossed"] == 1


def test_crossed_snapshot_is_invalid_and_diffs_stay_buffered() -> None:
    req = Requests()
    book = OrderBook(SYM, futures=False, on_needs_snapshot=req)
    book.on_diff(diff(101, 105))
    book.on_snapshot(snap(100, [(102.0, 1.0)], ASKS))
    assert not book.valid and book.stats["crossed"] == 1
    assert (book.invalid_reason or "").startswith("crossed snapshot 100")
    book.on_snapshot(snap(100, BIDS, ASKS))
    assert book.valid and book.last_update_id == 105        # the buffered diff survived


def test_snapshot_while_valid_older_ignored_newer_adopted() -> None:
    book, _ = spot_book(100)
    book.on_diff(diff(101, 110, bids=[(100.0, 1.0)]))
    book.on_snapshot(snap(110, [(1.0, 1.0)], [(2.0, 1.0)]))
    assert book.stats["snapshots_ignored"] == 1 and book.best_bid() == (100.0, 1.0)
    book.on_snapshot(snap(120, [(95.0, 1.0)], [(96.0, 1.0)]))
    assert book.valid and book.last_update_id == 120 and book.best_bid() == (95.0, 1.0)
    book.on_diff(diff(115, 125))                            # must bridge the new snapshot
    assert book.valid
    assert book.stats["syncs"] == 1 and book.stats["resyncs"] == 0


def test_buffer_overflow_drops_oldest() -> None:
    book = OrderBook(SYM, futures=False, max_buffer=3)
    for i in range(5):
        book.on_diff(diff(101 + 10 * i, 110 + 10 * i))
    assert book.stats["buffer_overflow"] == 2
    book.on_snapshot(snap(125, BIDS, ASKS))                 # bridged by 121..130 (kept)
    assert book.valid and book.last_update_id == 150


def test_wrong_symbol_is_ignored() -> None:
    book, _ = spot_book(100)
    book.on_diff(diff(101, 105, bids=[(100.0, 1.0)], sym="ETHUSDT"))
    book.on_snapshot(snap(500, [], [], sym="ETHUSDT"))
    assert book.on_quote(quote(100, 99.0, 1.0, 101.0, 1.0, sym="ETHUSDT")) is None
    assert book.stats["wrong_symbol"] == 3
    assert book.last_update_id == 100 and book.best_bid() == (99.0, 1.0)


def test_failing_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def boom(_: OrderBook) -> None:
        raise RuntimeError("requester down")

    book = OrderBook(SYM, futures=False, on_needs_snapshot=boom)
    book.on_diff(diff(1, 2))
    assert "on_needs_snapshot callback failed" in caplog.text
    assert book.stats["diffs_buffered"] == 1


def test_on_event_routes_by_type() -> None:
    book = OrderBook(SYM, futures=False)
    assert book.on_event(diff(99, 101, bids=[(100.0, 2.0)])) is None
    assert book.on_event(snap(100, BIDS, ASKS)) is None
    assert book.on_event(Trade(SYM, 0, 0, 1, 100.0, 1.0, False)) is None
    assert book.on_event(quote(101, 100.0, 2.0, 101.0, 1.0)) is True
    assert book.last_update_id == 101


# -- bookTicker cross-check ---------------------------------------------------------------

def test_quote_at_the_book_id_agrees_or_disagrees() -> None:
    book, _ = spot_book(100)
    assert book.on_quote(quote(100, 99.0, 1.0, 101.0, 1.0)) is True
    assert book.on_quote(quote(100, 99.0, 1.5, 101.0, 1.0)) is False
    d = book.disagreements[-1]
    assert d.fields == ("bid_qty",) and d.book_top == (99.0, 1.0, 101.0, 1.0)
    assert d.book_update_id == 100
    assert book.stats["quotes_comparable"] == 2 and book.stats["quotes_agree"] == 1
    assert book.stats["quotes_disagree"] == 1


def test_quote_ahead_of_the_book_waits_for_its_diff() -> None:
    book, _ = spot_book(100)
    assert book.on_quote(quote(103, 99.0, 1.0, 100.5, 2.0)) is None    # inside 101..105
    assert book.on_quote(quote(105, 100.0, 1.0, 100.5, 2.0)) is None    # == diff's u
    assert book.on_quote(quote(107, 100.0, 1.0, 100.5, 9.0)) is None    # wrong at 107
    book.on_diff(diff(101, 105, bids=[(100.0, 1.0)], asks=[(100.5, 2.0)]))
    assert book.stats["quotes_not_comparable"] == 1
    assert book.stats["quotes_agree"] == 1
    book.on_diff(diff(106, 107, asks=[(100.5, 3.0)]))
    assert book.stats["quotes_disagree"] == 1
    assert book.disagreements[-1].fields == ("ask_qty",)


def test_late_quote_is_checked_against_history() -> None:
    book = OrderBook(SYM, futures=False, top_history=2)
    book.on_snapshot(snap(100, BIDS, ASKS))
    book.on_diff(diff(101, 105, bids=[(100.0, 1.0)]))
    book.on_diff(diff(106, 110, bids=[(100.0, 2.0)]))
    assert book.on_quote(quote(105, 100.0, 1.0, 101.0, 1.0)) is True   # top after 105
    assert book.on_quote(quote(107, 100.0, 2.0, 101.0, 1.0)) is None   # mid-diff state
    book.on_diff(diff(111, 112))
    assert book.on_quote(quote(105, 100.0, 1.0, 101.0, 1.0)) is None   # out of history
    assert book.stats["quotes_not_comparable"] == 2


def test_quotes_on_invalid_book_are_not_compared() -> None:
    book, _ = spot_book(100)
    book.on_quote(quote(104, 99.0, 1.0, 101.0, 1.0))                     # pending
    book.on_diff(diff(102, 104))                                         # gap
    assert book.on_quote(quote(105, 99.0, 1.0, 101.0, 1.0)) is None
    assert book.stats["quotes_book_invalid"] == 2
    assert book.stats["quotes_comparable"] == 0


# -- properties ---------------------------------------------------------------------------

QTY = st.sampled_from([0.0, 0.0, 0.001, 0.5, 1.0, 2.5, 10.0])
PRICE_TICK = st.integers(min_value=0, max_value=40)


def price(tick: int) -> float:
    return 1000.0 + tick * 0.5


@st.composite
def consistent_steps(draw: st.DrawFn) -> list[tuple[int, list[tuple[int, float]],
                                                     list[tuple[int, float]]]]:
    """Each step: a split tick s, bid changes below s, ask changes at or above s."""
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        s = draw(st.integers(1, 40))
        bids = draw(st.lists(st.tuples(st.integers(0, s - 1), QTY), max_size=8))
        asks = draw(st.lists(st.tuples(st.integers(s, 40), QTY), max_size=8))
        steps.append((s, bids, asks))
    return steps


def check_matches(book: OrderBook, model_b: dict[float, float],
                  model_a: dict[float, float]) -> None:
    assert dict(book.bids) == model_b and dict(book.asks) == model_a
    # The SortedDict's key order must stay consistent with its dict contents.
    assert list(book.bids.keys()) == sorted(model_b)
    assert list(book.asks.keys()) == sorted(model_a)
    assert all(q > 0 for q in book.bids.values()) and all(q > 0 for q in book.asks.values())


@settings(max_examples=150, deadline=None)
@given(steps=consistent_steps(), futures=st.booleans(),
       jumps=st.lists(st.integers(1, 50), min_size=40, max_size=40))
def test_consistent_updates_never_cross_and_zero_levels_vanish(
        steps: list, futures: bool, jumps: list[int]) -> None:
    book = OrderBook(SYM, futures=futures)
    model_b = {price(1): 1.0}
    model_a = {price(30): 1.0}
    book.on_snapshot(snap(100, list(model_b.items()), list(model_a.items())))
    last = 100
    for i, (s, bid_ops, ask_ops) in enumerate(steps):
        cut = price(s)
        # Clear levels that the new split would cross, the way the exchange would.
        bids = [(p, 0.0) for p in model_b if p >= cut] + [(price(t), q) for t, q in bid_ops]
        asks = [(p, 0.0) for p in model_a if p < cut] + [(price(t), q) for t, q in ask_ops]
        first = last + 1 if not futures else last + jumps[i]   # futures ids may skip
        u = first + len(bids) + len(asks)
        book.on_diff(diff(first, u, bids, asks, pu=last if futures else None))
        last = u
        for p, q in bids:
            if q:
                model_b[p] = q
            else:
                model_b.pop(p, None)
        for p, q in asks:
            if q:
                model_a[p] = q
            else:
                model_a.pop(p, None)
        assert book.valid, book.invalid_reason
        assert not book.crossed()
        check_matches(book, model_b, model_a)
        for is_bid, levels, model in ((True, bids, model_b), (False, asks, model_a)):
            for p, q in levels:
                if p not in model:          # set to 0 (and not re-set later in the diff)
                    assert book.qty_at(is_bid, p) == 0.0
                    assert p not in (book.bids if is_bid else book.asks)
        bb, ba = book.best_bid(), book.best_ask()
        if bb and ba:
            assert bb[0] < ba[0] and bb[0] == max(model_b) and ba[0] == min(model_a)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), PRICE_TICK, QTY), min_size=1, max_size=60))
def test_valid_book_is_never_crossed(ops: list[tuple[bool, int, float]]) -> None:
    """Arbitrary (possibly crossing) updates: the book is either valid and uncrossed, or
    invalid with reason 'crossed' exactly when the true state is crossed."""
    book = OrderBook(SYM, futures=False)
    model_b = {price(10): 1.0}
    model_a = {price(20): 1.0}
    book.on_snapshot(snap(1, list(model_b.items()), list(model_a.items())))
    uid = 1
    for is_bid, tick, q in ops:
        uid += 1
        side = model_b if is_bid else model_a
        if q:
            side[price(tick)] = q
        else:
            side.pop(price(tick), None)
        levels = [(price(tick), q)]
        book.on_diff(diff(uid, uid, levels if is_bid else [], [] if is_bid else levels))
        truly_crossed = bool(model_b and model_a and max(model_b) >= min(model_a))
        if truly_crossed:
            assert not book.valid and book.stats["crossed"] == 1
            assert (book.invalid_reason or "").startswith("crossed")
            return
        assert book.valid and not book.crossed()
        check_matches(book, model_b, model_a)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 30), drop=st.sets(st.integers(0, 29), max_size=3),
       futures=st.booleans(), jumps=st.lists(st.integers(1, 9), min_size=30, max_size=30))
def test_gap_detected_exactly_at_the_first_missing_diff(n: int, drop: set[int], futures: bool,
                                                         jumps: list[int]) -> None:
    chain = []
    last = 100
    for i in range(n):
        first = last + (jumps[i] if futures else 1)
        u = first + jumps[i]
        chain.append(diff(first, u, bids=[(price(1), float(i + 1))], pu=last))
        last = u
    drop = {i for i in drop if i < n}
    book = OrderBook(SYM, futures=futures)
    book.on_snapshot(snap(100, [(price(0), 1.0)], [(price(30), 1.0)]))
    for i, d in enumerate(chain):
        if i in drop:
            continue
        book.on_diff(d)
        expect_valid = not any(j < i for j in drop)
        assert book.valid == expect_valid
        if not expect_valid:
            assert book.stats["gaps"] + book.stats["stale_snapshots"] == 1
            break
    if not drop or min(drop) == n - 1:
        assert book.valid


def test_log_is_rate_limited_on_repeated_problems(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    book = OrderBook(SYM, futures=False)
    for k in range(50):
        book.on_snapshot(snap(100 + 10 * k, BIDS, ASKS))
        book.on_diff(diff(102 + 10 * k, 103 + 10 * k))      # a gap each time
    assert book.stats["gaps"] + book.stats["stale_snapshots"] == 50
    assert len(caplog.records) <= 2
