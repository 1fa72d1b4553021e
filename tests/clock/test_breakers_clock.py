"""Every time-based breaker rule fires on the engine's clock, in replay (event time) and
live (wall time): one test per rule, run in both modes (the `tl` fixture, conftest.py).

The outcome rules (error rate, reject storm, consecutive errors, latency) are fed with the
time the gateway stamps them with, which is the engine's clock (`tl.at`); the time-based
transitions (cooldown, probe window, probe timeout, stale book, volume intervals) run on
`Protection.poll`, which reads the same clock. Market rules take the event's receive time.
"""
from __future__ import annotations

from decimal import Decimal

from tests.clock.conftest import Timeline
from tests.clock.rigs import SYM, VENUE, poll, protection, state


def _reject(p, tl: Timeline, s: float, cid: str = "c") -> None:
    p.board.on_reject(VENUE, cid, "post-only order would take liquidity", tl.at(s))


def test_reject_storm_counts_the_last_minute_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"max_rejects_per_min": 3})
    for s in (0, 20, 40):
        _reject(p, tl, s)
        poll(p)
    assert state(p) == "closed"
    _reject(p, tl, 60)                   # the first is exactly 60 s old: still counted
    assert state(p) == "open"
    assert p.board.breakers[VENUE].since_ns == tl.ns(60)


def test_reject_storm_forgets_rejects_older_than_a_minute_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"max_rejects_per_min": 3})
    for k in range(12):                  # 12 rejects, never 4 within 60 s
        _reject(p, tl, k * 20.001)
        poll(p)
    assert state(p) == "closed"


def test_error_rate_window_is_engine_time(tmp_path, tl):
    cfg = {"max_rejects_per_min": 1000, "error_window_s": 60, "error_min_orders": 10,
           "error_rate_ceiling": 0.5}
    p = protection(tmp_path, tl, breakers=cfg)
    for k in range(9):                   # 9 failures, then one 61 s later: a window of 1
        _reject(p, tl, k)
    _reject(p, tl, 70)
    assert state(p) == "closed"
    q = protection(tmp_path, tl, breakers=cfg, name="j2.sqlite3")
    for k in range(9):                   # the same 10 failures inside 60 s trip
        _reject(q, tl, 71 + k)
        assert state(q) == "closed", "fired before min_orders outcomes"
    _reject(q, tl, 71 + 60)
    assert state(q) == "open" and "error rate 10/10" in q.board.breakers[VENUE].reason


def test_consecutive_errors_trip_at_engine_time_and_cool_down_on_it(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"max_consecutive_errors": 3})
    for s in (0, 1):
        p.board.on_error(VENUE, "timeout", tl.at(s))
    assert state(p) == "closed"
    p.board.on_error(VENUE, "timeout", tl.at(2))
    assert state(p) == "open" and p.board.breakers[VENUE].since_ns == tl.ns(2)
    tl.at(2 + 9.999)
    poll(p)
    assert state(p) == "open", "cooldown (10 s) over early"
    tl.at(12)
    poll(p)
    assert state(p) == "half_open"


def test_ack_latency_spike_is_measured_on_the_engine_clock(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"latency_warmup": 3, "latency_factor": 5,
                                           "latency_floor_ms": 1, "latency_spikes": 2})
    t = 0.0
    clock = tl.clock

    def ack(cid: str, took_s: float) -> None:
        nonlocal t
        tl.at(t)
        sent = clock()                   # what the gateway reads when the order leaves
        t += took_s
        tl.at(t)
        p.board.on_ack(VENUE, cid, clock() - sent, clock())
        t += 1

    for k in range(3):
        ack(f"w{k}", 0.010)              # warm-up: a 10 ms median
    ack("s1", 0.200)                     # 200 ms > 5 x 10 ms: one spike
    assert state(p) == "closed", "one spike is not latency_spikes=2"
    ack("s2", 0.200)
    assert state(p) == "open" and "ack latency 200.0 ms" in p.board.breakers[VENUE].reason


def _open_then_half_open(p, tl: Timeline) -> float:
    """Trip the venue breaker by hand at 0 (automatic kind) and poll past its 10 s
    cooldown; returns the engine second it went half-open."""
    p.board.trip(VENUE, "test", tl.at(0), manual=False)
    tl.at(10)
    poll(p)
    assert state(p) == "half_open"
    return 10.0


def test_probe_window_closes_on_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"probe_window_s": 5})
    t0 = _open_then_half_open(p, tl)
    tl.at(t0 + 4.999)
    poll(p)
    assert state(p) == "half_open"
    tl.at(t0 + 5)
    poll(p)
    assert state(p) == "closed"


def test_an_unacknowledged_probe_fails_after_the_latency_floor_of_engine_time(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"latency_floor_ms": 500})
    t0 = _open_then_half_open(p, tl)
    assert p.board.allow(VENUE, Decimal("10"), False, tl.at(t0 + 1), "probe-1") is None
    tl.at(t0 + 1.5)
    poll(p)
    assert state(p) == "half_open", "a probe 500 ms old has not timed out yet"
    tl.at(t0 + 1.501)
    poll(p)
    assert state(p) == "open" and "probe not acknowledged within 500 ms" in \
        p.board.breakers[VENUE].reason


def _tops(p, tl: Timeline, t0: float, t1: float, step: float, top) -> None:
    t = t0
    while t <= t1 + 1e-9:
        bid, bq, ask, aq = top(t)
        p.board.on_book(SYM, VENUE, bid, bq, ask, aq, tl.at(t))
        t = round(t + step, 6)


def test_toxic_flow_holds_for_its_time_after_the_warm_up(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"market_warmup_s": 3, "ofi_window_s": 1,
                                           "ofi_max": 1, "ofi_hold_s": 2,
                                           "spread_floor_bps": 10_000})
    # The bid steps up every 0.1 s with the ask unchanged: one-sided buying (OFI +1 each).
    def top(t):
        return 100.0 + 0.01 * round(t * 10), 1.0, 1000.0, 1.0
    _tops(p, tl, 0, 4.9, 0.1, top)
    assert state(p) == "closed", "held less than 2 s after a 3 s warm-up"
    _tops(p, tl, 5.0, 5.0, 0.1, top)
    assert state(p) == "open" and "toxic flow" in p.board.breakers[VENUE].reason


def test_spread_blowout_holds_for_its_time(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"market_warmup_s": 0, "spread_window_s": 10,
                                           "spread_factor": 1.5, "spread_floor_bps": 1,
                                           "spread_hold_s": 2, "ofi_max": 1e6})
    def top(t):
        return (100.0, 1.0, 100.01, 1.0) if t < 20 else (100.0, 1.0, 101.0, 1.0)
    _tops(p, tl, 0, 21.5, 0.5, top)
    assert state(p) == "closed", "wide for 1.5 s of a 2 s hold"
    _tops(p, tl, 22, 22, 0.5, top)
    assert state(p) == "open" and "spread blow-out" in p.board.breakers[VENUE].reason


def test_volume_interval_is_closed_by_the_engine_clock_without_another_trade(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"volume_interval_s": 1, "volume_window": 10,
                                           "volume_warmup": 5, "volume_z_max": 5})
    for k in range(10):                  # ten ordinary intervals
        p.board.on_trade(SYM, VENUE, 100.0, (1.0, 1.2, 0.8)[k % 3], tl.at(k + 0.5))
    p.board.on_trade(SYM, VENUE, 100.0, 500.0, tl.at(10.5))   # a huge one in [10, 11)
    tl.at(10.999)
    poll(p)
    assert state(p) == "closed", "the interval has not ended yet"
    tl.at(11)
    poll(p)                              # no trade since: the clock closes the interval
    assert state(p) == "open" and "volume anomaly" in p.board.breakers[VENUE].reason


def test_stale_book_through_poll(tmp_path, tl):
    p = protection(tmp_path, tl, breakers={"book_invalid_s": 5})
    tl.at(0)
    poll(p, valid=False)
    tl.at(5)
    poll(p, valid=False)
    assert state(p) == "closed", "exactly book_invalid_s: not yet"
    tl.at(5.001)
    poll(p, valid=False)
    assert state(p) == "open" and "order book invalid" in p.board.breakers[VENUE].reason


# -- before the first event: the event clock's wall-time fallback must not stick -------------
def test_a_book_invalid_since_boot_goes_stale_on_event_time(tmp_path, tl):
    """The engine polls before the first market event (an event clock then still reads
    the wall): the stale-book rule must still fire book_invalid_s after the first event."""
    p = protection(tmp_path, tl, breakers={"book_invalid_s": 5})
    poll(p, valid=False)                 # boot: no event yet
    tl.at(0)
    poll(p, valid=False)
    tl.at(5.001)
    poll(p, valid=False)
    assert state(p) == "open" and "order book invalid" in p.board.breakers[VENUE].reason


def test_a_breaker_restored_at_boot_cools_down_on_event_time(tmp_path, tl):
    """A breaker open at the last stop comes back at boot with a fresh cooldown; in a
    replay that cooldown must run on event time, not wait for the wall time of the boot."""
    p = protection(tmp_path, tl)
    p.board.trip(VENUE, "before the restart", tl.at(-100), manual=False)
    again = protection(tmp_path, tl)     # same journal: the snapshot is there
    tl2 = tl.__class__(tl.mode)          # a new process: a new clock, no event yet
    again.clock = tl2.clock
    again.restore()
    assert state(again) == "open"
    tl2.at(0)
    poll(again)
    tl2.at(9.999)
    poll(again)
    assert state(again) == "open", "cooldown over early"
    tl2.at(10)
    poll(again)
    assert state(again) == "half_open"


def test_toxic_flow_from_vpin_trips_on_the_poll_that_first_sees_it(tmp_path, tl):
    """VPIN (bars closed on the receive clock) above vpin_max opens the venue breaker on
    the engine's next poll, stamped with the engine's time."""
    from daemon.config import FeaturesCfg
    from daemon.features.engine import FeatureEngine
    from daemon.market.events import Trade
    p = protection(tmp_path, tl, breakers={"vpin_max": 0.9})
    eng = FeatureEngine(FeaturesCfg(bar_interval_s=1, vpin_bucket_notional=100,
                                    vpin_buckets=1, vpin_sigma_bars=2), [SYM])
    p.features = eng
    hot_at = None
    for k, price in enumerate((100.0, 101.0, 104.0, 110.0, 120.0, 135.0)):
        ts = tl.at(k + 0.5)
        eng.on_trade(Trade(SYM, ts, ts // 1_000_000, k + 1, price, 10.0, False))
        v = eng.get(SYM, "vpin")
        poll(p)
        if hot_at is None and v.ready and v.value > 0.9:
            hot_at = ts
        if hot_at is None:
            assert state(p) == "closed", "tripped before VPIN was above vpin_max"
    b = p.board.breakers[VENUE]
    assert hot_at is not None
    assert state(p) == "open" and "VPIN" in b.reason and b.since_ns == hot_at
