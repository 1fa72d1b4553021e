"""daemon.ratelog.RateLimitedLog: first occurrence logged, then one line per kind per
interval, with the number of suppressed occurrences carried by the next line."""
from __future__ import annotations

import logging

import pytest

from daemon.ratelog import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_interval_suppression_counts_what_was_hidden(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.ratelog")
    warn = RateLimitedLog(log, 10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for total in range(1, 6):          # 5 within one interval: only the first is written
            warn("bad_json", total, f"line {total}")
        warn("corrupt_gzip", 1, "other kind")  # another kind has its own interval
        clock.t += 10.0
        warn("bad_json", 6, "line 6")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad_json (total 1): line 1",
                     "corrupt_gzip (total 1): other kind",
                     "bad_json (total 6): line 6; 4 more not logged"]


def test_should_log_for_callers_that_write_their_own_message() -> None:
    clock = Clock()
    rl = RateLimitedLog(interval_s=5.0, clock=clock)
    assert rl.should_log() == (True, 0)
    assert rl.should_log() == (False, 0)
    assert rl.should_log() == (False, 0)
    clock.t += 4.9
    assert rl.should_log() == (False, 0)
    clock.t += 0.1
    assert rl.should_log() == (True, 3)
    assert rl.should_log("x") == (True, 0)     # kinds are independent


def test_level_is_respected_and_no_logger_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.ratelog.level")
    with caplog.at_level(logging.DEBUG, logger="test.ratelog.level"):
        RateLimitedLog(log)("error_message", 2, "detail", logging.ERROR)
        RateLimitedLog(None)("x", 1, "never written")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "error_message (total 2): detail")]


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_interval_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        RateLimitedLog(None, bad)
