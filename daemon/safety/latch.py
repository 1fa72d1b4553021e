"""The kill latch: the one flag that closes the order gateway.

`trip()` is called from the GPIO callback thread (e-stop) or the loop (halt, watchdog,
breaker). It sets `tripped` first, before anything else, so a gateway check on any thread
sees it at once; it never blocks, never does I/O and never raises. Journalling the trip and
cancelling orders is the supervisor's job on the event loop. The latch never resets itself.
"""
from __future__ import annotations

import threading
from enum import StrEnum


class LatchKind(StrEnum):
    ESTOP = "estop"   # hardware: physical e-stop circuit opened
    HALT = "halt"     # software: operator, watchdog, breaker, fault


class KillLatch:
    def __init__(self) -> None:
        self.tripped = False
        self.kind: LatchKind | None = None
        self.reason = ""
        self._lock = threading.Lock()

    def trip(self, kind: LatchKind, reason: str) -> bool:
        """Close the gate. True when this call changed the latch (first trip or escalation
        from a software halt to a hardware e-stop)."""
        self.tripped = True   # first: every submit checks this flag
        with self._lock:
            if self.kind is None or (kind is LatchKind.ESTOP and self.kind is LatchKind.HALT):
                self.kind = kind
                self.reason = reason
                return True
            return False

    def restore(self, kind: LatchKind, reason: str) -> None:
        """Re-arm from the journal at boot (no new event, no timestamp)."""
        with self._lock:
            self.tripped, self.kind, self.reason = True, kind, reason

    def reset(self) -> None:
        with self._lock:
            self.kind = None
            self.reason = ""
            self.tripped = False
