"""The order gateway: order of checks, quantisation, journalling before sending."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from daemon.config import BreakersCfg, RiskCfg
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Instrument, OrderStatus, Side
from daemon.execution.paper import PaperVenue
from daemon.market.book import OrderBook
from daemon.market.events import DepthSnapshot
from daemon.risk.engine import RiskEngine
from daemon.safety.breakers import BreakerBoard
from daemon.safety.latch import KillLatch, LatchKind
from daemon.states import State
from daemon.store.journal import Journal

BTC = Instrument("BTCUSDT", Decimal("0.01"), Decimal("0.00001"), Decimal("5"))


class Env:
    def __init__(self, tmp_path, **risk):
        self.state = State.TRADING
        self.latch = KillLatch()
        self.journal = Journal(tmp_path / "j.sqlite3")
        self.run = self.journal.begin_run()
        self.venue = PaperVenue(entry_latency_ns=0, md_latency_ns=0)
        self.breakers = BreakerBoard(BreakersCfg(), ["paper"])
        self.gw = OrderGateway(latch=self.latch, state=lambda: self.state,
                               breakers=self.breakers, risk=RiskEngine(RiskCfg(**risk), {}),
                               instruments={"BTCUSDT": BTC}, journal=self.journal,
                               venue=self.venue, session=f"r{self.run}", clock=lambda: 1_000,
                               mark=lambda s: Decimal("60000"))
        self.book = OrderBook("BTCUSDT", futures=False)
        self.book.on_snapshot(DepthSnapshot("BTCUSDT", 0, 100, [(59999.99, 1.0), (59990.0, 2.0)],
                                            [(60000.01, 1.0), (60010.0, 2.0)]))
        self.venue.on_depth(self.book, 1)

    def buy(self, qty="0.001", price="59990", **kw):
        return self.gw.submit("BTCUSDT", Side.BUY, Decimal(qty), Decimal(price), **kw)


def test_checks_run_in_order_latch_state_instrument_risk_breaker(tmp_path):
    e = Env(tmp_path)
    e.latch.trip(LatchKind.ESTOP, "pressed")
    e.state = State.READY
    e.breakers.trip("global", "manual: test", 0)
    with pytest.raises(Rejected) as r:
        e.buy(qty="0")
    assert r.value.stage == "latch"
    e.latch.reset()
    with pytest.raises(Rejected) as r:
        e.buy(qty="0")
    assert r.value.stage == "state"
    e.state = State.TRADING
    with pytest.raises(Rejected) as r:
        e.buy(qty="0.00000001")
    assert r.value.stage == "instrument" and "rounds to zero" in r.value.reason
    with pytest.raises(Rejected) as r:
        e.buy(qty="1")
    assert r.value.stage == "risk" and "max_order_notional" in r.value.reason
    # The breaker last: a half-open breaker counts what it allows as a probe, so only an
    # order that passed every other check may be counted.
    with pytest.raises(Rejected) as r:
        e.buy()
    assert r.value.stage == "breaker" and "manual: test" in r.value.reason
    assert e.journal.count("orders") == 0, "a refused order reached the journal"


def test_quantisation_and_min_notional(tmp_path):
    e = Env(tmp_path)
    o = e.buy(qty="0.0012349", price="59990.019")
    assert o.qty == Decimal("0.00123") and o.price == Decimal("59990.01")
    s = e.gw.submit("BTCUSDT", Side.SELL, Decimal("0.001"), Decimal("60010.001"))
    assert s.price == Decimal("60010.01"), "sell must round up (never more aggressive)"
    with pytest.raises(Rejected, match="below minimum 5"):
        e.buy(qty="0.00008", price="59990")   # 4.80 USDT
    with pytest.raises(Rejected, match="must be Decimal"):
        e.gw.submit("BTCUSDT", Side.BUY, 0.001, Decimal("1"))
    with pytest.raises(Rejected, match="band"):
        e.buy(price="70000")


def test_order_is_journalled_before_the_venue_sees_it(tmp_path, mocker):
    e = Env(tmp_path)
    seen = []
    real = e.venue.submit
    mocker.patch.object(e.venue, "submit",
                        side_effect=lambda o: (seen.append(e.journal.order_status(o.client_id)),
                                               real(o)))
    e.buy()
    assert seen == [OrderStatus.PENDING_NEW]


def test_latch_tripped_during_journal_commit_stops_the_order(tmp_path, mocker):
    e = Env(tmp_path)
    real = e.journal.record_order

    def commit_then_trip(order, ts=None):
        real(order, ts)
        if order.status is OrderStatus.PENDING_NEW:   # the e-stop fires mid-commit
            t = threading.Thread(target=e.latch.trip, args=(LatchKind.ESTOP, "pressed"))
            t.start(); t.join()
    mocker.patch.object(e.journal, "record_order", side_effect=commit_then_trip)
    sent = mocker.spy(e.venue, "submit")
    with pytest.raises(Rejected) as r:
        e.buy()
    assert r.value.stage == "latch"
    assert sent.call_count == 0
    (cid,) = [row[0] for row in e.journal._db.execute("SELECT client_id FROM orders")]
    assert e.journal.order_history(cid) == ["pending_new", "rejected"]


def test_cancel_all_is_one_commit_and_works_while_latched(tmp_path):
    e = Env(tmp_path)
    for px in ("59990", "59980", "59970"):
        e.buy(price=px)
    e.venue.advance(2_000)
    e.latch.trip(LatchKind.ESTOP, "pressed")
    before = e.journal.commits
    ids = e.gw.cancel_all("e-stop")
    assert len(ids) == 3 and e.journal.commits == before + 1
    e.venue.advance(3_000)
    assert not e.gw.open
    for cid in ids:
        assert e.journal.order_history(cid)[-2:] == ["pending_cancel", "cancelled"]


def test_reducing_state_allows_only_reducing_orders(tmp_path):
    e = Env(tmp_path)
    e.gw.position("BTCUSDT").qty = Decimal("0.002")
    e.state = State.REDUCING
    with pytest.raises(Rejected, match="would not reduce"):
        e.buy()
    o = e.gw.submit("BTCUSDT", Side.SELL, Decimal("0.002"), Decimal("60010"))
    assert o.status is OrderStatus.PENDING_NEW
    with pytest.raises(Rejected, match="exceed position"):
        e.gw.submit("BTCUSDT", Side.SELL, Decimal("0.001"), Decimal("60010"))


def test_position_limit_counts_open_orders(tmp_path):
    e = Env(tmp_path, max_position=Decimal("0.002"))
    e.buy(qty="0.001")
    e.buy(qty="0.001")
    with pytest.raises(Rejected, match="max_position"):
        e.buy(qty="0.001")


def test_batch_is_one_commit_and_nothing_leaves_before_it(tmp_path, mocker):
    e = Env(tmp_path)
    old = e.buy(price="59980")
    sent = mocker.spy(e.venue, "submit")
    cancelled = mocker.spy(e.venue, "cancel")
    before = e.journal.commits
    with e.gw.batch():
        e.gw.cancel(old.client_id, "requote")
        a = e.buy(price="59990")
        b = e.gw.submit("BTCUSDT", Side.SELL, Decimal("0.001"), Decimal("60010"))
        assert sent.call_count == 0 and cancelled.call_count == 0, "sent before the commit"
    assert e.journal.commits == before + 1
    assert [c.args[0].client_id for c in sent.call_args_list] == [a.client_id, b.client_id]
    assert cancelled.call_args_list[0].args == (old.client_id,)
    for o in (a, b):
        assert e.journal.order_status(o.client_id) is OrderStatus.PENDING_NEW


def test_latch_tripped_inside_a_batch_stops_its_orders(tmp_path, mocker):
    e = Env(tmp_path)
    sent = mocker.spy(e.venue, "submit")
    with e.gw.batch():
        o = e.buy()
        e.latch.trip(LatchKind.ESTOP, "pressed")   # as the GPIO thread would, mid-batch
    assert sent.call_count == 0
    assert o.status is OrderStatus.REJECTED and o.client_id not in e.gw.open
    assert e.journal.order_history(o.client_id) == ["pending_new", "rejected"]


def test_failed_batch_sends_nothing_new_and_memory_equals_journal(tmp_path, mocker):
    e = Env(tmp_path)
    sent = mocker.spy(e.venue, "submit")
    with pytest.raises(RuntimeError):
        with e.gw.batch():
            o = e.buy()
            raise RuntimeError("strategy bug mid-batch")
    assert sent.call_count == 0 and not e.gw.open, "an order of a failed batch left or stayed"
    assert o.status is OrderStatus.REJECTED and "batch failed" in o.reason
    assert e.journal.open_orders() == []
    assert e.journal.order_history(o.client_id) == ["pending_new", "rejected"]


def test_closed_gateway_refuses_orders_but_still_cancels(tmp_path):
    e = Env(tmp_path)
    o = e.buy()
    e.gw.close("daemon stopping")
    with pytest.raises(Rejected, match="daemon stopping") as r:
        e.buy(price="59980")
    assert r.value.stage == "state"
    assert e.gw.cancel_all("stop") == [o.client_id]


def test_limit_order_without_a_trusted_mark_is_refused(tmp_path):
    """Issue 7: the price band was skipped when the mark was None, so an order priced off a
    book that had just been wiped passed. No trusted reference, no order."""
    e = Env(tmp_path)
    e.gw.mark = lambda s: None
    with pytest.raises(Rejected, match="no trusted reference price") as r:
        e.buy()
    assert r.value.stage == "risk" and not e.gw.open
