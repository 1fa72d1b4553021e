"""hw/estop_input.py on gpiozero's MockFactory (the only thing mocked), pinned where
scripts/mutation-check found mutants no test noticed: which edge calls which handler, on
which thread, what a failing handler costs, the pin's pull-up and debounce, and what
close() leaves behind.
"""
from __future__ import annotations

import logging
import threading

import pytest
from gpiozero.pins.mock import MockFactory

from hw.estop_input import EstopInput, SimEdgeThread

PIN = 17


class Calls:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.fail_open: BaseException | None = None
        self.fail_close: BaseException | None = None

    def on_open(self) -> None:
        self.opened.append(threading.current_thread().name)
        if self.fail_open is not None:
            raise self.fail_open

    def on_close(self) -> None:
        self.closed.append(threading.current_thread().name)
        if self.fail_close is not None:
            raise self.fail_close


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()
    f.close()


def make(factory, calls: Calls, **kw) -> EstopInput:
    return EstopInput(factory, PIN, kw.pop("bounce_ms", 0.0), calls.on_open, calls.on_close,
                      **kw)


def test_healthy_circuit_at_boot_fires_nothing(factory):
    calls = Calls()
    e = make(factory, calls)
    try:
        assert e.circuit_closed() is True and e.pin == PIN
        assert e.callback_thread_alive() is True
        assert calls.opened == [] and calls.closed == [] and e.handler_errors == 0
    finally:
        e.close()


def test_open_circuit_at_boot_reads_open_without_an_edge(factory):
    calls = Calls()
    e = make(factory, calls, sim_circuit_closed=False)
    try:
        assert e.circuit_closed() is False
        assert calls.opened == [] and calls.closed == []
    finally:
        e.close()


def test_edges_call_their_own_handler_on_the_callback_thread(factory):
    calls = Calls()
    e = make(factory, calls)
    try:
        e.sim_set(circuit_closed=False)
        assert e.circuit_closed() is False
        assert calls.opened == ["sim-gpio-callbacks"] and calls.closed == []
        e.sim_set(circuit_closed=True)
        assert e.circuit_closed() is True
        assert calls.opened == ["sim-gpio-callbacks"] and calls.closed == ["sim-gpio-callbacks"]
    finally:
        e.close()


@pytest.mark.parametrize("exc", [RuntimeError("handler bug"), KeyboardInterrupt()])
def test_failing_handlers_are_counted_logged_and_never_kill_the_thread(factory, caplog, exc):
    calls = Calls()
    calls.fail_open = exc
    calls.fail_close = exc
    e = make(factory, calls)
    try:
        with caplog.at_level(logging.ERROR, logger="hw.estop_input"):
            e.sim_set(circuit_closed=False)
            assert e.handler_errors == 1 and e.callback_thread_alive()
            e.sim_set(circuit_closed=True)
            assert e.handler_errors == 2 and e.callback_thread_alive()
        msgs = [r.getMessage() for r in caplog.records]
        assert msgs == ["e-stop open handler failed (latch state is re-checked by poll)",
                        "e-stop close handler failed"]
        calls.fail_close = None
        e.sim_set(circuit_closed=False)   # the open handler fails a second time
        assert e.handler_errors == 3 and len(calls.opened) == 2
        calls.fail_open = None
        e.sim_set(circuit_closed=True)
        e.sim_set(circuit_closed=False)   # later edges still arrive
        assert len(calls.opened) == 3 and e.handler_errors == 3
    finally:
        e.close()


def test_sim_set_without_waiting_still_delivers_the_edge(factory):
    calls = Calls()
    e = make(factory, calls)
    try:
        e.sim_set(circuit_closed=False, wait=False)
        e.sim_set(circuit_closed=True, wait=True)   # queued after it: both have run now
        assert calls.opened == ["sim-gpio-callbacks"] and len(calls.closed) == 1
    finally:
        e.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_sim_set_on_a_dead_callback_thread_times_out(factory):
    e = make(factory, Calls())
    try:
        def boom() -> None:
            raise RuntimeError("escaped a callback")   # ends the thread, as it would lgpio's
        e.sim.submit(boom)
        e.sim._thread.join(10)
        assert e.callback_thread_alive() is False
        with pytest.raises(TimeoutError,
                           match="^simulated GPIO callback thread did not respond$"):
            e.sim_set(circuit_closed=False)
    finally:
        e.close()


def test_sim_set_needs_mock_gpio(factory):
    e = make(factory, Calls())
    sim, e.sim = e.sim, None   # as on a Pi: no simulation thread
    try:
        with pytest.raises(RuntimeError,
                           match=r"^e-stop simulation needs mock GPIO \(run with --sim\)$"):
            e.sim_set(circuit_closed=False)
    finally:
        e.sim = sim
        e.close()


def test_pull_up_and_debounce(factory):
    e = make(factory, Calls(), bounce_ms=5.0)
    try:
        assert e._button.pull_up is True
        assert e._button.pin.bounce == pytest.approx(0.005)
    finally:
        e.close()
    e = make(factory, Calls(), bounce_ms=0.0)
    try:
        assert e._button.pin.bounce is None
    finally:
        e.close()


def test_close_releases_the_pin_and_ends_the_sim_thread(factory):
    e = make(factory, Calls())
    e.close()
    assert e._button.closed and e.callback_thread_alive() is False
    e2 = make(factory, Calls())   # the pin is free again
    e2.close()


def test_sim_edge_thread_is_a_daemon_thread():
    t = SimEdgeThread()
    try:
        assert t._thread.name == "sim-gpio-callbacks"
        assert t._thread.daemon, "the simulated GPIO thread must never keep the process alive"
    finally:
        t.stop()


def test_sim_edge_thread_stop_gives_up_on_a_stuck_job():
    t = SimEdgeThread()
    release = threading.Event()
    t.submit(lambda: release.wait(60))   # a callback that never returns (until released)
    try:
        t.stop()                          # must come back (after its join timeout)
        assert t.alive()
    finally:
        release.set()
        t._thread.join(10)
    assert not t.alive()


def test_sim_edge_thread_runs_jobs_in_order_then_stops():
    t = SimEdgeThread()
    seen: list[int] = []
    done = threading.Event()
    for i in range(3):
        t.submit(lambda i=i: seen.append(i))
    t.submit(done.set)
    assert done.wait(10) and seen == [0, 1, 2] and t.alive()
    t.stop()
    assert not t.alive()
