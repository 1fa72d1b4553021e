"""The data-quality rules on time, in replay (event time) and live (wall time): the poll
interval and the silence of a feed (read against the engine clock the poll is given), the
Kalman gap and a source's staleness held for `source_hold_s` (event receive times). One
test per rule, run in both modes."""
from __future__ import annotations

from daemon.config import QualityCfg
from daemon.market.events import Quote, Trade
from daemon.quality.monitor import DataQuality
from tests.clock.conftest import Timeline

SYM = "BTCUSDT"
MS = 1_000_000


class Feed:
    """Trades (and bookTicker quotes) of one symbol, stamped on the time line."""

    def __init__(self, dq: DataQuality, tl: Timeline) -> None:
        self.dq, self.tl, self.id = dq, tl, 0

    def trade(self, s: float, price: float = 100.01) -> None:
        ts = self.tl.at(s)
        self.id += 1
        self.dq.on_trade(Trade(SYM, ts, ts // MS, self.id, price, 0.0123 + self.id % 7 * 1e-4,
                               self.id % 2 == 0))

    def quote(self, s: float) -> None:
        ts = self.tl.at(s)
        self.id += 1
        self.dq.on_quote(Quote(SYM, ts, self.id, 100.0, 1.0, 100.02, 1.0))


def _layer(dq: DataQuality, name: str) -> dict:
    return dq.status()["symbols"][SYM]["layers"][name]


def test_the_heavy_poll_runs_once_per_interval_of_engine_time(tl):
    dq = DataQuality(QualityCfg(poll_interval_s=5), [SYM])
    f = Feed(dq, tl)
    f.trade(0)
    dq.poll(tl.clock())
    assert dq.polls == 1
    f.trade(4.999)
    dq.poll(tl.clock())
    assert dq.polls == 1, "polled again within poll_interval_s"
    f.trade(5)
    dq.poll(tl.clock())
    assert dq.polls == 2


def test_a_silent_feed_is_measured_up_to_the_engine_clock(tl):
    """No event arrives: only the clock the poll is given can tell the feed went silent
    (stale_s, the score's timeliness)."""
    dq = DataQuality(QualityCfg(poll_interval_s=5, stale_s=5), [SYM])
    f = Feed(dq, tl)
    for k in range(11):
        f.trade(k * 0.1)
    dq.poll(tl.at(1))
    dq.poll(tl.at(6))                    # silent 5 s: exactly stale_s, not silence yet
    assert _layer(dq, "score")["parts"]["timeliness"] == 1.0
    dq.poll(tl.at(11))                   # silent for the whole interval
    assert _layer(dq, "score")["parts"]["timeliness"] == 0.0
    assert _layer(dq, "score")["verdict"] == "fault"


def test_a_kalman_gap_is_longer_than_kalman_gap_s_of_event_time(tl):
    dq = DataQuality(QualityCfg(poll_interval_s=0.1, kalman_gap_s=10), [SYM])
    f = Feed(dq, tl)
    for k in range(6):
        f.trade(k)
    f.trade(15)                          # 10 s after the last: not a gap
    dq.poll(tl.clock())
    assert _layer(dq, "kalman")["gaps"] == 0 and _layer(dq, "kalman")["verdict"] == "ok"
    f.trade(25.001)
    dq.poll(tl.clock())
    assert _layer(dq, "kalman")["gaps"] == 1 and _layer(dq, "kalman")["verdict"] == "fault"


def test_a_stale_source_is_a_fault_once_it_held_source_hold_s(tl):
    dq = DataQuality(QualityCfg(poll_interval_s=0.1, source_stale_s=5, source_hold_s=2,
                                changepoint_sample_s=1), [SYM])
    f = Feed(dq, tl)
    f.quote(0)                           # the bookTicker says something once, then nothing
    t = 0.5
    while t <= 7.5:                      # stale from the sample at 6 s (6 - 0 > 5)
        f.trade(t)
        t += 0.5
    dq.poll(tl.clock())
    assert _layer(dq, "sources")["verdict"] == "ok", "stale for 1.5 s of a 2 s hold"
    f.trade(8)
    dq.poll(tl.clock())
    assert _layer(dq, "sources")["verdict"] == "fault"
    assert "stale bookTicker" in _layer(dq, "sources")["reason"]


# -- before the first event: the event clock's wall-time fallback must not stick -------------
def test_a_poll_before_the_first_event_does_not_hold_back_the_next(tl):
    dq = DataQuality(QualityCfg(poll_interval_s=5), [SYM])
    dq.poll(tl.clock())                  # boot: no event yet (nothing to evaluate)
    f = Feed(dq, tl)
    f.trade(0)
    dq.poll(tl.clock())
    f.trade(5)
    dq.poll(tl.clock())
    assert dq.status()["symbols"][SYM]["layers"]["monitoring"]["verdict"] == "ok"
    assert dq.polls >= 2


def test_a_late_trade_is_late_against_its_own_receive_time(tl):
    """Lateness compares a trade's exchange time with its receive time (the engine's time
    when it arrived) against the feed's own latency floor."""
    dq = DataQuality(QualityCfg(poll_interval_s=1, late_ms=1000), [SYM])
    tid = 0

    def trade(s: float, latency_ms: int) -> None:
        nonlocal tid
        tid += 1
        ts = tl.at(s)
        dq.on_trade(Trade(SYM, ts, ts // MS - latency_ms, tid, 100.0, 0.0123, False))

    for k in range(5):
        trade(k * 0.1, 100)              # the floor: 100 ms
    dq.poll(tl.clock())
    trade(1.0, 1100)                     # 1000 ms above the floor: not late
    assert _layer(dq, "monitoring")["late"] == 0
    trade(1.1, 1101)
    assert _layer(dq, "monitoring")["late"] == 1
