"""The RGB status LED (common cathode) driven by named patterns.

The daemon picks a pattern name per state (daemon/states.py); this module turns names into
gpiozero RGBLED blink/pulse calls. It never decides which pattern to show. With the LED
disabled in config, `NullLed` keeps the same interface so status still reports the pattern.

`show()` only records the pattern and hands it to the LED's own thread, which makes the
gpiozero calls: starting or stopping a blink costs gpiozero 100-250 us (it starts and joins
a thread), and on a trip the LED is asked for before the durable record and the cancels,
so that cost must not land on the e-stop path. `held()` goes one step further for a trip:
the pattern is recorded at once but reaches the LED thread only when the block ends
(always, even if the block raises), so not even that thread competes for the GIL while the
cancels are journalled and sent. The newest pattern wins; a pattern that could not be
shown is logged and counted, and never stops the thread.
"""
from __future__ import annotations

import logging
import queue
import threading
from contextlib import contextmanager
from typing import Any, Iterator

log = logging.getLogger(__name__)

RED, GREEN, BLUE, AMBER, OFF = (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0.35, 0), (0, 0, 0)

# name -> (kind, colour, on_s, off_s)
PATTERNS: dict[str, tuple[str, tuple[float, float, float], float, float]] = {
    "off": ("steady", OFF, 0, 0),
    "blue_pulse": ("pulse", BLUE, 0.8, 0.8),
    "blue": ("steady", BLUE, 0, 0),
    "green_slow_blink": ("blink", GREEN, 0.5, 1.5),
    "green": ("steady", GREEN, 0, 0),
    "amber": ("steady", AMBER, 0, 0),
    "red_slow_blink": ("blink", RED, 0.5, 1.5),
    "red_fast_blink": ("blink", RED, 0.1, 0.1),
    "red": ("steady", RED, 0, 0),
}


_STOP = None


class StatusLed:
    def __init__(self, factory: Any, red: int, green: int, blue: int) -> None:
        from gpiozero import RGBLED
        self._led = RGBLED(red, green, blue, active_high=True, pwm=True, pin_factory=factory)
        self.pattern = "off"      # the pattern asked for last
        self.applied = "off"      # the pattern on the pins
        self.errors = 0
        self._q: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._applied_cv = threading.Condition()
        self._held = 0
        self._thread = threading.Thread(target=self._run, name="status-led", daemon=True)
        self._thread.start()

    def show(self, pattern: str) -> None:
        """Ask for `pattern` (KeyError for an unknown name); the LED thread applies it."""
        if pattern not in PATTERNS:
            raise KeyError(pattern)
        if pattern != self.pattern:
            log.info("LED pattern %s", pattern)
        self.pattern = pattern
        if not self._held:
            self._q.put(pattern)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Patterns asked for inside go to the pins when the block ends, however it ends."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                self._q.put(self.pattern)

    def _run(self) -> None:
        while True:
            pattern = self._q.get()
            while not self._q.empty():        # only the newest request matters
                pattern = self._q.get()
                if pattern is _STOP:
                    break
            if pattern is _STOP:
                return
            try:
                self._apply(pattern)
            except Exception:
                self.errors += 1
                log.exception("LED could not show %s", pattern)
                continue
            with self._applied_cv:
                self.applied = pattern
                self._applied_cv.notify_all()

    def _apply(self, pattern: str) -> None:
        kind, colour, on_s, off_s = PATTERNS[pattern]
        if kind == "steady":
            self._led.color = colour
        elif kind == "blink":
            self._led.blink(on_time=on_s, off_time=off_s, on_color=colour, background=True)
        else:
            self._led.pulse(fade_in_time=on_s, fade_out_time=off_s, on_color=colour,
                            background=True)

    def wait_applied(self, pattern: str, timeout: float = 10.0) -> bool:
        """Block until `pattern` is on the pins (tests, and the orderly stop)."""
        with self._applied_cv:
            return self._applied_cv.wait_for(lambda: self.applied == pattern, timeout)

    @property
    def value(self) -> tuple[float, float, float]:
        return tuple(self._led.value)

    def close(self) -> None:
        """LED off and pins released, after the thread has stopped (it is joined first,
        so nothing it still had queued can switch the LED on again)."""
        self._q.put(_STOP)
        self._thread.join(timeout=5)
        try:
            self._led.off()
        finally:
            self._led.close()
        self.pattern = self.applied = "off"


class NullLed:
    """Same interface with no hardware (led = false in config)."""

    def __init__(self) -> None:
        self.pattern = self.applied = "off"
        self.errors = 0

    def show(self, pattern: str) -> None:
        if pattern not in PATTERNS:
            raise KeyError(pattern)
        self.pattern = self.applied = pattern

    def wait_applied(self, pattern: str, timeout: float = 10.0) -> bool:
        return self.applied == pattern

    @contextmanager
    def held(self) -> Iterator[None]:
        yield

    @property
    def value(self) -> tuple[float, float, float]:
        return PATTERNS[self.pattern][1] if PATTERNS[self.pattern][0] == "steady" else (0, 0, 0)

    def close(self) -> None:
        self.pattern = self.applied = "off"
