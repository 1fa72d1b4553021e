"""Issue 6, in-process: the safety chain on the paths nobody designed for.

Each test failed on the code before the fix (the defect it names is in its docstring).
Real Supervisor, real SQLite journal, real paper venue; GPIO through gpiozero's MockFactory.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from decimal import Decimal

import pytest

from daemon import config
from daemon.control.server import CommandError
from daemon.execution.orders import OrderStatus
from daemon.states import State
from daemon.supervisor import RunOptions, Supervisor
from tests.daemon_harness import CONFIG
from tests.journal_faults import fill_up
from tests.test_safety_inproc import _boot, _stop, _trading, _until


def _latch_row(sup: Supervisor):
    """The latch as a separate connection (another process after a crash) would read it."""
    db = sqlite3.connect(sup.journal.path)
    try:
        return db.execute("SELECT tripped, source FROM latch").fetchone()
    finally:
        db.close()


def test_estop_press_is_acknowledged_only_once_durable(tmp_path):
    """Defect 5: `sim estop press` replied before the trip was journalled."""
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        reply = await sup.handle_command({"cmd": "sim", "what": "estop", "action": "press"})
        # Nothing else ran on the loop in between: the reply itself carries durability.
        assert _latch_row(sup) == (1, "estop"), "acknowledged e-stop not in the journal"
        assert reply["latched"] == "journalled"
        assert sup.state is State.ESTOP
        await _stop(sup, task)
    asyncio.run(main())


@pytest.mark.parametrize("case", ["dust", "no_mark"])
def test_estop_with_flatten_reaches_estop_when_flatten_cannot_close(tmp_path, case):
    """Defect 2: a position below min notional (or with no mark price) made flatten raise,
    which left the daemon latched but 'trading' with a green LED and reset refused."""
    async def main():
        sup, task = await _boot(tmp_path, env={"BOT4__SAFETY__FLATTEN_ON_ESTOP": "true"})
        await _trading(sup)
        sym = "BTCUSDT" if case == "dust" else "ETHUSDT"   # ETH has no book: no mark
        pos = sup.gateway.position(sym)
        pos.qty, pos.avg_price = (Decimal("0.00001"), Decimal("60000")) if case == "dust" \
            else (Decimal("0.01"), Decimal("3000"))
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        await _until(lambda: sup.state is State.ESTOP, what="estop")
        assert sup.panel.led.pattern == "red_fast_blink"
        assert any("flatten failed" in f and "left open" in f for f in sup.failures), \
            sup.failures
        assert sup.status()["failures"] == sup.failures
        rows = [d for _, _, d in sup.journal.audit_rows("step_failed")]
        assert rows and "left open" in rows[-1]["error"]
        assert _latch_row(sup) == (1, "estop")
        await _until(lambda: not sup.gateway.open, what="cancels confirmed")
        sup.panel.estop.sim_set(circuit_closed=True, wait=True)
        assert (await sup.handle_command({"cmd": "reset"}))["state"] == "ready"
        await _stop(sup, task)
    asyncio.run(main())


def test_disk_full_still_cancels_faults_and_next_boot_is_halted(tmp_path):
    """Defect 4: with the disk full, set_latch failed first and cancel_all was never
    reached; after space was freed a restart came back `ready` and `start` was accepted."""
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        venue = sup.core.venue
        await _until(lambda: len(venue.open_orders()) >= 2, what="quotes working at the venue")
        working = set(venue.open_orders())
        fill_up(sup.journal)
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        await _until(lambda: sup.state is State.FAULT, what="fault")
        assert sup.latch.tripped and sup.panel.led.pattern == "red"
        assert "journal" in sup.state_reason and sup.status()["journal"]["ok"] is False
        sup.engine.settle()
        assert not (working & set(venue.open_orders())), "orders still working at the venue"
        sup.panel.estop.sim_set(circuit_closed=True, wait=True)
        await _stop(sup, task)

        # "Space freed": a new process (new connection) can write again.
        sup2, task2 = await _boot(tmp_path)
        assert sup2.state is State.HALTED, sup2.state_reason
        assert "previous run ended uncleanly" in sup2.state_reason
        with pytest.raises(CommandError, match="start needs state ready"):
            await sup2.handle_command({"cmd": "start"})
        await _stop(sup2, task2)
    asyncio.run(main())


def test_journal_deleted_while_running_is_a_fault(tmp_path):
    """Defect 7: a journal deleted while running went unnoticed (commits to a ghost)."""
    async def main():
        sup, task = await _boot(tmp_path)
        sup.journal.path.unlink()
        await _until(lambda: sup.state is State.FAULT, what="fault")
        assert "deleted" in sup.state_reason
        await _stop(sup, task)
    asyncio.run(main())


def test_bad_sim_stall_argument_is_a_clear_error(tmp_path):
    """Defect 10 (last part): `sim stall --seconds abc` raised ValueError (a traceback)."""
    async def main():
        sup, task = await _boot(tmp_path)
        for bad in ("abc", None, -1, "inf"):
            with pytest.raises(CommandError, match="seconds must"):
                await sup.handle_command({"cmd": "sim", "what": "stall", "action": "market",
                                          "seconds": bad})
        assert sup.state is State.READY
        await _stop(sup, task)
    asyncio.run(main())


def test_stall_without_systemd_watchdog_can_be_reset_once_healthy(tmp_path):
    """Defect 9 (run-sim): after `sim stall`, reset was refused for ever, waiting for a
    systemd restart that cannot come when there is no systemd watchdog."""
    async def main():
        sup, task = await _boot(tmp_path, env={"BOT4__WATCHDOG__STRATEGY_DEADLINE_S": "0.5"})
        assert not sup.notifier.watchdog_usec
        await sup.handle_command({"cmd": "start"})
        await sup.handle_command({"cmd": "sim", "what": "stall", "action": "strategy",
                                  "seconds": 1.5})
        await _until(lambda: sup.state is State.HALTED, what="halted by the watchdog")
        assert "stalled component strategy" in sup.state_reason
        await _until(lambda: sup._pings_blocked is None, what="component healthy again")
        await _until(lambda: not sup.gateway.open, what="cancels confirmed")
        assert (await sup.handle_command({"cmd": "reset"}))["state"] == "ready"
        await _stop(sup, task)
    asyncio.run(main())


def test_stall_under_systemd_watchdog_keeps_waiting_for_the_restart(tmp_path):
    """The other side of the rule above: with a systemd watchdog the pings stay stopped."""
    async def main():
        sup, task = await _boot(tmp_path, env={"BOT4__WATCHDOG__STRATEGY_DEADLINE_S": "0.5"})
        sup.notifier.watchdog_usec = 60_000_000
        await sup.handle_command({"cmd": "sim", "what": "stall", "action": "strategy",
                                  "seconds": 1.0})
        await _until(lambda: sup.state is State.HALTED, what="halted")
        hb = sup.watchdog._beats["strategy"]
        await _until(lambda: hb.age() < 0.2 and not sup.watchdog.stalled(),
                     what="the strategy beating again")
        pings = sup.pings
        fresh_at, loop_hb = time.monotonic(), sup.watchdog._beats["loop"]
        # The watchdog task beats "loop" on every round: two rounds after the strategy was
        # healthy again, it has had its chance to lift the block (it must not).
        await _until(lambda: loop_hb.last > fresh_at + 0.15, what="two watchdog rounds")
        assert sup._pings_blocked and "strategy" in sup._pings_blocked
        assert sup.pings == pings, "pings resumed although systemd must restart us"
        with pytest.raises(CommandError, match="restarted by systemd"):
            await sup.handle_command({"cmd": "reset"})
        await _stop(sup, task)
    asyncio.run(main())


def test_loop_monitor_logs_the_loop_stack_while_blocked(tmp_path, caplog):
    """When the loop is late, the monitor logs where the loop thread is at that moment."""
    async def main():
        sup, task = await _boot(tmp_path, env={"BOT4__WATCHDOG__LOOP_DEADLINE_S": "0.5"})

        def stuck_in_a_blocking_call() -> None:
            time.sleep(2.0)   # blocks the loop, as a bug would
        with caplog.at_level(logging.ERROR, logger="daemon.safety.loop_monitor"):
            stuck_in_a_blocking_call()
            await _until(lambda: sup.state is State.HALTED, what="halt after the stall")
        text = "\n".join(r.getMessage() for r in caplog.records
                         if r.name == "daemon.safety.loop_monitor")
        assert "loop thread is at" in text and "stuck_in_a_blocking_call" in text
        assert sup.loop_monitor.stalls == 1
        await _stop(sup, task)
    asyncio.run(main())


def test_failed_requote_batch_leaves_no_order_resting_or_ghost(tmp_path, mocker):
    """Defect 3: an exception inside a requote batch rolled the journal back while the
    orders were already pending_cancel in memory and their cancels were discarded; the
    stop then said "(2 unconfirmed)" and a ghost order counted against limits."""
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        gw = sup.gateway
        quoted = set(gw.open)
        real_submit = gw.submit
        calls = {"n": 0}

        def submit(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("bug in the middle of a requote")
            return real_submit(*a, **kw)
        mocker.patch.object(gw, "submit", side_effect=submit)
        sup.engine.strategy._last["BTCUSDT"] = (1.0, 0)   # force a requote
        with pytest.raises(RuntimeError, match="middle of a requote"):
            sup.engine._deliver((0, "BTCUSDT"), 10**19)
        mocker.stopall()
        journal_open = {o.client_id: o.status for o in sup.journal.open_orders()}
        memory_open = {cid: o.status for cid, o in gw.open.items()}
        assert memory_open == journal_open, "gateway memory differs from the journal"
        assert all(s is OrderStatus.PENDING_CANCEL for cid, s in memory_open.items()
                   if cid in quoted)
        assert not set(memory_open) - quoted, "a withdrawn order is still counted as open"
        sup.engine.settle()
        await _until(lambda: not (quoted & set(gw.open)), what="old quotes cancelled")
        await _stop(sup, task)
    asyncio.run(main())


def test_fault_cancels_orders_left_pending_cancel(tmp_path):
    """Defect 3: cancel_all skipped orders already pending_cancel, so a lost cancel was
    never retried and the fault left them resting."""
    async def main():
        sup, task = await _boot(tmp_path)
        await _trading(sup)
        gw, venue = sup.gateway, sup.core.venue
        await _until(lambda: venue.open_orders(), what="a quote working at the venue")
        cid = venue.open_orders()[0]
        gw.open[cid].status = OrderStatus.PENDING_CANCEL   # its cancel was lost on the way
        sup.fault("test fault")
        sup.engine.settle()
        await _until(lambda: cid not in venue.open_orders(), what="cancel retried")
        await _stop(sup, task)
    asyncio.run(main())


def test_second_supervisor_on_the_same_state_dir_is_refused(tmp_path):
    """Defect 6, in-process: the lock is taken before anything touches the state dir."""
    async def main():
        sup, task = await _boot(tmp_path)
        cfg = config.load(CONFIG, environ={})
        other = Supervisor(cfg, RunOptions(sim=True, state_dir=str(tmp_path / "state"),
                                           socket=str(tmp_path / "other.sock")))
        from daemon.supervisor import StartupError
        with pytest.raises(StartupError, match="another bot4d") as e:
            await other.run()
        assert e.value.exit_code == 75
        assert sup.state is State.READY and (tmp_path / "c.sock").exists()
        await _stop(sup, task)
    asyncio.run(main())
