"""bot4d's supervisor: boots the daemon, owns the trading state machine and the safety chain.

Boot order: journal → latch restored → hardware (e-stop, LED) → gateway + venue + market +
strategy → control socket → READY=1. The e-stop edge trips the kill latch on the GPIO thread
and wakes the loop; on the loop the trip is journalled, every open order cancelled, the state
set to `estop`. A poll of the pin and of the GPIO callback thread backs the edge up. A
stalled component halts trading and stops the systemd watchdog pings, so systemd restarts us.

Everything here runs on the event loop except `_estop_opened`/`_estop_closed` (GPIO thread)
and the loop monitor thread; those only touch the latch and `call_soon_threadsafe`.
This module never imports gpiozero or lgpio: hardware comes from `hw.panel`.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.config import Config
from daemon.control.server import ControlServer, CommandError
from daemon.execution.gateway import OrderGateway
from daemon.execution.orders import Instrument
from daemon.market.runtime import MarketRuntime
from daemon.risk.limits import RiskLimits
from daemon.safety.breakers import Breakers
from daemon.safety.latch import KillLatch, LatchKind
from daemon.safety.loop_monitor import LoopMonitor
from daemon.safety.watchdog import Watchdog
from daemon.sdnotify import Notifier
from daemon.states import DEGRADED_PATTERN, LED_PATTERN, State, allowed
from daemon.store.journal import Journal, JournalError
from daemon.strategy.quoter import Quoter
from hw import board
from hw.panel import Panel
from hw.pins import GpioUnavailable

log = logging.getLogger("bot4d")

EX_UNAVAILABLE = 69


class StartupError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    sim: bool = False
    replay: list[str] = field(default_factory=list)
    state_dir: str | None = None
    socket: str | None = None
    sim_estop_open: bool = False   # simulate a broken e-stop wire at boot


class Supervisor:
    def __init__(self, cfg: Config, opts: RunOptions) -> None:
        self.cfg = cfg
        self.opts = opts
        self.state = State.BOOTING
        self.state_reason = "starting"
        self.started = time.monotonic()
        self.latch = KillLatch()
        self.watchdog = Watchdog()
        self.notifier = Notifier()
        self.breakers = Breakers(cfg.breakers)
        self.board = board.detect()
        self.state_dir = Path(opts.state_dir or cfg.daemon.state_dir)
        self.socket_path = opts.socket or cfg.daemon.socket
        self.journal: Journal | None = None
        self.panel: Panel | None = None
        self.gateway: OrderGateway | None = None
        self.market: MarketRuntime | None = None
        self.strategy: Quoter | None = None
        self.control: ControlServer | None = None
        self.loop_monitor: LoopMonitor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._pings_blocked: str | None = None
        self.pings = 0
        self.estop_events: list[dict[str, int]] = []   # latency records for bench-estop

    # -- boot -----------------------------------------------------------------------------
    async def run(self) -> int:
        # Hand the GIL over every 100 us instead of every 5 ms so the e-stop callback thread is not
        # held up by a busy loop (FIELD-NOTES: threads and the GIL).
        sys.setswitchinterval(0.0001)
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop, sig.name)
        try:
            await self._boot()
        except Exception as e:   # release GPIO, LED off, journal closed, whatever failed
            await self._shutdown(f"startup failed: {e}")
            raise
        # Boot-time objects live for the whole run: keep them out of the GC's generations
        # so a full collection does not pause the e-stop handling on the loop.
        gc.freeze()
        self.notifier.ready(self._status_line())
        log.info("ready: %s", self._status_line())
        await self._stop.wait()
        await self._shutdown(self._stop_reason)
        return 0

    async def _boot(self) -> None:
        cfg = self.cfg
        log.info("bot4d %s booting on %s", __version__, board.describe(self.board))
        if not self.opts.sim and not self.board.gpio_capable:
            raise StartupError(
                f"no usable GPIO on this machine ({board.describe(self.board)}): "
                "real hardware needs a Raspberry Pi; use --sim for simulation", EX_UNAVAILABLE)
        try:
            self.journal = Journal(self.state_dir / "journal.sqlite3")
        except JournalError as e:
            raise StartupError(f"journal: {e}", EX_UNAVAILABLE) from e
        self.journal.audit("boot", version=__version__, sim=self.opts.sim, pid=os.getpid())
        rec = self.journal.latch()
        if rec and rec.tripped:
            self.latch.restore(LatchKind(rec.source), rec.reason)
            log.warning("latch restored from journal: %s (%s)", rec.source, rec.reason)
        try:
            self.panel = Panel(mock=self.opts.sim, estop_pin=cfg.gpio.estop_pin,
                               bounce_ms=cfg.gpio.estop_bounce_ms, led=cfg.gpio.led,
                               led_pins=(cfg.gpio.led_red, cfg.gpio.led_green, cfg.gpio.led_blue),
                               on_open=self._estop_opened, on_close=self._estop_closed,
                               sim_circuit_closed=not self.opts.sim_estop_open)
        except GpioUnavailable as e:
            raise StartupError(str(e), EX_UNAVAILABLE) from e
        self._show_led()
        instruments = {s: Instrument(s, i.tick_size, i.lot_size, i.min_notional)
                       for s, i in cfg.instruments.items()}
        self.market = MarketRuntime(cfg, replay=self.opts.replay,
                                    heartbeat=self.watchdog.register(
                                        "market", cfg.watchdog.feed_deadline_s),
                                    on_error=self.fault, state_dir=self.state_dir)
        self.gateway = OrderGateway(latch=self.latch, state=lambda: self.state,
                                    breakers=self.breakers, risk=RiskLimits(cfg.risk),
                                    instruments=instruments, journal=self.journal,
                                    venue=self.market.venue, clock=self.market.clock,
                                    mark=self.market.mark)
        self.market.report_batch = self.gateway.batch
        stale = self.gateway.recover("venue session lost: daemon restarted")
        if stale:
            self.journal.audit("orders_recovered", count=len(stale),
                               client_ids=[o.client_id for o in stale])
        self.strategy = Quoter(cfg.strategy, self.gateway, self.market,
                               can_trade=lambda: self.state is State.TRADING,
                               heartbeat=self.watchdog.register(
                                   "strategy", cfg.watchdog.strategy_deadline_s))
        self.market.subscribe(self.strategy.on_market)
        self.control = ControlServer(self.socket_path, self.handle_command,
                                     group=cfg.daemon.socket_group)
        await self.control.start()
        loop_hb = self.watchdog.register("loop", cfg.watchdog.loop_deadline_s)
        self.loop_monitor = LoopMonitor(loop_hb, self.latch, self.loop, self._on_loop_stall)
        self.loop_monitor.start()
        self._tasks = [asyncio.create_task(c, name=n) for n, c in (
            ("safety-poll", self._safety_poll()), ("watchdog", self._watchdog_task(loop_hb)),
            ("market", self.market.run()), ("strategy", self.strategy.run()))]
        for t in self._tasks:
            t.add_done_callback(self._task_done)
        # Initial state: the latch from the journal, then the circuit as it is now.
        if not self.panel.estop.circuit_closed():
            self._latch_estop("e-stop circuit open at boot (pressed or wire broken)")
        elif self.latch.kind is LatchKind.ESTOP:
            self._set_state(State.ESTOP, f"latched before restart: {self.latch.reason}")
        elif self.latch.kind is LatchKind.HALT:
            self._set_state(State.HALTED, f"latched before restart: {self.latch.reason}")
        elif cfg.daemon.auto_start:
            self._set_state(State.TRADING, "auto_start")
        else:
            self._set_state(State.READY, "booted; `bot4ctl start` to trade")

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        self.fault(f"task {task.get_name()} ended: {exc!r}" if exc
                   else f"task {task.get_name()} ended unexpectedly")

    # -- state ----------------------------------------------------------------------------
    def _set_state(self, new: State, reason: str) -> None:
        old = self.state
        if new is old:
            self.state_reason = reason
            self._announce()
            return
        if not allowed(old, new):
            raise CommandError(f"cannot go from {old} to {new}")
        self.journal.audit("state", old=old.value, new=new.value, reason=reason)
        self.state, self.state_reason = new, reason
        log.log(logging.WARNING if new in (State.HALTED, State.ESTOP, State.FAULT)
                else logging.INFO, "state %s -> %s: %s", old, new, reason)
        if new is State.TRADING:
            self.breakers.reset()
        self._announce()

    def _announce(self) -> None:
        self._show_led()
        self.notifier.status(self._status_line())

    def _degraded(self) -> list[str]:
        return self.market.degraded() if self.market else []

    def _show_led(self) -> None:
        if self.panel is None:
            return
        pattern = LED_PATTERN[self.state]
        if self.state is State.TRADING and self._degraded():
            pattern = DEGRADED_PATTERN
        if pattern != self.panel.led.pattern:
            self.panel.led.show(pattern)

    def _status_line(self) -> str:
        return f"{self.state}: {self.state_reason}"

    # -- e-stop ---------------------------------------------------------------------------
    def _estop_opened(self) -> None:
        """GPIO callback thread. Two things only: close the gate, wake the loop."""
        if self.latch.trip(LatchKind.ESTOP, "e-stop pressed (circuit opened)"):
            self.loop.call_soon_threadsafe(self._on_estop_trip)

    def _estop_closed(self) -> None:
        self.loop.call_soon_threadsafe(self._on_estop_restored)

    def _on_estop_trip(self) -> None:
        if self.state is not State.ESTOP:
            self._latch_estop(self.latch.reason)

    def _latch_estop(self, reason: str) -> None:
        """On the loop: journal the trip, cancel everything, flatten if configured, estop."""
        self.latch.trip(LatchKind.ESTOP, reason)
        trip_ns = self.latch.trip_ns
        try:
            n_open = len(self.gateway.open)
            # The trip and every pending cancel in one durable commit, then the cancels go.
            cancelled = self.gateway.cancel_all(
                "e-stop", record_with=lambda: self.journal.set_latch(
                    True, LatchKind.ESTOP.value, reason, open_orders=n_open))
            cancel_ns = self.gateway.last_cancel_all_ns
            if self.cfg.safety.flatten_on_estop:
                self.gateway.flatten("e-stop flatten")
            self.estop_events.append({"trip_ns": trip_ns, "cancel_ns": cancel_ns,
                                      "cancelled": len(cancelled)})
            del self.estop_events[:-2000]
            if self.state is not State.FAULT:
                self._set_state(State.ESTOP, reason)
            log.warning("E-STOP: %s; %d open orders cancelled", reason, len(cancelled))
        except JournalError as e:
            self.fault(f"journal failed during e-stop: {e}")

    def _on_estop_restored(self) -> None:
        if self.latch.kind is LatchKind.ESTOP:
            log.warning("e-stop circuit closed again; `bot4ctl reset` re-arms")
            self._announce()

    async def _safety_poll(self) -> None:
        period = self.cfg.gpio.poll_interval_ms / 1000
        estop = self.panel.estop
        while True:
            await asyncio.sleep(period)
            if not estop.callback_thread_alive():
                if self.state is not State.FAULT:
                    self.fault("GPIO callback thread died: e-stop edges can no longer be seen")
                continue
            if not estop.circuit_closed() and self.latch.kind is not LatchKind.ESTOP:
                log.error("poll found the e-stop circuit open without an edge: tripping")
                self._latch_estop("e-stop circuit open (seen by poll)")
            self._show_led()

    # -- software stops -------------------------------------------------------------------
    def halt(self, reason: str) -> None:
        if self.state in (State.ESTOP, State.FAULT):
            return
        self.latch.trip(LatchKind.HALT, reason)
        n = len(self.gateway.cancel_all(f"halt: {reason}", record_with=lambda: self.journal.set_latch(
            True, LatchKind.HALT.value, reason)))
        self._set_state(State.HALTED, reason)
        log.warning("HALT: %s; %d open orders cancelled", reason, n)

    def fault(self, reason: str) -> None:
        """Cannot run safely: close the gate, cancel what we can, stop pinging systemd."""
        log.critical("FAULT: %s", reason)
        self.latch.trip(LatchKind.HALT, f"fault: {reason}")
        self._pings_blocked = f"fault: {reason}"
        try:
            self.journal.set_latch(True, LatchKind.HALT.value, f"fault: {reason}")
            if self.gateway:
                self.gateway.cancel_all("fault")
        except Exception:
            log.exception("could not journal/cancel during fault")
        if self.state is not State.FAULT:
            self.state, self.state_reason = State.FAULT, reason
            try:
                self.journal.audit("state", new="fault", reason=reason)
            except Exception:
                pass
            self._announce()

    def _on_loop_stall(self, reason: str) -> None:
        self._pings_blocked = reason
        self.halt(reason)

    async def _watchdog_task(self, loop_hb: Any) -> None:
        cfg = self.cfg.watchdog
        usec = self.notifier.watchdog_usec
        ping_every = usec / 2e6 if usec else None
        last_ping = 0.0
        while True:
            await asyncio.sleep(cfg.check_interval_ms / 1000)
            loop_hb.beat()
            now = time.monotonic()
            stalled = self.watchdog.stalled(now)
            if stalled and self._pings_blocked is None:
                names = ", ".join(f"{n} ({age:.1f} s)" for n, age in stalled)
                reason = f"watchdog: stalled component {names}"
                self._pings_blocked = reason
                log.error("%s: halting and stopping systemd watchdog pings", reason)
                if self.state not in (State.ESTOP, State.FAULT):
                    self.halt(reason)
            if self.state in (State.TRADING, State.REDUCING):
                self._check_degraded()
            if self.state in (State.TRADING, State.READY, State.REDUCING):
                self._check_breakers()
            if ping_every and self._pings_blocked is None and now - last_ping >= ping_every:
                self.notifier.watchdog()
                self.pings += 1
                last_ping = now

    def _check_degraded(self) -> None:
        """Bad market data while trading: only reduce exposure until it is good again
        (the stale-book breaker halts if it lasts)."""
        degraded = self._degraded()
        if degraded and self.state is State.TRADING:
            reason = "degraded: " + "; ".join(degraded)
            self._set_state(State.REDUCING, reason)
            n = len(self.gateway.cancel_increasing("reducing"))
            log.warning("%s; %d exposure-increasing orders cancelled", reason, n)
        elif not degraded and self.state is State.REDUCING \
                and self.state_reason.startswith("degraded"):
            self._set_state(State.TRADING, "market data healthy again")

    def _check_breakers(self) -> None:
        for sym, book_ok in self.market.book_validity().items():
            self.breakers.book_state(sym, book_ok, time.time_ns())
        marks = {s: self.market.mark(s) for s in self.market.symbols}
        reason = self.breakers.check(self.gateway.positions, marks, time.time_ns())
        if reason and self.state in (State.TRADING, State.REDUCING):
            self.halt(f"breaker: {reason}")

    # -- operator commands ----------------------------------------------------------------
    async def handle_command(self, req: dict) -> dict:
        try:
            return await self._command(req)
        except JournalError as e:
            self.fault(f"journal failed: {e}")
            raise CommandError(f"journal failed, daemon is in fault: {e}") from e

    async def _command(self, req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "halt":
            reason = str(req.get("reason") or "operator")[:200]
            if self.state in (State.ESTOP, State.FAULT):
                raise CommandError(f"already stopped ({self.state})")
            self.halt(f"operator: {reason}")
            return {"state": self.state.value}
        if cmd == "reset":
            return self._reset()
        if cmd == "start":
            if self.state is not State.READY:
                raise CommandError(f"start needs state ready, state is {self.state}"
                                   + (" (reset first)" if self.latch.tripped else ""))
            self._set_state(State.TRADING, "operator start")
            return {"state": self.state.value}
        if cmd == "sim":
            return self._sim(req)
        raise CommandError(f"unknown command {cmd!r}")

    def _reset(self) -> dict:
        if self.state is State.FAULT:
            raise CommandError(f"fault ({self.state_reason}): fix the cause and restart the "
                               "service; reset cannot clear a fault")
        if self.state not in (State.ESTOP, State.HALTED):
            raise CommandError(f"nothing to reset: state is {self.state}")
        if not self.panel.estop.circuit_closed():
            raise CommandError("e-stop circuit is open (button pressed or wire broken): "
                               "release the e-stop before reset")
        if self._pings_blocked:
            raise CommandError(f"{self._pings_blocked}: the service is being restarted by "
                               "systemd; reset after it comes back")
        if self.gateway.open:
            raise CommandError(f"{len(self.gateway.open)} orders still awaiting cancel "
                               "confirmation; try again")
        self.journal.set_latch(False, "operator", "bot4ctl reset", was=self.latch.kind)
        self.latch.reset()
        self.breakers.reset()
        self._set_state(State.READY, "reset by operator; `bot4ctl start` to trade")
        return {"state": self.state.value}

    def _sim(self, req: dict) -> dict:
        if not self.opts.sim:
            raise CommandError("sim commands need the daemon to run with mock GPIO (--sim)")
        what, action = req.get("what"), req.get("action")
        if what == "estop" and action in ("press", "release"):
            self.panel.estop.sim_set(circuit_closed=(action == "release"), wait=False)
            return {"estop": action}
        if what == "stall" and isinstance(action, str):
            seconds = float(req.get("seconds", 30))
            if action == "loop":
                time.sleep(min(seconds, 30))  # deliberately blocks the loop (test hook)
                return {"stalled": action}
            if action not in ("market", "strategy"):
                raise CommandError(f"unknown component {action!r} (loop, market, strategy)")
            (self.market if action == "market" else self.strategy).stall(seconds)
            return {"stalled": action, "seconds": seconds}
        raise CommandError("sim: expected estop press|release or stall COMPONENT")

    def status(self) -> dict:
        estop = self.panel.estop if self.panel else None
        return {
            "state": self.state.value,
            "reason": self.state_reason,
            "degraded": self._degraded(),
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "sim": self.opts.sim,
            "latch": {"tripped": self.latch.tripped,
                      "kind": self.latch.kind.value if self.latch.kind else None,
                      "reason": self.latch.reason},
            "estop": None if estop is None else {
                "pin": estop.pin, "circuit_closed": estop.circuit_closed(),
                "callback_thread_alive": estop.callback_thread_alive(),
                "handler_errors": estop.handler_errors},
            "led": None if self.panel is None else {
                "pattern": self.panel.led.pattern,
                "value": [round(v, 3) for v in self.panel.led.value]},
            "watchdog": {"systemd_usec": self.notifier.watchdog_usec, "pings": self.pings,
                         "pings_blocked": self._pings_blocked,
                         "components": self.watchdog.snapshot()},
            "orders": {"open": len(self.gateway.open) if self.gateway else 0,
                       "list": [{"id": o.client_id, "symbol": o.symbol, "side": o.side.value,
                                 "price": str(o.price), "qty": str(o.qty),
                                 "status": o.status.value}
                                for o in (self.gateway.open.values() if self.gateway else [])],
                       **(self.gateway.stats if self.gateway else {})},
            "positions": {} if not self.gateway else {
                s: {"qty": str(p.qty), "avg_price": str(p.avg_price),
                    "realized_pnl": str(p.realized_pnl), "fees": str(p.fees)}
                for s, p in self.gateway.positions.items()},
            "market": self.market.status() if self.market else None,
            "board": {"summary": board.describe(self.board), **self.board.as_dict()},
            "notify": self.notifier.backend,
        }

    # -- stop -----------------------------------------------------------------------------
    _stop_reason = "stop requested"

    def request_stop(self, why: str = "stop requested") -> None:
        if not self._stop.is_set():
            self._stop_reason = why
            self._stop.set()

    async def _shutdown(self, why: str) -> None:
        log.info("orderly stop (%s)", why)
        self.notifier.stopping(f"stopping: {why}")
        self.notifier.extend_timeout(self.cfg.daemon.stop_timeout_s)
        if self.gateway:
            self.gateway.close(f"daemon stopping ({why})")   # no new order from here on
        if self.gateway and self.cfg.safety.cancel_on_stop:
            try:
                n = len(self.gateway.cancel_all("daemon stopping"))
                # Give the venue the chance to confirm before we go.
                deadline = time.monotonic() + min(5.0, self.cfg.daemon.stop_timeout_s / 2)
                while self.gateway.open and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                    if self.market is not None:
                        self.market.settle()
                log.info("cancelled %d open orders on stop (%d unconfirmed)", n,
                         len(self.gateway.open))
            except Exception:
                log.exception("cancel on stop failed")
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.loop_monitor:
            self.loop_monitor.stop()
        if self.market:
            await self.market.close()
        if self.control:
            await self.control.close()
        if self.panel:
            try:
                self.panel.close()   # LED off, pins released
            except Exception:
                log.exception("closing GPIO failed")
        if self.journal:
            try:
                self.journal.audit("stop", reason=why, state=self.state.value)
                self.journal.close()
            except Exception:
                log.exception("closing the journal failed")
        log.info("stopped")
