"""Circuit breakers: conditions that halt trading on their own.

- reject storm: more than `max_rejects_per_min` rejected orders in a minute;
- loss: realised PnL minus fees plus unrealised PnL at the mark, since trading was last
  (re)started, below -max_loss;
- stale book: a traded symbol's order book invalid for longer than `book_invalid_s`.
`check()` returns the reason of the first tripped breaker, or None. The supervisor acts
on it (halt); breakers never cancel or send anything themselves.
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal

from daemon.config import BreakersCfg
from daemon.execution.orders import Position


class Breakers:
    def __init__(self, cfg: BreakersCfg) -> None:
        self.cfg = cfg
        self._rejects: deque[int] = deque()
        self._invalid_since: dict[str, int] = {}
        self.tripped: str | None = None
        self._baseline: Decimal | None = None   # PnL when trading (re)started

    def record_reject(self, now_ns: int) -> None:
        self._rejects.append(now_ns)

    def book_state(self, symbol: str, valid: bool, now_ns: int) -> None:
        if valid:
            self._invalid_since.pop(symbol, None)
        else:
            self._invalid_since.setdefault(symbol, now_ns)

    def check(self, positions: dict[str, Position], marks: dict[str, Decimal | None],
              now_ns: int) -> str | None:
        if self.tripped:
            return self.tripped
        while self._rejects and now_ns - self._rejects[0] > 60_000_000_000:
            self._rejects.popleft()
        reason = None
        if len(self._rejects) > self.cfg.max_rejects_per_min:
            reason = f"{len(self._rejects)} rejects in the last minute"
        pnl = Decimal(0)
        for sym, pos in positions.items():
            pnl += pos.realized_pnl - pos.fees
            mark = marks.get(sym)
            if mark is not None and pos.qty:
                pnl += (mark - pos.avg_price) * pos.qty
        if self._baseline is None:
            self._baseline = pnl
        loss = pnl - self._baseline
        if reason is None and loss < -self.cfg.max_loss:
            reason = f"loss {loss:.2f} since start beyond max_loss {self.cfg.max_loss}"
        for sym, since in self._invalid_since.items():
            if reason is None and now_ns - since > self.cfg.book_invalid_s * 1e9:
                reason = f"{sym} order book invalid for {(now_ns - since) / 1e9:.1f} s"
        self.tripped = reason
        return reason

    def reset(self) -> None:
        self.tripped = None
        self._rejects.clear()
        self._invalid_since.clear()
        self._baseline = None
