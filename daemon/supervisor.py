"""bot4d's supervisor: boots the daemon, owns the trading state machine and the safety chain.

Boot order: state-dir lock (one instance) → journal (integrity checked, never silently new)
→ run marker → latch restored (or inferred from an unclean previous run) → hardware
(e-stop, LED) → gateway + venue + market + strategy → control socket → READY=1.

Every trip (e-stop, halt, fault) runs as isolated steps, Klipper-style: the latch closes the
gate first; then the state and the LED change in memory (nothing can fail there); then the
durable record and the cancels go out together; then flatten. Each step after the first is
guarded on its own: its failure is logged, journalled where the journal still works, shown
in status, and never prevents the steps after it. A journal that cannot be written means
fault: the cancels are still sent, trading stops, and the run marker left behind makes the
next boot come back halted even though the latch row was never written.

The e-stop edge trips the kill latch on the GPIO thread and wakes the loop. A poll of the
pin and of the GPIO callback thread backs the edge up. A hung component halts trading and
stops the systemd watchdog pings, so systemd restarts us; a market feed that is merely down
is a data condition (reducing), not a hang.

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
from typing import Any, Callable

from daemon import __version__
from daemon.config import EX_CONFIG, Config, ConfigError, fingerprint as config_fingerprint
from daemon.control.server import ControlServer, CommandError
from daemon.analytics.heavy import LocalHeavyAnalytics
from daemon.analytics.runner import AnalyticsRunner
from daemon.engine.build import Core, build_core
from daemon.engine.engine import Engine
from daemon.engine.executor import ParentOrder, interrupted_parents
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Side
from daemon.execution.reconcile import reconcile
from daemon.features.engine import FeatureEngine
from daemon.market.feed import MarketFeed
from daemon.operator.view import Operator   # operator's view: page, metrics, alerts
from daemon.protection import Protection
from daemon.quality.backfill_task import BackfillTask
from daemon.quality.monitor import DataQuality
from daemon.safety.latch import KillLatch, LatchKind
from daemon.safety.loop_monitor import LoopMonitor
from daemon.safety.watchdog import Watchdog
from daemon.sdnotify import Notifier
from daemon.states import DEGRADED_PATTERN, LED_PATTERN, State, allowed
from daemon.store.journal import Journal, JournalDamaged, JournalError, JournalTooNew
from daemon.store.statedir import AlreadyRunning, StateDir, StateDirError
from hw import board
from hw.panel import Panel
from hw.pins import GpioUnavailable

log = logging.getLogger("bot4d")

EX_DATAERR = 65       # the journal is damaged: an operator must look (no restart loop)
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75      # another bot4d holds the state dir
_JOURNAL_FILE_CHECK_S = 1.0
_READ_ONLY_COMMANDS = frozenset({"status", "orders", "fills", "features", "quality"})
_MAX_FAILURES_SHOWN = 20
_NO_CORE = {"orders": {"open": 0, "list": []}, "positions": {}, "risk": None, "breakers": [],
            "quality": None, "analytics": None, "market": None, "engine": None}


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
    config_path: str | None = None   # the file the config came from (its hash is journalled)
    exit_at_end: bool = False   # replay: stop (printing the summary) when the data is over


def _stall_seconds(value: object) -> float:
    try:
        seconds = float(value)   # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CommandError(f"sim stall: seconds must be a number, got {value!r}") from None
    if not 0 < seconds <= 3600:
        raise CommandError(f"sim stall: seconds must be in (0, 3600], got {value!r}")
    return seconds


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
        self.protection: Protection | None = None   # risk limits + circuit breakers
        self.reconciliation: dict | None = None   # this boot's crash-recovery result
        self.features: FeatureEngine | None = None   # streaming features + online store
        self.heavy: LocalHeavyAnalytics | None = None   # worker process for heavy fits
        self.quality: DataQuality | None = None   # data validation, seven layers
        self.backfill: BackfillTask | None = None   # live: trades missing from the feed
        self.analytics: AnalyticsRunner | None = None   # schedules PIN/GARCH fits on it
        self.board = board.detect()
        self.state_dir = Path(opts.state_dir or cfg.daemon.state_dir)
        self.statedir = StateDir(self.state_dir)
        self.socket_path = opts.socket or cfg.daemon.socket
        self.run_number = 0
        self.journal: Journal | None = None
        self.journal_failed: str | None = None   # set for good once a journal write failed
        self.failures: list[str] = []   # guarded steps that failed (shown in status)
        self._marked_running = False
        self.panel: Panel | None = None
        self.gateway: OrderGateway | None = None
        self.core: Core | None = None        # the trading core (daemon/engine/build.py)
        self.engine: Engine | None = None
        self.market: MarketFeed | None = None
        self.replay_summary: dict | None = None
        self.control: ControlServer | None = None
        self.loop_monitor: LoopMonitor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.operator: Operator | None = None   # status page, /metrics, alerts (issue 13)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._pings_blocked: str | None = None
        self.pings = 0
        self._estop_acks: list[asyncio.Future] = []   # `sim estop press` replies, sent once durable

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
        try:   # operator's view: its credentials are read now; a missing one is exit 78
            self.operator = Operator(self)
        except ConfigError as e:
            raise StartupError(f"config error: {e}", EX_CONFIG) from e
        self._open_state()
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
        core = build_core(
            cfg, journal=self.journal, latch=self.latch, control=self,
            state=lambda: self.state, run_number=self.run_number, replay=self.opts.replay,
            feed_heartbeat=self.watchdog.register("market", cfg.watchdog.feed_deadline_s),
            strategy_heartbeat=self.watchdog.register("strategy",
                                                      cfg.watchdog.strategy_deadline_s),
            on_feed_error=self.fault, analytics_factory=self._analytics)
        self.core, self.engine = core, core.engine
        if self.opts.replay:
            try:   # replay files of a market no instrument is configured for: say so now
                core.feed.replay_groups()
            except ValueError as e:
                raise StartupError(f"config error: {e}", EX_CONFIG) from e
        self.clock, self.market, self.protection = core.clock, core.feed, core.protection
        self.gateway, self.features, self.quality = core.gateway, core.features, core.quality
        self.analytics = core.engine.analytics
        for note in core.restored:
            log.warning("restored from the journal: %s", note)
        # Crash recovery: every order the journal has open or in flight settled with the
        # venue (journalled with its result) before anything can trade.
        res = reconcile(self.journal, core.venue, self.gateway, run=self.run_number,
                        on_restart=cfg.paper.on_restart)
        self.reconciliation = res.as_dict()
        self._step("boot: interrupted executions", self._report_interrupted)
        if self.quality is not None and cfg.market.source == "binance":
            # Live only: REST trades for the gaps of the feed.
            self.backfill = BackfillTask(self.quality, cfg.market.rest_base,
                                         cfg.market.exchange, limit=cfg.quality.backfill_limit)
        self.control = ControlServer(self.socket_path, self.handle_command,
                                     group=cfg.daemon.socket_group)
        await self.control.start()
        # Operator's view (page, /metrics, alerts): guarded, a port in use must not stop boot.
        await self._async_step("boot: operator's view", self.operator.start)
        loop_hb = self.watchdog.register("loop", cfg.watchdog.loop_deadline_s)
        self.loop_monitor = LoopMonitor(loop_hb, self.latch, self.loop, self._on_loop_stall)
        self.loop_monitor.start()
        self._tasks = [asyncio.create_task(c, name=n) for n, c in (
            ("safety-poll", self._safety_poll()), ("watchdog", self._watchdog_task(loop_hb)),
            ("market", self.market.run()), ("engine", self.engine.run_timers()))]
        if self.analytics is not None:
            self._tasks.append(asyncio.create_task(self.analytics.run(), name="analytics"))
        if self.backfill is not None:
            self._tasks.append(asyncio.create_task(self.backfill.run(), name="backfill"))
        for t in self._tasks:
            t.add_done_callback(self._task_done)
        # Initial state: the latch from the journal, then the circuit as it is now.
        if not res.ok and not self.latch.tripped:
            # Positions that do not add up to their fills: nobody trades on them.
            reason = "reconciliation: " + "; ".join(res.mismatches or ["positions differ"])
            self.latch.trip(LatchKind.HALT, reason)
            self.journal.set_latch(True, LatchKind.HALT.value, reason)
        if not self.panel.estop.circuit_closed():
            self._latch_estop("e-stop circuit open at boot (pressed or wire broken)")
        elif self.latch.kind is LatchKind.ESTOP:
            self._set_state(State.ESTOP, f"latched before restart: {self.latch.reason}")
            self._cancel_restored("e-stop latched at boot")
        elif self.latch.kind is LatchKind.HALT:
            self._set_state(State.HALTED, f"latched before restart: {self.latch.reason}")
            self._cancel_restored("halted at boot")
        elif self.protection.blocked():
            self._set_state(State.READY, f"{self.protection.blocked()}; `bot4ctl reset` "
                                         "lifts it")
        elif cfg.daemon.auto_start:
            self._set_state(State.TRADING, "auto_start")
        else:
            self._set_state(State.READY, "booted; `bot4ctl start` to trade")

    def _report_interrupted(self) -> None:
        """Parent orders (a flatten, a strategy's schedule) the previous run left running
        when it died: journalled, shown in status, logged and alerted; never resumed."""
        ex = self.engine.executor
        found = interrupted_parents(self.journal, self.run_number)
        for text in ex.note_interrupted(found, self.gateway.positions):
            log.warning("%s", text)
            if self.operator is not None:
                self.operator.on_event("execution_interrupted", text)

    def _analytics(self, features: FeatureEngine | None, clock: Any) -> AnalyticsRunner:
        """PIN/GARCH fits in the heavy worker (the GM spread floor for the quoter). The
        worker process starts with the first job (minutes in), not here: ~2 s of spawn and
        scipy import would hold up every boot."""
        self.heavy = LocalHeavyAnalytics()
        return AnalyticsRunner(self.cfg.analytics, self.heavy, features,
                               list(self.cfg.market.symbols), clock)

    def _cancel_restored(self, reason: str) -> None:
        """Latched at boot means no working order: what reconciliation restored or adopted
        is cancelled (journalled first, like every cancel)."""
        if self.gateway.open:
            n = len(self.gateway.cancel_all(reason))
            log.warning("%s: cancels sent for %d orders restored by reconciliation", reason, n)

    def _open_state(self) -> None:
        """Lock the state dir, open and check the journal, count this run, set the run
        marker; an unclean previous run is latched as a halt before anything can trade."""
        try:
            self.statedir.lock()
        except AlreadyRunning as e:
            raise StartupError(str(e), EX_TEMPFAIL) from e
        except StateDirError as e:
            raise StartupError(f"{e} (the journal and the lock live there)",
                               EX_UNAVAILABLE) from e
        unclean = self.statedir.previous_run_unclean()
        path = self.state_dir / "journal.sqlite3"
        try:
            self.journal = Journal(path, must_exist=self.statedir.journal_expected() is not None)
            self.statedir.expect_journal(path.name)
            self.statedir.mark_running()
            self._marked_running = True
            self.run_number = self.journal.begin_run()
            self.journal.audit("boot", version=__version__, sim=self.opts.sim, pid=os.getpid(),
                               run=self.run_number, previous_run_unclean=unclean)
            self.journal.audit("config_loaded", **config_fingerprint(self.cfg,
                                                                     self.opts.config_path))
            rec = self.journal.latch()
            if unclean is not None and not (rec and rec.tripped):
                self.journal.set_latch(True, LatchKind.HALT.value,
                                       f"previous run ended uncleanly ({unclean})")
        except JournalTooNew as e:   # written by a newer bot4 (a rollback): upgrade again
            raise StartupError(f"journal too new for bot4 {__version__}: {e}",
                               EX_DATAERR) from e
        except JournalDamaged as e:
            raise StartupError(f"journal damaged: {e}", EX_DATAERR) from e
        except (JournalError, OSError) as e:
            raise StartupError(f"journal: {e}", EX_UNAVAILABLE) from e

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        self.fault(f"task {task.get_name()} ended: {exc!r}" if exc
                   else f"task {task.get_name()} ended unexpectedly")

    # -- state ----------------------------------------------------------------------------
    def _set_state(self, new: State, reason: str) -> None:
        """A deliberate transition (start, reset, reducing): journalled before it acts, so
        an acknowledged command is durable. Trips use `_enter` instead (state first)."""
        old = self.state
        if new is not old:
            if not allowed(old, new):
                raise CommandError(f"cannot go from {old} to {new}")
            self.journal.audit("state", old=old.value, new=new.value, reason=reason)
        self._enter(new, reason)

    def _enter(self, new: State, reason: str, *, log_now: bool = True) -> State:
        """Change the state in memory and show it: no I/O that can fail comes before the
        new state is in force (the LED and the systemd status are guarded). A trip passes
        log_now=False and logs the change with `_log_state` once its cancels are out."""
        old = self.state
        if new is not old and not allowed(old, new):
            raise CommandError(f"cannot go from {old} to {new}")
        self.state, self.state_reason = new, reason
        if new is not old:
            if log_now:
                self._log_state(old, new, reason)
        self._announce()
        return old

    def _log_state(self, old: State, new: State, reason: str) -> None:
        if new is not old:
            log.log(logging.WARNING if new in (State.HALTED, State.ESTOP, State.FAULT)
                    else logging.INFO, "state %s -> %s: %s", old, new, reason)
            if self.operator is not None:   # page, metrics, alerts: O(1), never raises
                self.operator.on_state(old, new, reason)

    def _announce(self) -> None:
        for step in (self._show_led, lambda: self.notifier.status(self._status_line())):
            try:
                step()
            except Exception as e:   # the LED or the notify socket must not stop a trip
                self._step_failed("show state", e)

    def _step(self, name: str, fn: Callable[[], object]) -> bool:
        """Run one guarded step of a trip or stop. A failure is logged, recorded and shown;
        it never prevents the next step. A journal failure is a fault."""
        try:
            fn()
            return True
        except Exception as e:
            self._step_error(name, e, fault=True)
        return False

    def _step_error(self, name: str, e: Exception, *, fault: bool) -> None:
        """The one handling of a failed step: a journal failure is remembered for good
        (and is a fault unless we are stopping anyway); anything else is recorded."""
        if not isinstance(e, JournalError):
            self._step_failed(name, e)
            return
        self.journal_failed = self.journal_failed or str(e)
        self._step_failed(name, e, journal=False)
        if fault and self.state is not State.FAULT:
            self.fault(f"journal failed ({name}): {e}")

    def _step_failed(self, name: str, e: BaseException, journal: bool = True) -> None:
        text = f"{name} failed: {e.reason if isinstance(e, Rejected) else e}"
        log.error("%s", text, exc_info=not isinstance(e, (JournalError, Rejected)))
        self.failures.append(text)
        del self.failures[:-_MAX_FAILURES_SHOWN]
        if journal and self.journal is not None and self.journal_failed is None:
            try:
                self.journal.audit("step_failed", step=name, error=text)
            except JournalError as je:
                self.journal_failed = str(je)
                log.critical("journal failed while recording a failed step: %s", je)

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
        """On the loop: the e-stop's steps, each guarded (see the module docstring).

        The LED pattern is set with the state, before anything else, but held until the
        record-and-cancel step is over (it is released however that step ends): gpiozero's
        blink start-up would otherwise cost the cancels a few hundred microseconds."""
        self.latch.trip(LatchKind.ESTOP, reason)           # 1. the gate (already, on GPIO)
        old = self.state
        n_open = len(self.gateway.open)
        with self.panel.led.held():
            if self.state is not State.FAULT:
                self._enter(State.ESTOP, reason, log_now=False)   # 2. state + LED
            recorded = self._step("e-stop: record + cancel", lambda: self.gateway.cancel_all(
                "e-stop", record_with=lambda: self.journal.set_latch(    # 3. one fsync
                    True, LatchKind.ESTOP.value, reason, open_orders=n_open, state="estop")))
        self._log_state(old, self.state, reason)
        if self.cfg.safety.flatten_on_estop:                # 4. flatten, symbol by symbol
            self._step("e-stop: flatten", self._flatten)
        log.warning("E-STOP: %s; cancels sent for %d open orders", reason, n_open)
        self._answer_estop_acks(recorded)

    def _flatten(self) -> None:
        sent, failed = self.gateway.flatten("e-stop flatten")
        if failed:
            raise RuntimeError("; ".join(failed.values()))

    def _answer_estop_acks(self, durable: bool) -> None:
        acks, self._estop_acks = self._estop_acks, []
        for fut in acks:
            if fut.done():
                continue
            if durable:
                fut.set_result(None)
            else:
                fut.set_exception(CommandError(
                    f"e-stop latched in memory but NOT recorded ({self.journal_failed}); "
                    "the daemon is in fault and comes back halted"))

    def _on_estop_restored(self) -> None:
        if self.operator is not None:   # e-stop close edge (metrics); O(1), never raises
            self.operator.on_event("estop_released", "e-stop circuit closed")
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
        self._enter(State.HALTED, reason)
        n = len(self.gateway.open)
        self._step("halt: record + cancel", lambda: self.gateway.cancel_all(
            f"halt: {reason}", record_with=lambda: self.journal.set_latch(
                True, LatchKind.HALT.value, reason, state="halted")))
        log.warning("HALT: %s; cancels sent for %d open orders", reason, n)

    def fault(self, reason: str) -> None:
        """Cannot run safely: close the gate, fault, cancel what we can, stop pinging."""
        log.critical("FAULT: %s", reason)
        self.latch.trip(LatchKind.HALT, f"fault: {reason}")
        self._pings_blocked = self._pings_blocked or f"fault: {reason}"
        if self.state is not State.FAULT:
            self._enter(State.FAULT, reason)
        if self.gateway is not None:
            self._step("fault: cancel", lambda: self.gateway.cancel_all(
                "fault", record_with=None if self.journal_failed else
                lambda: self.journal.set_latch(True, LatchKind.HALT.value, f"fault: {reason}",
                                               state="fault")))
        elif self.journal is not None and self.journal_failed is None:
            self._step("fault: record", lambda: self.journal.set_latch(
                True, LatchKind.HALT.value, f"fault: {reason}", state="fault"))
        self._answer_estop_acks(False)

    def _on_loop_stall(self, reason: str) -> None:
        self._pings_blocked = reason
        self.halt(reason)

    async def _watchdog_task(self, loop_hb: Any) -> None:
        cfg = self.cfg.watchdog
        last_ping = last_file_check = 0.0
        while True:
            await asyncio.sleep(cfg.check_interval_ms / 1000)
            loop_hb.beat()
            usec = self.notifier.watchdog_usec
            ping_every = usec / 2e6 if usec else None
            now = time.monotonic()
            stalled = self.watchdog.stalled(now)
            if stalled and self._pings_blocked is None:
                names = ", ".join(f"{n} ({age:.1f} s)" for n, age in stalled)
                reason = f"watchdog: stalled component {names}"
                self._pings_blocked = reason
                log.error("%s: halting%s", reason,
                          " and stopping systemd watchdog pings" if usec else "")
                if self.state not in (State.ESTOP, State.FAULT):
                    self.halt(reason)
            elif not stalled and self._pings_blocked and not usec \
                    and self.state is not State.FAULT:
                # No systemd watchdog will restart us: once every component is healthy
                # again, the operator may reset (the halt stays latched until then).
                log.warning("%s: every component is healthy again; no systemd watchdog "
                            "here, so `bot4ctl reset` is allowed", self._pings_blocked)
                self._pings_blocked = None
            if now - last_file_check >= _JOURNAL_FILE_CHECK_S and self.journal_failed is None:
                last_file_check = now
                self._step("journal file check", self.journal.check_file)
            if ping_every and self._pings_blocked is None and now - last_ping >= ping_every:
                if self.notifier.watchdog():
                    self.pings += 1
                last_ping = now

    # -- the engine's control (daemon/engine/engine.py Control) ------------------------------
    def reduce(self, reason: str) -> None:
        """Only exposure-reducing orders from now on (journalled first): every open order
        that would grow a position is cancelled. The reason's prefix says who may lift it
        ("degraded", "data quality": by themselves once healthy; a risk limit: reset)."""
        self._set_state(State.REDUCING, reason)
        n = len(self.gateway.cancel_increasing(f"reducing: {reason}"))
        log.warning("%s; %d exposure-increasing orders cancelled", reason, n)

    def resume(self, reason: str) -> None:
        self._set_state(State.TRADING, reason)

    def finished(self, summary: dict) -> None:
        """The replay's data is over: trading stops (journalled), orders are cancelled, the
        LED shows it; with --exit-at-end the daemon then stops with the summary."""
        self.replay_summary = summary
        text = (f"replay finished: {summary['lines']} lines, {summary['orders']} orders, "
                f"{summary['fills']} fills, realised PnL {summary['realized_pnl']}")
        if self.state in (State.READY, State.TRADING, State.REDUCING):
            self._set_state(State.FINISHED, text)
            n = len(self.gateway.cancel_all("replay finished"))
            log.warning("%s; cancels sent for %d open orders", text, n)
        else:
            log.warning("%s (state stays %s)", text, self.state)
        if self.opts.exit_at_end:
            self.request_stop(text)

    def error(self, where: str, e: BaseException) -> None:
        """The one exception policy of everything the engine dispatches: fault."""
        if isinstance(e, JournalError):
            self.journal_failed = self.journal_failed or str(e)
        log.error("%s failed", where, exc_info=e)
        self.fault(f"{where}: {e!r}")

    # -- operator commands ----------------------------------------------------------------
    async def handle_command(self, req: dict) -> dict:
        """One operator command. A reply means what it says is durable: if the journal
        failed on the way, the reply is an error (the daemon is then in fault). A command
        that may change something is journalled (audit trail) before it acts, except a
        command that stops something: stopping is always allowed, so it acts first (its
        trip records itself) and is journalled after, when the journal still works."""
        failed_before = self.journal_failed
        cmd = req.get("cmd")
        stops = cmd in ("halt", "sim") or (cmd == "breaker" and req.get("action") == "trip")
        record = {k: str(v)[:200] for k, v in req.items()}
        try:
            if cmd not in _READ_ONLY_COMMANDS and not stops and self.journal_failed is None:
                self.journal.audit("command", **record)
            result = await self._command(req)
            if stops and self.journal_failed is None:
                self.journal.audit("command", **record)
        except JournalError as e:
            self.journal_failed = self.journal_failed or str(e)
            self.fault(f"journal failed: {e}")
            raise CommandError(f"journal failed, daemon is in fault: {e}") from e
        if self.journal_failed and not failed_before:
            raise CommandError(f"journal failed, daemon is in fault: {self.journal_failed}")
        return result

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
            if self.engine is not None and self.engine.finished:
                raise CommandError("the replay is over: nothing more to trade on")
            if self.state is not State.READY:
                raise CommandError(f"start needs state ready, state is {self.state}"
                                   + (" (reset first)" if self.latch.tripped else ""))
            blocked = self.protection.blocked()
            if blocked:
                raise CommandError(f"{blocked}: `bot4ctl reset` first")
            self._set_state(State.TRADING, "operator start")
            return {"state": self.state.value}
        if cmd == "sim":
            return await self._sim(req)
        if cmd in ("orders", "fills"):
            return self._history(cmd, req)
        if cmd == "breaker":
            return self._breaker(req)
        if cmd == "quality":
            if self.quality is None:
                raise CommandError("data quality checks are off ([quality] enabled = false)")
            return {"quality": {**self.quality.status(), "backfill":
                                self.backfill.status() if self.backfill else None}}
        if cmd == "flatten":
            return self._flatten_cmd(req)
        if cmd == "features":
            if self.features is None:
                raise CommandError("features are off ([features] enabled = false)")
            return {"features": self.features.status(),
                    "registry": self.features.registry()}
        raise CommandError(f"unknown command {cmd!r}")

    def _flatten_cmd(self, req: dict) -> dict:
        """`bot4ctl flatten [SYMBOL] [--algo twap|ac] [--duration S]`: one reduce-only
        parent order per open position, run on a schedule by the executor
        (daemon/engine/executor.py); `--cancel` stops them (working children cancelled).
        Never the e-stop's flatten, which is an immediate sweep (`_flatten`)."""
        ex = self.engine.executor
        symbol = req.get("symbol")
        if symbol is not None and symbol not in self.gateway.instruments:
            raise CommandError(f"flatten: unknown symbol {symbol!r} (instruments: "
                               f"{', '.join(self.gateway.instruments)})")
        if req.get("cancel"):
            return {"cancelled": ex.cancel_all("operator: flatten --cancel", symbol=symbol,
                                               reduce_only=True)}
        algo, duration = req.get("algo"), req.get("duration")
        if algo is not None and algo not in ("twap", "ac"):
            raise CommandError(f"flatten: algo must be twap or ac, got {algo!r}")
        if duration is not None and (isinstance(duration, bool)
                                     or not isinstance(duration, (int, float))
                                     or not 0 < duration <= 86_400):
            raise CommandError(f"flatten: duration must be a number of seconds in "
                               f"(0, 86400], got {duration!r}")
        if self.state not in (State.TRADING, State.REDUCING):
            raise CommandError(f"flatten needs state trading or reducing, state is "
                               f"{self.state} (an e-stop with flatten_on_estop closes "
                               f"positions at once)")
        started: list[str] = []
        failed: dict[str, str] = {}
        for sym, pos in list(self.gateway.positions.items()):
            if pos.qty == 0 or (symbol is not None and sym != symbol):
                continue
            busy = ex.running(sym, reduce_only=True)
            if busy:
                failed[sym] = f"already flattening ({', '.join(busy)}): --cancel first"
                continue
            # Nothing else trades the symbol meanwhile: the strategy's orders there are
            # pulled (the engine refuses its new ones while the flatten runs), and so are
            # other executions on it.
            with self.gateway.batch():
                ex.cancel_all("superseded by operator flatten", symbol=sym)
                for o in [o for o in self.gateway.open.values() if o.symbol == sym]:
                    self.gateway.cancel(o.client_id, "pulled by operator flatten")
            try:
                started.append(ex.start(ParentOrder(
                    sym, Side.SELL if pos.qty > 0 else Side.BUY, abs(pos.qty), algo=algo,
                    duration_s=None if duration is None else float(duration),
                    reduce_only=True, reason="operator flatten")))
            except ValueError as e:
                failed[sym] = str(e)
        if failed and not started:
            raise CommandError("flatten: " + "; ".join(f"{s}: {w}" for s, w in failed.items()))
        rows = [r for r in ex.status() if r["id"] in started]
        return {"started": started, "failed": failed,
                "executions": [{k: r[k] for k in ("id", "symbol", "side", "qty", "algo",
                                                  "state", "notes")} for r in rows]}

    def _breaker(self, req: dict) -> dict:
        """`bot4ctl breaker trip|reset NAME`: a manual trip stays open until a manual reset.
        (Tripping is always allowed; so is a reset: the breaker then probes nothing, it is
        closed, and the risk checks and the other breakers still apply.)"""
        action, name = req.get("action"), req.get("name")
        names = [b["name"] for b in self.protection.board.status()]
        if name not in names:
            raise CommandError(f"breaker: unknown breaker {name!r} (breakers: "
                               f"{', '.join(names)})")
        if action == "trip":
            reason = str(req.get("reason") or "operator")[:200]
            self.protection.trip_breaker(name, reason)
        elif action == "reset":
            self.protection.reset_breaker(name)
        else:
            raise CommandError(f"breaker: expected trip or reset, got {action!r}")
        b = next(b for b in self.protection.board.status() if b["name"] == name)
        return {"breaker": name, "state": b["state"], "reason": b["reason"]}

    def _history(self, cmd: str, req: dict) -> dict:
        """`bot4ctl orders|fills`: the newest first, from the journal (the record)."""
        limit, symbol = req.get("limit", 50), req.get("symbol")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise CommandError(f"{cmd}: limit must be an integer in [1, 10000], got {limit!r}")
        if symbol is not None and (not isinstance(symbol, str) or not symbol):
            raise CommandError(f"{cmd}: symbol must be a non-empty string")
        read = self.journal.recent_orders if cmd == "orders" else self.journal.recent_fills
        return {cmd: read(limit=limit, symbol=symbol)}

    def _reset(self) -> dict:
        if self.state is State.FAULT:
            raise CommandError(f"fault ({self.state_reason}): fix the cause and restart the "
                               "service; reset cannot clear a fault")
        risk_only = self.state in (State.READY, State.REDUCING) and self.protection.blocked()
        if self.state not in (State.ESTOP, State.HALTED) and not risk_only:
            raise CommandError(f"nothing to reset: state is {self.state}")
        if not self.panel.estop.circuit_closed():
            raise CommandError("e-stop circuit is open (button pressed or wire broken): "
                               "release the e-stop before reset")
        if self._pings_blocked:
            raise CommandError(f"{self._pings_blocked}: the service is being restarted by "
                               "systemd; reset after it comes back")
        if self.gateway.open:
            # Retry their cancels now, so a lost one cannot block the reset for ever.
            n = len(self.gateway.cancel_all("cancel retried at reset"))
            raise CommandError(f"{n} orders still awaiting cancel confirmation (cancels "
                               "sent again); try again")
        lifted = self.protection.reset()   # journalled (limit_reset) before it acts
        if not risk_only:
            self.journal.set_latch(False, "operator", "bot4ctl reset", was=self.latch.kind)
            self.latch.reset()
        why = f" (risk limits lifted: {', '.join(lifted)})" if lifted else ""
        self._set_state(State.READY, f"reset by operator{why}; `bot4ctl start` to trade")
        return {"state": self.state.value}

    async def _sim(self, req: dict) -> dict:
        if not self.opts.sim:
            raise CommandError("sim commands need the daemon to run with mock GPIO (--sim)")
        what, action = req.get("what"), req.get("action")
        if what == "estop" and action == "press":
            if self.state is State.ESTOP:
                self.panel.estop.sim_set(circuit_closed=False, wait=False)
                return {"estop": action, "latched": "already"}
            # The reply waits for the durable record of the trip: acknowledged = journalled.
            ack = self.loop.create_future()
            self._estop_acks.append(ack)
            self.panel.estop.sim_set(circuit_closed=False, wait=False)
            await asyncio.wait_for(ack, 10)
            return {"estop": action, "latched": "journalled"}
        if what == "estop" and action == "release":
            self.panel.estop.sim_set(circuit_closed=True, wait=False)
            return {"estop": action}
        if what == "stall" and isinstance(action, str):
            seconds = _stall_seconds(req.get("seconds", 30))
            if action == "loop":
                time.sleep(min(seconds, 30))  # deliberately blocks the loop (test hook)
                return {"stalled": action}
            if action not in ("market", "strategy"):
                raise CommandError(f"unknown component {action!r} (loop, market, strategy)")
            (self.market if action == "market" else self.engine).stall(seconds)
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
            "run": self.run_number,
            "journal": {"ok": self.journal_failed is None, "error": self.journal_failed,
                        "commits": self.journal.commits if self.journal else 0},
            "failures": list(self.failures),
            "watchdog": {"systemd_usec": self.notifier.watchdog_usec, "pings": self.pings,
                         "pings_blocked": self._pings_blocked,
                         "components": self.watchdog.snapshot()},
            "reconciliation": self._reconciliation_status(),
            # The trading core's parts, each from its own status(): orders, positions, risk,
            # breakers, quality, analytics, market, engine (and strategy).
            **(self.engine.core_status() if self.engine else _NO_CORE),
            # Parent orders (flatten, schedules): running ones, then the last finished.
            "execution": self.engine.executor.status() if self.engine else [],
            "replay_summary": self.replay_summary,
            "board": {"summary": board.describe(self.board), **self.board.as_dict()},
            "control": self.control.stats() if self.control else None,
            "notify": self.notifier.backend,
            "notify_failures": self.notifier.failures,
            "operator": self.operator.status() if self.operator else None,
        }

    def _reconciliation_status(self) -> dict | None:
        """This boot's reconciliation: the client ids per outcome and their counts (the
        whole result, with every order's before and after, is in the journal)."""
        r = self.reconciliation
        if r is None:
            return None
        return {"run": r["run"], "mode": r["mode"], "ts_ns": r["ts_ns"], "ok": r["ok"],
                "positions_ok": r["positions_ok"], "mismatches": r["mismatches"],
                "outcomes": r["outcomes"], **{k: len(v) for k, v in r["outcomes"].items()},
                "fills_applied": len(r["fills_applied"])}

    # -- stop -----------------------------------------------------------------------------
    _stop_reason = "stop requested"

    def request_stop(self, why: str = "stop requested") -> None:
        if not self._stop.is_set():
            self._stop_reason = why
            self._stop.set()

    async def _shutdown(self, why: str) -> None:
        """Orderly stop. Every step is guarded on its own: a failing component cannot
        skip the LED going off, the journal being closed or the lock being released."""
        log.info("orderly stop (%s)", why)
        self._step("stop: notify systemd", lambda: (
            self.notifier.stopping(f"stopping: {why}"),
            self.notifier.extend_timeout(self.cfg.daemon.stop_timeout_s)))
        if self.gateway:
            self.gateway.close(f"daemon stopping ({why})")   # no new order from here on
            if self.engine is not None and self.engine.executor.active:
                # Journalled as cancelled now, so the next boot does not report them as
                # interrupted by a crash.
                self._step("stop: end executions", lambda: self.engine.executor.cancel_all(
                    f"daemon stopping ({why})"))
            if self.cfg.safety.cancel_on_stop:
                await self._async_step("stop: cancel orders", self._cancel_on_stop)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.heavy:
            await self._async_step("stop: heavy analytics", self.heavy.close)
        if self.loop_monitor:
            self._step("stop: loop monitor", self.loop_monitor.stop)
        if self.market:
            await self._async_step("stop: market", self.market.close)
        if self.control:
            await self._async_step("stop: control socket", self.control.close)
        if self.operator:   # page and metrics off, queued alerts get a moment to go out
            await self._async_step("stop: operator's view", self.operator.close)
        if self.panel:
            self._step("stop: GPIO and LED off", self.panel.close)   # LED off, pins released
        journal_closed = False
        if self.journal:
            if self.journal_failed is None:
                self._step("stop: journal record", lambda: self.journal.audit(
                    "stop", reason=why, state=self.state.value))
            journal_closed = self._step("stop: journal close", self.journal.close)
        if self._marked_running and journal_closed and self.journal_failed is None:
            # Only a complete journal may drop the marker; otherwise the next boot infers
            # the latch the journal could not record.
            self._step("stop: run marker", self.statedir.mark_clean_stop)
        self.statedir.unlock()
        log.info("stopped")

    async def _cancel_on_stop(self) -> None:
        n = len(self.gateway.cancel_all("daemon stopping"))
        # Give the venue the chance to confirm before we go.
        deadline = time.monotonic() + min(5.0, self.cfg.daemon.stop_timeout_s / 2)
        while self.gateway.open and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if self.engine is not None:
                self.engine.settle()
        log.info("cancelled %d open orders on stop (%d unconfirmed)", n, len(self.gateway.open))

    async def _async_step(self, name: str, fn: Callable[[], Any]) -> bool:
        try:
            await fn()
            return True
        except Exception as e:
            self._step_error(name, e, fault=False)   # stopping already: no new state
        return False
