"""Rate-limited logging: one helper for every repeated warning in the daemon.

A damaged capture can hold millions of bad lines and a misbehaving peer can send a bad
frame per millisecond; logging each would flood the journal on an SD card and cost the
event loop real time. `RateLimitedLog` logs the first occurrence of each *kind* of problem
at once, then at most one line per kind per interval, and says how many were suppressed in
between, so nothing is hidden: the running total (when the caller keeps one) and the
suppressed count are in every line that is written.

This module only decides whether to write a log line; it never counts the problems for
status (callers keep their own counters) and never raises.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Interval-based suppression per kind, with a count of what was suppressed.

    Two ways to use it:

    * ``warn(kind, total, detail, level)`` (calling the object): writes
      ``"<kind> (total <total>): <detail>"`` at most once per interval for each kind, with
      ``"; <n> more not logged"`` appended when earlier occurrences were suppressed.
    * ``ok, n = warn.should_log(kind)``: for callers that compose their own message (for
      example with ``logger.exception``); ``n`` is how many calls for that kind were
      suppressed since the last line that was written.

    ``clock`` (monotonic seconds) is injectable for tests.
    """

    __slots__ = ("_logger", "_interval_s", "_clock", "_next", "_suppressed")

    def __init__(self, logger: logging.Logger | None = None, interval_s: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval_s >= 0:   # also rejects NaN
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self._logger = logger
        self._interval_s = float(interval_s)
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def should_log(self, kind: str = "") -> tuple[bool, int]:
        """(write a line now?, how many of this kind were suppressed since the last one)."""
        now = self._clock()
        if now < self._next.get(kind, float("-inf")):
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False, 0
        self._next[kind] = now + self._interval_s
        return True, self._suppressed.pop(kind, 0)

    def __call__(self, kind: str, total: int, detail: str, level: int = logging.WARNING) -> None:
        ok, n = self.should_log(kind)
        if not ok or self._logger is None:
            return
        if n:
            self._logger.log(level, "%s (total %d): %s; %d more not logged", kind, total,
                             detail, n)
        else:
            self._logger.log(level, "%s (total %d): %s", kind, total, detail)
