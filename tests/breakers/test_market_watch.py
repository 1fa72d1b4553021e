"""Market figures: level-1 OFI (Cont, Kukanov & Stoikov) by hand, spread in bps, rolling
medians, robust z of interval volume, and degenerate values ignored and counted."""
from __future__ import annotations

import math

import pytest

from daemon.safety.breakers.market_watch import (MarketWatch, RollingMedian, median,
                                                 robust_z)

S = 1_000_000_000


def watch(**kw) -> MarketWatch:
    base = dict(spread_window_ns=10 * S, ofi_window_ns=5 * S, volume_interval_ns=1 * S,
                volume_window=4)
    base.update(kw)
    return MarketWatch(**base)


def test_rolling_median_odd_even_and_expiry_at_the_window():
    m = RollingMedian(10)
    assert m.median() is None and len(m) == 0
    m.add(0, 5.0)
    assert m.median() == 5.0
    m.add(1, 1.0)
    assert m.median() == 3.0
    m.add(2, 9.0)
    assert m.median() == 5.0 and len(m) == 3
    m.add(10, 7.0)                   # the one at 0 is exactly 10 old: kept
    assert len(m) == 4 and m.median() == 6.0
    m.add(11, 7.0)                   # now it goes
    assert len(m) == 4 and m.median() == 7.0
    m.expire(100)
    assert len(m) == 0 and m.median() is None


def test_median_and_robust_z():
    assert median([3.0]) == 3.0 and median([4.0, 1.0]) == 2.5 and median([5, 1, 3]) == 3
    med, mad, z = robust_z(10.0, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert (med, mad) == (3.0, 1.0) and z == pytest.approx(7 / 1.4826)
    assert robust_z(10.0, [2.0, 2.0, 2.0, 7.0]) == (2.0, 0.0, None)


def test_ofi_events_by_hand():
    w = watch()
    first = w.on_book(100.0, 1.0, 101.0, 2.0, 0)
    assert first.ofi == 0 and first.depth_median == 1.5 and first.ofi_norm == 0
    assert first.first_ns == 0 and first.spread_bps == pytest.approx(1 / 100.5 * 1e4)
    # Same prices, bid size 1 -> 3: e = 3 - 1 (bid) + (-2 + 2) (ask) = 2.
    f = w.on_book(100.0, 3.0, 101.0, 2.0, 1)
    assert f.ofi == 2.0
    # Both up: the bid is new (+5), the ask level was taken away (+2, its old size).
    f = w.on_book(101.0, 5.0, 102.0, 4.0, 2)
    assert f.ofi == 2.0 + 5.0 + 2.0
    # Both down: the old bid went (-5), a new, lower ask (-6).
    f = w.on_book(100.5, 7.0, 101.5, 6.0, 3)
    assert f.ofi == 9.0 - 5.0 - 6.0
    # Depth medians of (B + A) / 2 over 1.5, 2.5, 4.5, 6.5: 3.5.
    assert f.depth_median == 3.5 and f.ofi_norm == pytest.approx(-2.0 / 3.5)
    assert f.first_ns == 0


def test_ofi_window_drops_old_events_and_empties_exactly():
    w = watch(ofi_window_ns=5 * S)
    w.on_book(100.0, 1.0, 101.0, 1.0, 0)
    w.on_book(100.1, 1.0, 101.0, 1.0, 1 * S)      # +1 (bid up), ask same: -1 + 1
    f = w.on_book(100.1, 1.0, 101.0, 1.0, 6 * S)  # e = 0, the first event is exactly 5 s old
    assert f.ofi == 1.0
    f = w.on_book(100.1, 1.1, 101.0, 1.0, 6 * S + 1)
    assert f.ofi == pytest.approx(0.1)
    f = w.on_book(100.1, 1.1, 101.0, 1.0, 100 * S)  # everything older than 5 s is gone
    assert f.ofi == 0.0


def test_spread_median_over_its_own_window():
    w = watch(spread_window_ns=10 * S)
    w.on_book(100.0, 1.0, 100.02, 1.0, 0)
    f = w.on_book(100.0, 1.0, 100.10, 1.0, 1 * S)
    assert f.spread_median_bps == pytest.approx((0.02 / 100.01 + 0.1 / 100.05) / 2 * 1e4)
    f = w.on_book(100.0, 1.0, 100.10, 1.0, 12 * S)
    assert f.spread_median_bps == pytest.approx(0.1 / 100.05 * 1e4)


@pytest.mark.parametrize("top,why", [
    ((math.nan, 1.0, 101.0, 1.0), "not_finite"),
    ((100.0, math.inf, 101.0, 1.0), "not_finite"),
    ((100.0, 1.0, -math.inf, 1.0), "not_finite"),
    ((100.0, 1.0, 101.0, math.nan), "not_finite"),
    ((100.0, 1.0, 101.0, math.inf), "not_finite"),
    ((100.0, 1.0, 0.0, 1.0), "price_not_positive"),
    ((100.0, 1.0, 101.0, 0.0), "zero_depth"),
    ((0.0, 1.0, 101.0, 1.0), "price_not_positive"),
    ((100.0, 1.0, -1.0, 1.0), "price_not_positive"),
    ((100.0, 0.0, 101.0, 1.0), "zero_depth"),
    ((100.0, 1.0, 101.0, -2.0), "zero_depth"),
    ((101.0, 1.0, 101.0, 1.0), "crossed"),
    ((102.0, 1.0, 101.0, 1.0), "crossed"),
])
def test_degenerate_tops_are_ignored_and_counted(top, why):
    w = watch()
    w.on_book(100.0, 1.0, 101.0, 1.0, 0)
    assert w.on_book(*top, 1) is None
    assert dict(w.ignored) == {why: 1}
    assert w.on_book(*top, 1) is None
    assert dict(w.ignored) == {why: 2}, "each one is counted"
    f = w.on_book(100.0, 1.0, 101.0, 1.0, 2)
    assert f.ofi == 0.0 and len(w.spread_median) == 2, "the bad sample left no trace"


def test_prices_below_one_are_real_prices():
    w = watch()
    assert w.on_book(0.5, 1.0, 0.9, 1.0, 0) is not None
    assert w.on_trade(0.5, 1.0, 0) == [] and w._bucket == 1.0
    assert not w.ignored


def test_a_degenerate_first_sample_does_not_start_the_warm_up():
    w = watch()
    w.on_book(0.0, 1.0, 101.0, 1.0, 0)
    assert w.first_ns is None
    assert w.on_book(100.0, 1.0, 101.0, 1.0, 5).first_ns == 5


@pytest.mark.parametrize("price,qty", [(math.nan, 1.0), (100.0, math.inf), (0.0, 1.0),
                                       (100.0, 0.0), (100.0, -1.0), (-5.0, 1.0)])
def test_degenerate_trades_are_ignored_and_counted(price, qty):
    w = watch()
    assert w.on_trade(price, qty, 0) is None
    assert w.on_trade(price, qty, 0) is None
    assert dict(w.ignored) == {"bad_trade": 2} and w._bucket == 0.0


def test_volume_intervals_close_with_figures_against_the_history():
    w = watch(volume_interval_ns=1 * S, volume_window=4)
    assert w.on_trade(100.0, 1.0, int(0.5 * S)) == []        # the first opens [0, 1 s)
    assert w.on_trade(100.0, 2.0, int(0.9 * S)) == []
    (v,) = w.on_trade(100.0, 4.0, int(1.0 * S))              # exactly 1 s closes [0, 1)
    assert (v.start_ns, v.volume, v.median, v.mad, v.z, v.history) == \
        (0, 3.0, None, None, None, 0)
    out = w.on_trade(100.0, 1.0, int(3.2 * S))                # closes [1, 2) and [2, 3)
    assert [(x.start_ns, x.volume) for x in out] == [(1 * S, 4.0), (2 * S, 0.0)]
    assert (out[0].median, out[0].history) == (3.0, 1)
    assert out[1].median == 3.5 and out[1].mad == 0.5
    assert out[1].z == pytest.approx((0.0 - 3.5) / (1.4826 * 0.5))
    assert list(w.volumes) == [3.0, 4.0, 0.0]
    assert w.tick(int(3.99 * S)) == []
    (v,) = w.tick(4 * S)
    assert (v.start_ns, v.volume, v.history) == (3 * S, 1.0, 3)
    assert list(w.volumes) == [3.0, 4.0, 0.0, 1.0]
    w.tick(5 * S)
    assert list(w.volumes) == [4.0, 0.0, 1.0, 0.0], "the history keeps volume_window intervals"


def test_a_long_silence_closes_at_most_one_window_of_empty_intervals():
    w = watch(volume_interval_ns=1 * S, volume_window=4)
    w.on_trade(100.0, 7.0, 0)
    out = w.tick(1000 * S + 1)
    assert len(out) == 1 + 4 and out[0].volume == 7.0 and out[0].start_ns == 0
    assert [x.start_ns for x in out[1:]] == [996 * S, 997 * S, 998 * S, 999 * S]
    assert list(w.volumes) == [0.0] * 4
    assert w.tick(1000 * S + 2) == [] and w.tick(1001 * S)[0].start_ns == 1000 * S


def test_a_silence_of_exactly_one_window_closes_every_interval():
    w = watch(volume_interval_ns=1 * S, volume_window=4)
    w.on_trade(100.0, 7.0, 0)
    out = w.tick(5 * S)
    assert [x.start_ns for x in out] == [0, 1 * S, 2 * S, 3 * S, 4 * S]
    assert w.tick(6 * S)[0].start_ns == 5 * S


def test_the_first_interval_is_aligned_to_the_interval():
    w = watch(volume_interval_ns=10)
    assert w.tick(37) == []
    (v,) = w.tick(40)
    assert v.start_ns == 30
