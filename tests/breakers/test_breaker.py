"""One CircuitBreaker: closed -> open -> half-open -> closed, probes, cooldown growth,
manual and held trips, escalation. Every time is passed in (ns), nothing is timed."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.safety.breakers.breaker import (BreakerChange, BState, CircuitBreaker, Kind,
                                            Policy)

S = 1_000_000_000
D = Decimal


def policy(**kw) -> Policy:
    base = dict(cooldown_ns=10 * S, cooldown_max_ns=35 * S, growth=2.0, probe_orders=2,
                probe_max_notional=D("50"), probe_window_ns=0, max_reopens=3)
    base.update(kw)
    return Policy(**base)


def make(**kw) -> tuple[CircuitBreaker, list[BreakerChange]]:
    seen: list[BreakerChange] = []
    return CircuitBreaker("paper", policy(**kw), seen.append), seen


def to_half_open(b: CircuitBreaker, now: int) -> int:
    """Trip (if closed) and tick past the cooldown; returns the time it went half-open."""
    if b.state is BState.CLOSED:
        b.trip("boom", now, figures={"x": "1"})
    at = b.half_open_at_ns
    b.tick(at)
    assert b.state is BState.HALF_OPEN
    return at


def test_a_fresh_breaker_is_closed_and_lets_everything_through():
    b, seen = make()
    assert (b.state, b.reason, b.since_ns, b.cooldown_ns, b.reopens) == \
        (BState.CLOSED, "", 0, 10 * S, 0)
    assert b.allow(D("1e9"), False, 0) is None and b.half_open_at_ns is None
    assert b.probes_used == 0 and b.oldest_probe_ns() is None, "closed: nothing is a probe"
    b.count_probe(0, "x")
    assert b.probes_used == 0
    assert not b.escalated and b.oldest_probe_ns() is None and seen == []


def test_trip_opens_with_reason_figures_and_since_and_tells_on_change():
    b, seen = make()
    assert b.trip("error rate 5/10", 7 * S, figures={"errors": "5"}) is True
    assert (b.state, b.kind, b.reason, b.figures, b.since_ns) == \
        (BState.OPEN, Kind.AUTO, "error rate 5/10", {"errors": "5"}, 7 * S)
    assert seen == [BreakerChange("paper", "closed", "open", "error rate 5/10",
                                  {"errors": "5"}, 7 * S, False)]
    assert b.allow(D("1"), False, 8 * S) == "breaker paper open: error rate 5/10"
    assert b.allow(D("1e9"), True, 8 * S) is None, "reduce-only orders always pass"
    assert b.trip("again", 8 * S) is False and b.reason == "error rate 5/10", \
        "an open breaker keeps its first automatic reason"
    assert len(seen) == 1


def test_cooldown_then_half_open_exactly_at_the_end():
    b, seen = make()
    b.trip("boom", 5 * S, figures={"k": "v"})
    assert b.half_open_at_ns == 15 * S
    b.tick(15 * S - 1)
    assert b.state is BState.OPEN
    b.tick(15 * S)
    assert b.state is BState.HALF_OPEN and b.since_ns == 15 * S
    assert seen[-1] == BreakerChange(
        "paper", "open", "half_open",
        "cooldown 10 s over: probing with up to 2 orders of at most 50 until they succeed "
        "(opened for: boom)", {"k": "v"}, 15 * S, False)
    assert b.half_open_at_ns is None


def test_half_open_probe_budget_and_notional_cap():
    b, _ = make()
    t = to_half_open(b, 0)
    assert b.allow(D("50.01"), False, t) == \
        "breaker paper half-open: notional 50.01 above probe_max_notional 50"
    assert b.probes_used == 0
    assert b.allow(D("50"), False, t) is None      # exactly the cap is a probe
    assert b.allow(D("1"), False, t + 1) is None
    assert (b.probes_used, b.oldest_probe_ns()) == (2, t)
    assert b.allow(D("1"), False, t + 2) == "breaker paper half-open: probe budget used (2/2)"
    assert b.allow(D("1e6"), True, t + 2) is None, "reduce-only is not a probe"
    assert b.probes_used == 2


def test_probes_that_succeed_close_it_and_reset_the_cooldown():
    b, seen = make()
    b.trip("boom", 0)
    b.tick(10 * S)
    b.probe_failed("rejected", 10 * S)             # cooldown 20 s now
    assert b.cooldown_ns == 20 * S and b.reopens == 1
    t = to_half_open(b, 0)
    b.allow(D("1"), False, t, "c1")
    b.allow(D("1"), False, t, "c2")
    b.probe_ok(t + 1, "c1")
    assert b.state is BState.HALF_OPEN and b.probes_ok == 1
    b.probe_ok(t + 2, "c2")
    assert b.state is BState.CLOSED
    assert seen[-1] == BreakerChange("paper", "half_open", "closed", "2 probe(s) succeeded",
                                     {}, t + 2, False)
    assert (b.cooldown_ns, b.reopens, b.probes_used, b.probes_ok) == (10 * S, 0, 0, 0)
    assert b.oldest_probe_ns() is None


def test_a_success_for_an_order_that_is_not_a_probe_does_not_count():
    b, _ = make()
    t = to_half_open(b, 0)
    b.allow(D("1"), False, t, "c1")
    b.probe_ok(t, "old-order")
    assert b.probes_ok == 0
    b.probe_ok(t, "c1")
    assert b.probes_ok == 1
    b.probe_ok(t, "c1")                               # a second report of the same probe
    assert b.probes_ok == 1 and b.state is BState.HALF_OPEN


def test_probes_allowed_without_an_id_are_matched_oldest_first():
    b, _ = make()
    t = to_half_open(b, 0)
    b.allow(D("1"), False, t)
    b.allow(D("1"), False, t + 5, "c2")
    b.probe_ok(t + 6, "c9")          # no probe has that id: the anonymous one is taken
    assert b.probes_ok == 1 and b.oldest_probe_ns() == t + 5
    b.probe_ok(t + 7)                # no id at all: the oldest outstanding
    assert b.state is BState.CLOSED


def test_success_while_closed_or_open_or_with_nothing_outstanding_is_ignored():
    b, seen = make()
    b.probe_ok(0, "x")
    b.trip("boom", 0)
    b.probe_ok(1)
    assert b.state is BState.OPEN
    to_half_open(b, 0)
    b.probe_ok(10 * S)               # nothing was sent yet
    assert b.probes_ok == 0 and b.state is BState.HALF_OPEN


def test_a_failed_probe_reopens_with_a_doubled_cooldown_bounded_by_the_max():
    b, seen = make(max_reopens=10)
    b.trip("boom", 0)
    cooldowns = []
    for _ in range(4):
        t = to_half_open(b, 0)
        b.allow(D("1"), False, t, "p")
        b.probe_failed("rejected: no liquidity", t + 1, {"code": "-2010"})
        cooldowns.append(b.cooldown_ns)
        assert b.state is BState.OPEN and b.kind is Kind.AUTO
        assert b.since_ns == t + 1 and b.probes_used == 0
    assert cooldowns == [20 * S, 35 * S, 35 * S, 35 * S]
    assert b.reopens == 4
    assert seen[-1] == BreakerChange("paper", "half_open", "open",
                                     "probe failed: rejected: no liquidity",
                                     {"code": "-2010", "reopens": "4"}, seen[-1].ts_ns, False)


def test_growth_of_one_keeps_the_cooldown_and_fractional_growth_rounds_down():
    b, _ = make(growth=1.0, max_reopens=10)
    to_half_open(b, 0)
    b.probe_failed("x", b.since_ns)
    assert b.cooldown_ns == 10 * S
    b2, _ = make(growth=1.5, cooldown_ns=3, cooldown_max_ns=100, max_reopens=10)
    to_half_open(b2, 0)
    b2.probe_failed("x", b2.since_ns)
    assert b2.cooldown_ns == 4       # int(4.5)


def test_escalation_after_max_reopens_failed_rounds_in_a_row():
    b, seen = make(max_reopens=3)
    b.trip("boom", 0)
    for i in range(2):
        to_half_open(b, 0)
        b.probe_failed(f"fail {i}", b.since_ns)
        assert not b.escalated and b.kind is Kind.AUTO
    t = to_half_open(b, 0)
    b.probe_failed("fail 2", t + 7)
    assert b.escalated and b.kind is Kind.MANUAL and b.state is BState.OPEN
    last = seen[-1]
    assert last.escalated and last.new == "open" and last.reason == \
        "escalated after 3 failed probe rounds (max_reopens 3): fail 2"
    assert last.ts_ns == t + 7 and b.since_ns == t + 7
    assert last.figures == {"reopens": "3"}
    assert b.half_open_at_ns is None
    b.tick(10**6 * S)
    assert b.state is BState.OPEN, "an escalated breaker never probes again by itself"
    assert b.reset(10**6 * S, "operator")
    assert (b.state, b.escalated, b.reopens, b.cooldown_ns, b.kind) == \
        (BState.CLOSED, False, 0, 10 * S, Kind.AUTO)


def test_a_success_in_between_resets_the_reopen_count():
    b, _ = make(max_reopens=2)
    to_half_open(b, 0)
    b.probe_failed("x", b.since_ns)
    assert b.reopens == 1
    t = to_half_open(b, 0)
    for c in ("a", "b"):
        b.allow(D("1"), False, t, c)
        b.probe_ok(t, c)
    assert b.state is BState.CLOSED and b.reopens == 0
    to_half_open(b, t)
    b.probe_failed("y", b.since_ns)
    assert not b.escalated and b.reopens == 1


def test_probe_failed_outside_half_open_is_ignored():
    b, seen = make()
    b.probe_failed("x", 0)
    assert b.state is BState.CLOSED and b.reopens == 0
    b.trip("boom", 0)
    b.probe_failed("x", 1)
    assert b.reopens == 0 and len(seen) == 1


def test_an_automatic_trip_while_half_open_is_a_failed_round():
    b, seen = make()
    to_half_open(b, 0)
    assert b.trip("spread blow-out", b.since_ns + 1, figures={"spread_bps": "30"}) is True
    assert b.state is BState.OPEN and b.reopens == 1 and b.cooldown_ns == 20 * S
    assert seen[-1].reason == "probe failed: spread blow-out"
    assert seen[-1].ts_ns == 10 * S + 1
    assert seen[-1].figures == {"spread_bps": "30", "reopens": "1"}


def test_manual_trip_needs_a_manual_reset():
    b, seen = make()
    assert b.trip("operator: maintenance", 0, kind=Kind.MANUAL)
    assert b.kind is Kind.MANUAL and b.half_open_at_ns is None
    b.tick(10**9 * S)
    assert b.state is BState.OPEN
    assert b.trip("detector", 1, kind=Kind.AUTO) is False
    assert b.trip("cascade", 1, kind=Kind.HELD) is False
    assert b.release("cause closed", 2) is False and b.state is BState.OPEN
    assert b.reset(3, "bot4ctl") is True
    assert seen[-1] == BreakerChange("paper", "open", "closed", "reset by bot4ctl", {}, 3,
                                     False)
    assert b.reset(4, "bot4ctl") is False, "nothing to reset"


def test_a_stronger_trip_takes_over_an_open_breaker():
    b, seen = make()
    b.trip("detector", 0)
    assert b.trip("risk: daily loss", 1, kind=Kind.MANUAL, figures={"loss": "51"})
    assert (b.kind, b.reason, b.since_ns) == (Kind.MANUAL, "risk: daily loss", 1)
    assert seen[-1].old == "open" and seen[-1].new == "open"
    to_half_open_b, _ = make()
    t = to_half_open(to_half_open_b, 0)
    assert to_half_open_b.trip("operator", t, kind=Kind.MANUAL)
    assert to_half_open_b.reopens == 0 and to_half_open_b.kind is Kind.MANUAL


def test_held_trip_is_released_by_its_cause_only():
    b, seen = make()
    b.trip("cascade from x", 0, kind=Kind.HELD)
    b.tick(10**6 * S)
    assert b.state is BState.OPEN and b.half_open_at_ns is None
    assert b.release("x closed", 5) is True
    assert b.state is BState.CLOSED and seen[-1].reason == "x closed"
    assert b.release("again", 6) is False
    b.trip("auto", 7)
    assert b.release("x closed", 8) is False and b.state is BState.OPEN


def test_probe_window_closes_after_the_window_without_failure():
    b, seen = make(probe_window_ns=5 * S, probe_orders=3)
    t = to_half_open(b, 0)
    assert "for 5 s" in b.reason
    b.allow(D("1"), False, t, "a")
    b.probe_ok(t + 1, "a")
    b.allow(D("1"), False, t + 1, "b")
    b.probe_ok(t + 2, "b")
    b.allow(D("1"), False, t + 2, "c")
    b.probe_ok(t + 3, "c")
    assert b.state is BState.HALF_OPEN, "with a window, successes alone do not close it"
    b.tick(t + 5 * S - 1)
    assert b.state is BState.HALF_OPEN
    b.tick(t + 5 * S)
    assert b.state is BState.CLOSED
    assert seen[-1].reason == "probe window 5 s passed with 3 probe(s) and no failure"
    assert seen[-1].ts_ns == t + 5 * S


def test_probe_window_with_a_failure_reopens():
    b, _ = make(probe_window_ns=5 * S)
    t = to_half_open(b, 0)
    b.probe_failed("latency spike", t + 1)
    b.tick(t + 5 * S)
    assert b.state is BState.OPEN


def test_reset_from_half_open_and_from_open():
    for steps in (0, 1):
        b, _ = make()
        b.trip("boom", 0)
        if steps:
            b.tick(10 * S)
        assert b.reset(11 * S, "operator")
        assert b.state is BState.CLOSED and b.probes_used == 0


@pytest.mark.parametrize("state", list(BState))
def test_states_print_as_their_value(state):
    assert str(state) == state.value and str(Kind.HELD) == "held"
