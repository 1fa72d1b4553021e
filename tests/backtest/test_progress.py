"""The backtest progress bar: only on a terminal; rate-limited by the clock it is given."""
from __future__ import annotations

import io
import os
import select

from daemon.backtest.progress import Progress

T0 = 1_723_075_200_000_000_000   # 2024-08-08 00:00:00 UTC


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_nothing_written_when_not_a_tty(tmp_path):
    buf = io.StringIO()
    p = Progress(1000, buf)
    for i in range(0, 1001, 100):
        p.update(i, T0 + i)
    p.close()
    assert buf.getvalue() == "" and not p.enabled
    with open(tmp_path / "log", "w") as f:   # a real file: not a terminal either
        p = Progress(10, f)
        p.update(10, T0)
        p.close()
    assert (tmp_path / "log").read_text() == ""


def test_draws_percent_event_time_and_speed_on_a_tty():
    out, clock = FakeTty(), Clock()
    p = Progress(4000, out, clock=clock, min_interval_s=0.5)
    clock.t += 2.0
    p.update(1000, T0 + 3_600_000_000_000)
    text = out.getvalue()
    assert text.startswith("\r[#####...............]  25.0%")
    assert "2024-08-08 01:00:00 UTC" in text and "500 lines/s" in text
    assert text.endswith("1,000/4,000")


def test_redraws_are_rate_limited_but_the_end_always_shows():
    out, clock = FakeTty(), Clock()
    p = Progress(4000, out, clock=clock, min_interval_s=0.5)
    p.update(1, T0)
    first = out.getvalue()
    p.update(2, T0)                      # same instant: not redrawn
    assert out.getvalue() == first
    clock.t += 0.5
    p.update(3, T0)                      # interval passed: redrawn
    assert out.getvalue() != first and out.getvalue().count("\r") == 2
    p.update(4000, T0)                   # done: drawn at once
    assert out.getvalue().count("\r") == 3 and "100.0%" in out.getvalue()
    p.close()
    assert out.getvalue().endswith("\n")
    end = out.getvalue()
    p.close()
    p.update(5, T0)
    assert out.getvalue() == end         # closed: nothing more


def test_close_shows_the_last_update_even_if_it_was_rate_limited():
    out, clock = FakeTty(), Clock()
    p = Progress(100, out, clock=clock, min_interval_s=10)
    p.update(1, T0)
    p.update(42, T0)                     # suppressed by the rate limit
    p.close()
    assert "42/100" in out.getvalue().rsplit("\r", 1)[1]


def test_a_shorter_line_blanks_the_rest_of_the_longer_one():
    out, clock = FakeTty(), Clock()
    p = Progress(0, out, clock=clock, min_interval_s=0)   # unknown total: no %
    clock.t += 1
    p.update(1_000_000, T0)
    clock.t += 1000
    p.update(1_000_001, 0)
    first, second = out.getvalue().split("\r")[1:]
    assert "%" not in first and "--" in second
    assert len(second) == len(first) and second.endswith(" ")


def test_close_without_any_update_writes_nothing():
    out = FakeTty()
    Progress(10, out).close()
    assert out.getvalue() == ""


def test_a_broken_terminal_only_turns_the_bar_off():
    out = FakeTty()
    p = Progress(10, out, min_interval_s=0)
    out.close()
    p.update(1, T0)                      # ValueError: I/O on a closed file
    assert not p.enabled
    p.close()


def test_on_a_real_pty():
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            p = Progress(10, tty)
            assert p.enabled
            p.update(10, T0)
            p.close()
        # Written synchronously before close() returned; the timeout only bounds a failure.
        ready, _, _ = select.select([master], [], [], 10)
        assert ready
        data = os.read(master, 4096)
        assert b"100.0%" in data and b"2024-08-08 00:00:00 UTC" in data
    finally:
        os.close(master)
        os.close(slave)


def test_percent_of_bytes_with_speed_in_lines():
    out, clock = FakeTty(), Clock()
    p = Progress(1_000_000, out, clock=clock, unit="bytes")
    clock.t += 4.0
    p.update(250_000, T0, lines=2_000_000)
    text = out.getvalue()
    assert " 25.0%" in text and "500,000 lines/s" in text and text.endswith("2,000,000 lines")
    assert "bytes" not in text
