"""Adverse selection of our own fills: how far the mid moved against us after each fill.

For a fill with side s (+1 buy, -1 sell) at event time t, with m0 the last mid known at t
(the book event at or before the fill), and m_h the mid of the first book event at or after
t + h (event time: nothing is read before it happens), the adverse move is
    a_h = -s * (m_h - m0) / m0 * 1e4   bps,
positive when the mid moved against the fill (it fell after we bought, rose after we sold).
The feature per horizon h is the mean a_h over the last n measured fills; ready once one
fill has been measured at that horizon.

Degenerate input: a fill before any valid mid (or with a non-finite/non-positive price) is
not measured (counted in `unmeasured`); pending fills are bounded (`max_pending`, oldest
dropped and counted); a mid that is not finite and positive is ignored.

This module never touches orders or the journal; it only watches fills and mids.
"""
from __future__ import annotations

from collections import deque

from daemon.features._num import ok_price, out
from daemon.features.rolling import RollingSum

_NEVER = 1 << 62


class AdverseSelection:
    __slots__ = ("horizons_ns", "_pending", "_moves", "_count", "mid", "unmeasured",
                 "overflow", "pending", "next_ns")

    def __init__(self, horizons_ns: list[int], n: int = 100, max_pending: int = 10_000) -> None:
        if not horizons_ns or any(h <= 0 for h in horizons_ns) or n < 1:
            raise ValueError("adverse selection needs positive horizons and n >= 1")
        self.horizons_ns = list(horizons_ns)
        self._pending: list[deque[tuple[int, float, float]]] = [
            deque(maxlen=max_pending) for _ in horizons_ns]
        self._moves = [RollingSum(n) for _ in horizons_ns]
        self._count = [0] * len(horizons_ns)
        self.mid: float | None = None
        self.unmeasured = 0
        self.overflow = 0
        self.pending = 0          # fills waiting at any horizon: 0 = `on_mid` has no work
        # At most the earliest due time among the pending queues' heads (on_mid only ever
        # looks at heads): before it, on_mid would measure nothing, so the feature engine
        # skips the call. Lowered whenever a head changes in on_fill, set exactly when
        # on_mid measured something (never later than a head: a skipped call never
        # measures late; early only costs a call that measures nothing).
        self.next_ns = _NEVER

    def on_fill(self, ts_ns: int, side: int) -> None:
        """A fill of ours (side +1 buy / -1 sell) at event time ts_ns."""
        m0 = self.mid
        if m0 is None or side not in (1, -1):
            self.unmeasured += 1
            return
        for h, q in zip(self.horizons_ns, self._pending):
            if len(q) == q.maxlen:
                self.overflow += 1
            q.append((ts_ns + h, float(side), m0))
            # The head moved if the queue was empty, or full (its oldest dropped: the next
            # may be due earlier when fills came out of time order).
            head = q[0][0]
            if head < self.next_ns:
                self.next_ns = head
        self.pending = sum(len(q) for q in self._pending)

    def on_mid(self, ts_ns: int, mid: float) -> list[int]:
        """A new mid at event time ts_ns; returns the indexes of the horizons that measured
        a fill (usually none)."""
        if not ok_price(mid):
            return []
        self.mid = mid
        done: list[int] = []
        for i, q in enumerate(self._pending):
            while q and q[0][0] <= ts_ns:
                _, s, m0 = q.popleft()
                self._moves[i].add(-s * (mid - m0) / m0 * 1e4)
                self._count[i] += 1
                if not done or done[-1] != i:
                    done.append(i)
        if done:
            self.pending = sum(len(q) for q in self._pending)
            self.next_ns = min((q[0][0] for q in self._pending if q), default=_NEVER)
        return done

    def value(self, i: int) -> float | None:
        """Mean adverse move (bps) at horizon i over the last n measured fills."""
        m = self._moves[i]
        k = len(m.buf)
        return out(m.total / k) if k else None

    def measured(self, i: int) -> int:
        return self._count[i]
