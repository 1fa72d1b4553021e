"""`Breakers`: the interface the gateway and supervisor use until they move to
`BreakerBoard` (then this module goes).

Two of the board's rules, with today's reason texts:
- reject storm: more than `max_rejects_per_min` rejected orders in a minute;
- stale book: a traded symbol's order book invalid for longer than `book_invalid_s`.
The loss rule moved to the risk engine ([risk] daily_loss_limit). `check()` returns the
reason of the first tripped rule, or None; the supervisor acts on it (halt). It never
cancels or sends anything itself.
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal

from daemon.config import BreakersCfg
from daemon.execution.orders import Position
from daemon.safety.breakers.detectors import StaleBook


class Breakers:
    def __init__(self, cfg: BreakersCfg) -> None:
        self.cfg = cfg
        self._rejects: deque[int] = deque()
        self._stale = StaleBook(int(cfg.book_invalid_s * 1e9))
        self.tripped: str | None = None

    def record_reject(self, now_ns: int) -> None:
        self._rejects.append(now_ns)

    def book_state(self, symbol: str, valid: bool, now_ns: int) -> None:
        self._stale.state(symbol, valid, now_ns)

    def check(self, positions: dict[str, Position], marks: dict[str, Decimal | None],
              now_ns: int) -> str | None:
        """`positions` and `marks` are no longer read (losses are the risk engine's); the
        signature stays until the supervisor moves to the board."""
        if self.tripped:
            return self.tripped
        while self._rejects and now_ns - self._rejects[0] > 60_000_000_000:
            self._rejects.popleft()
        reason = None
        if len(self._rejects) > self.cfg.max_rejects_per_min:
            reason = f"{len(self._rejects)} rejects in the last minute"
        if reason is None:
            stale = self._stale.check(now_ns)
            reason = stale.reason if stale else None
        self.tripped = reason
        return reason

    def reset(self) -> None:
        self.tripped = None
        self._rejects.clear()
        self._stale.clear()
