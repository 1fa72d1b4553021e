"""A clock that steps back (a replay's event time after a boot on the wall clock; a wall
clock set back by hand or by NTP) never leaves a time-based rule waiting for a moment this
clock will not reach: the rule's remembered time becomes now. Each test steps the clock
back once and shows the rule still fires, measured from the step."""
from __future__ import annotations

from decimal import Decimal

from daemon.config import BreakersCfg
from daemon.execution.orders import Position
from daemon.protection import RISK_KEY
from daemon.risk.var import MarkWindow
from daemon.safety.breakers import BreakerBoard
from tests.clock.conftest import S, Timeline
from tests.clock.rigs import SYM, VENUE, poll, protection


def test_stale_book_checked_by_tick_alone_counts_from_the_step(tl):
    b = BreakerBoard(BreakersCfg(book_invalid_s=5, cascade=False), [VENUE])
    b.book_state(SYM, VENUE, False, tl.ns(100))   # noted at 100 s ...
    b.tick(tl.ns(10))                             # ... then the clock reads 10 s
    b.tick(tl.ns(15))
    assert b.breakers[VENUE].state.value == "closed"
    b.tick(tl.ns(15.001))
    assert b.breakers[VENUE].state.value == "open"


def test_a_probe_sent_before_the_step_times_out_from_the_step(tl):
    b = BreakerBoard(BreakersCfg(cooldown_s=10, latency_floor_ms=500, cascade=False), [VENUE])
    b.trip(VENUE, "test", tl.ns(100), manual=False)
    b.tick(tl.ns(110))
    assert b.breakers[VENUE].state.value == "half_open"
    assert b.allow(VENUE, Decimal("10"), False, tl.ns(120), "probe-1") is None
    b.tick(tl.ns(50))                             # the clock steps back 70 s
    b.tick(tl.ns(50.5))
    assert b.breakers[VENUE].state.value == "half_open"
    b.tick(tl.ns(50.501))
    assert b.breakers[VENUE].state.value == "open"
    assert "probe not acknowledged within 500 ms" in b.breakers[VENUE].reason


def test_the_var_window_samples_again_after_the_step():
    w = MarkWindow(window=30, interval_ns=10 * S)
    assert w.sample({SYM: Decimal("100")}, 1000 * S)
    assert w.sample({SYM: Decimal("101")}, 500 * S), "held back until the clock is back"
    assert not w.sample({SYM: Decimal("102")}, 509 * S)
    assert w.sample({SYM: Decimal("103")}, 510 * S)


def test_the_risk_snapshot_is_saved_again_after_the_step(tmp_path):
    tl = Timeline("wall")
    p = protection(tmp_path, tl, risk={"var_sample_interval_s": 3600})
    pos = {SYM: Position(SYM, Decimal("1"), Decimal("60000"))}
    tl.at(12 * 3600)
    poll(p, positions=pos, mark="60000")
    tl.wall.ns -= 3600 * S                        # the wall clock set back an hour
    poll(p, positions=pos, mark="60010")
    tl.wall.ns += 20 * S
    poll(p, positions=pos, mark="60020")
    assert Decimal(p.journal.load_state(RISK_KEY)["losses"]["peak"]) == Decimal("1020")


def test_a_manual_trip_keeps_its_since_time_across_the_step(tl):
    b = BreakerBoard(BreakersCfg(cooldown_s=10, cascade=False), [VENUE])
    b.trip(VENUE, "manual: operator", tl.ns(100), manual=True)
    b.tick(tl.ns(10))
    b.tick(tl.ns(500))
    br = b.breakers[VENUE]
    assert br.state.value == "open" and br.since_ns == tl.ns(100), "only a reset closes it"


def test_a_second_sample_or_save_at_the_same_time_is_not_taken(tmp_path):
    """The step-back rules start below zero: a repeat at the same time is within the
    interval, as before them."""
    w = MarkWindow(window=30, interval_ns=10 * S)
    assert w.sample({SYM: Decimal("100")}, 1000 * S)
    assert not w.sample({SYM: Decimal("101")}, 1000 * S)
    tl = Timeline("wall")
    p = protection(tmp_path, tl, risk={"var_sample_interval_s": 3600})
    pos = {SYM: Position(SYM, Decimal("1"), Decimal("60000"))}
    tl.at(100)
    poll(p, positions=pos, mark="60000")
    commits = p.journal.commits
    poll(p, positions=pos, mark="60010")          # a new peak at the same time: waits
    assert p.journal.commits == commits
