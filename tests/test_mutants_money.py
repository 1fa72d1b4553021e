"""Orders, instrument filters, positions, risk limits and the gateway, pinned where
scripts/mutation-check found mutants no test noticed: limits at exactly their value and one
step past it, short positions and flips, several symbols, reasons that name the problem.

Real objects only (the gateway tests use tests/test_sabotage.Rig: real journal file, paper
venue and book).
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.config import RiskCfg
from daemon.execution.gateway import Rejected
from daemon.execution.orders import (Fill, Instrument, Liquidity, Order, OrderStatus,
                                     OrderType, Position, Side, TimeInForce, to_decimal)
from daemon.risk.engine import RiskEngine
from daemon.safety.latch import LatchKind
from tests.test_sabotage import SYM, Rig

D = Decimal
BTC = Instrument(SYM, D("0.01"), D("0.00001"), D("5"))


# -- to_decimal ----------------------------------------------------------------------------
def test_to_decimal_is_exact_for_each_input_type():
    assert to_decimal(0.1) == D("0.1")          # repr, not the binary expansion
    assert to_decimal(60000.01) == D("60000.01")
    assert to_decimal("0.00001") == D("0.00001")
    assert to_decimal(5) == D(5)
    d = D("1.50")
    assert to_decimal(d) is d


# -- instrument filters --------------------------------------------------------------------
def test_round_price_never_more_aggressive_than_asked():
    assert BTC.round_price(D("59990.019"), Side.BUY) == D("59990.01")
    assert BTC.round_price(D("59990.011"), Side.SELL) == D("59990.02")
    assert BTC.round_price(D("59990.01"), Side.SELL) == D("59990.01")
    assert str(BTC.round_price(D("59990"), Side.BUY)) == "59990.00"   # on the tick's scale


def test_round_qty_is_on_the_lot_scale():
    assert str(BTC.round_qty(D("0.001"))) == "0.00100"
    assert BTC.round_qty(D("0.000009")) == 0


def test_instrument_check_reasons_and_boundaries():
    assert BTC.check(D("60000"), D("0"), None) == "quantity rounds to zero at lot size 0.00001"
    assert BTC.check(D("0"), D("1"), D("60000")) == "price must be positive, got 0"
    assert BTC.check(D("-1"), D("1"), D("60000")) == "price must be positive, got -1"
    # A price of 0.5 is positive: with enough quantity it meets the minimum notional.
    assert BTC.check(D("0.5"), D("10"), None) is None
    assert BTC.check(None, D("1"), None) == "no price to check the minimum notional against"
    # Exactly the minimum notional passes; a hair under does not.
    assert BTC.check(D("50000"), D("0.0001"), None) is None               # 5.00000000
    assert BTC.check(D("49999.99"), D("0.0001"), None) == \
        "notional 4.99999900 below minimum 5"
    # A limit price is checked, not the reference (mark) price.
    assert BTC.check(D("40000"), D("0.0001"), D("60000")) == "notional 4.00000000 below minimum 5"
    assert BTC.check(None, D("0.0001"), D("60000")) is None                # market: the mark


# -- positions -----------------------------------------------------------------------------
def _f(side: Side, qty: str, price: str, fee: str = "0") -> Fill:
    return Fill("f", "c", SYM, side, D(price), D(qty), D(fee), Liquidity.MAKER, 0)


def test_position_adds_to_a_long_with_small_fills_and_sums_fees():
    p = Position(SYM)
    p.apply(_f(Side.BUY, "0.5", "60000", fee="0.3"))
    p.apply(_f(Side.BUY, "0.5", "61000", fee="0.2"))
    assert (p.qty, p.avg_price, p.realized_pnl, p.fees) == (D("1.0"), D("60500"), 0, D("0.5"))


def test_position_short_open_add_reduce_and_close():
    p = Position(SYM)
    p.apply(_f(Side.SELL, "0.4", "60000"))
    p.apply(_f(Side.SELL, "0.4", "59000"))
    assert (p.qty, p.avg_price) == (D("-0.8"), D("59500"))
    p.apply(_f(Side.BUY, "0.2", "59000"))    # covers 0.2 at 500 below the short entry
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("-0.6"), D("59500"), D("100"))
    p.apply(_f(Side.BUY, "0.6", "60000"))    # covers the rest 500 above: -300
    assert (p.qty, p.avg_price, p.realized_pnl) == (0, 0, D("-200"))
    assert isinstance(p.avg_price, Decimal)


def test_position_long_close_and_flip_through_zero():
    p = Position(SYM)
    p.apply(_f(Side.BUY, "0.5", "60000"))
    p.apply(_f(Side.SELL, "0.5", "60100"))
    assert (p.qty, p.avg_price, p.realized_pnl) == (0, 0, D("50"))
    assert isinstance(p.avg_price, Decimal)
    p.apply(_f(Side.BUY, "0.5", "60000"))
    p.apply(_f(Side.SELL, "0.8", "59900"))   # closes 0.5 at -100 each, opens 0.3 short
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("-0.3"), D("59900"), D("0"))
    p.apply(_f(Side.BUY, "0.5", "59800"))    # closes 0.3 short at +100, opens 0.2 long
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("0.2"), D("59800"), D("30"))


# -- risk limits (RiskEngine.check directly, then through the gateway) --------------------
def _order(side: Side = Side.BUY, qty: str = "0.001", price: str | None = "60000",
           symbol: str = SYM, type: OrderType = OrderType.LIMIT) -> Order:
    return Order("c", symbol, side, type, D(qty), None if price is None else D(price),
                 TimeInForce.GTC)


_ROOMY = dict(max_gross_exposure=D("1e9"), max_net_exposure=D("1e9"), max_order_qty=D("1e6"))


class _Limits:
    """RiskEngine.check with the old five-limit call shape: the limits these tests pin
    (notional, position, band, open orders, rate) without the exposure caps in the way."""

    def __init__(self, cfg: RiskCfg) -> None:
        self.engine = RiskEngine(cfg.model_copy(update=_ROOMY), {})

    def check(self, order: Order, position_qty: D, opens: list, mark: D | None, now: int):
        return self.engine.check(order, positions={SYM: Position(SYM, position_qty)},
                                 open_orders=opens, mark=lambda s: mark, now_ns=now)

    def note_sent(self, now: int) -> None:
        self.engine.note_sent(_order(), now)


def test_market_order_needs_a_mark():
    r = _Limits(RiskCfg())
    assert r.check(_order(price=None, type=OrderType.MARKET), D(0), [], None, 0) == \
        "no mark price for a market order"
    assert r.check(_order(price=None, type=OrderType.MARKET), D(0), [], D("60000"), 0) is None


def test_max_order_notional_boundary():
    r = _Limits(RiskCfg(max_order_notional=D("600")))
    assert r.check(_order(qty="0.01", price="60000"), D(0), [], D("60000"), 0) is None   # 600
    assert r.check(_order(qty="0.01", price="60000.01"), D(0), [], D("60000"), 0) == \
        "order notional 600.0001 above max_order_notional 600"


def test_position_limit_counts_only_same_symbol_same_side_orders():
    r = _Limits(RiskCfg(max_position=D("0.01"), max_order_notional=D("100000")))
    other_symbol = _order(qty="0.009", symbol="ETHUSDT")
    other_side = _order(Side.SELL, qty="0.009")
    assert r.check(_order(qty="0.002"), D(0), [other_symbol, other_side], D("60000"), 0) is None
    same = _order(qty="0.009")
    assert r.check(_order(qty="0.002"), D(0), [same], D("60000"), 0) == \
        "position could reach 0.011 BTCUSDT, max_position is 0.01"
    assert r.check(_order(qty="0.001"), D(0), [same], D("60000"), 0) is None   # exactly 0.01


def test_position_limit_with_an_existing_position():
    r = _Limits(RiskCfg(max_position=D("0.05"), max_order_notional=D("100000")))
    assert r.check(_order(qty="0.02"), D("0.04"), [], D("60000"), 0) == \
        "position could reach 0.06 BTCUSDT, max_position is 0.05"
    assert r.check(_order(Side.SELL, qty="0.02"), D("-0.04"), [], D("60000"), 0) == \
        "position could reach -0.06 BTCUSDT, max_position is 0.05"
    # Over the limit already (the limit was lowered): an order that only reduces |position|
    # is allowed, even one that flips it to exactly the same size on the other side.
    assert r.check(_order(Side.SELL, qty="0.12"), D("0.06"), [], D("60000"), 0) is None
    assert r.check(_order(Side.SELL, qty="0.1201"), D("0.06"), [], D("60000"), 0) is not None


def test_price_band_boundary_both_sides():
    r = _Limits(RiskCfg(price_band_bps=200.0, max_order_notional=D("100000"),
                           max_position=D("1000")))
    mark = D("60000")                         # band = 1200
    assert r.check(_order(price="61200"), D(0), [], mark, 0) is None
    assert r.check(_order(price="61200.01"), D(0), [], mark, 0) == \
        "limit price 61200.01 outside the 200.0 bps band around 60000"
    assert r.check(_order(Side.SELL, price="58800"), D(0), [], mark, 0) is None
    assert r.check(_order(Side.SELL, price="58799.99"), D(0), [], mark, 0) is not None
    # A cheap instrument (mark below 1) still gets its band.
    cheap = D("0.5")
    assert r.check(_order(qty="100", price="0.51"), D(0), [], cheap, 0) is None
    assert r.check(_order(qty="100", price="0.5101"), D(0), [], cheap, 0) is not None


def test_limit_order_needs_a_usable_mark_for_its_band():
    r = _Limits(RiskCfg(price_band_bps=200.0))
    for mark in (None, D(0), D("-1")):   # no trusted mark: the band cannot be checked
        assert r.check(_order(price="60000"), D(0), [], mark, 0) == \
            "no trusted reference price for the price band"
    assert r.check(_order(price="60000"), D(0), [], D("0.0001") * 600_000_000, 0) is None
    # A market order is priced at the mark: never outside a band.
    assert r.check(_order(price=None, type=OrderType.MARKET), D(0), [], D("60000"), 0) is None


def test_rate_window_counts_orders_sent_not_checked():
    r = _Limits(RiskCfg(max_orders_per_min=2))
    for t in (0, 1):
        assert r.check(_order(), D(0), [], D("60000"), t) is None
    assert r.check(_order(), D(0), [], D("60000"), 2) is None, "checks alone do not count"
    r.note_sent(0)
    r.note_sent(1)
    assert r.check(_order(), D(0), [], D("60000"), 2) == \
        "order rate: 2 in the last 60 s, max_orders_per_min is 2"


# -- gateway ---------------------------------------------------------------------------------
def test_reducing_state_refuses_more_than_the_position(tmp_path):
    r = Rig(tmp_path, instrument=Instrument(SYM, D("0.01"), D("0.00001"), D("0.1")))
    r.gw.position(SYM).apply(_f(Side.BUY, "0.002", "60000"))
    r.state = r.state.REDUCING
    with pytest.raises(Rejected) as e:
        r.buy(price="59000")
    assert e.value.stage == "state" and e.value.reason == \
        "buy BTCUSDT would not reduce position 0.002"
    r.sell(qty="0.001")
    r.sell(qty="0.001")                 # pending sells reach the position exactly
    with pytest.raises(Rejected) as e:
        r.sell(qty="0.00001")
    assert e.value.reason == "reducing orders 0.00201 would exceed position 0.002"


def test_reduce_only_order_is_checked_as_risk_while_trading(tmp_path):
    r = Rig(tmp_path)
    with pytest.raises(Rejected) as e:
        r.sell(reduce_only=True)
    assert e.value.stage == "risk" and "would not reduce position 0" in e.value.reason
    r.gw.position(SYM).apply(_f(Side.SELL, "0.002", "60000"))   # short: a buy reduces
    o = r.buy(reduce_only=True)
    assert o.reduce_only and r.journal.open_orders()[0].reduce_only


def test_rejects_counted_by_the_breaker_only_for_risk_and_instrument(tmp_path):
    r = Rig(tmp_path, breakers={"max_rejects_per_min": 1})
    r.state = r.state.READY
    for _ in range(3):
        with pytest.raises(Rejected):
            r.buy()                       # refused at the state check: not a storm
    r.state = r.state.TRADING
    assert r.check() is None
    with pytest.raises(Rejected):
        r.buy(price="70000")              # risk: outside the band
    with pytest.raises(Rejected):
        r.buy(qty="0")                    # instrument
    assert r.check() == "2 rejects in the last minute (max 1)"
    assert r.gw.stats["rejected"] == 2
    assert r.gw.rejects_by_stage == {"risk": 1, "instrument": 1}   # /metrics by reason


def test_submit_journals_and_counts(tmp_path):
    r = Rig(tmp_path)
    o = r.buy(qty="0.001", price="59000")
    assert r.gw.stats["submitted"] == 1 and list(r.gw.open) == [o.client_id]
    row = r.journal.open_orders()[0]
    assert (row.client_id, row.side, row.type, row.tif, row.price, row.qty, row.status) == \
        (o.client_id, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, D("59000.00"), D("0.00100"),
         OrderStatus.PENDING_NEW)
    assert row.created_ns == r.now
    r.settle()
    assert o.status is OrderStatus.NEW
    assert r.journal.order_history(o.client_id) == ["pending_new", "new"]


def test_market_order_through_the_gateway_fills_and_moves_the_position(tmp_path):
    r = Rig(tmp_path)
    o = r.gw.submit(SYM, Side.BUY, D("0.01"), type=OrderType.MARKET, tif=TimeInForce.IOC)
    assert o.price is None and o.type is OrderType.MARKET
    r.settle()
    pos = r.gw.position(SYM)
    assert o.status is OrderStatus.FILLED and o.client_id not in r.gw.open
    assert pos.qty == D("0.01") and r.gw.stats["fills"] >= 1
    assert r.journal.positions()[SYM].qty == D("0.01")
    assert o.filled_qty == D("0.01") and o.avg_price == D("60000.01")


def test_cancel_of_an_unknown_or_already_cancelling_order(tmp_path):
    r = Rig(tmp_path)
    assert r.gw.cancel("no-such-order") is False
    o = r.buy()
    assert r.gw.cancel(o.client_id, "why") is True
    assert o.status is OrderStatus.PENDING_CANCEL and o.reason == "why"
    assert r.gw.cancel(o.client_id) is False, "a second cancel is not sent"
    assert r.gw.stats["cancels"] == 1
    r.settle()
    assert o.status is OrderStatus.CANCELLED and not r.gw.open


def test_cancel_all_by_symbol(tmp_path):
    eth = Instrument("ETHUSDT", D("0.01"), D("0.0001"), D("5"))
    r = Rig(tmp_path)
    r.gw.instruments["ETHUSDT"] = eth
    b = r.buy()
    e = r.gw.submit("ETHUSDT", Side.BUY, D("0.01"), D("59000"))
    assert r.gw.cancel_all("only btc", symbol=SYM) == [b.client_id]
    assert e.status is OrderStatus.PENDING_NEW and b.status is OrderStatus.PENDING_CANCEL
    assert e.client_id in r.gw.cancel_all("all")
    assert e.status is OrderStatus.PENDING_CANCEL
    assert b.reason == "only btc" and e.reason == "all"


# -- gateway: venue reports ------------------------------------------------------------------
def _vfill(o, qty: str, price: str, fid: str = "v1", ts: int = 5_000) -> Fill:
    """A fill as the venue reports it to the gateway (its VenueListener)."""
    return Fill(fid, o.client_id, o.symbol, o.side, D(price), D(qty), D("0.01"),
                Liquidity.MAKER, ts)


def test_partial_fills_average_and_complete_the_order(tmp_path):
    r = Rig(tmp_path)
    seen = []
    r.gw.listeners.append(lambda o, f: seen.append((o.status, f.fill_id if f else None)))
    o = r.buy(qty="0.003", price="59000")
    r.settle()
    r.gw.on_fill(_vfill(o, "0.001", "59000", "v1", 6_000))
    assert (o.status, o.filled_qty, o.avg_price, o.updated_ns) == \
        (OrderStatus.PARTIALLY_FILLED, D("0.001"), D("59000"), 6_000)
    r.gw.on_fill(_vfill(o, "0.002", "58000", "v2", 7_000))
    assert o.status is OrderStatus.FILLED and o.filled_qty == D("0.003")
    assert o.avg_price == (D("59000") * D("0.001") + D("58000") * D("0.002")) / D("0.003")
    assert o.client_id not in r.gw.open and r.gw.stats["fills"] == 2
    pos = r.gw.position(SYM)
    assert (pos.qty, pos.fees) == (D("0.003"), D("0.02"))
    assert r.journal.positions()[SYM] == pos
    assert r.journal.order_status(o.client_id) is OrderStatus.FILLED
    assert seen[-2:] == [(OrderStatus.PARTIALLY_FILLED, "v1"), (OrderStatus.FILLED, "v2")]
    # A late report about a finished order is still matched (not "unknown").
    r.gw.on_order_status(o.client_id, OrderStatus.CANCELLED, None, 8_000)
    assert r.journal.audit_rows("unknown_order_report") == []


def test_partial_fill_of_a_cancelling_order_stays_pending_cancel(tmp_path):
    r = Rig(tmp_path)
    o = r.buy(qty="0.003", price="59000")
    r.settle()
    r.gw.cancel(o.client_id, "requote")
    r.gw.on_fill(_vfill(o, "0.001", "59000"))
    assert o.status is OrderStatus.PENDING_CANCEL and o.filled_qty == D("0.001")
    assert o.client_id in r.gw.open


def test_repeated_and_unknown_fills_are_recorded_not_applied(tmp_path):
    r = Rig(tmp_path)
    o = r.buy(qty="0.002", price="59000")
    r.settle()
    f = _vfill(o, "0.001", "59000", "dup")
    r.gw.on_fill(f)
    r.gw.on_fill(f)
    assert r.gw.position(SYM).qty == D("0.001") and o.filled_qty == D("0.001")
    assert r.gw.stats["fills"] == 1
    (_, _, d), = r.journal.audit_rows("duplicate_fill")
    assert d == {"fill_id": "dup", "client_id": o.client_id}
    stray = Fill("x1", "nobody", SYM, Side.SELL, D("1.5"), D("2"), D(0), Liquidity.TAKER, 1)
    r.gw.on_fill(stray)
    (_, _, d), = r.journal.audit_rows("unknown_fill")
    assert d == {"fill_id": "x1", "client_id": "nobody", "price": "1.5", "qty": "2"}
    assert r.gw.position(SYM).qty == D("0.001") and not r.journal.has_fill("x1")


def test_venue_status_reports(tmp_path):
    r = Rig(tmp_path, breakers={"max_rejects_per_min": 1})
    seen = []
    r.gw.listeners.append(lambda o, f: seen.append((o.client_id, o.status, f)))
    a, b = r.buy(price="59000"), r.buy(price="58900")
    r.gw.on_order_status(a.client_id, OrderStatus.NEW, None, 2_000)
    assert a.status is OrderStatus.NEW and a.updated_ns == 2_000 and a.reason is None
    assert seen == [(a.client_id, OrderStatus.NEW, None)]
    r.gw.cancel(a.client_id, "mine")
    r.gw.on_order_status(a.client_id, OrderStatus.NEW, "late ack", 3_000)
    assert a.status is OrderStatus.PENDING_CANCEL and a.reason == "mine", "a late ack is ignored"
    r.gw.on_order_status(a.client_id, OrderStatus.CANCELLED, None, 4_000)
    assert a.status is OrderStatus.CANCELLED and a.reason == "mine"
    assert r.journal.order_history(a.client_id)[-1] == "cancelled"
    r.gw.on_order_status(b.client_id, OrderStatus.REJECTED, "post-only would cross", 5_000)
    assert b.reason == "post-only would cross" and not r.gw.open
    r.gw.on_order_status(b.client_id, OrderStatus.REJECTED, "again", 5_000)
    assert r.check() == "2 rejects in the last minute (max 1)", "venue rejects count for the breaker"
    r.gw.on_order_status("ghost", OrderStatus.NEW, None, 6_000)
    (_, _, d), = r.journal.audit_rows("unknown_order_report")
    assert d == {"client_id": "ghost", "status": "new"}


def test_finished_orders_are_remembered_for_late_reports_up_to_a_bound(tmp_path):
    from daemon.execution import gateway as gwmod
    r = Rig(tmp_path, risk={"max_orders_per_min": 100_000, "max_open_orders": 1000})
    first = r.buy(price="59000")
    r.gw.on_order_status(first.client_id, OrderStatus.CANCELLED, None, 1)
    for _ in range(gwmod._RECENT):
        o = r.buy(price="59000")
        r.gw.on_order_status(o.client_id, OrderStatus.CANCELLED, None, 1)
    r.gw.on_order_status(o.client_id, OrderStatus.CANCELLED, None, 2)   # still remembered
    assert r.journal.audit_rows("unknown_order_report") == []
    r.gw.on_order_status(first.client_id, OrderStatus.CANCELLED, None, 2)   # forgotten
    assert len(r.journal.audit_rows("unknown_order_report")) == 1


def test_client_ids_carry_the_session_and_count_up(tmp_path):
    r = Rig(tmp_path)
    a, b = r.buy(price="59000"), r.buy(price="58900")
    # b4-<session>-<n> (the README's form; there was once a stray double dash here)
    assert (a.client_id, b.client_id) == ("b4-1-1", "b4-1-2")
    assert a.venue == r.venue.name and a.created_ns == a.updated_ns == r.now


def test_a_gateway_needs_a_session(tmp_path):
    from daemon.execution.gateway import OrderGateway
    r = Rig(tmp_path)
    with pytest.raises(ValueError, match="session token unique to this run"):
        OrderGateway(latch=r.latch, state=lambda: r.state, breakers=r.breakers, risk=r.risk,
                     instruments={}, journal=r.journal, venue=r.venue, session="",
                     clock=lambda: 0)


def test_flatten_closes_each_position_on_its_own(tmp_path):
    r = Rig(tmp_path)
    r.gw.instruments["ETHUSDT"] = Instrument("ETHUSDT", D("0.01"), D("0.0001"), D("5"))
    r.gw.position(SYM).apply(_f(Side.SELL, "0.002", "60000"))        # short: buy to close
    r.gw.position("ETHUSDT").apply(Fill("e", "c", "ETHUSDT", Side.BUY, D("3000"), D("0.00005"),
                                        D(0), Liquidity.TAKER, 0))   # dust below one lot
    r.gw.position("XRPUSDT")                                         # flat: nothing to do
    r.latch.trip(LatchKind.ESTOP, "pressed")   # flatten is what the e-stop itself sends
    sent, failed = r.gw.flatten("e-stop flatten")
    (o,) = sent
    assert (o.symbol, o.side, o.type, o.tif, o.reduce_only, o.qty, o.reason) == \
        (SYM, Side.BUY, OrderType.MARKET, TimeInForce.IOC, True, D("0.002"), "e-stop flatten")
    assert r.journal.order_status(o.client_id) is OrderStatus.PENDING_NEW
    assert failed == {"ETHUSDT": "0.00005 ETHUSDT left open: ETHUSDT: quantity rounds to zero "
                                 "at lot size 0.0001"}
    r.settle()
    assert r.gw.position(SYM).qty == 0, "the flatten order left and filled while latched"
