"""The kill latch, watchdog heartbeats and loop monitor (the circuit breakers have their
own tests in tests/breakers/), pinned where
scripts/mutation-check found mutants that no test noticed (a changed comparison, a dropped
argument, a wrong sign, a reason that no longer names the problem).

Real objects only; the loop monitor runs its real thread against a real event loop. Its
heartbeat is a Heartbeat whose age the test sets, so "exactly at the deadline" can be
checked without timing anything.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from daemon.safety.latch import KillLatch, LatchKind
from daemon.safety.loop_monitor import LoopMonitor
from daemon.safety.watchdog import Heartbeat, Watchdog

S = 1_000_000_000


# -- latch ---------------------------------------------------------------------------------
def test_fresh_latch_is_open_with_no_reason():
    latch = KillLatch()
    # status() reports these three as they are (JSON false / null / "").
    assert latch.tripped is False and latch.kind is None and latch.reason == ""


def test_reset_latch_is_like_new_and_trips_again():
    latch = KillLatch()
    latch.trip(LatchKind.ESTOP, "pressed")
    latch.reset()
    assert latch.tripped is False and latch.kind is None and latch.reason == ""
    assert latch.trip(LatchKind.HALT, "operator"), "a reset latch must trip again"
    assert (latch.tripped, latch.kind, latch.reason) == (True, LatchKind.HALT, "operator")


@pytest.mark.parametrize("kind", [LatchKind.HALT, LatchKind.ESTOP])
def test_restored_latch_is_closed_and_keeps_its_kind(kind):
    latch = KillLatch()
    latch.restore(kind, "latched before restart")
    assert (latch.tripped, latch.kind, latch.reason) == (True, kind, "latched before restart")
    assert not latch.trip(LatchKind.HALT, "again")
    assert latch.trip(LatchKind.ESTOP, "pressed") is (kind is LatchKind.HALT)
    assert latch.kind is LatchKind.ESTOP


def test_trip_from_another_thread_closes_the_gate_at_once():
    latch = KillLatch()
    t = threading.Thread(target=latch.trip, args=(LatchKind.ESTOP, "pressed"))
    t.start()
    t.join()
    assert latch.tripped is True and latch.kind is LatchKind.ESTOP and latch.reason == "pressed"


# -- watchdog ------------------------------------------------------------------------------
def test_heartbeat_age():
    hb = Heartbeat("x", 1.0, last=100.0)
    assert hb.age(now=102.5) == 2.5
    hb.beat()
    assert 0 <= hb.age() < 60   # beat() stamped the monotonic clock now
    assert hb.age(now=hb.last + 3.0) == pytest.approx(3.0)


def test_watchdog_register_rejects_bad_deadlines_and_duplicates():
    wd = Watchdog()
    with pytest.raises(ValueError, match="'a': deadline must be > 0, got 0"):
        wd.register("a", 0)
    with pytest.raises(ValueError, match="deadline must be > 0, got -1"):
        wd.register("a", -1)
    hb = wd.register("a", 0.001)
    assert (hb.name, hb.deadline_s) == ("a", 0.001)
    with pytest.raises(ValueError, match="heartbeat 'a' registered twice"):
        wd.register("a", 1.0)


def test_watchdog_stalled_boundary_and_snapshot():
    wd = Watchdog()
    a = wd.register("a", 2.0)
    b = wd.register("b", 5.0)
    a.last, b.last = 100.0, 100.0
    assert wd.stalled(now=102.0) == [], "exactly at the deadline is not stalled"
    assert wd.stalled(now=102.0001) == [("a", 2.0)]
    assert wd.stalled(now=105.5) == [("a", 5.5), ("b", 5.5)]
    assert wd.snapshot(now=101.23456) == {"a": {"age_s": 1.235, "deadline_s": 2.0},
                                          "b": {"age_s": 1.235, "deadline_s": 5.0}}
    a.beat()
    b.beat()
    assert wd.stalled() == []
    snap = wd.snapshot()
    assert set(snap) == {"a", "b"} and all(v["age_s"] < 2.0 for v in snap.values())


# -- loop monitor --------------------------------------------------------------------------
class SetAge(Heartbeat):
    """A heartbeat whose age the test sets; counts how often the monitor looked."""

    __slots__ = ("value", "looks")

    def __init__(self, deadline_s: float) -> None:
        super().__init__("loop", deadline_s)
        self.value = 0.0
        self.looks = 0

    def age(self, now: float | None = None) -> float:
        self.looks += 1
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def _wait(pred, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_loop_monitor_trips_only_past_the_deadline_and_wakes_the_loop_once():
    async def main():
        loop = asyncio.get_running_loop()
        hb, latch, stalls = SetAge(2.0), KillLatch(), []
        mon = LoopMonitor(hb, latch, loop, stalls.append, period_s=0.001)
        hb.value = 2.0   # exactly at the deadline: not a stall
        mon.start()
        try:
            seen = hb.looks
            while hb.looks < seen + 5:
                await asyncio.sleep(0.005)
            assert not latch.tripped and stalls == []
            hb.value = 2.004
            while not stalls:
                await asyncio.sleep(0.005)
            assert latch.kind is LatchKind.HALT
            assert latch.reason == "watchdog: event loop stalled for 2.00 s"
            assert stalls == [latch.reason]
            seen = hb.looks
            while hb.looks < seen + 5:   # still stalled: the latch does not change again
                await asyncio.sleep(0.005)
            assert stalls == [latch.reason]
        finally:
            mon.stop()
        assert not mon._thread.is_alive()
    asyncio.run(main())


def test_loop_monitor_logs_each_stall_once_with_the_loop_threads_stack(caplog):
    def blocked_here(mon: LoopMonitor, hb: SetAge, stalls: list) -> None:
        """Stands for the loop thread stuck in a call (this frame must be in the log)."""
        for episode in (1, 2):
            hb.value = 5.0
            _wait(lambda: mon.stalls == episode, f"stall {episode}")
            seen = hb.looks
            _wait(lambda: hb.looks >= seen + 5, "more checks while stalled")
            assert mon.stalls == episode, "one stall episode is counted (and logged) once"
            hb.value = 0.0
            seen = hb.looks
            _wait(lambda: hb.looks >= seen + 2, "a healthy check")

    loop = asyncio.new_event_loop()
    hb, latch, stalls = SetAge(1.0), KillLatch(), []
    mon = LoopMonitor(hb, latch, loop, stalls.append, period_s=0.001)
    try:
        with caplog.at_level(logging.ERROR, logger="daemon.safety.loop_monitor"):
            mon.start()
            assert mon._thread.name == "loop-monitor"
            assert mon._thread.daemon, "the monitor must never keep the process alive"
            blocked_here(mon, hb, stalls)
    finally:
        mon.stop()
        loop.close()
    assert mon.stalls == 2
    records = [r for r in caplog.records if r.name == "daemon.safety.loop_monitor"]
    assert len(records) == 2
    for r in records:
        head, _, stack = r.getMessage().partition("\n")
        assert head == "watchdog: event loop stalled for 5.00 s; the loop thread is at:"
        assert "in blocked_here" in stack and "_wait" in stack
        for line in stack.splitlines():   # a plain traceback.format_stack() listing
            assert line.startswith(('  File "', "    ")), line
    assert latch.reason == "watchdog: event loop stalled for 5.00 s"


def test_loop_stack_of_a_thread_that_is_gone():
    result: list[LoopMonitor] = []
    loop = asyncio.new_event_loop()
    try:
        t = threading.Thread(target=lambda: result.append(
            LoopMonitor(SetAge(1.0), KillLatch(), loop, lambda r: None)))
        t.start()
        t.join()
        assert result[0].loop_stack() == "(loop thread not found)"
    finally:
        loop.close()


def test_loop_monitor_survives_a_failing_check_and_logs_it(caplog):
    async def main():
        loop = asyncio.get_running_loop()
        hb, latch, stalls = SetAge(1.0), KillLatch(), []
        hb.value = ValueError("broken heartbeat")
        mon = LoopMonitor(hb, latch, loop, stalls.append, period_s=0.001)
        with caplog.at_level(logging.ERROR, logger="daemon.safety.loop_monitor"):
            mon.start()
            try:
                while hb.looks < 3:
                    await asyncio.sleep(0.005)
                assert mon._thread.is_alive()
                hb.value = 5.0
                while not stalls:
                    await asyncio.sleep(0.005)
            finally:
                mon.stop()
        assert "loop monitor check failed" in [r.getMessage() for r in caplog.records]
        assert latch.tripped
    asyncio.run(main())


def test_loop_monitor_ends_when_the_loop_is_closed():
    loop = asyncio.new_event_loop()
    hb, latch = SetAge(1.0), KillLatch()
    mon = LoopMonitor(hb, latch, loop, lambda reason: None, period_s=0.001)
    loop.close()
    hb.value = 5.0
    mon.start()
    mon._thread.join(10)
    assert not mon._thread.is_alive(), "the monitor thread must end with its loop"
    assert latch.tripped   # the gate was still closed first


def test_loop_monitor_stop_without_start():
    loop = asyncio.new_event_loop()
    try:
        mon = LoopMonitor(SetAge(1.0), KillLatch(), loop, lambda reason: None)
        mon.stop()   # must not raise (join on a thread never started would)
    finally:
        loop.close()
