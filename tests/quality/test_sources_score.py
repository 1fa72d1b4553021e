"""Layer 3 (cross-source reconciliation: the consensus rule) and layer 5 (the score),
on hand-made figures."""
from __future__ import annotations

import math

import pytest

from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot
from daemon.quality import score as sc
from daemon.quality.sources import CrossVenue, VenuePrices

S = 1_000_000_000
STALE = 5 * S


def _book(mid: float) -> OrderBook:
    """A real book whose mid is `mid` (snapshot, then a bridging diff)."""
    b = OrderBook("BTCUSDT", futures=False)
    b.on_snapshot(DepthSnapshot("BTCUSDT", S, 10, [(mid - 0.01, 1.0)], [(mid + 0.01, 1.0)]))
    b.on_diff(DepthDiff("BTCUSDT", S, 11, 11, None, [(mid - 0.01, 2.0)], []))
    assert b.valid and b.mid() == pytest.approx(mid)
    return b


def _venue(book=100.0, bid=99.99, ask=100.01, trades=(100.0,) * 5, t=10 * S) -> VenuePrices:
    v = VenuePrices(5)
    if book is not None:
        v.on_book(_book(book), t)
    if bid is not None:
        v.on_quote(bid, ask, t)
    for p in trades:
        v.on_trade(p, t)
    return v


def test_three_agreeing_sources():
    c, problems = _venue().check(10 * S, STALE, 20.0)
    assert c == 100.0 and problems == []


def test_the_odd_one_out_is_the_culprit():
    c, problems = _venue(book=100.5).check(10 * S, STALE, 20.0)   # book 50 bps away
    assert c == 100.0
    assert problems == [("disagree", "book", pytest.approx(50.0, abs=0.01))]


def test_trades_get_half_the_spread():
    # Spread 40 bps: trades at the ask are 20 bps from the mid; allowed 20 + 20.
    v = _venue(bid=99.8, ask=100.2, book=100.0, trades=(100.2,) * 5)
    assert v.check(10 * S, STALE, 20.0)[1] == []
    v = _venue(bid=99.8, ask=100.2, book=100.0, trades=(100.5,) * 5)   # 50 bps > 40
    assert [p[:2] for p in v.check(10 * S, STALE, 20.0)[1]] == [("disagree", "trades")]


def test_two_sources_cannot_name_a_culprit():
    v = _venue(bid=None, book=100.0, trades=(101.0,) * 5)
    c, problems = v.check(10 * S, STALE, 20.0)
    assert c == pytest.approx(100.5)
    assert [p[:2] for p in problems] == [("no_majority", "book/trades")]


def test_a_silent_book_is_stale_while_trades_print():
    v = _venue(t=S)
    v.on_quote(99.99, 100.01, 7 * S)
    v.on_trade(100.0, 9 * S)
    c, problems = v.check(9 * S, STALE, 20.0)
    assert problems == [("stale", "book", 8.0)] and c == 100.0
    # Everything silent (a quiet feed, not a frozen source): nothing to say.
    assert _venue(t=S).check(60 * S, STALE, 20.0) == (None, [])


def test_bad_values_are_ignored():
    v = VenuePrices(3)
    for bad in (math.nan, math.inf, -1.0, 0.0):
        v.on_trade(bad, S)
        v.on_quote(bad, 1.0, S)
    v.on_quote(101.0, 100.0, S)       # crossed
    assert v.check(S, STALE, 20.0) == (None, [])
    assert v.trade_median() is None


def test_cross_venue_basis_against_its_average():
    cv = CrossVenue(cross_bps=50.0, halflife_s=300.0, sample_s=1.0)
    for _ in range(100):
        assert cv.sample(60_000.0, 60_030.0) is None            # basis 5 bps
    assert cv.avg == pytest.approx(5.0)
    off = cv.sample(60_000.0, 60_600.0)                          # basis 100 bps
    assert off == pytest.approx(95.0) and cv.divergences == 1
    assert cv.avg == pytest.approx(5.0)                          # not dragged along
    assert cv.sample(math.nan, 1.0) is None and cv.sample(0.0, 1.0) is None


def test_score_parts_and_geometric_mean():
    p = sc.parts(received=90, missing=10, events=200, late=20, silence_ns=2 * S,
                 interval_ns=10 * S, invalid=10, samples=10, sample_problems=1,
                 filtered=100, outliers=5)
    assert p == pytest.approx({"completeness": 0.9, "timeliness": 0.9 * 0.8,
                               "validity": 0.95, "consistency": 0.9, "accuracy": 0.95})
    assert sc.score(p) == pytest.approx((0.9 * 0.72 * 0.95 * 0.9 * 0.95) ** 0.2)
    empty = sc.parts(received=0, missing=0, events=0, late=0, silence_ns=0, interval_ns=0,
                     invalid=0, samples=0, sample_problems=0, filtered=0, outliers=0)
    assert empty == dict.fromkeys(sc.PARTS, 1.0) and sc.score(empty) == 1.0
    silent = sc.parts(received=0, missing=0, events=0, late=0, silence_ns=5 * S,
                      interval_ns=5 * S, invalid=0, samples=0, sample_problems=0,
                      filtered=0, outliers=0)
    assert silent["timeliness"] == 0.0 and sc.score(silent) == 0.0
    weird = sc.parts(received=-1, missing=0, events=1, late=5, silence_ns=10 * S,
                     interval_ns=S, invalid=3, samples=1, sample_problems=2, filtered=1,
                     outliers=9)
    assert all(0.0 <= v <= 1.0 for v in weird.values())
    assert sc.score({"validity": math.nan}) == 0.0
