"""`DataQuality` on hand-made event streams (real OrderBook, real events): alert
semantics (new alerts only, escalation, re-arm, actions from config), the backfill windows,
venues, and degenerate input (no exception, no NaN/inf anywhere in status)."""
from __future__ import annotations

import json
import math

import pytest

from daemon.config import QualityCfg
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.quality.monitor import LAYERS, DataQuality, MissingTrades

S = 1_000_000_000
T0 = 1_723_161_300 * S
SYM = "BTCUSDT"


class Market:
    """A steady little market: a book, bookTickers and trades every 100 ms."""

    def __init__(self, dq: DataQuality, venue: str | None = None, price: float = 60_000.0):
        self.dq, self.venue, self.price = dq, venue, price
        self.book = OrderBook(SYM, futures=False)
        self.uid = 100
        self.tid = 1
        self.t = T0
        self.book.on_snapshot(DepthSnapshot(SYM, T0, self.uid, [(price - 0.01, 1.0)],
                                            [(price + 0.01, 1.0)]))
        self.levels = (price - 0.01, price + 0.01)

    def step(self, n: int = 1, *, price: float | None = None, qty: float = 0.0123,
             book: bool = True, quote: bool = True, trade: bool = True, poll: bool = True,
             dt: int = S // 10) -> list:
        alerts = []
        for _ in range(n):
            self.t += dt
            p = self.price if price is None else price
            if book:
                self.uid += 1
                bid, ask = self.price - 0.01, self.price + 0.01
                bids, asks = [(bid, 1.0 + self.uid % 3)], [(ask, 1.0)]
                if self.levels != (bid, ask):        # the price moved: old levels go
                    bids.append((self.levels[0], 0.0))
                    asks.append((self.levels[1], 0.0))
                    self.levels = (bid, ask)
                self.book.on_diff(DepthDiff(SYM, self.t, self.uid, self.uid, None, bids,
                                            asks))
                self.dq.on_book(SYM, self.book, self.t, self.venue)
            if quote:
                self.dq.on_quote(Quote(SYM, self.t, self.uid, self.price - 0.01, 1.0,
                                       self.price + 0.01, 1.0), self.venue)
            if trade:
                self.dq.on_trade(Trade(SYM, self.t, self.t // 10**6 - 5, self.tid, p,
                                       qty * (1 + (self.tid % 7) / 3), self.tid % 2 == 0),
                                 self.venue)
                self.tid += 1
            if poll:
                alerts += self.dq.poll(self.t)
        return alerts


def _json(st: dict) -> str:
    return json.dumps(st, allow_nan=False)       # raises on NaN/inf


def test_clean_stream_is_quiet_and_status_names_every_layer():
    dq = DataQuality(QualityCfg(), [SYM])
    m = Market(dq)
    assert m.step(600) == []
    st = dq.status()
    _json(st)
    s = st["symbols"][SYM]
    assert set(s["layers"]) == set(LAYERS)
    assert s["score"] == 1.0 and st["outcome"] == "none"
    lay = s["layers"]
    assert lay["kalman"]["verdict"] == "ok" and lay["sources"]["verdict"] == "ok"
    assert lay["monitoring"]["events"] == 1800 and lay["monitoring"]["trades"] == 600
    assert lay["score"]["verdict"] == "ok" and lay["alerting"]["verdict"] == "ok"


def test_spike_alerts_once_then_rearms():
    dq = DataQuality(QualityCfg(), [SYM])
    m = Market(dq)
    m.step(300)
    a = m.step(1, price=m.price * 1.02) + m.step(60)
    assert [(x.layer, x.action) for x in a] == [("kalman", "reducing")]
    assert "1 price outlier" in a[0].reason and a[0].symbol == SYM
    assert dq.status()["symbols"][SYM]["layers"]["kalman"]["verdict"] == "ok"   # re-armed
    a = m.step(1, price=m.price * 0.98) + m.step(60)
    assert [x.layer for x in a] == ["kalman"]


def test_action_off_counts_but_does_not_alert():
    dq = DataQuality(QualityCfg(kalman_action="off"), [SYM])
    m = Market(dq)
    m.step(300)
    assert m.step(1, price=m.price * 1.02) + m.step(60) == []
    assert dq.status()["symbols"][SYM]["layers"]["kalman"]["outliers"] == 1


def test_missing_trades_lower_the_score_and_leave_a_backfill_window():
    dq = DataQuality(QualityCfg(), [SYM])
    m = Market(dq)
    m.step(100)
    before = m.tid
    m.tid += 500                                      # 500 trades never arrived
    a = m.step(60)
    assert ("score", "reducing") in [(x.layer, x.action) for x in a]
    assert dq.missing_trades() == [MissingTrades(SYM, "spot", before, before + 499,
                                                 (T0 + 100 * S // 10) // 10**6 - 5,
                                                 (T0 + 101 * S // 10) // 10**6 - 5)]
    assert dq.missing_trades() == []
    st = dq.status()["symbols"][SYM]
    assert st["layers"]["monitoring"]["missing_trades"] == 500


def test_silence_then_breaker_escalation():
    cfg = QualityCfg(score_min=0.9, score_breaker_below=0.5)
    dq = DataQuality(cfg, [SYM, "ETHUSDT"])
    m = Market(dq)
    m.step(100)
    # BTCUSDT goes silent; polls driven by another symbol's event times.
    alerts = []
    for i in range(1, 40):
        dq.on_trade(Trade("ETHUSDT", m.t + i * S, (m.t + i * S) // 10**6, i, 3000.0, 1.0,
                          False))
        alerts += dq.poll(m.t + i * S)
    got = [(x.symbol, x.layer, x.action) for x in alerts if x.symbol == SYM]
    assert got[0] == (SYM, "score", "reducing") or got[0] == (SYM, "score", "breaker")
    assert (SYM, "score", "breaker") in got
    assert got.count((SYM, "score", "breaker")) == 1        # new alerts only
    assert dq.outcome() == "breaker"
    assert dq.status()["symbols"][SYM]["parts"]["timeliness"] == 0.0


def test_a_frozen_bookticker_and_book_is_a_sources_fault():
    dq = DataQuality(QualityCfg(), [SYM])
    m = Market(dq)
    m.step(100)
    a = m.step(150, book=False, quote=False)
    assert [(x.layer, x.action) for x in a][:1] == [("sources", "reducing")]
    assert "stale" in a[0].reason


def test_spot_futures_divergence_on_the_spot_feed():
    dq = DataQuality(QualityCfg(), [SYM], venue="spot")
    spot = Market(dq, "spot")
    fut = Market(dq, "usdm", price=60_030.0)
    out = []
    for _ in range(120):
        out += spot.step() + fut.step()
    assert out == []
    fut.price = 60_030.0 * 1.01                              # +100 bps on futures
    for _ in range(100):
        out += spot.step() + fut.step()
    hits = [(x.symbol, x.layer) for x in out]
    assert (SYM, "sources") in hits
    reason = next(x.reason for x in out if x.layer == "sources")
    assert reason.startswith("cross_venue usdm:BTCUSDT")
    st = dq.status()["symbols"]
    assert set(st) == {SYM, "usdm:BTCUSDT"} and st[SYM]["layers"]["sources"]["cross_venue"]
    _json(dq.status())


def test_manipulated_sizes_fire_benford():
    cfg = QualityCfg(benford_window=500)
    dq = DataQuality(cfg, [SYM])
    m = Market(dq)
    # Benford-like sizes for the reference window: 10 ** uniform
    import random
    rng = random.Random(3)
    out = []
    for _ in range(1200):
        out += m.step(qty=10 ** rng.uniform(-4, 0))
    assert out == []
    for _ in range(600):
        out += m.step(qty=0.5)
    assert [x.layer for x in out] == ["benford"]
    assert dq.status()["symbols"][SYM]["layers"]["benford"]["conformity"] == "nonconformity"


@pytest.mark.parametrize("price, qty", [(math.nan, 1.0), (math.inf, 1.0), (-5.0, 1.0),
                                        (0.0, 1.0), (60_000.0, 0.0), (60_000.0, math.nan),
                                        (1e300, 1e300), (5e-324, 5e-324)])
def test_degenerate_trades(price, qty):
    dq = DataQuality(QualityCfg(), [SYM])
    m = Market(dq)
    m.step(50)
    dq.on_trade(Trade(SYM, m.t, m.t // 10**6, m.tid, price, qty, False))
    m.tid += 1
    m.step(100)
    _json(dq.status())


def test_degenerate_streams():
    cfg = QualityCfg()
    # Nothing fed at all.
    dq = DataQuality(cfg, [SYM])
    assert dq.poll(T0) == [] and dq.poll(T0 + 100 * S) == []
    _json(dq.status())
    assert dq.status()["symbols"][SYM]["layers"]["kalman"]["verdict"] == "warming"
    # A single trade.
    dq.on_trade(Trade(SYM, T0, T0 // 10**6, 1, 100.0, 1.0, False))
    dq.poll(T0 + 200 * S)
    _json(dq.status())
    # Constant prices and zero-spread quotes, a crossed quote, unknown symbols.
    dq = DataQuality(cfg, [SYM])
    for i in range(2000):
        t = T0 + i * S // 10
        dq.on_quote(Quote(SYM, t, i, 100.0, 1.0, 100.0, 1.0))
        dq.on_trade(Trade(SYM, t, t // 10**6, i, 100.0, 1.0, False))
        dq.on_quote(Quote("DOGEUSDT", t, i, 1.0, 1.0, 1.0, 1.0))
        dq.poll(t)
    dq.on_quote(Quote(SYM, t, i, 101.0, 1.0, 100.0, 1.0))
    dq.on_quote(Quote(SYM, t, i, math.nan, 1.0, math.inf, 1.0))
    dq.poll(t + 10 * S)
    st = dq.status()
    _json(st)
    assert st["unknown_events"] == 2000
    assert st["symbols"][SYM]["layers"]["monitoring"]["invalid"] == 2
    # Time going backwards, duplicates.
    dq.on_trade(Trade(SYM, T0, T0 // 10**6, 5, 100.0, 1.0, False))
    dq.poll(t + 20 * S)
    _json(dq.status())
    assert dq.status()["symbols"][SYM]["layers"]["monitoring"]["duplicates"] == 1


def test_an_invalid_book_after_sync_counts_as_invalid():
    dq = DataQuality(QualityCfg(), [SYM])
    m = Market(dq)
    m.step(10)
    m.uid += 5                                       # a depth gap: the book invalidates
    m.step(50)
    st = dq.status()["symbols"][SYM]["layers"]["monitoring"]
    assert st["depth_gaps"] == 1 and st["invalid"] == 50


def test_benford_reference_follows_fault_free_windows():
    import random
    rng = random.Random(5)
    dq = DataQuality(QualityCfg(benford_window=500), [SYM])
    m = Market(dq)
    for _ in range(600):
        m.step(qty=10 ** rng.uniform(-4, 0))
    d = dq._primary[SYM].digits
    first = list(d.reference)
    for _ in range(1500):
        m.step(qty=10 ** rng.uniform(-4, 0))
    assert d.reference != first and d.since_reference < 2 * d.window
    # In a fault the reference is kept: the manipulated window never becomes normal.
    out = []
    for _ in range(1500):
        out += m.step(qty=0.5)
    held = list(d.reference)
    assert [a.layer for a in out] == ["benford"] and bf_mad(held) < 0.05
    for _ in range(500):
        m.step(qty=0.5)
    assert d.reference == held


def bf_mad(counts):
    from daemon.quality.benford import mad
    return mad(counts)


def test_reported_feed_gaps_count_against_completeness():
    dq = DataQuality(QualityCfg(score_min=0.95), [SYM])
    m = Market(dq)
    m.step(100)
    for _ in range(40):                  # a reconnect storm the feed reports itself
        dq.on_gap(SYM, m.t, "reconnect")
    dq.on_gap("DOGEUSDT", m.t, "not ours")          # ignored
    a = m.step(60)
    assert [(x.layer, x.action) for x in a] == [("score", "reducing")]
    assert "completeness" in a[0].reason
    assert dq.status()["symbols"][SYM]["layers"]["monitoring"]["feed_gaps"] == 40
