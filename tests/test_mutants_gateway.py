"""The order gateway's bookkeeping, pinned where scripts/mutation-check found mutants no test
noticed: the stage and words of each refusal (operators read them), the times journalled
with each change (the clock's, not the wall's), counters, the order cancelled inside its own
batch, actions that keep running after one fails, the bound on remembered orders, and the
run's session in every id. Real journal, paper venue and book (tests/test_sabotage.Rig).
"""
from __future__ import annotations

import logging
import sqlite3
from decimal import Decimal

import pytest

from daemon.execution import gateway as gwmod
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Fill, Liquidity, OrderStatus, OrderType, Side, TimeInForce
from daemon.config import BreakersCfg
from daemon.safety.breakers import BreakerBoard
from daemon.safety.latch import LatchKind
from daemon.states import State
from daemon.store.journal import JournalError
from tests.test_sabotage import SYM, Rig

D = Decimal


def _events(r: Rig, cid: str) -> list[tuple[int, str, str | None]]:
    return [tuple(row) for row in r.journal._db.execute(
        "SELECT ts_ns, status, reason FROM order_events WHERE client_id = ? ORDER BY id",
        (cid,))]


def test_fresh_gateway(tmp_path):
    r = Rig(tmp_path)
    assert r.gw.stats == {"submitted": 0, "rejected": 0, "fills": 0, "cancels": 0}
    assert r.gw.closed is None and r.gw.open == {}
    with pytest.raises(ValueError, match="^the gateway needs a session token unique to this "
                                         "run$"):
        OrderGateway(latch=r.latch, state=lambda: r.state, breakers=r.breakers, risk=r.risk,
                     instruments={}, journal=r.journal, venue=r.venue, session="",
                     clock=lambda: 0)


@pytest.mark.parametrize("call, stage, reason", [
    (lambda g: g.submit("DOGEUSDT", Side.BUY, D("1"), D("1")), "instrument",
     "unknown symbol DOGEUSDT"),
    (lambda g: g.submit(SYM, Side.BUY, D("0.001"), 59000.0), "instrument",
     "price and quantity must be Decimal"),
    (lambda g: g.submit(SYM, Side.BUY, 0.001, D("59000")), "instrument",
     "price and quantity must be Decimal"),
    (lambda g: g.submit(SYM, Side.BUY, D("0.001")), "instrument",
     "limit order without a price"),
    (lambda g: g.submit(SYM, Side.BUY, D("0.0001"), D("40000")), "instrument",
     "BTCUSDT: notional 4.00000000 below minimum 5"),   # the limit price, not the mark
])
def test_build_refusals_name_stage_and_reason_and_count_for_the_breaker(tmp_path, caplog, call,
                                                                        stage, reason):
    r = Rig(tmp_path, breakers={"max_rejects_per_min": 1})
    with caplog.at_level(logging.WARNING, logger="daemon.execution.gateway"):
        with pytest.raises(Rejected) as e:
            call(r.gw)
    assert (e.value.stage, e.value.reason, str(e.value)) == (stage, reason, f"{stage}: {reason}")
    assert [m.getMessage() for m in caplog.records] == \
        [f"order rejected at {stage} (total 1): {reason}"]
    assert r.gw.stats["rejected"] == 1 and r.journal.count("orders") == 0
    with caplog.at_level(logging.WARNING, logger="daemon.execution.gateway"):
        with pytest.raises(Rejected):
            call(r.gw)
    # The same refusal again is counted but not logged again (rate-limited per stage).
    assert [m.getMessage() for m in caplog.records].count(
        f"order rejected at {stage} (total 1): {reason}") == 1
    assert not any("total 2" in m.getMessage() for m in caplog.records)
    assert r.gw.rejects_by_stage[stage] == 2
    assert r.check() == "2 rejects in the last minute (max 1)"


def test_refusals_before_building_say_why(tmp_path):
    r = Rig(tmp_path)
    r.latch.trip(LatchKind.HALT, "operator")
    with pytest.raises(Rejected) as e:
        r.buy()
    assert (e.value.stage, e.value.reason) == ("latch", "kill latch tripped (halt: operator)")
    r.latch.reset()
    r.state = State.READY
    with pytest.raises(Rejected) as e:
        r.buy()
    assert (e.value.stage, e.value.reason) == ("state", "state is ready, orders need trading")
    r.state = State.TRADING
    r.gw.close("daemon stopping (SIGTERM)")
    with pytest.raises(Rejected) as e:
        r.buy()
    assert e.value.reason == "gateway closed: daemon stopping (SIGTERM)"
    assert r.gw.stats["rejected"] == 0, "refusals before an order exists are not rejects"


def test_new_orders_carry_what_was_asked_and_the_clock(tmp_path):
    r = Rig(tmp_path)
    r.now = 123_456
    a = r.buy(price="59000", tif=TimeInForce.POST_ONLY)
    r.now = 123_999
    b = r.sell()
    assert a.client_id.startswith("b4-1-") and a.client_id.endswith("-1")
    assert b.client_id == a.client_id[:-1] + "2"
    assert (a.tif, a.venue, a.created_ns, a.updated_ns) == \
        (TimeInForce.POST_ONLY, r.venue.name, 123_456, 123_456)
    (row,) = [o for o in r.journal.open_orders() if o.client_id == a.client_id]
    assert (row.tif, row.venue, row.created_ns, row.updated_ns) == \
        (TimeInForce.POST_ONLY, "paper", 123_456, 123_456)
    assert _events(r, a.client_id) == [(123_456, "pending_new", None)]
    assert r.gw.stats["submitted"] == 2


def test_fill_ids_carry_the_runs_session(tmp_path):
    r = Rig(tmp_path)
    o = r.gw.submit(SYM, Side.BUY, D("0.01"), type=OrderType.MARKET, tif=TimeInForce.IOC)
    r.settle()
    (fid,) = [row[0] for row in r.journal._db.execute("SELECT fill_id FROM fills")]
    assert fid.startswith("paper-1-"), "fill ids must not repeat after a restart"
    assert o.status is OrderStatus.FILLED


def test_cancel_records_the_clock_and_counts(tmp_path):
    r = Rig(tmp_path)
    a, b = r.buy(price="59000"), r.buy(price="58900")
    r.now = 5_000
    assert r.gw.cancel(a.client_id) is True
    assert (a.reason, a.updated_ns) == ("requested", 5_000)
    assert _events(r, a.client_id)[-1] == (5_000, "pending_cancel", "requested")
    r.now = 6_000
    r.gw.cancel_all("halt: x")
    assert _events(r, b.client_id)[-1] == (6_000, "pending_cancel", "halt: x")
    assert r.gw.stats["cancels"] == 2


def test_an_order_cancelled_in_its_own_batch_never_leaves(tmp_path):
    r = Rig(tmp_path)
    seen = []
    r.gw.listeners.append(lambda o, f: seen.append((o.client_id, o.status, f)))
    r.now = 7_000
    with r.gw.batch():
        o = r.buy(price="59000")
        r.gw.cancel(o.client_id, "requote")
    assert o.status is OrderStatus.CANCELLED and o.reason == "requote (before it was sent)"
    assert o.client_id not in r.gw.open
    assert _events(r, o.client_id) == [(7_000, "pending_new", None),
                                       (7_000, "pending_cancel", "requote"),
                                       (7_000, "cancelled", "requote (before it was sent)")]
    assert seen == [(o.client_id, OrderStatus.CANCELLED, None)]
    r.settle()
    assert r.venue.stats["submitted"] == 0, "the venue never saw it"


def test_a_latched_gateway_refuses_at_the_last_check_with_the_reason(tmp_path):
    r = Rig(tmp_path)
    r.now = 8_000
    with r.gw.batch():
        o = r.buy(price="59000")
        r.latch.trip(LatchKind.ESTOP, "pressed")
    assert o.status is OrderStatus.REJECTED and o.reason == "kill latch tripped before send"
    assert _events(r, o.client_id)[-1] == (8_000, "rejected", "kill latch tripped before send")
    assert o.client_id not in r.gw.open


def test_actions_after_a_failed_one_still_run_and_the_first_error_is_raised(tmp_path, caplog):
    r = Rig(tmp_path)
    ran = []

    def fail(exc: BaseException):
        def act() -> None:
            raise exc
        return act
    with caplog.at_level(logging.ERROR, logger="daemon.execution.gateway"):
        with pytest.raises(ValueError, match="first"):
            with r.gw.batch():
                r.gw._act(fail(ValueError("first")))
                r.gw._act(fail(KeyError("second")))
                r.gw._act(lambda: ran.append("third"))
    assert ran == ["third"]
    assert [m.getMessage() for m in caplog.records] == [
        "after a failure, a further action failed too: KeyError('second')"]


def test_a_failed_batch_withdraws_its_unsent_orders_in_the_journal(tmp_path, caplog):
    r = Rig(tmp_path)
    r.now = 9_000
    with caplog.at_level(logging.ERROR, logger="daemon.execution.gateway"):
        with pytest.raises(RuntimeError, match="strategy bug"):
            with r.gw.batch():
                o = r.buy(price="59000")
                raise RuntimeError("strategy bug")
    why = "not sent: batch failed (RuntimeError('strategy bug'))"
    assert (o.status, o.reason) == (OrderStatus.REJECTED, why)
    assert o.client_id not in r.gw.open
    assert _events(r, o.client_id) == [(9_000, "pending_new", None), (9_000, "rejected", why)]
    assert [m.getMessage() for m in caplog.records] == [
        f"1 order(s) withdrawn before sending: {why}"]


def test_reducing_ignores_orders_of_other_symbols_and_of_the_other_side(tmp_path):
    r = Rig(tmp_path)
    r.buy(qty="0.001", price="59000")            # same symbol, other side (opened earlier)
    r.gw.position(SYM).qty = D("0.01")           # long 0.01
    r.state = State.REDUCING
    o = r.sell(qty="0.01", price="61000")        # exactly the whole position
    assert o.status is OrderStatus.PENDING_NEW


def test_remembered_orders_drop_the_oldest_first(tmp_path):
    r = Rig(tmp_path, risk={"max_orders_per_min": 100_000, "max_open_orders": 1000})
    done = []
    for _ in range(gwmod._RECENT + 1):
        o = r.buy(price="59000")
        r.gw.on_order_status(o.client_id, OrderStatus.CANCELLED, None, 1)
        done.append(o.client_id)
    for cid in (done[1], done[-1]):   # the oldest kept and the newest: both still known
        r.gw.on_order_status(cid, OrderStatus.CANCELLED, None, 2)
    assert r.journal.audit_rows("unknown_order_report") == []
    r.gw.on_order_status(done[0], OrderStatus.CANCELLED, None, 2)
    assert len(r.journal.audit_rows("unknown_order_report")) == 1


def test_orders_name_the_venue_they_go_to(tmp_path):
    r = Rig(tmp_path)
    r.venue.name = "paper-b"
    r.gw.breakers = r.breakers = BreakerBoard(BreakersCfg(), ["paper-b"])
    o = r.buy(price="59000")
    assert o.venue == "paper-b" and r.journal.open_orders()[0].venue == "paper-b"


def test_reducing_a_position_of_exactly_one(tmp_path):
    r = Rig(tmp_path, risk={"max_order_notional": D("100000"), "max_position": D("5")})
    r.gw.position(SYM).qty = D("1")
    r.state = State.REDUCING
    assert r.sell(qty="1", price="61000").status is OrderStatus.PENDING_NEW


def test_an_order_cancelled_without_a_reason_before_it_left(tmp_path):
    r = Rig(tmp_path)
    with r.gw.batch():
        o = r.buy(price="59000")
        r.gw.cancel(o.client_id, "")
    assert o.reason == "cancelled (before it was sent)"


def test_latch_tripped_while_the_order_is_committed_refuses_it_with_the_reason(tmp_path):
    r = Rig(tmp_path)

    def on_sql(sql: str) -> None:   # SQLite reports each statement it runs
        if sql == "COMMIT":
            r.latch.trip(LatchKind.ESTOP, "pressed")   # as the GPIO thread would, mid-commit
    r.journal._db.set_trace_callback(on_sql)
    with pytest.raises(Rejected) as e:
        r.buy(price="59000")
    r.journal._db.set_trace_callback(None)
    assert (e.value.stage, e.value.reason) == ("latch", "kill latch tripped before send")
    assert not r.gw.open and r.venue.stats["submitted"] == 0


def test_flatten_sells_a_long_buys_a_short_and_skips_flat_positions(tmp_path):
    from daemon.execution.orders import Instrument
    r = Rig(tmp_path)
    r.gw.instruments["ETHUSDT"] = Instrument("ETHUSDT", D("0.01"), D("0.0001"), D("5"))
    r.gw.instruments["LTCUSDT"] = Instrument("LTCUSDT", D("0.01"), D("0.01"), D("5"))
    r.gw.position("XRPUSDT")                        # flat, and first: must not stop the rest
    r.gw.position(SYM).qty = D("0.002")             # long 0.002 (below 1: a real size)
    r.gw.position("ETHUSDT").qty = D("-0.01")       # short
    r.gw.position("LTCUSDT").qty = D("0.001")       # dust below one lot
    sent, failed = r.gw.flatten("e-stop flatten")
    assert [(o.symbol, o.side, o.qty) for o in sent] == [(SYM, Side.SELL, D("0.00200")),
                                                         ("ETHUSDT", Side.BUY, D("0.0100"))]
    assert list(failed) == ["LTCUSDT"]


def test_venue_reports_are_journalled_at_their_time_and_only_rejects_count(tmp_path, caplog):
    r = Rig(tmp_path, breakers={"max_rejects_per_min": 1})
    a, b = r.buy(price="59000"), r.buy(price="58900")
    r.gw.on_order_status(a.client_id, OrderStatus.NEW, None, 2_222)
    r.gw.on_order_status(b.client_id, OrderStatus.NEW, None, 2_223)
    r.gw.on_order_status(a.client_id, OrderStatus.CANCELLED, None, 3_333)
    assert _events(r, a.client_id)[1:] == [(2_222, "new", None), (3_333, "cancelled", None)]
    assert r.check() is None, "acks and cancels are not rejects"
    with caplog.at_level(logging.WARNING, logger="daemon.execution.gateway"):
        r.gw.on_order_status("ghost", OrderStatus.CANCELLED, None, 1)
        r.gw.on_fill(Fill("f9", "ghost", SYM, Side.BUY, D("1"), D("1"), D(0),
                          Liquidity.TAKER, 1))
        r.gw.on_fill(Fill("f1", b.client_id, SYM, Side.BUY, D("58900"), D("0.0005"), D(0),
                          Liquidity.MAKER, 4))
        r.gw.on_fill(Fill("f1", b.client_id, SYM, Side.BUY, D("58900"), D("0.0005"), D(0),
                          Liquidity.MAKER, 4))
    assert [m.getMessage() for m in caplog.records] == [
        "venue reported cancelled for unknown order ghost",
        "fill for unknown order ghost",
        "fill f1 reported again; already applied, ignored"]


def test_cancels_go_out_even_when_the_journal_cannot_begin(tmp_path):
    """When the journal cannot even BEGIN (locked by another process, I/O error), the batch
    body never ran and no cancel was sent; now cancel_all sends them all the same."""
    r = Rig(tmp_path)
    o = r.buy(price="59000")
    r.settle()
    other = sqlite3.connect(tmp_path / "j.sqlite3", timeout=0.1, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")   # e.g. an operator's sqlite3 shell holding the lock
    r.journal._db.execute("PRAGMA busy_timeout=100")
    try:
        with pytest.raises(JournalError, match="database is locked"):
            r.gw.cancel_all("e-stop")
    finally:
        other.execute("ROLLBACK")   # the venue's confirmation is journalled normally
        other.close()
    r.settle()
    assert r.venue.open_orders() == [], f"{o.client_id} still working at the venue"


# -- what the gateway shows (the status the supervisor and bot4ctl read) -------------------
def _filled_buy(r: Rig) -> None:
    r.buy(qty="0.001", price="60001", tif=TimeInForce.IOC)   # crosses the 60000.01 ask
    r.settle()


def test_status_lists_open_orders_and_counters(tmp_path):
    r = Rig(tmp_path)
    o = r.buy()
    st = r.gw.status()
    assert st["open"] == 1 and st["list"] == [{"id": o.client_id, "symbol": SYM,
                                              "side": "buy", "price": "59000.00",
                                              "qty": "0.00100", "status": o.status.value}]
    assert {k: st[k] for k in ("submitted", "rejected", "fills", "cancels")} == r.gw.stats


def test_positions_status_values_at_the_mark_and_without_one(tmp_path):
    r = Rig(tmp_path)
    _filled_buy(r)
    p = r.gw.positions[SYM]
    r.gw.mark = {SYM: Decimal("60100")}.get   # each symbol's own mark
    st = r.gw.positions_status()[SYM]
    assert st == {"qty": str(p.qty), "avg_price": str(p.avg_price),
                  "realized_pnl": str(p.realized_pnl),
                  "unrealized_pnl": str((Decimal("60100") - p.avg_price) * p.qty),
                  "fees": str(p.fees), "mark": "60100"}
    assert p.qty == Decimal("0.001") and Decimal(st["unrealized_pnl"]) > 0
    r.gw.mark = {}.get
    st = r.gw.positions_status()[SYM]
    assert st["unrealized_pnl"] is None and st["mark"] is None and st["qty"] == "0.00100"


def test_positions_of_an_inverse_instrument_settle_in_coin_also_after_a_restart(tmp_path):
    from daemon.execution.orders import INVERSE, Instrument
    inv = Instrument(SYM, Decimal("0.01"), Decimal("1"), Decimal("0"), INVERSE, Decimal("100"))
    # (risk here knows no instruments: it counts 1 contract as 60,000 "USD"; not the point)
    wide = {"max_order_notional": "1e6", "max_position": "10", "max_gross_exposure": "1e7",
            "max_net_exposure": "1e7"}
    r = Rig(tmp_path, instrument=inv, risk=wide)
    assert r.gw.position(SYM).kind == INVERSE and r.gw.position(SYM).contract_size == 100
    other = r.gw.position("OTHER")
    assert other.kind != INVERSE and other.symbol == "OTHER"   # unknown: linear
    r.buy(qty="1", price="60001", tif=TimeInForce.IOC)
    r.settle()
    p = r.gw.positions[SYM]
    assert p.qty == 1 and p.kind == INVERSE
    r.mark_price = Decimal("61000")
    upnl = Decimal(r.gw.positions_status()[SYM]["unrealized_pnl"])
    assert upnl == p.unrealized(Decimal("61000")) and 0 < upnl < Decimal("0.001")   # coin
    r2 = Rig(tmp_path, instrument=inv, risk=wide)   # a restart on the same journal
    q = r2.gw.positions[SYM]
    assert (q.kind, q.qty, q.avg_price) == (INVERSE, p.qty, p.avg_price)
