"""What the gateway tells the risk engine and the breaker board, pinned where mutation
testing found the calls unobserved: the real engine and board, wrapped to record each call
(then doing their real work), on a real journal and paper venue."""
from __future__ import annotations

import sqlite3
from decimal import Decimal as D

import pytest

from daemon.config import BreakersCfg, RiskCfg
from daemon.execution.gateway import Rejected
from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Side,
                                     TimeInForce)
from daemon.risk.engine import RiskEngine
from daemon.safety.breakers import BreakerBoard
from daemon.store.journal import JournalError
from tests.test_sabotage import MARK, SYM, Rig


class SpyBoard(BreakerBoard):
    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.calls: list[tuple] = []

    def allow(self, *a, **k):
        self.calls.append(("allow", a, k))
        return super().allow(*a, **k)

    def on_reject(self, *a, **k):
        self.calls.append(("on_reject", a, k))
        return super().on_reject(*a, **k)

    def on_error(self, *a, **k):
        self.calls.append(("on_error", a, k))
        return super().on_error(*a, **k)

    def on_ack(self, *a, **k):
        self.calls.append(("on_ack", a, k))
        return super().on_ack(*a, **k)

    def on_fill(self, *a, **k):
        self.calls.append(("on_fill", a, k))
        return super().on_fill(*a, **k)

    def of(self, name: str) -> list[tuple]:
        return [(a, k) for n, a, k in self.calls if n == name]


class SpyRisk(RiskEngine):
    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.calls: list[tuple] = []

    def note_sent(self, *a, **k):
        self.calls.append(("note_sent", a, k))
        return super().note_sent(*a, **k)

    def check_cancel(self, *a, **k):
        self.calls.append(("check_cancel", a, k))
        return super().check_cancel(*a, **k)

    def note_cancel(self, *a, **k):
        self.calls.append(("note_cancel", a, k))
        return super().note_cancel(*a, **k)

    def on_fill(self, *a, **k):
        self.calls.append(("on_fill", a, k))
        return super().on_fill(*a, **k)

    def of(self, name: str) -> list[tuple]:
        return [(a, k) for n, a, k in self.calls if n == name]


def rig(tmp_path, risk: dict | None = None, breakers: dict | None = None) -> Rig:
    r = Rig(tmp_path)
    r.gw.breakers = r.breakers = SpyBoard(BreakersCfg(**(breakers or {})), ["paper"])
    r.gw.risk = r.risk = SpyRisk(RiskCfg(**(risk or {})), {})
    return r


def test_the_breaker_is_asked_last_with_the_orders_notional_flags_time_and_id(tmp_path):
    r = rig(tmp_path)
    r.now = 5_000
    o = r.buy(qty="0.002", price="59000")
    ((a, k),) = r.breakers.of("allow")
    assert a == ("paper", D("118.00000"), False, 5_000, o.client_id) and k == {}
    r.gw.position(SYM).qty = D("0.01")
    r.gw.mark = lambda s: MARK if s == SYM else None   # the order's own symbol is priced
    m = r.gw.submit(SYM, Side.SELL, D("0.001"), None, type=OrderType.MARKET,
                    tif=TimeInForce.IOC, reduce_only=True)
    a, _ = r.breakers.of("allow")[-1]
    assert a == ("paper", D("0.001") * MARK, True, 5_000, m.client_id)   # the mark prices it


def test_an_open_breaker_refuses_at_the_breaker_stage_and_counts(tmp_path):
    r = rig(tmp_path)
    r.breakers.trip("paper", "manual: test", r.now)
    with pytest.raises(Rejected) as e:
        r.buy()
    assert (e.value.stage, e.value.reason) == ("breaker", "breaker paper open: manual: test")
    assert r.gw.stats["rejected"] == 1 and r.gw.rejects_by_stage == {"breaker": 1}


def test_pre_trade_rejects_are_counted_by_stage_and_reported_as_pre_trade(tmp_path):
    r = rig(tmp_path)
    r.now = 7_000
    with pytest.raises(Rejected):
        r.buy(qty="0.000001")                               # instrument
    with pytest.raises(Rejected):
        r.buy(price="70000")                                # risk: price band
    with pytest.raises(Rejected):
        r.buy(qty="0.000001")
    assert r.gw.rejects_by_stage == {"instrument": 2, "risk": 1}
    (a, k), *_ = r.breakers.of("on_reject")
    assert a[:2] == ("paper", "(pre-trade)") and a[2].startswith("instrument: ")
    assert a[3] == 7_000 and k == {"pre_trade": True}


def test_a_venue_that_raises_on_submit_is_a_breaker_error_and_the_error_goes_on(tmp_path):
    r = rig(tmp_path)
    r.now = 9_000

    def broken(order: Order) -> None:
        raise RuntimeError("connection reset")
    r.venue.submit = broken
    with pytest.raises(RuntimeError, match="connection reset"):
        o = r.buy()
    (o,) = r.gw.open.values()
    assert o.client_id not in r.gw._sent_ns, "no ack will come: nothing to wait for"  # noqa: SLF001
    ((a, k),) = r.breakers.of("on_error")
    assert a == ("paper", f"submit {o.client_id}: RuntimeError('connection reset')", 9_000)


def test_risk_hears_of_each_order_sent_and_each_fill_with_their_times(tmp_path):
    r = rig(tmp_path)
    r.now = 11_000
    o = r.buy()
    ((a, _),) = r.risk.of("note_sent")
    assert a == (o, o.created_ns) and o.created_ns == 11_000
    f = Fill("fx", o.client_id, SYM, Side.BUY, D("59000"), D("0.001"), D("0"),
             Liquidity.MAKER, 12_345)
    r.gw.on_fill(f)
    ((a, _),) = r.risk.of("on_fill")
    assert a == (f, r.gw.position(SYM), 12_345)
    ((a, _),) = r.breakers.of("on_fill")
    assert a == ("paper", o.client_id, 12_345)


def test_strategy_cancels_are_rate_limited_safety_cancels_never(tmp_path):
    r = rig(tmp_path, risk={"max_cancels_per_min": 1, "max_open_orders": 100})
    a, b, c = r.buy(price="59000"), r.buy(price="58900"), r.buy(price="58800")
    r.now = 20_000
    assert r.gw.cancel(a.client_id, "requote", strategy=True)
    assert r.risk.of("check_cancel")[0][0] == (20_000,)
    assert r.risk.of("note_cancel")[0][0] == (20_000,)
    with pytest.raises(Rejected) as e:
        r.gw.cancel(b.client_id, "requote", strategy=True)
    assert e.value.stage == "risk" and "max_cancels_per_min" in e.value.reason
    assert r.gw.rejects_by_stage == {"risk": 1} and b.status is OrderStatus.PENDING_NEW
    n_checks = len(r.risk.of("check_cancel"))
    assert r.gw.cancel(b.client_id, "halt")              # the safety chain: never refused
    assert r.gw.cancel(c.client_id)                      # (default: not a strategy's)
    assert len(r.risk.of("check_cancel")) == n_checks
    assert b.status is OrderStatus.PENDING_CANCEL and c.status is OrderStatus.PENDING_CANCEL


def test_acks_report_their_latency_once_rejects_their_reason(tmp_path):
    r = rig(tmp_path)
    r.now = 1_000
    a, b, c = r.buy(price="59000"), r.buy(price="58900"), r.buy(price="58800")
    r.gw.on_order_status(a.client_id, OrderStatus.NEW, None, 1_750)
    ((args, _),) = r.breakers.of("on_ack")
    assert args == ("paper", a.client_id, 750, 1_750)
    r.gw.on_order_status(a.client_id, OrderStatus.NEW, None, 1_900)   # repeated: no second
    assert len(r.breakers.of("on_ack")) == 1
    r.gw.on_order_status(b.client_id, OrderStatus.REJECTED, None, 2_000)
    r.gw.on_order_status(c.client_id, OrderStatus.REJECTED, "post-only", 2_100)
    rej = [a_ for a_, _ in r.breakers.of("on_reject")]
    assert rej == [("paper", b.client_id, "rejected", 2_000),
                   ("paper", c.client_id, "post-only", 2_100)]


def test_a_fill_before_the_ack_leaves_no_latency_to_report(tmp_path):
    r = rig(tmp_path)
    r.now = 1_000
    o = r.buy(price="59000", qty="0.002")
    r.gw.on_fill(Fill("f1", o.client_id, SYM, Side.BUY, D("59000"), D("0.001"), D("0"),
                      Liquidity.MAKER, 1_500))
    assert o.status is OrderStatus.PARTIALLY_FILLED
    assert o.client_id not in r.gw._sent_ns   # noqa: SLF001
    r.gw.on_order_status(o.client_id, OrderStatus.NEW, None, 1_600)
    assert r.breakers.of("on_ack") == []


def test_a_cancel_request_does_not_end_the_ack_clock_a_finish_does(tmp_path):
    r = rig(tmp_path)
    r.now = 1_000
    o, p = r.buy(price="59000"), r.buy(price="58900")
    r.gw.on_order_status(o.client_id, OrderStatus.PENDING_CANCEL, None, 1_100)
    r.gw.on_order_status(o.client_id, OrderStatus.NEW, None, 1_200)   # a late ack
    r.gw.on_order_status(p.client_id, OrderStatus.CANCELLED, None, 1_300)
    r.gw.on_order_status(p.client_id, OrderStatus.NEW, None, 1_400)   # after its end
    assert r.breakers.of("on_ack") == []
    assert p.client_id not in r.gw._sent_ns   # noqa: SLF001


def test_adopt_keeps_working_orders_open_and_remembers_finished_ones(tmp_path):
    r = rig(tmp_path)
    mk = lambda cid, st: Order(client_id=cid, symbol=SYM, side=Side.BUY,   # noqa: E731
                               type=OrderType.LIMIT, qty=D("0.001"), price=D("59000"),
                               tif=TimeInForce.GTC, status=st)
    done1, done2 = mk("d1", OrderStatus.FILLED), mk("d2", OrderStatus.CANCELLED)
    live, cancelling = mk("l1", OrderStatus.NEW), mk("c1", OrderStatus.PENDING_CANCEL)
    r.gw.open["d1"] = done1                      # memory had it open: it leaves
    sent = []
    r.venue.cancel = sent.append
    r.gw.adopt([done1, done2, live, cancelling])
    assert r.gw.open == {"l1": live, "c1": cancelling}
    assert r.gw._recent["d1"] is done1 and r.gw._recent["d2"] is done2   # noqa: SLF001
    assert sent == [], "a venue that forgot everything has nothing to cancel"
    r.venue.survives_restart = True
    r.gw.adopt([mk("c2", OrderStatus.PENDING_CANCEL), mk("l2", OrderStatus.NEW)])
    assert sent == ["c2"]


def test_cancel_all_sends_each_cancel_once_when_its_record_fails(tmp_path):
    r = rig(tmp_path)
    a, b = r.buy(price="59000"), r.buy(price="58900")
    r.gw.cancel(a.client_id, "earlier")
    sent = []
    real = r.venue.cancel
    r.venue.cancel = lambda cid: (sent.append(cid), real(cid))

    def record() -> None:
        raise JournalError("disk full")
    with pytest.raises(JournalError):
        r.gw.cancel_all("e-stop", record_with=record)
    assert sorted(sent) == sorted([a.client_id, b.client_id])   # once each, not twice


def test_cancels_forced_past_a_locked_journal_mark_fresh_orders_at_the_clock(tmp_path):
    r = rig(tmp_path)
    a, b = r.buy(price="59000"), r.buy(price="58900")
    r.gw.cancel(a.client_id, "earlier")
    r.now = 77_000
    other = sqlite3.connect(tmp_path / "j.sqlite3", timeout=0.1, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    r.journal._db.execute("PRAGMA busy_timeout=100")   # noqa: SLF001
    try:
        with pytest.raises(JournalError):
            r.gw.cancel_all("e-stop")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (b.status, b.reason, b.updated_ns) == (OrderStatus.PENDING_CANCEL, "e-stop", 77_000)
    assert a.reason == "earlier", "an order already cancelling keeps its first reason"
