"""The RGB status LED (common cathode) driven by named patterns.

The daemon picks a pattern name per state (daemon/states.py); this module turns names into
gpiozero RGBLED blink/pulse calls. It never decides which pattern to show. With the LED
disabled in config, `NullLed` keeps the same interface so status still reports the pattern.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

RED, GREEN, BLUE, AMBER, OFF = (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0.35, 0), (0, 0, 0)

# name -> (kind, colour, on_s, off_s)
PATTERNS: dict[str, tuple[str, tuple[float, float, float], float, float]] = {
    "off": ("steady", OFF, 0, 0),
    "blue_pulse": ("pulse", BLUE, 0.8, 0.8),
    "green_slow_blink": ("blink", GREEN, 0.5, 1.5),
    "green": ("steady", GREEN, 0, 0),
    "amber": ("steady", AMBER, 0, 0),
    "red_slow_blink": ("blink", RED, 0.5, 1.5),
    "red_fast_blink": ("blink", RED, 0.1, 0.1),
    "red": ("steady", RED, 0, 0),
}


class StatusLed:
    def __init__(self, factory: Any, red: int, green: int, blue: int) -> None:
        from gpiozero import RGBLED
        self._led = RGBLED(red, green, blue, active_high=True, pwm=True, pin_factory=factory)
        self.pattern = "off"

    def show(self, pattern: str) -> None:
        kind, colour, on_s, off_s = PATTERNS[pattern]
        if kind == "steady":
            self._led.color = colour
        elif kind == "blink":
            self._led.blink(on_time=on_s, off_time=off_s, on_color=colour, background=True)
        else:
            self._led.pulse(fade_in_time=on_s, fade_out_time=off_s, on_color=colour,
                            background=True)
        if pattern != self.pattern:
            log.info("LED pattern %s", pattern)
        self.pattern = pattern

    @property
    def value(self) -> tuple[float, float, float]:
        return tuple(self._led.value)

    def close(self) -> None:
        try:
            self._led.off()
        finally:
            self._led.close()
        self.pattern = "off"


class NullLed:
    """Same interface with no hardware (led = false in config)."""

    def __init__(self) -> None:
        self.pattern = "off"

    def show(self, pattern: str) -> None:
        if pattern not in PATTERNS:
            raise KeyError(pattern)
        self.pattern = pattern

    @property
    def value(self) -> tuple[float, float, float]:
        return PATTERNS[self.pattern][1] if PATTERNS[self.pattern][0] == "steady" else (0, 0, 0)

    def close(self) -> None:
        self.pattern = "off"
