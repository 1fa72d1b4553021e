"""The streaming features' time rules run on the event time the engine hands them (the
receive time of each event: event time in a replay, wall time live): the OFI window, the
microburst feed-gap reset, the adverse-selection horizons and the engine's own time bars.
One test per rule, run in both modes."""
from __future__ import annotations

from decimal import Decimal

from daemon.config import FeaturesCfg
from daemon.execution.orders import Fill, Liquidity, Side
from daemon.features.engine import FeatureEngine
from daemon.market.book import OrderBook
from daemon.market.events import DepthSnapshot, Trade
from tests.clock.conftest import Timeline

SYM = "BTCUSDT"
MS = 1_000_000


def _book() -> OrderBook:
    b = OrderBook(SYM, futures=False)
    b.on_snapshot(DepthSnapshot(SYM, 0, 100, [(100.0, 1.0)], [(100.02, 1.0)]))
    assert b.valid
    return b


def _trade(tl: Timeline, s: float, n: int, price: float = 100.01) -> Trade:
    ts = tl.at(s)
    return Trade(SYM, ts, ts // MS, n, price, 0.5, n % 2 == 0)


def test_ofi_is_ready_after_its_window_of_event_time(tl):
    eng = FeatureEngine(FeaturesCfg(ofi_window_s=2), [SYM])
    book = _book()
    for k in range(20):
        eng.on_book(SYM, book, tl.at(k * 0.1))
    assert not eng.get(SYM, "ofi").ready, "ready within its first 2 s"
    eng.on_book(SYM, book, tl.at(2.0))
    assert eng.get(SYM, "ofi").ready


def test_a_feed_gap_restarts_the_burst_baseline_after_max_gap_of_event_time(tl):
    eng = FeatureEngine(FeaturesCfg(burst_bucket_s=1, burst_warmup_buckets=2,
                                    burst_max_gap_s=5), [SYM])
    n = 0
    for k in range(7):                   # trades every 0.5 s over 3 s: two buckets closed
        n += 1
        eng.on_trade(_trade(tl, k * 0.5, n))
    assert eng.get(SYM, "trade_rate_z").ready
    eng.on_trade(_trade(tl, 8.0, n + 1))       # 5 s after the last: a quiet market
    assert eng.get(SYM, "trade_rate_z").ready
    eng.on_trade(_trade(tl, 13.001, n + 2))    # more than 5 s: a feed gap
    assert not eng.get(SYM, "trade_rate_z").ready


def test_adverse_selection_measures_a_fill_at_its_horizon_of_event_time(tl):
    eng = FeatureEngine(FeaturesCfg(adverse_horizons_s=[1.0]), [SYM])
    book = _book()
    eng.on_book(SYM, book, tl.at(0))
    eng.on_own_fill(Fill("f1", "c1", SYM, Side.BUY, Decimal("100.01"), Decimal("1"),
                         Decimal("0"), Liquidity.MAKER, tl.at(1)))
    eng.on_book(SYM, book, tl.at(1.999))
    assert not eng.get(SYM, "adverse_1s").ready, "measured before its horizon"
    eng.on_book(SYM, book, tl.at(2.0))
    assert eng.get(SYM, "adverse_1s").ready


def test_the_engines_time_bars_close_on_the_receive_clock(tl):
    eng = FeatureEngine(FeaturesCfg(bar_interval_s=1.0), [SYM])
    book = _book()
    eng.on_trade(_trade(tl, 0.2, 1))
    eng.on_trade(_trade(tl, 0.5, 2))
    eng.on_book(SYM, book, tl.at(0.999))
    assert eng.stats["bars"] == 0
    eng.on_book(SYM, book, tl.at(1.0))   # a quiet market: the clock closes the bar
    assert eng.stats["bars"] == 1
