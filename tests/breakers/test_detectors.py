"""Each detector: trips at its threshold with the figures in the reason, does not trip just
below, ignores what it must ignore. The adaptive error-rate threshold is checked against
scipy's Beta distribution and, as a property, against its configured bounds."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from daemon.safety.breakers.detectors import (ConsecutiveErrors, ErrorRate, LatencySpike,
                                              RejectStorm, SpreadBlowout, StaleBook,
                                              ToxicFlow, Trip, VolumeAnomaly,
                                              prob_rate_above)
from daemon.safety.breakers.market_watch import BookFigures, VolumeFigures

S = 1_000_000_000
MS = 1_000_000


# -- error rate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("errors,n,rate", [(0, 0, 0.25), (0, 10, 0.25), (3, 10, 0.25),
                                           (10, 10, 0.5), (7, 40, 0.1), (120, 500, 0.2),
                                           (1, 3, 0.9), (2000, 9000, 0.25)])
def test_posterior_tail_matches_scipy_beta(errors, n, rate):
    expected = stats.beta(1 + errors, 1 + n - errors).sf(rate)
    assert prob_rate_above(errors, n, rate) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def err(**kw) -> ErrorRate:
    base = dict(window_ns=60 * S, min_orders=10, rate_max=0.25, floor=0.1, ceiling=0.6,
                confidence=0.95)
    base.update(kw)
    return ErrorRate(**base)


def test_error_rate_decision_rules():
    e = err()
    # Below the floor: never, however many orders and whatever the posterior says.
    e2 = err(rate_max=0.05, floor=0.1)
    assert prob_rate_above(9, 100, 0.05) > 0.95 and not e2.decide(9, 100)
    assert e2.decide(10, 100)                       # exactly the floor: the posterior decides
    # At or above the ceiling: always, even with few orders and a weak posterior.
    assert prob_rate_above(6, 10, 0.25) < 0.999 and e.decide(6, 10)
    e3 = err(rate_max=0.5, ceiling=0.6, confidence=0.99)
    assert prob_rate_above(6, 10, 0.5) < 0.99 and e3.decide(6, 10)
    assert not e3.decide(5, 10)
    # In between: the posterior against the confidence.
    assert prob_rate_above(5, 10, 0.25) > 0.95 and e.decide(5, 10)
    assert prob_rate_above(4, 10, 0.25) < 0.95 and not e.decide(4, 10)


def test_confidence_is_a_strict_bound():
    p = prob_rate_above(5, 10, 0.25)
    assert not err(confidence=p).decide(5, 10)
    assert err(confidence=math.nextafter(p, 0)).decide(5, 10)


def test_effective_threshold_adapts_to_the_number_of_orders():
    e = err()
    th = {n: e.effective_threshold(n) for n in (10, 20, 100, 1000)}
    assert th[10] == 0.5 and th[20] == 0.45
    assert th[10] >= th[20] >= th[100] >= th[1000]
    assert 0.25 < th[1000] < 0.3, "many orders: close to rate_max"
    assert err(ceiling=0.3).effective_threshold(10) == 0.3
    assert err(floor=0.3, rate_max=0.3, ceiling=0.3).effective_threshold(1000) == 0.3


@settings(max_examples=200, deadline=None)
@given(floor=st.floats(0.01, 0.9), span=st.floats(0, 1), top=st.floats(0, 1),
       confidence=st.floats(0.5, 0.9999), n=st.integers(1, 250), errors=st.integers(0, 250))
def test_adaptive_threshold_stays_within_the_configured_bounds(floor, span, top, confidence,
                                                              n, errors):
    rate_max = floor + (0.99 - floor) * span
    ceiling = rate_max + (1 - rate_max) * top
    e = err(rate_max=rate_max, floor=floor, ceiling=ceiling, confidence=confidence)
    th = e.effective_threshold(n)
    # The threshold is an observed rate e/n: the smallest one at or above the floor can be
    # one step of 1/n above it, and the ceiling is reached from below the same way.
    assert floor <= th <= ceiling + 1 / n
    errors = min(errors, n)
    r = errors / n
    if r >= ceiling:
        assert e.decide(errors, n)
    if r < floor:
        assert not e.decide(errors, n)
    assert e.decide(errors, n) == (r >= th), "decide is a threshold on the observed rate"


def test_error_rate_trips_on_a_failure_with_the_figures_in_the_reason():
    e = err()
    for i in range(5):
        assert e.record(False, i * S) is None
    for i in range(4):
        assert e.record(True, (5 + i) * S) is None, "4/9: fewer than min_orders"
    trip = e.record(True, 9 * S)
    assert trip == Trip(
        "error rate 5/10 = 50% in 60 s (P(rate > 25%) = 0.966, threshold now 50%)",
        {"errors": "5", "orders": "10", "rate": "0.5", "p_above": "0.9657",
         "rate_max": "0.25", "window_s": "60"})


def test_error_rate_just_below_does_not_trip_and_a_success_never_trips():
    e = err()
    for i in range(6):
        e.record(False, i)
    for i in range(4):
        assert e.record(True, 10 + i) is None      # 4/10: P = 0.92 < 0.95
    e2 = err(min_orders=2, floor=0.01, rate_max=0.01, ceiling=0.02)
    e2.record(True, 0)
    assert e2.record(False, 1) is None, "a success is never the outcome that trips"


def test_error_rate_window_forgets_old_outcomes_and_clear():
    e = err(min_orders=2, rate_max=0.3, floor=0.3, ceiling=0.5)
    e.record(True, 0)
    e.record(True, 60 * S)                  # exactly the window: both count
    assert e.errors == 2 and len(e._outcomes) == 2
    e.record(False, 60 * S + 1)              # the first is now older than the window
    assert e.errors == 1 and len(e._outcomes) == 2
    e.clear()
    assert e.errors == 0 and not e._outcomes


# -- reject storm / consecutive errors ----------------------------------------------------
def test_reject_storm_one_past_the_limit_within_a_minute():
    r = RejectStorm(3)
    assert [r.record(t * S) for t in range(3)] == [None] * 3
    trip = r.record(60 * S)                  # the one at 0 is exactly a minute old: counts
    assert trip == Trip("4 rejects in the last minute (max 3)",
                        {"rejects": "4", "max_per_min": "3"})
    r.clear()
    for t in (0, 1, 2):
        r.record(t)
    assert r.record(60 * S + 1) is None, "the one at 0 is more than a minute old"


def test_consecutive_errors_reset_by_a_success():
    c = ConsecutiveErrors(3)
    assert c.error("timeout") is None and c.error("timeout") is None
    c.success()
    assert c.error("a") is None and c.error("b") is None
    assert c.error("connection reset") == Trip(
        "3 venue errors in a row (max 3), last: connection reset",
        {"errors": "3", "max": "3", "last": "connection reset"})
    c.clear()
    assert c.count == 0
    assert ConsecutiveErrors(1).error("x") is not None


# -- latency -----------------------------------------------------------------------------------
def lat(**kw) -> LatencySpike:
    base = dict(factor=5.0, floor_ns=100 * MS, window=10, warmup=4, spikes=2)
    base.update(kw)
    return LatencySpike(**base)


def test_latency_needs_its_warm_up():
    d = lat()
    for _ in range(3):
        assert d.ack(10 * MS) is None
    assert d.threshold_ns() is None and not d.is_spike(10**12)
    assert d.ack(10**12) is None and d.run == 0, "during warm-up a slow ack is a sample"
    assert d.threshold_ns() == 100 * MS       # median 10 ms x 5 = 50 ms: the floor rules


def test_latency_spike_above_factor_times_median_and_floor():
    d = lat(floor_ns=1 * MS)
    for v in (40, 40, 40, 40):
        d.ack(v * MS)
    assert d.threshold_ns() == 200 * MS
    assert d.ack(200 * MS) is None and d.run == 0, "exactly the threshold is not a spike"
    assert d.ack(200 * MS + 1) is None and d.run == 1
    trip = d.ack(250 * MS)
    assert trip == Trip("ack latency 250.0 ms above 200.0 ms (5 x median 40.0 ms, floor 1 ms)"
                        ", 2 in a row",
                        {"latency_ms": "250", "median_ms": "40", "threshold_ms": "200",
                         "in_a_row": "2"})


def test_latency_floor_and_a_normal_ack_breaks_the_run():
    d = lat(floor_ns=500 * MS)
    for _ in range(4):
        d.ack(10 * MS)
    assert d.ack(499 * MS) is None and d.run == 0, "below the floor is no spike"
    assert d.ack(501 * MS) is None and d.run == 1
    assert d.ack(10 * MS) is None and d.run == 0
    assert d.ack(501 * MS) is None
    assert d.ack(-5) is None and d.run == 1, "a negative latency is ignored"
    assert d.ack(600 * MS) is not None
    assert lat(spikes=1, floor_ns=1, warmup=3).ack(1) is None


def test_spikes_stay_out_of_the_median_and_the_window_is_bounded():
    d = lat(floor_ns=1, window=5, warmup=3, spikes=100)
    for v in (10, 10, 10):
        d.ack(v * MS)
    for _ in range(20):
        d.ack(10**12)
    assert d.threshold_ns() == 50 * MS
    for v in (20, 20, 20, 20, 20):
        d.ack(v * MS)
    assert list(d._lat) == [20 * MS] * 5 and d.threshold_ns() == 100 * MS


# -- market ---------------------------------------------------------------------------------
def book(ts: float, *, spread=1.0, median=1.0, ofi=0.0, first=0.0) -> BookFigures:
    return BookFigures(int(ts * S), spread, median, ofi * 3, 3.0, ofi, int(first * S))


def test_toxic_flow_needs_warm_up_hold_and_two_samples():
    d = ToxicFlow(max_abs=10, hold_ns=2 * S, warmup_ns=5 * S, window_ns=10 * S)
    assert d.observe(book(1, ofi=50), "BTCUSDT") is None
    assert d.observe(book(4.9, ofi=50), "BTCUSDT") is None, "warm-up: not counted"
    assert d.observe(book(5, ofi=50), "BTCUSDT") is None       # starts the hold
    assert d.observe(book(6.9, ofi=50), "BTCUSDT") is None
    trip = d.observe(book(7, ofi=10.5), "BTCUSDT")
    assert trip == Trip("BTCUSDT toxic flow: one-sided buying, order-flow imbalance +10.5 x "
                        "median depth over 10 s (max 10) for 2.0 s",
                        {"symbol": "BTCUSDT", "ofi_norm": "10.5", "ofi": "31.5",
                         "depth_median": "3", "max_abs": "10", "held_s": "2"})


def test_toxic_flow_just_below_or_interrupted_or_flipping_does_not_trip():
    d = ToxicFlow(max_abs=10, hold_ns=2 * S, warmup_ns=0, window_ns=10 * S)
    for t in range(10):
        assert d.observe(book(t, ofi=10.0), "X") is None, "exactly max_abs is not over"
    d = ToxicFlow(max_abs=10, hold_ns=2 * S, warmup_ns=0, window_ns=10 * S)
    d.observe(book(0, ofi=20), "X")
    d.observe(book(1, ofi=5), "X")             # the hold starts again
    d.observe(book(2, ofi=20), "X")
    assert d.observe(book(3.9, ofi=20), "X") is None
    d = ToxicFlow(max_abs=10, hold_ns=2 * S, warmup_ns=0, window_ns=10 * S)
    for t, v in enumerate([20, -20, 20, -20, 20]):
        assert d.observe(book(t, ofi=v), "X") is None, "the sign must hold too"


def test_toxic_flow_selling_side_and_a_zero_hold_still_needs_two_samples():
    d = ToxicFlow(max_abs=10, hold_ns=0, warmup_ns=0, window_ns=1 * S)
    assert d.observe(book(0, ofi=-30), "ETHUSDT") is None, "one sample never trips"
    trip = d.observe(book(0.5, ofi=-30), "ETHUSDT")
    assert trip is not None and "one-sided selling" in trip.reason and "-30.0" in trip.reason
    assert trip.figures["held_s"] == "0.5"


def test_spread_blowout_factor_floor_hold_and_warm_up():
    d = SpreadBlowout(factor=10, floor_bps=5, hold_ns=1 * S, warmup_ns=2 * S)
    assert d.observe(book(1, spread=100, median=1), "X") is None        # warm-up
    assert d.observe(book(2, spread=10, median=1), "X") is None         # exactly 10 x median
    d.observe(book(3, spread=10.1, median=1), "X")
    trip = d.observe(book(4, spread=12, median=1), "X")
    assert trip == Trip("X spread blow-out: 12.00 bps above 10.00 bps (10 x median 1 bps, "
                        "floor 5 bps) for 1.0 s",
                        {"symbol": "X", "spread_bps": "12", "median_bps": "1",
                         "limit_bps": "10", "held_s": "1"})
    d2 = SpreadBlowout(factor=10, floor_bps=5, hold_ns=0, warmup_ns=0)
    d2.observe(book(0, spread=5, median=0.01), "X")
    assert d2.observe(book(1, spread=5, median=0.01), "X") is None, "exactly the floor"
    d2.observe(book(2, spread=5.01, median=0.01), "X")
    assert d2.observe(book(3, spread=5.01, median=0.01), "X") is not None
    d3 = SpreadBlowout(factor=10, floor_bps=5, hold_ns=2 * S, warmup_ns=0)
    d3.observe(book(0, spread=50, median=1), "X")
    assert d3.observe(book(1.999, spread=50, median=1), "X") is None


def vol(z, history=30, volume=100.0) -> VolumeFigures:
    return VolumeFigures(0, volume, 10.0, 2.0, z, history)


def test_volume_anomaly_threshold_warm_up_and_no_scale():
    d = VolumeAnomaly(z_max=20, warmup=20, interval_ns=5 * S)
    assert d.observe(vol(1000, history=19), "BTCUSDT") is None
    assert d.observe(vol(20.0), "BTCUSDT") is None, "exactly z_max"
    assert d.observe(vol(None), "BTCUSDT") is None and d.no_scale == 1
    trip = d.observe(vol(20.5, history=20), "BTCUSDT")
    assert trip == Trip("BTCUSDT volume anomaly: 100 traded in 5 s, robust z 20.5 > 20 "
                        "(median 10, MAD 2 over 20 intervals)",
                        {"symbol": "BTCUSDT", "volume": "100", "z": "20.5", "median": "10",
                         "mad": "2", "z_max": "20"})
    assert d.observe(vol(None, history=3), "X") is None and d.no_scale == 1, \
        "warm-up first: no-scale only counted once warm"


def test_stale_book_boundary_and_episodes():
    d = StaleBook(5 * S)
    d.state("BTCUSDT", True, 0)
    assert d.check(100 * S) is None
    d.state("BTCUSDT", False, 10 * S)
    d.state("BTCUSDT", False, 12 * S)               # the same episode
    assert d.check(15 * S) is None
    assert d.check(15 * S + 1) == Trip("BTCUSDT order book invalid for 5.0 s",
                                       {"symbol": "BTCUSDT", "invalid_s": "5",
                                        "max_s": "5"})
    d.state("BTCUSDT", True, 16 * S)
    assert d.check(100 * S) is None
    d.state("ETHUSDT", False, 0)
    d.clear()
    assert d.check(100 * S) is None


# -- boundaries the mutation check asked for ------------------------------------------------
def test_posterior_tail_is_capped_at_one_against_rounding():
    # Summed in floats, P(Binomial(11, 0.01) <= 10) comes out a hair above 1.
    assert prob_rate_above(10, 10, 0.01) == 1.0


def test_effective_threshold_can_be_zero_when_the_posterior_alone_decides():
    """With no floor, one outcome and a tiny rate_max, even no failure is evidence enough
    (P(p > 0.01 | Beta(1, 2)) = 0.98): the bisection starts at zero failures."""
    e = err(floor=0.0, rate_max=0.01, ceiling=0.5, min_orders=1)
    assert e.decide(0, 1) and e.effective_threshold(1) == 0.0


def test_error_rate_window_subtracts_each_expired_failure():
    e = err(min_orders=1000)
    for t in (0, 1, 2):
        e.record(True, t)
    e.record(False, 60 * S + 1)               # expires the first failure only
    assert e.errors == 2
    e.record(False, 60 * S + 3)               # and now the other two
    assert e.errors == 0


def test_latency_the_first_spike_after_warm_up_starts_a_run_of_one():
    d = lat(floor_ns=1)
    for _ in range(4):
        d.ack(10 * MS)
    assert d.run == 0
    assert d.ack(1000 * MS) is None and d.run == 1


def test_latency_zero_is_a_real_ack_time():
    d = lat(warmup=3, floor_ns=1)
    for _ in range(3):
        d.ack(0)
    assert d.threshold_ns() == 1, "three samples of 0 ns: warm, median 0, the floor rules"


def test_latency_is_spike_is_strictly_above_the_threshold():
    d = lat(floor_ns=100 * MS)
    for _ in range(4):
        d.ack(10 * MS)
    assert not d.is_spike(100 * MS) and d.is_spike(100 * MS + 1)


def test_latency_figures_are_milliseconds_to_the_tenth():
    d = lat(factor=4.0, floor_ns=200_050_100, warmup=4, spikes=1)
    for _ in range(4):
        d.ack(40_050_100)
    trip = d.ack(250_050_100)
    assert trip == Trip("ack latency 250.1 ms above 200.1 ms (4 x median 40.1 ms, floor "
                        "200.05 ms), 1 in a row",
                        {"latency_ms": "250.1", "median_ms": "40.05", "threshold_ms": "200.1",
                         "in_a_row": "1"})


def test_market_warm_up_counts_from_the_first_sample_and_includes_its_end():
    sp = SpreadBlowout(factor=10, floor_bps=5, hold_ns=0, warmup_ns=2 * S)
    assert sp.observe(book(11, spread=50, first=10), "X") is None
    assert sp.observe(book(11.5, spread=50, first=10), "X") is None, "not warm before 12 s"
    sp = SpreadBlowout(factor=10, floor_bps=5, hold_ns=0, warmup_ns=2 * S)
    sp.observe(book(12, spread=50, first=10), "X")          # exactly warm: counts
    assert sp.observe(book(12.5, spread=50, first=10), "X") is not None
    tf = ToxicFlow(max_abs=10, hold_ns=0, warmup_ns=2 * S, window_ns=S)
    assert tf.observe(book(11, ofi=50, first=10), "X") is None
    assert tf.observe(book(11.5, ofi=50, first=10), "X") is None
    tf = ToxicFlow(max_abs=10, hold_ns=0, warmup_ns=2 * S, window_ns=S)
    tf.observe(book(12, ofi=50, first=10), "X")
    assert tf.observe(book(12.5, ofi=50, first=10), "X") is not None


def test_toxic_flow_exactly_minus_max_is_not_over():
    d = ToxicFlow(max_abs=10, hold_ns=0, warmup_ns=0, window_ns=S)
    for t in range(5):
        assert d.observe(book(t, ofi=-10.0), "X") is None


def test_volume_no_scale_counts_every_skipped_interval():
    d = VolumeAnomaly(z_max=20, warmup=5, interval_ns=S)
    d.observe(vol(None), "X")
    d.observe(vol(None), "X")
    assert d.no_scale == 2


def test_latency_median_is_shown_in_milliseconds():
    d = lat(factor=4.0, floor_ns=1, warmup=4, spikes=1)
    for _ in range(4):
        d.ack(40_050_010)
    assert "(4 x median 40.1 ms," in d.ack(10**12).reason
    d = lat(factor=4.0, floor_ns=1, warmup=4, spikes=1)
    for _ in range(4):
        d.ack(12_345_010)
    assert d.ack(10**12).figures["median_ms"] == "12.35"
