"""The engine's one clock: every time-based rule in the trading core reads it.

Live (and synthetic) it is the wall clock, so a silent feed cannot stop time for stale-book
checks, cooldowns and rates. In a replay and a backtest it is event time: the receive time
of the market event being handled (wall time before the first event), so a replay at any
speed makes the same decisions at the same event times.

It never sleeps, never reads a monotonic clock (durations for the systemd watchdog and the
loop monitor are process health, not trading rules, and keep their own clocks), and is
advanced only by the engine.
"""
from __future__ import annotations

import time
from typing import Literal

Mode = Literal["wall", "event"]


class EngineClock:
    """Callable: `clock()` is the engine's time in ns since the epoch."""

    __slots__ = ("mode", "event_ns", "_wall")

    def __init__(self, mode: Mode, wall=time.time_ns) -> None:
        if mode not in ("wall", "event"):
            raise ValueError(f"clock mode must be 'wall' or 'event', got {mode!r}")
        self.mode = mode
        self.event_ns = 0   # time of the newest market event handled (both modes)
        self._wall = wall

    def __call__(self) -> int:
        if self.mode == "event":
            return self.event_ns or self._wall()
        return self._wall()

    def advance(self, ts_ns: int) -> None:
        """The engine handled a market event stamped `ts_ns` (receive time). Event time
        never runs backwards: a capture's small backward steps keep the clock where it is."""
        if ts_ns > self.event_ns:
            self.event_ns = ts_ns

    def status(self) -> dict:
        return {"mode": self.mode, "event_ns": self.event_ns or None}
