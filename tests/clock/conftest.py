"""One time line for a rule, in either of the engine clock's modes (issue 9 item 2).

`Timeline.at(s)` makes the engine's time `base + s` seconds and returns it as the receive
stamp of an event handled at that moment:
- event mode (replay, backtest): an `EngineClock("event")` advanced by that stamp; the
  base is in 2024 and the wall clock it holds sits in 2026 and jumps an hour on every
  step, so a rule that read the wall (or mixed it with event time) would see hours pass,
  or nothing at all, and fire early or never;
- wall mode (live): an `EngineClock("wall")` on a controllable fake wall clock set to
  that time (base in 2026): nothing sleeps and nothing is timed.
Tests take the `tl` fixture and run once per mode.
"""
from __future__ import annotations

import pytest

from daemon.engine.clock import EngineClock

S = 1_000_000_000
EVENT0 = 1_709_596_800 * S   # 2024-03-05 00:00:00 UTC: a capture's event time
WALL0 = 1_796_083_200 * S    # 2026-12-01 00:00:00 UTC: the machine's wall time
MODES = ("event", "wall")


class FakeWall:
    """A wall clock the test sets; never read by anything but the EngineClock."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


class Timeline:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.wall = FakeWall(WALL0)
        self.clock = EngineClock(mode, wall=self.wall)
        self.base = EVENT0 if mode == "event" else WALL0

    def ns(self, s: float) -> int:
        """The engine time `s` seconds after the base (without moving the clock)."""
        return self.base + round(s * S)

    def at(self, s: float) -> int:
        ts = self.ns(s)
        if self.mode == "event":
            self.clock.advance(ts)
            self.wall.ns += 3600 * S   # the wall runs on, unrelated to event time
        else:
            self.wall.ns = ts
        assert self.clock() == ts
        return ts


@pytest.fixture(params=MODES)
def tl(request) -> Timeline:
    return Timeline(request.param)
