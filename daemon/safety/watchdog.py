"""Internal watchdog: components register heartbeats with deadlines; the supervisor asks
`stalled()` before every systemd WATCHDOG=1 ping and halts trading when anything is late.

Heartbeats are written from any thread (a single float store, safe under the GIL) and read
on the event loop. This module never pings systemd and never changes trading state itself.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Heartbeat:
    name: str
    deadline_s: float
    last: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.last



class Watchdog:
    def __init__(self) -> None:
        self._beats: dict[str, Heartbeat] = {}

    def register(self, name: str, deadline_s: float) -> Heartbeat:
        if deadline_s <= 0:
            raise ValueError(f"heartbeat {name!r}: deadline must be > 0, got {deadline_s}")
        if name in self._beats:
            raise ValueError(f"heartbeat {name!r} registered twice")
        hb = Heartbeat(name, deadline_s)
        self._beats[name] = hb
        return hb

    def stalled(self, now: float | None = None) -> list[tuple[str, float]]:
        """(name, age in s) of every heartbeat older than its deadline."""
        now = time.monotonic() if now is None else now
        return [(hb.name, round(now - hb.last, 3)) for hb in self._beats.values()
                if now - hb.last > hb.deadline_s]

    def snapshot(self, now: float | None = None) -> dict[str, dict]:
        now = time.monotonic() if now is None else now
        return {hb.name: {"age_s": round(now - hb.last, 3), "deadline_s": hb.deadline_s}
                for hb in self._beats.values()}
