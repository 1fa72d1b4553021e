"""Position sizing: fractional Kelly from edge and variance, capped by every limit's
headroom, never above the requested size, down to the lot."""
from __future__ import annotations

from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings, strategies as st

from daemon.execution.orders import Side
from daemon.risk import sizing
from daemon.risk.limits import Book
from daemon.risk.losses import RiskTrip
from tests.risk.common import BTC, ETH, T0, engine, marks, order, position

M = marks(BTCUSDT="50000", ETHUSDT="2000")
BIG = dict(max_order_notional=D("1e9"), max_order_qty=D("1e6"), max_position=D("1e6"),
           max_gross_exposure=D("1e11"), max_net_exposure=D("1e11"))


def size(e, requested="1", side=Side.BUY, edge="0.001", variance="0.0004", positions=None,
         opens=(), mark=M, symbol=BTC, price=None):
    return e.size(symbol, side, D(requested), edge=D(edge), variance=D(variance),
                  positions=positions or {}, open_orders=list(opens), mark=mark,
                  price=None if price is None else D(price))


def test_kelly_by_hand():
    # f* = 0.001 / 0.0004 = 2.5; a quarter of it on 1000 at 50000: 0.0125
    assert sizing.kelly_qty(D("0.001"), D("0.0004"), D("0.25"), D("1000"), D("50000")) == \
        D("0.0125")
    for edge, var_, eq, px in [("0", "1", "1", "1"), ("-0.1", "1", "1", "1"),
                               ("0.1", "0", "1", "1"), ("0.1", "-1", "1", "1"),
                               ("0.1", "1", "0", "1"), ("0.1", "1", "-5", "1"),
                               ("0.1", "1", "1", "0"), ("0.1", "1", "1", "-1")]:
        assert sizing.kelly_qty(D(edge), D(var_), D("0.5"), D(eq), D(px)) == 0
    # Small equity and prices below 1 (a cheap coin) are sized like any other.
    assert sizing.kelly_qty(D("0.01"), D("0.01"), D("0.5"), D("1"), D("0.5")) == D("1")
    assert sizing.kelly_qty(D("0.01"), D("0.02"), D("1"), D("0.5"), D("1")) == D("0.25")


def test_floor_lot_and_size():
    assert sizing.floor_lot(D("0.0123456"), D("0.00001")) == D("0.01234")
    assert sizing.floor_lot(D("-1"), D("0.1")) == 0 and sizing.floor_lot(D("0"), D("1")) == 0
    assert sizing.floor_lot(D("0.0000099"), D("0.00001")) == 0
    assert str(sizing.floor_lot(D("0.5"), D("0.001"))) == "0.500"     # on the lot's grid
    assert sizing.size(D("0.02"), D("0.0125"), [D("0.5"), D("0.013")], D("0.001")) == \
        D("0.012")
    assert sizing.size(D("0.003"), D("1"), [], D("0.001")) == D("0.003")
    assert sizing.size(D("1"), D("1"), [D("-0.5")], D("0.001")) == 0


def test_headroom_by_hand():
    b = Book(D("0.03"), D("-0.01"))
    assert sizing.side_headroom(Side.BUY, b, D("0.05")) == D("0.02")
    assert sizing.side_headroom(Side.SELL, b, D("0.05")) == D("0.04")
    # net: longs filled 600, shorts filled -200, limit 1000, at 50000 a unit is 50000
    assert sizing.net_headroom(Side.BUY, D("600"), D("-200"), D("1000"), D("50000")) == \
        D("0.008")
    assert sizing.net_headroom(Side.SELL, D("600"), D("-200"), D("1000"), D("50000")) == \
        D("0.016")
    # Already beyond the limit: the room is what is there (nothing may grow it).
    assert sizing.net_headroom(Side.BUY, D("1500"), D("0"), D("1000"), D("50000")) == 0
    # The short side beyond the limit: buys may bring the long side up to that size.
    assert sizing.net_headroom(Side.BUY, D("100"), D("-2000"), D("1000"), D("50000")) == \
        D("0.038")
    assert sizing.net_headroom(Side.SELL, D("100"), D("-2000"), D("1000"), D("50000")) == 0


def test_engine_kelly_binds_and_never_grows_the_request():
    e = engine(**BIG)
    assert size(e) == D("0.0125")                     # capital 1000, before any evaluate
    assert size(e, requested="0.004") == D("0.004")   # never more than asked
    assert size(e, requested="0.0040099") == D("0.00400")
    assert size(e, edge="0") == 0 and size(e, variance="0") == 0
    assert size(e, edge=-0.5) == 0
    # Floats are read exactly as written (repr), like market data.
    assert e.size(BTC, Side.BUY, D("1"), edge=0.001, variance=0.0004, positions={},
                  open_orders=[], mark=M) == D("0.0125")
    # Equity follows the PnL once evaluated.
    e.evaluate({BTC: position(realized="1000")}, {BTC: D("50000")}, T0)
    assert size(e) == D("0.025")


def test_engine_caps_by_order_qty_and_notional():
    assert size(engine(**{**BIG, "max_order_qty": D("0.003")})) == D("0.003")
    e = engine(**{**BIG, "max_order_notional": D("200")})
    assert size(e) == D("0.004")                              # 200 / 50000
    assert size(e, price="51000") == D("0.00392")             # at the limit price
    assert size(e, price="40000") == D("0.004")               # never below the mark


def test_engine_caps_by_position_headroom_with_open_orders():
    e = engine(**{**BIG, "max_position": D("0.01")})
    pos = {BTC: position(qty="0.004", avg="50000")}
    opens = [order(qty="0.002", price="50000"), order(Side.SELL, qty="0.003", price="50100")]
    assert size(e, positions=pos, opens=opens) == D("0.004")
    # Sells may go to -0.01 after the open sells: 0.004 - 0.003 + 0.01
    assert size(e, side=Side.SELL, positions=pos, opens=opens) == D("0.011")
    # Over the limit (lowered): buys 0; sells may take it to the same size short, which
    # check() lets through too (it does not make |position| larger).
    over = {BTC: position(qty="0.02", avg="50000")}
    assert size(e, positions=over) == 0
    assert size(e, side=Side.SELL, positions=over, edge="100", variance="1") == D("0.04")
    kw = dict(positions=over, open_orders=[], mark=M, now_ns=T0)
    assert e.check(order(Side.SELL, qty="0.04", price="50000"), **kw) is None
    assert e.check(order(Side.SELL, qty="0.04001", price="50000"), **kw) is not None


def test_engine_caps_by_gross_and_net_exposure():
    e = engine(**{**BIG, "max_gross_exposure": D("1000")})
    pos = {BTC: position(qty="0.01", avg="50000"), ETH: position(ETH, qty="-0.1",
                                                                  avg="2000")}
    # gross now 500 + 200; room for 300 more BTC: 0.006
    assert size(e, positions=pos) == D("0.006")
    e = engine(**{**BIG, "max_net_exposure": D("600")})
    # net longs filled: 500 - 200 = 300; room 300: 0.006 BTC, or 0.15 ETH
    assert size(e, positions=pos) == D("0.006")
    assert size(e, positions=pos, symbol=ETH, edge="100", variance="1") == D("0.1500")


def test_engine_size_under_trips_and_without_price():
    e = engine(**BIG)
    pos = {BTC: position(qty="0.01", avg="50000")}
    e.losses.trips["x"] = RiskTrip("x", "reducing", "r", {}, T0)
    assert size(e, positions=pos) == 0
    assert size(e, side=Side.SELL, positions=pos, edge="100", variance="1") == D("0.01")
    opens = [order(Side.SELL, qty="0.004", price="50100")]
    assert size(e, side=Side.SELL, positions=pos, opens=opens, edge="100",
                variance="1") == D("0.006")
    short = {BTC: position(qty="-0.01", avg="50000")}
    assert size(e, positions=short, edge="100", variance="1") == D("0.01")
    assert size(e, side=Side.SELL, positions=short, edge="100", variance="1") == 0
    e.losses.trips["y"] = RiskTrip("y", "halted", "r", {}, T0)
    assert size(e, side=Side.SELL, positions=pos) == 0
    e = engine(**BIG)
    assert size(e, symbol="SOLUSDT", mark=marks(SOLUSDT="100")) == 0   # no instrument
    assert size(e, mark=marks()) == 0                                   # no price at all


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=st.decimals("0", "2", places=5), side=st.sampled_from(list(Side)),
       pos=st.decimals("-0.1", "0.1", places=5), buys=st.decimals("0", "0.05", places=5),
       sells=st.decimals("0", "0.05", places=5), eth=st.decimals("-3", "3", places=4),
       edge=st.decimals("-0.01", "0.05", places=4), var_=st.decimals("0", "0.01", places=5),
       max_pos=st.decimals("0.001", "0.2", places=3), gross=st.integers(1, 20000),
       net=st.integers(1, 20000), mq=st.decimals("0.001", "1", places=3),
       notional=st.integers(5, 5000))
def test_size_is_never_above_the_request_and_passes_the_limits(req, side, pos, buys, sells,
                                                                 eth, edge, var_, max_pos,
                                                                 gross, net, mq, notional):
    e = engine(max_position=max_pos, max_gross_exposure=D(gross), max_net_exposure=D(net),
               max_order_qty=mq, max_order_notional=D(notional), kelly_fraction=D("1"))
    positions = {BTC: position(qty=str(pos), avg="50000"),
                 ETH: position(ETH, qty=str(eth), avg="2000")}
    opens = [o for o in (order(qty=str(buys), price="50000"),
                         order(Side.SELL, qty=str(sells), price="50000")) if o.qty > 0]
    q = e.size(BTC, side, req, edge=edge, variance=var_, positions=positions,
               open_orders=opens, mark=M)
    assert 0 <= q <= req
    assert q == sizing.floor_lot(q, D("0.00001"))
    if q > 0:
        o = order(side, qty=str(q), price="50000")
        reason = e.check(o, positions=positions, open_orders=opens, mark=M, now_ns=T0)
        assert reason is None, reason
