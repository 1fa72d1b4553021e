"""A thread that watches the event loop's own heartbeat.

If the loop stops beating (a blocking call, a runaway computation), nothing on the loop can
notice until it is unblocked. This thread can: it trips the kill latch at once, so no order
leaves while the loop is stuck, and wakes the loop to handle the halt when it can.
It never touches trading state itself (only the thread-safe latch).
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from typing import Callable

from daemon.safety.latch import KillLatch, LatchKind
from daemon.safety.watchdog import Heartbeat

log = logging.getLogger(__name__)


class LoopMonitor:
    def __init__(self, hb: Heartbeat, latch: KillLatch, loop: asyncio.AbstractEventLoop,
                 on_stall: Callable[[str], None], period_s: float = 0.1) -> None:
        self._hb, self._latch, self._loop = hb, latch, loop
        self._on_stall = on_stall
        self._period = period_s
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()   # built on the loop's thread
        self._in_stall = False
        self.stalls = 0
        self._thread = threading.Thread(target=self._run, name="loop-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                age = self._hb.age()
                if age <= self._hb.deadline_s:
                    self._in_stall = False
                    continue
                reason = f"watchdog: event loop stalled for {age:.2f} s"
                if not self._in_stall:
                    self._in_stall = True
                    self.stalls += 1
                    log.error("%s; the loop thread is at:\n%s", reason, self.loop_stack())
                if self._latch.trip(LatchKind.HALT, reason):
                    self._loop.call_soon_threadsafe(self._on_stall, reason)
            except RuntimeError:  # loop closed during shutdown
                return
            except Exception:
                log.exception("loop monitor check failed")

    def loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        return "".join(traceback.format_stack(frame)) if frame else "(loop thread not found)"

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
