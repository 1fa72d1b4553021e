"""The breaker board: every trip reason through the public API (figures in the reason, no
trip just below), allow() in every state, cascade on and off, probing through the
outcomes, escalation, status, snapshot/restore. Times are passed in (ns)."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from daemon.config import BreakersCfg
from daemon.safety.breakers import GLOBAL, BreakerBoard, BreakerChange, BState

S = 1_000_000_000
MS = 1_000_000
D = Decimal
V = "paper"


def cfg(**kw) -> BreakersCfg:
    base = dict(cooldown_s=10.0, cooldown_max_s=40.0, probe_orders=2,
                probe_max_notional=D("50"), max_reopens=3, error_min_orders=10,
                max_rejects_per_min=1000, max_consecutive_errors=3, latency_warmup=5,
                latency_window=10, latency_floor_ms=100.0, latency_factor=5.0,
                latency_spikes=2, book_invalid_s=5.0, market_warmup_s=0.0, ofi_window_s=2.0,
                ofi_max=5.0, ofi_hold_s=1.0, spread_window_s=60.0, spread_factor=10.0,
                spread_floor_bps=10.0, spread_hold_s=1.0, volume_interval_s=1.0,
                volume_window=10, volume_warmup=5, volume_z_max=10.0)
    base.update(kw)
    return BreakersCfg(**base)


class Rec:
    def __init__(self) -> None:
        self.changes: list[BreakerChange] = []

    def __call__(self, c: BreakerChange) -> None:
        self.changes.append(c)

    def of(self, name: str) -> list[tuple[str, str]]:
        return [(c.old, c.new) for c in self.changes if c.name == name]


def board(venues=(V,), **kw) -> tuple[BreakerBoard, Rec]:
    rec = Rec()
    return BreakerBoard(cfg(**kw), list(venues), rec), rec


def state(b: BreakerBoard, name: str) -> str:
    return b.breakers[name].state.value


def open_venue(b: BreakerBoard, venue: str = V, now: int = 0) -> None:
    for i in range(3):
        b.on_error(venue, "timeout", now + i)
    assert state(b, venue) == "open"


def half_open(b: BreakerBoard, venue: str = V, now: int = 0) -> int:
    open_venue(b, venue, now)
    t = b.breakers[venue].half_open_at_ns
    b.tick(t)
    assert state(b, venue) == "half_open"
    return t


# -- construction and names ----------------------------------------------------------------
@pytest.mark.parametrize("venues", [[], ["a", "a"], ["global"], ["a", "global"]])
def test_venue_names_must_be_distinct_and_not_global(venues):
    with pytest.raises(ValueError, match="venues must be distinct"):
        BreakerBoard(cfg(), venues)


def test_unknown_names_are_refused_with_the_known_ones():
    b, _ = board(venues=("paper", "binance"))
    with pytest.raises(KeyError, match="unknown venue 'kraken' .breakers: paper, binance"):
        b.allow("kraken", D(1), False, 0)
    with pytest.raises(KeyError, match="unknown venue 'global'"):
        b.on_ack("global", "c", 1, 0)
    with pytest.raises(KeyError, match="unknown breaker 'x' .breakers: global, paper, binance"):
        b.trip("x", "r", 0)
    with pytest.raises(KeyError, match="unknown breaker 'x'"):
        b.reset("x", 0)


def test_without_a_callback_changes_are_only_counted():
    b = BreakerBoard(cfg(), [V])
    open_venue(b)
    assert b.changes == 2      # the venue and the cascaded global


# -- every reason trips, just below does not ----------------------------------------------
def test_error_rate_trips_the_venue_with_its_figures():
    b, rec = board(error_min_orders=10, max_consecutive_errors=1000)
    for i in range(6):
        b.on_ack(V, f"a{i}", 1 * MS, i)
    for i in range(3):
        b.on_reject(V, f"r{i}", "insufficient balance", 10 + i)
    assert state(b, V) == "closed", "3/9: not yet"
    b.on_reject(V, "r3", "insufficient balance", 20)      # 4/10: P(rate > 25%) = 0.885
    b.on_reject(V, "r4", "insufficient balance", 21)      # 5/11: P = 0.946
    assert state(b, V) == "closed"
    b.on_reject(V, "r5", "insufficient balance", 22)      # 6/12: P = 0.976
    assert state(b, V) == "open"
    c = rec.changes[0]
    assert c.reason == "error rate 6/12 = 50% in 60 s (P(rate > 25%) = 0.976, threshold " \
        "now 50%)"
    assert c.figures["errors"] == "6" and c.figures["orders"] == "12"


def test_reject_storm_trips_one_past_the_limit():
    b, rec = board(max_rejects_per_min=3, error_min_orders=10_000)
    for i in range(3):
        b.on_reject(V, f"r{i}", "x", i)
    assert state(b, V) == "closed"
    b.on_reject(V, "r3", "x", 3)
    assert rec.changes[0].reason == "4 rejects in the last minute (max 3)"


def test_consecutive_errors_and_a_success_in_between():
    b, rec = board(max_consecutive_errors=3)
    b.on_error(V, "timeout", 0)
    b.on_error(V, "timeout", 1)
    b.on_ack(V, "c", 1 * MS, 2)
    b.on_error(V, "timeout", 3)
    b.on_error(V, "timeout", 4)
    b.on_fill(V, "c", 5)                                   # a fill is a success too
    b.on_error(V, "timeout", 6)
    b.on_error(V, "timeout", 7)
    assert state(b, V) == "closed"
    b.on_error(V, "connection reset", 8)
    assert rec.changes[0].reason == "3 venue errors in a row (max 3), last: connection reset"
    assert rec.changes[0].figures == {"errors": "3", "max": "3", "last": "connection reset"}


def test_errors_count_for_the_error_rate_and_the_storm():
    b, rec = board(max_consecutive_errors=1000, max_rejects_per_min=2,
                   error_min_orders=10_000)
    for i in range(3):
        b.on_error(V, "timeout", i)
    assert rec.changes[0].reason == "3 rejects in the last minute (max 2)"
    b2, rec2 = board(max_consecutive_errors=1000, error_min_orders=4)
    for i in range(4):
        b2.on_error(V, "timeout", i)
    assert rec2.changes[0].reason.startswith("error rate 4/4 = 100%")


def test_latency_spike_trips_after_warm_up_and_spikes_in_a_row():
    b, rec = board()
    for i in range(5):
        b.on_ack(V, f"w{i}", 30 * MS, i)                  # median 30 ms: threshold 150 ms
    b.on_ack(V, "s1", 150 * MS, 10)                       # exactly: no spike
    b.on_ack(V, "s2", 200 * MS, 11)
    assert state(b, V) == "closed"
    b.on_ack(V, "s3", 200 * MS, 12)
    assert rec.changes[0].reason == \
        "ack latency 200.0 ms above 150.0 ms (5 x median 30.0 ms, floor 100 ms), 2 in a row"


def test_stale_book_trips_on_tick():
    b, rec = board(book_invalid_s=5.0)
    b.book_state("BTCUSDT", V, False, 0)
    b.tick(5 * S)
    assert state(b, V) == "closed"
    b.tick(5 * S + 1)
    assert rec.changes[0].reason == "BTCUSDT order book invalid for 5.0 s"
    b2, _ = board()
    b2.book_state("BTCUSDT", V, False, 0)
    b2.book_state("BTCUSDT", V, True, 1 * S)
    b2.tick(100 * S)
    assert state(b2, V) == "closed"


def feed_quiet(b: BreakerBoard, seconds: int, sym: str = "BTCUSDT") -> int:
    """A calm book, 10 updates a second, alternating a little so OFI stays near 0."""
    t = 0
    for i in range(seconds * 10):
        t = i * S // 10
        b.on_book(sym, V, 100.0, 1.0 + (i % 2) * 0.1, 100.01, 1.0, t)
    return t


def test_toxic_flow_trips_on_one_sided_flow_held():
    b, rec = board(ofi_max=5.0, ofi_hold_s=1.0)
    t = feed_quiet(b, 5)
    assert state(b, V) == "closed"
    # The ask is taken level after level, the bid follows: each step adds B' + A (= 2).
    price = 100.0
    for i in range(60):
        t += S // 10
        price += 0.01
        b.on_book("BTCUSDT", V, price, 1.0, price + 0.01, 1.0, t)
        if state(b, V) == "open":
            break
    c = rec.changes[0]
    assert c.reason.startswith("BTCUSDT toxic flow: one-sided buying, order-flow imbalance +")
    assert float(c.figures["ofi_norm"]) > 5 and float(c.figures["held_s"]) >= 1.0


def test_spread_blowout_trips_when_held():
    b, rec = board(spread_floor_bps=10.0, spread_hold_s=1.0)
    t = feed_quiet(b, 5)
    for i in range(1, 11):                 # 0.3 % wide for 1 s (10 updates)
        b.on_book("BTCUSDT", V, 100.0, 1.0, 100.3, 1.0, t + i * S // 10)
        assert state(b, V) == "closed"
    b.on_book("BTCUSDT", V, 100.0, 1.0, 100.3, 1.0, t + 11 * S // 10)
    assert rec.changes[0].reason.startswith("BTCUSDT spread blow-out: 29.96 bps above 10.00 bps")


def test_a_single_wide_or_degenerate_top_never_trips():
    b, _ = board(spread_hold_s=0.0, ofi_hold_s=0.0)
    t = feed_quiet(b, 5)
    b.on_book("BTCUSDT", V, 100.0, 1.0, 150.0, 1.0, t + 1)    # one sample
    b.on_book("BTCUSDT", V, 100.0, 0.0, 100.01, 1.0, t + 2)   # zero depth
    b.on_book("BTCUSDT", V, float("nan"), 1.0, 100.01, 1.0, t + 3)
    b.on_book("BTCUSDT", V, 100.0, 1e12, 100.01, 1.0, t + 4)  # one absurd size...
    b.on_book("BTCUSDT", V, 100.0, 1.0, 100.01, 1.0, t + 5)   # ...gone again
    assert state(b, V) == "closed"
    assert b.market_ignored() == {"BTCUSDT@paper:zero_depth": 1,
                                  "BTCUSDT@paper:not_finite": 1}


def test_volume_anomaly_trips_on_the_interval_that_closes():
    b, rec = board(volume_interval_s=1.0, volume_warmup=5, volume_z_max=10.0)
    t = 0
    for sec in range(8):                   # 8 intervals of about 10 (MAD 1)
        for k in range(10):
            t = sec * S + k * S // 10
            b.on_trade("BTCUSDT", V, 100.0, 1.0 + (sec % 3 - 1) * 0.1, t)
    b.on_trade("BTCUSDT", V, 100.0, 500.0, 8 * S + 1)
    assert state(b, V) == "closed", "the interval is still open"
    b.tick(9 * S)                           # closes it
    c = rec.changes[0]
    assert c.reason.startswith("BTCUSDT volume anomaly: 500 traded in 1 s, robust z ")
    assert float(c.figures["z"]) > 10


def test_volume_just_below_the_threshold_does_not_trip():
    b, _ = board(volume_interval_s=1.0, volume_warmup=5, volume_z_max=10.0)
    for sec in range(8):
        b.on_trade("BTCUSDT", V, 100.0, 10.0 + (sec % 3 - 1), sec * S)
    # median 10, MAD 1: z = (x - 10) / 1.4826 -> x = 24.8 is z 9.99
    b.on_trade("BTCUSDT", V, 100.0, 24.8, 8 * S)
    b.on_trade("BTCUSDT", V, 100.0, 1.0, 9 * S)
    assert state(b, V) == "closed"


def test_risk_and_manual_trips_need_a_reset():
    b, rec = board()
    assert b.trip(GLOBAL, "risk: daily loss 51 > 50", 0, figures={"loss": "51"})
    assert b.allow(V, D(1), False, 1) == "breaker global open: risk: daily loss 51 > 50"
    b.tick(10**6 * S)
    assert state(b, GLOBAL) == "open"
    assert b.reset(GLOBAL, 5, by="bot4ctl") and state(b, GLOBAL) == "closed"
    assert rec.changes[-1].reason == "reset by bot4ctl"
    assert b.trip(V, "operator: venue maintenance", 6)
    b.tick(10**6 * S)
    assert state(b, V) == "open" and b.breakers[V].kind.value == "manual"
    assert b.reset(V, 7) and rec.changes[-2].reason == "reset by operator"


def test_an_automatic_trip_by_hand_recovers_by_itself():
    b, _ = board()
    b.trip(V, "test", 0, manual=False)
    b.tick(10 * S)
    assert state(b, V) == "half_open"


# -- allow ----------------------------------------------------------------------------------------
def test_reduce_only_always_passes_even_for_an_unknown_venue_state():
    b, _ = board()
    b.trip(GLOBAL, "risk", 0)
    b.trip(V, "manual", 0)
    assert b.allow(V, D("1e9"), True, 1) is None


def test_half_open_venue_counts_probes_and_closes_on_acks():
    b, rec = board()
    t = half_open(b)
    assert b.allow(V, D("50.01"), False, t) == \
        "breaker paper half-open: notional 50.01 above probe_max_notional 50"
    assert b.allow(V, D("10"), False, t, "p1") is None
    assert b.allow(V, D("10"), False, t, "p2") is None
    assert b.allow(V, D("10"), False, t, "p3") == \
        "breaker paper half-open: probe budget used (2/2)"
    b.on_ack(V, "p1", 5 * MS, t + 1)
    b.on_fill(V, "p2", t + 2)
    assert state(b, V) == "closed" and state(b, GLOBAL) == "closed"
    assert rec.changes[-2].reason == "2 probe(s) succeeded"
    assert rec.changes[-1] == BreakerChange(GLOBAL, "open", "closed",
                                            "paper closed: 2 probe(s) succeeded", {}, t + 2)


def test_half_open_clears_the_old_failures():
    b, _ = board(max_consecutive_errors=3)
    t = half_open(b)
    assert b.outcomes[V].consecutive.count == 0
    b.on_error(V, "timeout", t + 1)            # fails the round, counted afresh
    assert state(b, V) == "open" and b.outcomes[V].consecutive.count == 1


@pytest.mark.parametrize("fail", ["reject", "error", "spike", "timeout", "market"])
def test_any_probe_failure_reopens_with_a_longer_cooldown(fail):
    b, rec = board(spread_hold_s=0.0)
    for i in range(5):
        b.on_ack(V, f"w{i}", 10 * MS, i)       # latency warm: threshold 100 ms (floor)
    if fail == "market":
        feed_quiet(b, 2)
    t = half_open(b, now=3 * S)
    assert b.allow(V, D(10), False, t, "p1") is None
    if fail == "reject":
        b.on_reject(V, "p1", "would cross", t + 1)
    elif fail == "error":
        b.on_error(V, "HTTP 503", t + 1)
    elif fail == "spike":
        b.on_ack(V, "p1", 101 * MS, t + 1)
    elif fail == "timeout":
        b.tick(t + 100 * MS)
        assert state(b, V) == "half_open", "exactly the threshold: still waiting"
        b.tick(t + 100 * MS + 1)
    else:
        b.on_book("BTCUSDT", V, 100.0, 1.0, 101.0, 1.0, t + 1)
        b.on_book("BTCUSDT", V, 100.0, 1.0, 101.0, 1.0, t + 2)
    assert state(b, V) == "open" and b.breakers[V].cooldown_ns == 20 * S
    assert rec.changes[-1].reason.startswith("probe failed: ")
    assert state(b, GLOBAL) == "open", "the global breaker stays held"


def test_probe_timeout_uses_the_floor_before_the_latency_warm_up():
    b, rec = board(latency_floor_ms=100.0)
    t = half_open(b)
    b.allow(V, D(10), False, t)
    b.tick(t + 100 * MS)
    assert state(b, V) == "half_open"
    b.tick(t + 100 * MS + 1)
    assert rec.changes[-1].reason == "probe failed: probe not acknowledged within 100 ms"
    assert rec.changes[-1].figures["waited_ms"] == "100"


def test_probe_timeout_uses_the_latency_threshold_once_warm():
    b, _ = board(latency_floor_ms=1.0)
    for i in range(5):
        b.on_ack(V, f"w{i}", 40 * MS, i)       # threshold 200 ms
    t = half_open(b, now=S)
    b.allow(V, D(10), False, t)
    b.tick(t + 150 * MS)
    assert state(b, V) == "half_open"
    b.tick(t + 200 * MS + 1)
    assert state(b, V) == "open"


def test_escalation_after_max_reopens_is_reported():
    b, rec = board(max_reopens=2)
    assert b.escalation is None
    t = half_open(b)
    b.on_error(V, "timeout", t)
    t = b.breakers[V].half_open_at_ns
    b.tick(t)
    b.on_reject(V, "x", "no", t)
    assert rec.changes[-1].escalated or rec.changes[-2].escalated
    assert b.escalation.startswith("paper: escalated after 2 failed probe rounds")
    b.tick(10**6 * S)
    assert state(b, V) == "open"
    b.reset(V, 10**6 * S)
    assert b.escalation is None and state(b, GLOBAL) == "closed"


# -- cascade ---------------------------------------------------------------------------------------
def test_cascade_on_stops_other_venues_and_follows_the_venue():
    b, rec = board(venues=("paper", "binance"), cascade=True)
    open_venue(b, "paper")
    assert state(b, GLOBAL) == "open" and b.holds.keys() == {"paper"}
    g = rec.changes[1]
    assert g.name == GLOBAL and g.reason.startswith("cascade from paper: 3 venue errors")
    assert g.figures["venue"] == "paper"
    assert b.allow("binance", D(1), False, 1).startswith("breaker global open: cascade from")
    assert b.allow("paper", D(1), False, 1).startswith("breaker paper open:")
    t = b.breakers["paper"].half_open_at_ns
    b.tick(t)
    assert b.allow("paper", D(1), False, t, "p1") is None, "the venue's probes pass"
    assert b.allow("binance", D(1), False, t) is not None
    b.on_ack("paper", "p1", MS, t)
    b.allow("paper", D(1), False, t, "p2")
    b.on_ack("paper", "p2", MS, t)
    assert state(b, GLOBAL) == "closed" and not b.holds
    assert b.allow("binance", D(1), False, t) is None


def test_cascade_off_stops_only_the_venue():
    b, rec = board(venues=("paper", "binance"), cascade=False)
    open_venue(b, "paper")
    assert state(b, GLOBAL) == "closed" and not b.holds
    assert [c.name for c in rec.changes] == ["paper"]
    assert b.allow("binance", D(1), False, 1) is None
    assert b.allow("paper", D(1), False, 1) is not None


def test_global_held_by_two_venues_closes_when_both_closed():
    b, rec = board(venues=("paper", "binance"))
    open_venue(b, "paper")
    open_venue(b, "binance", now=10)
    assert b.holds.keys() == {"paper", "binance"}
    assert len([c for c in rec.changes if c.name == GLOBAL]) == 1
    assert b.allow("paper", D(1), False, 20).startswith("breaker global open"), \
        "another venue holds it too"
    b.reset("paper", 30)
    assert state(b, GLOBAL) == "open"
    b.reset("binance", 31)
    assert state(b, GLOBAL) == "closed"
    assert rec.changes[-1].reason == "binance closed: reset by operator"


def test_resetting_global_while_a_venue_holds_it_holds_it_again():
    b, rec = board()
    open_venue(b)
    b.reset(GLOBAL, 5)
    assert state(b, GLOBAL) == "open" and b.breakers[GLOBAL].kind.value == "held"
    assert rec.of(GLOBAL)[-2:] == [("open", "closed"), ("closed", "open")]


def test_a_manual_global_trip_outlives_the_venue_that_held_it():
    b, _ = board()
    open_venue(b)
    b.trip(GLOBAL, "risk: drawdown", 5)
    b.reset(V, 6)
    assert state(b, GLOBAL) == "open" and b.breakers[GLOBAL].reason == "risk: drawdown"


def test_global_half_open_probes_count_for_every_venue():
    b, rec = board(venues=("paper", "binance"))
    b.trip(GLOBAL, "test", 0, manual=False)
    b.tick(10 * S)
    assert state(b, GLOBAL) == "half_open"
    assert b.allow("binance", D(10), False, 10 * S, "b1") is None
    assert b.allow("paper", D(10), False, 10 * S, "p1") is None
    assert b.allow("paper", D(10), False, 10 * S, "p2") == \
        "breaker global half-open: probe budget used (2/2)"
    b.on_ack("binance", "b1", MS, 10 * S)
    b.on_reject("paper", "p1", "no", 10 * S)
    assert state(b, GLOBAL) == "open" and state(b, "paper") == "closed"
    assert rec.changes[-1].reason == "probe failed: paper: p1 rejected: no"


def test_both_half_open_an_order_is_a_probe_of_each():
    b, _ = board(cascade=False)
    b.trip(GLOBAL, "own", 0, manual=False)
    open_venue(b)
    b.tick(10 * S + 2)
    assert state(b, GLOBAL) == "half_open" and state(b, V) == "half_open"
    assert b.allow(V, D(1), False, 10 * S, "p") is None
    assert b.breakers[GLOBAL].probes_used == 1 and b.breakers[V].probes_used == 1
    b.breakers[GLOBAL].probes_used = 2
    assert b.allow(V, D(1), False, 10 * S, "q") == \
        "breaker global half-open: probe budget used (2/2)"


# -- reading --------------------------------------------------------------------------------------
def test_tripped_names_the_first_open_breaker_but_not_half_open():
    b, _ = board(cascade=False)
    assert b.tripped is None
    open_venue(b)
    assert b.tripped == "paper: 3 venue errors in a row (max 3), last: timeout"
    b.tick(10 * S + 2)
    assert b.tripped is None
    b.trip(GLOBAL, "risk: x", 10 * S)
    assert b.tripped == "global: risk: x"


def test_status_lists_every_breaker_with_its_figures():
    b, _ = board()
    t = half_open(b)
    b.allow(V, D(1), False, t, "p")
    b.on_ack(V, "p", MS, t)
    st = {s["name"]: s for s in b.status()}
    assert list(st) == [GLOBAL, V]
    assert st[V] == {"name": V, "state": "half_open", "kind": "auto",
                     "reason": st[V]["reason"], "since_ns": t,
                     "figures": {"errors": "3", "max": "3", "last": "timeout"},
                     "probes_used": 1, "probes_ok": 1, "probe_budget": 2, "cooldown_s": 10.0,
                     "half_open_at_ns": None, "reopens": 0, "escalated": False,
                     "held_by": []}
    assert st[GLOBAL]["state"] == "open" and st[GLOBAL]["kind"] == "held"
    assert st[GLOBAL]["held_by"] == [V] and st[GLOBAL]["half_open_at_ns"] is None
    b2, _ = board(cascade=False)
    open_venue(b2)
    assert {s["name"]: s for s in b2.status()}[V]["half_open_at_ns"] == 2 + 10 * S


# -- snapshot / restore ----------------------------------------------------------------------
def test_snapshot_of_a_quiet_board_is_empty_and_json():
    b, _ = board()
    assert b.snapshot() == {"version": 1, "breakers": {}}


def test_manual_and_risk_trips_survive_a_restart():
    b, _ = board()
    b.trip(GLOBAL, "risk: daily loss", 5, figures={"loss": "51"})
    b.trip(V, "operator: maintenance", 6)
    snap = json.loads(json.dumps(b.snapshot()))
    b2, rec = board()
    assert b2.restore(snap, 1000 * S) == []
    g, v = b2.breakers[GLOBAL], b2.breakers[V]
    assert (g.state, g.kind.value, g.reason, g.figures, g.since_ns) == \
        (BState.OPEN, "manual", "risk: daily loss", {"loss": "51"}, 5)
    assert (v.kind.value, v.reason, v.since_ns) == ("manual", "operator: maintenance", 6)
    assert [(c.name, c.old, c.new, c.reason, c.ts_ns) for c in rec.changes] == [
        (GLOBAL, "closed", "open", "risk: daily loss", 1000 * S),
        (V, "closed", "open", "operator: maintenance", 1000 * S)]
    assert b2.snapshot() == snap, "a second restart sees the same breakers"
    b2.tick(10**9 * S)
    assert b2.tripped is not None
    assert b2.reset(GLOBAL, 2000 * S) and b2.reset(V, 2000 * S)
    assert b2.tripped is None


def test_an_automatic_trip_restores_with_a_fresh_cooldown_and_its_history():
    b, _ = board(max_reopens=5)
    t = half_open(b)
    b.on_error(V, "x", t)                      # reopens 1, cooldown 20 s
    b.tick(b.breakers[V].half_open_at_ns)      # half-open at the snapshot
    snap = b.snapshot()
    assert snap["breakers"][V]["state"] == "half_open"
    assert snap["breakers"][GLOBAL]["kind"] == "held"
    b2, rec = board(max_reopens=5)
    b2.restore(snap, 500 * S)
    v = b2.breakers[V]
    assert (v.state, v.kind.value, v.cooldown_ns, v.reopens, v.since_ns) == \
        (BState.OPEN, "auto", 20 * S, 1, 500 * S)
    assert state(b2, GLOBAL) == "open" and b2.holds.keys() == {V}, "the cascade is back"
    assert [c.name for c in rec.changes] == [V, GLOBAL]
    b2.tick(520 * S)
    assert state(b2, V) == "half_open"


def test_an_escalation_survives_a_restart():
    b, _ = board(max_reopens=1)
    t = half_open(b)
    b.on_error(V, "x", t)
    assert b.escalation
    b2, _ = board(max_reopens=1)
    b2.restore(b.snapshot(), 9 * S)
    assert b2.escalation and b2.breakers[V].kind.value == "manual"


def test_restore_caps_the_cooldown_and_skips_unknown_breakers():
    b, _ = board(venues=("paper", "kraken"), cooldown_max_s=1000.0)
    b.trip("kraken", "old venue", 0)
    b.trip(V, "auto", 0, manual=False)
    b.breakers[V].cooldown_ns = 900 * S
    snap = b.snapshot()
    b2, _ = board(cooldown_max_s=40.0)
    assert b2.restore(snap, 0) == ["kraken"]
    assert b2.breakers[V].cooldown_ns == 40 * S


@pytest.mark.parametrize("snap", [None, [], {}, {"version": 2, "breakers": {}}])
def test_restore_refuses_what_is_not_a_snapshot(snap):
    b, _ = board()
    with pytest.raises(ValueError, match="not a breaker snapshot of version 1"):
        b.restore(snap, 0)


def test_held_global_without_its_venue_is_not_restored():
    b, _ = board()
    open_venue(b)
    snap = b.snapshot()
    del snap["breakers"][V]
    b2, _ = board()
    b2.restore(snap, 0)
    assert state(b2, GLOBAL) == "closed"


# -- every path hands on its time, ids and reasons (pinned where mutation testing asked) ----
def test_each_change_carries_the_time_of_the_call_that_caused_it():
    b, rec = board(max_consecutive_errors=1000, max_rejects_per_min=1)
    b.on_reject(V, "r1", "x", 11)
    b.on_reject(V, "r2", "x", 12)                         # storm via on_reject
    assert [(c.name, c.ts_ns) for c in rec.changes] == [(V, 12), (GLOBAL, 12)]
    b, rec = board(max_consecutive_errors=1000, max_rejects_per_min=1)
    b.on_error(V, "e", 21)
    b.on_error(V, "e", 22)                                # storm via on_error
    assert rec.changes[0].ts_ns == 22
    b, rec = board(max_consecutive_errors=1000, error_min_orders=2)
    b.on_reject(V, "r", "x", 31)
    b.on_reject(V, "r", "x", 32)                          # error rate via on_reject
    assert rec.changes[0].ts_ns == 32 and rec.changes[0].reason.startswith("error rate")
    b, rec = board(max_consecutive_errors=1000, error_min_orders=2)
    b.on_error(V, "e", 41)
    b.on_error(V, "e", 42)                                # error rate via on_error
    assert rec.changes[0].ts_ns == 42 and rec.changes[0].reason.startswith("error rate")
    b, rec = board(latency_spikes=1)
    for i in range(5):
        b.on_ack(V, f"w{i}", 10 * MS, i)
    b.on_ack(V, "s", 200 * MS, 51)                        # latency trip
    assert rec.changes[0].ts_ns == 51


def test_market_trips_carry_their_update_time():
    b, rec = board(spread_hold_s=0.0)
    t = feed_quiet(b, 2)
    b.on_book("BTCUSDT", V, 100.0, 1.0, 101.0, 1.0, t + 7)
    b.on_book("BTCUSDT", V, 100.0, 1.0, 101.0, 1.0, t + 9)
    assert rec.changes[0].ts_ns == t + 9 and "spread" in rec.changes[0].reason
    b, rec = board(ofi_hold_s=0.0, ofi_max=0.5)
    b.on_book("BTCUSDT", V, 100.0, 1.0, 100.01, 1.0, 0)
    b.on_book("BTCUSDT", V, 100.01, 1.0, 100.02, 1.0, 5)
    b.on_book("BTCUSDT", V, 100.02, 1.0, 100.03, 1.0, 8)
    assert rec.changes[0].ts_ns == 8 and "toxic flow" in rec.changes[0].reason


def test_a_trade_that_closes_an_anomalous_interval_trips_by_itself():
    b, rec = board(volume_interval_s=1.0, volume_warmup=5, volume_z_max=10.0)
    for sec in range(8):
        b.on_trade("ETHUSDT", V, 100.0, 10.0 + (sec % 3 - 1), sec * S)
    b.on_trade("ETHUSDT", V, 100.0, 500.0, 8 * S)
    b.on_trade("ETHUSDT", V, 100.0, 1.0, 9 * S + 3)       # no tick: the trade closes it
    c = rec.changes[0]
    assert c.ts_ns == 9 * S + 3 and c.reason.startswith("ETHUSDT volume anomaly: 500 ")
    assert c.figures["symbol"] == "ETHUSDT"


def test_probe_failure_reasons_name_the_venue_and_what_failed():
    b, rec = board()
    for i in range(5):
        b.on_ack(V, f"w{i}", 10 * MS, i)
    t = half_open(b, now=S)
    b.allow(V, D(1), False, t, "p1")
    b.on_ack(V, "p1", 150_050_100, t + 3)
    assert rec.changes[-1] == BreakerChange(
        V, "half_open", "open", "probe failed: paper: ack of p1 took 150.1 ms (a latency "
        "spike)", {"reopens": "1"}, t + 3)
    t = b.breakers[V].half_open_at_ns
    b.tick(t)
    b.on_error(V, "HTTP 503", t + 4)
    assert rec.changes[-1].reason == "probe failed: paper: error: HTTP 503"
    assert rec.changes[-1].ts_ns == t + 4
    t = b.breakers[V].half_open_at_ns
    b.tick(t)
    b.on_reject(V, "p9", "would cross", t + 5)
    assert rec.changes[-1].reason == "escalated after 3 failed probe rounds (max_reopens " \
        "3): paper: p9 rejected: would cross" and rec.changes[-1].ts_ns == t + 5


def test_acks_and_fills_of_orders_that_are_not_probes_do_not_count():
    b, _ = board()
    t = half_open(b)
    b.allow(V, D(1), False, t, "p1")
    b.on_ack(V, "older", MS, t)
    b.on_fill(V, "older", t)
    assert b.breakers[V].probes_ok == 0
    b.on_fill(V, "p1", t)
    assert b.breakers[V].probes_ok == 1


def test_global_probes_are_timed_and_matched_by_id():
    b, rec = board(venues=("paper", "binance"), latency_floor_ms=100.50005)
    b.trip(GLOBAL, "test", 0, manual=False)
    b.tick(10 * S)
    b.allow("binance", D(1), False, 10 * S + 7, "b1")
    b.on_ack("paper", "other", MS, 10 * S + 8)
    assert b.breakers[GLOBAL].probes_ok == 0
    b.tick(10 * S + 7 + 100_500_050)
    assert state(b, GLOBAL) == "half_open", "exactly the floor: still waiting"
    b.tick(10 * S + 7 + 100_500_051)
    c = rec.changes[-1]
    assert (c.name, c.new, c.ts_ns) == (GLOBAL, "open", 10 * S + 7 + 100_500_051)
    assert c.reason == "probe failed: probe not acknowledged within 101 ms"
    assert c.figures == {"waited_ms": "101", "reopens": "1"}


def test_venue_probe_ids_reach_the_breaker():
    b, _ = board()
    t = half_open(b)
    b.allow(V, D(1), False, t + 5, "p1")
    assert b.breakers[V].oldest_probe_ns() == t + 5
    assert [p.client_id for p in b.breakers[V]._probes] == ["p1"]


def test_a_refused_order_is_not_counted_as_a_probe_anywhere():
    b, _ = board(cascade=False)
    b.trip(GLOBAL, "own", 0, manual=False)
    open_venue(b)
    b.tick(10 * S + 2)
    b.breakers[V].probes_used = 2                   # the venue's budget is spent
    assert b.allow(V, D(1), False, 10 * S + 3, "x") == \
        "breaker paper half-open: probe budget used (2/2)"
    assert b.breakers[GLOBAL].probes_used == 0, "the global budget is untouched"


def test_breaker_changes_are_logged_warning_when_opening():
    b, _ = board(cascade=False)
    with _Capture() as logs:
        open_venue(b)
        b.reset(V, 5)
    assert logs == [
        (logging.WARNING, "breaker paper: closed -> open: 3 venue errors in a row (max 3), "
                          "last: timeout"),
        (logging.INFO, "breaker paper: open -> closed: reset by operator")]


class _Capture(list):
    """Records of daemon.safety.breakers.board as (level, message)."""

    def __enter__(self):
        class H(logging.Handler):
            def emit(h, record):
                self.append((record.levelno, record.getMessage()))
        self._h = H()
        self._log = logging.getLogger("daemon.safety.breakers.board")
        self._level = self._log.level
        self._log.setLevel(logging.DEBUG)
        self._log.addHandler(self._h)
        return self

    def __exit__(self, *exc):
        self._log.removeHandler(self._h)
        self._log.setLevel(self._level)


def test_closing_a_venue_that_held_nothing_with_cascade_off():
    b, rec = board(cascade=False)
    open_venue(b)
    assert b.reset(V, 9) and state(b, V) == "closed" and state(b, GLOBAL) == "closed"


def test_reset_names_the_breakers_and_rehold_carries_reason_and_time():
    b, rec = board(venues=("paper", "binance"))
    with pytest.raises(KeyError, match=r"\(breakers: global, paper, binance\)"):
        b.reset("nope", 0)
    open_venue(b)
    b.reset(GLOBAL, 77)
    assert rec.changes[-2].ts_ns == 77 and rec.changes[-2].reason == "reset by operator"
    assert rec.changes[-1] == BreakerChange(
        GLOBAL, "closed", "open",
        "cascade from paper: 3 venue errors in a row (max 3), last: timeout", {}, 77)


def test_snapshot_lists_each_open_breaker_whole():
    b, _ = board(cascade=False)
    b.trip(V, "operator: x", 123, figures={"by": "me"})
    assert b.snapshot() == {"version": 1, "breakers": {V: {
        "state": "open", "kind": "manual", "reason": "operator: x", "figures": {"by": "me"},
        "since_ns": 123, "cooldown_ns": 10 * S, "reopens": 0, "escalated": False}}}


def test_restore_goes_past_skipped_entries():
    b, _ = board()
    entry = {"state": "open", "kind": "manual", "reason": "r", "figures": {}, "since_ns": 1,
             "cooldown_ns": 10 * S, "reopens": 0, "escalated": False}
    held = dict(entry, kind="held")
    snap = {"version": 1, "breakers": {"kraken": entry, GLOBAL: held, V: entry}}
    with _Capture() as logs:
        assert b.restore(snap, 5) == ["kraken"]
    assert state(b, V) == "open" and b.breakers[V].reason == "r"
    assert (logging.WARNING,
            "breaker snapshot names 'kraken', which this board does not have") in logs


def test_the_latency_median_keeps_only_its_window():
    b, _ = board(latency_window=10, latency_floor_ms=1.0)
    for i in range(10):
        b.on_ack(V, f"a{i}", 10 * MS, i)
    for i in range(10):
        b.on_ack(V, f"b{i}", 40 * MS, 10 + i)
    assert b.outcomes[V].latency.threshold_ns() == 200 * MS


def test_a_reset_forgets_a_latency_run():
    b, rec = board(latency_spikes=2, latency_floor_ms=1.0, cascade=False)
    for i in range(5):
        b.on_ack(V, f"w{i}", 10 * MS, i)
    b.on_ack(V, "s1", 100 * MS, 10)                 # one spike: a run of 1
    b.trip(V, "operator", 11)
    b.reset(V, 12)
    b.on_ack(V, "s2", 100 * MS, 13)                 # a new run of 1: no trip
    assert state(b, V) == "closed"


def test_probe_window_from_the_config_reaches_the_breakers():
    b, rec = board(probe_window_s=5.0)
    t = half_open(b)
    b.allow(V, D(1), False, t, "p")
    b.on_ack(V, "p", MS, t)
    b.allow(V, D(1), False, t, "q")
    b.on_ack(V, "q", MS, t)
    assert state(b, V) == "half_open", "a window: successes alone do not close it"
    b.tick(t + 5 * S)
    assert state(b, V) == "closed"


def test_a_pre_trade_reject_counts_but_fails_no_probe():
    b, rec = board(max_rejects_per_min=1, error_min_orders=10_000)
    t = half_open(b)
    b.allow(V, D(1), False, t, "p1")
    b.on_reject(V, "(pre-trade)", "risk: price band", t + 1, pre_trade=True)
    assert state(b, V) == "half_open" and b.breakers[V].reopens == 0
    b.on_reject(V, "(pre-trade)", "risk: price band", t + 2, pre_trade=True)
    assert state(b, V) == "open", "the second is a storm: the round fails on it"
    assert rec.changes[-1].reason == "probe failed: 2 rejects in the last minute (max 1)"
    b2, _ = board(max_rejects_per_min=1, error_min_orders=10_000, cascade=False)
    b2.on_reject(V, "(pre-trade)", "x", 1, pre_trade=True)
    b2.on_reject(V, "(pre-trade)", "x", 2, pre_trade=True)
    assert state(b2, V) == "open"


def test_a_closing_ack_carries_its_time():
    b, rec = board(probe_orders=1)
    t = half_open(b)
    b.allow(V, D(1), False, t, "p1")
    b.on_ack(V, "p1", MS, t + 42)
    assert [(c.name, c.new, c.ts_ns) for c in rec.changes[-2:]] == \
        [(V, "closed", t + 42), (GLOBAL, "closed", t + 42)]
