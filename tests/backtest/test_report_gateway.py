"""The report on a journal written by the real gateway and paper venue (not by hand): it
reads what the gateway journals the way the hand-made scenarios assume, and agrees with
the gateway's own counters and positions."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.backtest.report import EquitySample, build_report
from daemon.config import BreakersCfg, RiskCfg
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Instrument, OrderStatus, OrderType, Side, TimeInForce
from daemon.execution.paper import PaperVenue
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Trade
from daemon.risk.engine import RiskEngine
from daemon.safety.breakers import BreakerBoard
from daemon.safety.latch import KillLatch
from daemon.states import State
from daemon.store.journal import Journal

D = Decimal
SYM = "BTCUSDT"
INST = Instrument(SYM, D("0.1"), D("0.001"), D("5"))
LATENCY = 1_000   # ns from submit to the venue acting on it


class Engine:
    """The pieces the backtest engine wires, driven by hand on an event clock."""

    def __init__(self, tmp_path) -> None:
        self.t = 1_000
        self.journal = Journal(tmp_path / "journal.sqlite3")
        run = self.journal.begin_run()
        self.venue = PaperVenue(entry_latency_ns=LATENCY, md_latency_ns=0,
                                maker_fee_bps=1, taker_fee_bps=1)
        self.gw = OrderGateway(latch=KillLatch(), state=lambda: State.TRADING,
                               breakers=BreakerBoard(BreakersCfg(), ["paper"]),
                               risk=RiskEngine(RiskCfg(), {}), instruments={SYM: INST},
                               journal=self.journal, venue=self.venue, session=f"r{run}",
                               clock=lambda: self.t, mark=lambda s: D("1000"))
        self.book = OrderBook(SYM, futures=False)
        self.book.on_snapshot(DepthSnapshot(SYM, 0, 100, [(1000.0, 5.0), (999.0, 2.0)],
                                            [(1002.0, 1.0), (1003.0, 2.0)]))
        self.venue.on_depth(self.book, 0)
        self.uid = 100
        self.tid = 0

    def at(self, t: int) -> None:
        self.t = t
        self.venue.advance(t)

    def depth(self, t: int, bids) -> None:
        self.at(t)
        self.uid += 1
        self.book.on_diff(DepthDiff(SYM, t, self.uid, self.uid, None, bids, []))
        self.venue.on_depth(self.book, t)

    def trade(self, t: int, price: float, qty: float) -> None:
        self.at(t)
        self.tid += 1
        self.venue.on_trade(Trade(SYM, t, t // 1_000_000, self.tid, price, qty, True))


def test_report_on_a_journal_written_by_the_gateway(tmp_path):
    e = Engine(tmp_path)
    # Maker buy behind 5.0 displayed at 1000; accepted LATENCY later.
    e.at(1_000)
    buy = e.gw.submit(SYM, Side.BUY, D("0.01"), D("1000"))
    e.at(1_000 + LATENCY)
    e.trade(3_000, 1000.0, 5.0)          # the queue ahead trades away
    e.trade(4_000, 1000.0, 0.01)         # then us: maker fill at 4000
    assert e.gw.position(SYM).qty == D("0.01")
    # A better bid appears; a market sell takes it (taker, realised +0.01).
    e.depth(4_500, [(1001.0, 3.0)])
    e.at(5_000)
    e.gw.submit(SYM, Side.SELL, D("0.01"), type=OrderType.MARKET, tif=TimeInForce.IOC)
    e.at(5_000 + LATENCY)
    # A post-only buy at the ask: the venue rejects it.
    e.at(7_000)
    e.gw.submit(SYM, Side.BUY, D("0.01"), D("1002"), tif=TimeInForce.POST_ONLY)
    e.at(7_000 + LATENCY)
    # A resting buy, then cancelled.
    e.at(9_000)
    rest = e.gw.submit(SYM, Side.BUY, D("0.01"), D("990"))
    e.at(9_000 + LATENCY)
    e.at(11_000)
    assert e.gw.cancel(rest.client_id, "test")
    e.at(11_000 + LATENCY)
    # A refusal before the venue (instrument filter): never journalled.
    with pytest.raises(Rejected):
        e.gw.submit(SYM, Side.BUY, D("0.001"), D("1000"))   # 1 USDT < 5 min notional
    assert rest.status is OrderStatus.CANCELLED and buy.status is OrderStatus.FILLED

    samples = [EquitySample(k * 2_000, D(0), {SYM: D(0)}, {SYM: D("1000")})
               for k in range(7)]
    rep = build_report(journal_path=tmp_path / "journal.sqlite3", samples=samples,
                       sample_interval_s=2e-6, meta={}, instruments={SYM: INST},
                       pre_trade_rejects=e.gw.rejects_by_stage)
    pos = e.gw.position(SYM)
    c = rep["counts"]
    assert (c["orders"], c["fills"]) == (e.gw.stats["submitted"], e.gw.stats["fills"]) == (4, 2)
    assert (c["maker_fills"], c["taker_fills"]) == (1, 1)
    assert c["rejects_by_reason"] == {"post-only order would take liquidity": 1}
    assert c["cancels"] == 1 and c["cancel_requests"] == 1
    assert c["pre_trade_rejects_by_stage"] == {"instrument": 1}
    p = rep["pnl"]
    assert D(p["realised"]) == pos.realized_pnl == D("0.01")      # (1001 - 1000) x 0.01
    assert D(p["fees"]) == pos.fees == D("0.001") + D("0.001001")
    assert D(p["turnover"]) == D("10") + D("10.01")
    assert rep["queue_wait"]["basis_counts"] == {"venue_ack": 1, "submit": 0}
    assert rep["queue_wait"]["mean_s"] == pytest.approx((4_000 - 2_000) / 1e9, rel=1e-6)
    assert rep["hit_rate"]["value"] == 1.0
    assert rep["hit_rate"]["round_trips"]["wins"] == 1          # 0.01 - 0.002001 > 0
    assert rep["fill_ratio"]["orders"] == 0.5
    recs = {o["client_id"]: o for o in rep["orders"]}
    assert recs[buy.client_id]["accepted_ns"] == 1_000 + LATENCY
    assert recs[buy.client_id]["created_ns"] == 1_000
    assert [f["fill_id"] for f in recs[buy.client_id]["fills"]] == \
        [f.fill_id for f in e.journal.fills_of(buy.client_id)]
    assert recs[rest.client_id]["status"] == "cancelled"
    e.journal.close()
