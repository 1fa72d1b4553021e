"""TWAP plans and the Schedule driver: slices and timing on hand values, limits, catch-up,
hand-backs, exact Decimal sums and the accounting invariant under random driving."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.execution.algos.twap import (
    Schedule,
    Slice,
    lots_down,
    slot_times,
    spread_lots,
    twap_plan,
)

D = Decimal
LOT = D("0.001")
S = 1_000_000_000          # one second in ns


def _invariant(s: Schedule) -> None:
    assert s.total == s.filled_qty + s.in_flight + s.planned_ahead + s.unfinished
    assert s.remaining == s.total - s.filled_qty


def test_slot_times_by_count_and_by_interval() -> None:
    assert slot_times(0, 60 * S, n_slices=4) == [0, 15 * S, 30 * S, 45 * S]
    assert slot_times(100, 110, n_slices=3) == [100, 103, 106]       # exact integer ns
    assert slot_times(0, 60 * S, interval_ns=20 * S) == [0, 20 * S, 40 * S]
    assert slot_times(0, 61 * S, interval_ns=20 * S) == [0, 20 * S, 40 * S, 60 * S]
    with pytest.raises(ValueError):
        slot_times(0, 10, n_slices=2, interval_ns=5)
    with pytest.raises(ValueError):
        slot_times(10, 10, n_slices=2)


def test_twap_plan_hand_values() -> None:
    plan = twap_plan(D("1.000"), 0, 60 * S, n_slices=3, lot=LOT)
    assert plan == [(0, D("0.334")), (20 * S, D("0.333")), (40 * S, D("0.333"))]
    assert sum(q for _, q in plan) == D("1.000")
    assert all(isinstance(q, Decimal) for _, q in plan)
    assert spread_lots(D(10), 4, D(1)) == [D(3), D(3), D(2), D(2)]
    assert spread_lots(D(2), 4, D(1)) == [D(1), D(1), D(0), D(0)]
    with pytest.raises(ValueError):
        twap_plan(D("1.0005"), 0, 60 * S, n_slices=3, lot=LOT)     # not a lot multiple


def test_due_emits_each_slot_once_at_its_time() -> None:
    s = Schedule.twap(D("0.9"), 1000, 1000 + 30 * S, n_slices=3, lot=LOT)
    assert s.due(999) == []                                         # before start
    assert s.due(1000) == [Slice(0, 0, 1000, D("0.3"), D(0))]
    assert s.due(1000) == []                                        # never twice
    assert s.due(1000 + 10 * S - 1) == []
    assert s.next_due_ns == 1000 + 10 * S
    [b] = s.due(1000 + 10 * S)
    assert (b.first_slot, b.qty) == (1, D("0.3"))
    assert s.due(1000 + 15 * S) == []
    [c] = s.due(1000 + 25 * S)
    assert (c.first_slot, c.qty, c.due_ns) == (2, D("0.3"), 1000 + 20 * S)
    assert s.due(10 ** 18) == [] and s.next_due_ns is None
    assert not s.done                          # all sent, nothing filled yet
    for q in ("0.3", "0.1", "0.2", "0.3"):
        s.filled(D(q))
        _invariant(s)
    assert s.done and s.remaining == 0 and s.unfinished == 0


def test_missed_intervals_are_caught_up_in_one_slice() -> None:
    s = Schedule.twap(D(10), 0, 50 * S, n_slices=5, lot=D(1))
    [a] = s.due(0)
    assert a.qty == D(2)
    [b] = s.due(35 * S)                         # slots 1, 2, 3 were missed: merged
    assert (b.first_slot, b.last_slot, b.due_ns, b.qty, b.deferred) == (1, 3, 30 * S, D(6),
                                                                         D(0))
    [c] = s.due(40 * S)
    assert c.qty == D(2)
    assert s.due(41 * S) == []


def test_catch_up_never_exceeds_max_slice_and_spreads_the_excess() -> None:
    s = Schedule.twap(D(10), 0, 50 * S, n_slices=5, lot=D(1), max_slice=D(3))
    [b] = s.due(25 * S)                         # slots 0, 1, 2 due: want 6, cap 3
    assert (b.qty, b.deferred) == (D(3), D(3))
    # 3 deferred over the 2 remaining slots: 2 and 1 lots, the odd lot first.
    assert s.plan() == [(30 * S, D(4)), (40 * S, D(3))]
    [c] = s.due(30 * S)
    assert (c.qty, c.deferred) == (D(3), D(1))  # 4 wanted, capped again
    assert s.plan() == [(40 * S, D(4))]
    [d] = s.due(40 * S)
    assert (d.qty, d.deferred) == (D(3), D(1))  # last slot: the excess is unfinished
    assert s.unfinished == D(1)
    assert s.plan() == []
    _invariant(s)
    s.filled(D(9))
    assert s.done and s.remaining == D(1) and s.unfinished == D(1)


def test_infeasible_max_slice_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        Schedule.twap(D(10), 0, 50 * S, n_slices=3, lot=D(1), max_slice=D(3))
    with pytest.raises(ValueError):
        Schedule.twap(D(10), 0, 50 * S, n_slices=5, lot=D(1), max_slice=D("2.5"))


def test_participation_limit_uses_recent_volume() -> None:
    s = Schedule.twap(D("1.0"), 0, 40 * S, n_slices=4, lot=D("0.01"), max_slice=D("0.3"),
                      max_participation=D("0.1"))
    with pytest.raises(ValueError, match="recent_volume"):
        s.due(0)
    assert s.limit(D("1.234")) == D("0.12")     # 10% of 1.234, rounded down to the lot
    [a] = s.due(0, recent_volume=D("1.234"))
    assert (a.qty, a.deferred) == (D("0.12"), D("0.13"))
    [b] = s.due(10 * S, recent_volume=D(50))    # volume plenty: max_slice binds
    assert b.qty == D("0.3")
    assert s.due(20 * S, recent_volume=D(0)) == []   # no volume, nothing sent: deferred
    _invariant(s)
    [d] = s.due(30 * S, recent_volume=D(100))
    assert d.qty == D("0.3")
    assert s.unfinished == D("1.0") - D("0.12") - D("0.3") - D("0.3")
    _invariant(s)


def test_unfilled_is_handed_back_to_later_slots() -> None:
    s = Schedule.twap(D(9), 0, 30 * S, n_slices=3, lot=D(1))
    [a] = s.due(0)
    s.filled(D(1))
    s.unfilled(D(2))                            # the IOC expired with 2 unfilled
    assert s.plan() == [(10 * S, D(4)), (20 * S, D(4))]
    assert s.in_flight == 0
    _invariant(s)
    [b] = s.due(10 * S)
    assert b.qty == D(4)
    s.filled(D(4))
    [c] = s.due(20 * S)
    s.filled(D(3))
    s.unfilled(D(1))                            # after the last slot: unfinished
    assert s.unfinished == D(1) and s.done and s.remaining == D(1)
    _invariant(s)


def test_fill_accounting_refuses_impossible_input() -> None:
    s = Schedule.twap(D(4), 0, 20 * S, n_slices=2, lot=D(1))
    with pytest.raises(ValueError):
        s.filled(D(1))                          # nothing sent yet
    s.due(0)
    with pytest.raises(ValueError):
        s.filled(D(3))                          # more than in flight
    with pytest.raises(TypeError):
        s.filled(1)                             # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.unfilled(D(3))                        # more than in flight
    s.filled(D("1.5"))                          # a fill need not be whole lots...
    s.unfilled(D("0.5"))                        # ...but sub-lot dust cannot be re-sent
    assert s.unfinished == D("0.5") and s.in_flight == 0
    assert s.plan() == [(10 * S, D(2))]
    _invariant(s)
    assert s.remaining == D("2.5") and not s.done


def test_plan_validation() -> None:
    with pytest.raises(ValueError):
        Schedule([], lot=D(1))
    with pytest.raises(ValueError):
        Schedule([(0, D(1)), (0, D(1))], lot=D(1))          # times must increase
    with pytest.raises(ValueError):
        Schedule([(0, D("0.5"))], lot=D(1))
    with pytest.raises(ValueError):
        Schedule([(0, D(1))], lot=D(1), max_participation=D(0))
    assert lots_down(D("1.2345"), D("0.01")) == D("1.23")


@settings(max_examples=300, deadline=None)
@given(
    total_lots=st.integers(1, 500),
    n=st.integers(1, 12),
    cap_lots=st.one_of(st.none(), st.integers(1, 100)),
    steps=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 100)),
                   min_size=1, max_size=40),
)
def test_random_driving_keeps_the_books(total_lots, n, cap_lots, steps) -> None:
    """Any sequence of clock advances, fills and hand-backs: no slice above the cap, no slot
    twice, Decimal throughout, and total = filled + in flight + ahead + unfinished."""
    lot = D("0.01")
    total = total_lots * lot
    cap = None if cap_lots is None else cap_lots * lot
    if cap is not None and total > cap * n:
        return
    s = Schedule.twap(total, 0, n * 10, n_slices=n, lot=lot, max_slice=cap)
    now, seen, late = 0, set(), D(0)
    for dt, action, pct in steps:
        now += dt
        for sl in s.due(now):
            assert isinstance(sl.qty, Decimal) and sl.qty > 0 and sl.qty % lot == 0
            assert cap is None or sl.qty <= cap
            slots = set(range(sl.first_slot, sl.last_slot + 1))
            assert not slots & seen
            seen |= slots
        part = lots_down(s.in_flight * pct / 100, lot)
        if part > 0 and action == 1:
            s.filled(part)
        elif part > 0 and action == 2:
            late += part if s.slots_left == 0 else 0
            s.unfilled(part)
        _invariant(s)
    # Drive to the end and fill everything still in flight.
    s.due(10 ** 12)
    if s.in_flight:
        s.filled(s.in_flight)
    assert s.done
    assert s.filled_qty + s.unfinished == total
    if cap is None:
        assert s.unfinished == late       # no limit: only late hand-backs are left over
