"""The e-stop chain in-process (mock GPIO driven from its own thread, as lgpio does)."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from daemon import config
from daemon.execution.gateway import Rejected
from daemon.execution.orders import Side
from daemon.states import State
from daemon.supervisor import RunOptions, Supervisor
from tests.daemon_harness import CONFIG


async def _until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _boot(tmp_path, env=None) -> tuple[Supervisor, asyncio.Task]:
    cfg = config.load(CONFIG, environ={"BOT4__MARKET__SYNTHETIC_RATE_HZ": "200", **(env or {})})
    sup = Supervisor(cfg, RunOptions(sim=True, state_dir=str(tmp_path / "state"),
                                     socket=str(tmp_path / "c.sock")))
    task = asyncio.create_task(sup.run())
    await _until(lambda: sup.state is not State.BOOTING, what="boot")
    return sup, task


async def _trading(sup: Supervisor) -> None:
    await sup.handle_command({"cmd": "start"})
    await _until(lambda: len(sup.gateway.open) >= 2, what="quotes")


async def _stop(sup: Supervisor, task: asyncio.Task) -> None:
    sup.request_stop("test over")
    assert await asyncio.wait_for(task, 20) == 0


def test_press_closes_gateway_before_the_loop_runs(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        n_open = len(sup.gateway.open)
        # The edge is delivered on the sim GPIO thread; we block this (loop) thread until
        # the callback has run, so the loop has had NO chance to handle anything yet.
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        assert sup.latch.tripped
        assert sup.state is State.TRADING          # the loop has not seen it yet...
        with pytest.raises(Rejected) as e:          # ...but the door is already shut
            sup.gateway.submit("BTCUSDT", Side.BUY, Decimal("0.001"), Decimal("50000"))
        assert e.value.stage == "latch"
        await _until(lambda: sup.state is State.ESTOP, what="estop")
        await _until(lambda: sup.journal.latch().tripped, what="trip journalled")
        trip = sup.journal.audit_rows("latch_trip")[-1][2]
        assert trip["source"] == "estop" and trip["open_orders"] == n_open
        await _until(lambda: not sup.gateway.open, what="cancels confirmed")
        assert sup.panel.led.pattern == "red_fast_blink"
        await _stop(sup, task)
    asyncio.run(main())


def test_handler_exception_does_not_lose_later_presses(tmp_path, mocker):
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        real_trip = sup.latch.trip
        mocker.patch.object(sup.latch, "trip",
                            side_effect=[RuntimeError("handler bug"), *[real_trip] * 0])
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        assert sup.panel.estop.handler_errors == 1
        assert sup.panel.estop.callback_thread_alive(), "exception escaped into GPIO thread"
        mocker.stopall()
        # The poll still sees the open circuit and trips (backup path).
        await _until(lambda: sup.state is State.ESTOP, what="estop via poll")
        assert "seen by poll" in sup.state_reason
        sup.panel.estop.sim_set(circuit_closed=True, wait=True)
        # Reset is (rightly) refused while cancels await confirmation: wait for them
        # instead of racing the venue (this raced and failed 2 runs in 18).
        await _until(lambda: not sup.gateway.open, what="cancels confirmed")
        await sup.handle_command({"cmd": "reset"})
        await _trading(sup)
        # The next press goes through the edge handler normally.
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        assert sup.latch.tripped and sup.latch.kind.value == "estop"
        await _until(lambda: sup.state is State.ESTOP, what="second estop")
        assert "pressed" in sup.state_reason
        await _stop(sup, task)
    asyncio.run(main())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_callback_thread_is_a_fault(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        sup.notifier.watchdog_usec = 200_000
        await _trading(sup)

        def boom():
            raise RuntimeError("escaped a callback")   # ends the thread, like lgpio's
        sup.panel.estop.sim.submit(boom)
        await _until(lambda: sup.state is State.FAULT, what="fault")
        assert "callback thread died" in sup.state_reason
        assert sup.latch.tripped and sup._pings_blocked
        with pytest.raises(Rejected):
            sup.gateway.submit("BTCUSDT", Side.BUY, Decimal("0.001"), Decimal("50000"))
        await _until(lambda: not sup.gateway.open, what="orders cancelled")
        assert sup.panel.led.pattern == "red"
        assert sup.journal.latch().tripped   # a restart comes back halted, not trading
        await _stop(sup, task)
    asyncio.run(main())


def test_led_follows_states_on_the_pins(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        f = sup.panel.factory
        red, green, blue = (f.pin(p) for p in (27, 22, 23))
        assert sup.panel.led.pattern == "green_slow_blink"
        await sup.handle_command({"cmd": "start"})
        await _until(lambda: sup.panel.led.applied == "green", what="green on the pins")
        assert (red.state, green.state, blue.state) == (0, 1, 0)
        await sup.handle_command({"cmd": "halt", "reason": "x"})
        assert sup.panel.led.pattern == "red_slow_blink"
        await _stop(sup, task)
        assert (red.state, green.state, blue.state) == (0, 0, 0), "LED not off after stop"
    asyncio.run(main())


def test_sim_commands_refused_without_mock_gpio(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        sup.opts.sim = False   # as a hardware run would be
        from daemon.control.server import CommandError
        with pytest.raises(CommandError, match="mock GPIO"):
            await sup.handle_command({"cmd": "sim", "what": "estop", "action": "press"})
        sup.opts.sim = True
        await _stop(sup, task)
    asyncio.run(main())


def test_journal_failure_on_a_command_is_a_fault(tmp_path, mocker):
    async def main():
        sup, task = await _boot(tmp_path)
        from daemon.control.server import CommandError
        from daemon.store.journal import JournalError
        mocker.patch.object(sup.journal, "audit", side_effect=JournalError("disk full"))
        with pytest.raises(CommandError, match="disk full"):
            await sup.handle_command({"cmd": "start"})
        assert sup.state is State.FAULT and sup.latch.tripped and sup._pings_blocked
        mocker.stopall()
        await _stop(sup, task)
    asyncio.run(main())


def test_data_gap_while_trading_reduces_then_recovers(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        book = sup.market.books["BTCUSDT"]
        gaps = book.stats["gaps"]
        sup.market.synthetic.step()   # one step's messages are lost: the next diff has a gap
        await _until(lambda: book.stats["gaps"] > gaps, what="gap detected")
        await _until(lambda: sup.state is State.REDUCING, what="reducing")
        assert "degraded" in sup.state_reason and "book invalid" in sup.state_reason
        assert sup.panel.led.pattern == "amber"
        with pytest.raises(Rejected, match="would not reduce"):   # flat: nothing reduces
            sup.gateway.submit("BTCUSDT", Side.BUY, Decimal("0.001"), Decimal("60000"))
        # The synthetic exchange answers the snapshot request; trading resumes by itself.
        await _until(lambda: sup.state is State.TRADING, what="trading again")
        assert book.valid and sup.state_reason == "market data healthy again"
        await _until(lambda: len(sup.gateway.open) >= 2, what="quoting again")
        await _stop(sup, task)
    asyncio.run(main())


def test_estop_with_flatten_closes_the_position(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path, env={"BOT4__SAFETY__FLATTEN_ON_ESTOP": "true"})
        await _trading(sup)
        sup.gateway.position("BTCUSDT").qty = Decimal("0.001")   # as if a quote had filled
        sup.gateway.position("BTCUSDT").avg_price = Decimal("60000")
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        await _until(lambda: sup.state is State.ESTOP, what="estop")
        await _until(lambda: sup.gateway.position("BTCUSDT").qty == 0, what="flat")
        rows = sup.journal._db.execute(
            "SELECT side, type, status, reason FROM orders WHERE reduce_only = 1").fetchall()
        assert rows == [("sell", "market", "filled", "e-stop flatten")]
        # while latched, only that flatten order ever left: nothing else is open
        await _until(lambda: not sup.gateway.open, what="nothing open")
        await _stop(sup, task)
    asyncio.run(main())
