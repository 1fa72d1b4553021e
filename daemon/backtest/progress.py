"""A progress bar for `bot4d backtest` on a terminal.

Purely cosmetic: it draws only when its stream is a terminal (never into a pipe or a log
file), at most once every `min_interval_s` of the monotonic clock (the one place a
backtest may read a wall-type clock: what it shows never feeds back into the run), and a
failing stream only turns it off. It never decides or changes anything in the run.

One line, redrawn in place: bar, % done, the engine (event) time reached in UTC, speed in
lines per second of wall time, and the count, e.g.
  [#######.............]  35.2% | 2024-08-08 13:45:12 UTC | 119,000 lines/s | 1,031,000/2,931,000
The % may follow another measure than lines (bytes of a compressed file read): pass the
lines handled as `lines` and the speed and count are in lines, e.g.
  [#######.............]  35.2% | 2024-08-08 13:45:12 UTC | 119,000 lines/s | 1,031,000 lines
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Callable, TextIO

_BAR = 20   # characters of bar


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())   # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):   # no isatty, or a closed stream
        return False


def _utc(event_ns: int) -> str:
    if event_ns <= 0:
        return "--"
    return datetime.fromtimestamp(event_ns / 1e9, tz=timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr, *,
                 min_interval_s: float = 0.2, unit: str = "lines",
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`total`: how many `unit`s the run will handle (0 or less: unknown, no %)."""
        self.total = total
        self.stream = stream
        self.unit = unit
        self.min_interval_s = min_interval_s
        self.enabled = _isatty(stream)
        self._clock = clock
        self._start = clock()
        self._drawn_at: float | None = None
        self._width = 0          # length of the last line drawn, to blank what is left of it
        self._last: tuple[int, int, int | None] | None = None
        self._closed = False

    def update(self, done: int, event_ns: int, lines: int | None = None) -> None:
        """`done` of `total` handled so far (the %); `event_ns` the engine time reached;
        `lines`: lines handled, when `done` counts something else (bytes read)."""
        if not self.enabled or self._closed:
            return
        self._last = (done, event_ns, lines)
        now = self._clock()
        finished = self.total > 0 and done >= self.total
        if (self._drawn_at is not None and now - self._drawn_at < self.min_interval_s
                and not finished):
            return
        self._draw(done, event_ns, lines, now)

    def close(self) -> None:
        """Draw the last state and end the line (only if anything was shown). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled or self._last is None:
            return
        self._draw(*self._last, now=self._clock())
        self._write("\n")

    def line(self, done: int, event_ns: int, lines: int | None, now: float) -> str:
        """The text of the bar (without the carriage return)."""
        parts = []
        if self.total > 0:
            frac = min(max(done / self.total, 0.0), 1.0)
            full = int(frac * _BAR)
            parts.append(f"[{'#' * full}{'.' * (_BAR - full)}] {frac * 100:5.1f}%")
        parts.append(_utc(event_ns))
        took = now - self._start
        count, unit = (done, self.unit) if lines is None else (lines, "lines")
        parts.append(f"{count / took:,.0f} {unit}/s" if took > 0 else f"-- {unit}/s")
        if lines is not None:
            parts.append(f"{lines:,} lines")
        else:
            parts.append(f"{done:,}/{self.total:,}" if self.total > 0 else f"{done:,}")
        return " | ".join(parts)

    def _draw(self, done: int, event_ns: int, lines: int | None, now: float) -> None:
        text = self.line(done, event_ns, lines, now)
        pad = " " * max(self._width - len(text), 0)
        self._width = len(text)
        self._drawn_at = now
        self._write(f"\r{text}{pad}")

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False   # a closed or broken terminal: the run goes on without it
