"""Pre-trade limits through RiskEngine.check: each trips with its figures in the reason and
does not trip just below. Orders, positions and marks are built by hand."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from daemon.config import InstrumentCfg
from daemon.execution.orders import Side
from daemon.risk import limits
from daemon.risk.engine import RiskEngine
from daemon.risk.limits import Book, RateWindow
from daemon.risk.losses import RiskTrip
from tests.risk.common import (BTC, ETH, INSTRUMENTS, MIN_NS, T0, engine, marks, order,
                               position)

BIG = dict(max_order_notional=D("1e9"), max_order_qty=D("1e6"), max_position=D("1e6"),
           max_gross_exposure=D("1e11"), max_net_exposure=D("1e11"))
M = marks(BTCUSDT="60000", ETHUSDT="3000")


def check(e: RiskEngine, o, positions=None, opens=(), mark=M, now=T0):
    return e.check(o, positions=positions or {}, open_orders=list(opens), mark=mark,
                   now_ns=now)


def test_max_order_qty_boundary():
    e = engine(**{**BIG, "max_order_qty": D("0.01")})
    assert check(e, order(qty="0.01")) is None
    assert check(e, order(qty="0.01001")) == \
        "order quantity 0.01001 BTCUSDT above max_order_qty 0.01"


def test_max_order_notional_uses_the_limit_price_or_the_mark():
    e = engine(**{**BIG, "max_order_notional": D("600")})
    assert check(e, order(qty="0.01", price="60000")) is None
    assert check(e, order(qty="0.01", price="60000.01")) == \
        "order notional 600.0001 above max_order_notional 600"
    assert check(e, order(qty="0.01", price=None)) is None     # market: at the mark, 600
    assert check(e, order(qty="0.01", price=None), mark=marks(BTCUSDT="60000.5")) == \
        "order notional 600.005 above max_order_notional 600"


def test_market_order_without_a_mark_is_refused():
    e = engine(**BIG)
    assert check(e, order(price=None), mark=marks()) == "no mark price for a market order"
    assert check(e, order(price=None), mark=marks(BTCUSDT="0")) == \
        "no mark price for a market order"


@pytest.mark.parametrize("mark", [None, "0", "-1"])
def test_limit_order_without_a_trusted_mark_is_refused(mark):
    e = engine(**BIG)
    m = marks() if mark is None else marks(BTCUSDT=mark)
    assert check(e, order(price="60000"), mark=m) == \
        "no trusted reference price for the price band"


def test_limit_order_without_a_price_is_refused_not_raised():
    e = engine(**BIG)
    o = order()
    o.price = None
    o.type = order().type
    assert check(e, o) == "limit order without a price"


def test_price_band_boundary_both_sides():
    e = engine(**{**BIG, "price_band_bps": 200.0})     # 1200 around 60000
    assert check(e, order(price="61200")) is None
    assert check(e, order(price="61200.01")) == \
        "limit price 61200.01 outside the 200.0 bps band around 60000"
    assert check(e, order(Side.SELL, price="58800")) is None
    assert check(e, order(Side.SELL, price="58799.99")) == \
        "limit price 58799.99 outside the 200.0 bps band around 60000"
    # Far on the passive side is not a fat finger.
    assert check(e, order(price="59000")) is None
    assert check(e, order(Side.SELL, price="61000")) is None


def test_price_band_itself_refuses_a_zero_or_negative_mark():
    # (The engine hands it None for such a mark; the function must not trust one either.)
    for mark in (None, D(0), D("-1")):
        assert limits.price_band(order(price="60000"), mark, 200.0) == \
            "no trusted reference price for the price band"
    assert limits.price_band(order(price="60000"), D("60000"), 200.0) is None


def test_global_open_orders_boundary():
    e = engine(**{**BIG, "max_open_orders": 3, "max_open_orders_per_symbol": 3})
    two = [order(), order(symbol=ETH, price="3000")]
    assert check(e, order(), opens=two) is None
    assert check(e, order(), opens=two + [order(symbol=ETH, price="3000")]) == \
        "3 open orders, max_open_orders is 3"


def test_open_orders_per_symbol_counts_only_that_symbol():
    e = engine(**{**BIG, "max_open_orders_per_symbol": 2})
    eth = [order(symbol=ETH, price="3000") for _ in range(3)]
    assert check(e, order(), opens=eth + [order()]) is None
    assert check(e, order(), opens=eth + [order(), order(Side.SELL, price="60100")]) == \
        "2 open BTCUSDT orders, max_open_orders_per_symbol is 2"


def test_position_worst_case_counts_same_symbol_same_side_orders():
    e = engine(**{**BIG, "max_position": D("0.01")})
    others = [order(qty="0.009", symbol=ETH, price="3000"), order(Side.SELL, qty="0.009",
                                                                   price="60100")]
    assert check(e, order(qty="0.002"), opens=others) is None
    same = [order(qty="0.009")]
    assert check(e, order(qty="0.001"), opens=same) is None          # exactly 0.01
    assert check(e, order(qty="0.002"), opens=same) == \
        "position could reach 0.011 BTCUSDT, max_position is 0.01"
    # Partly filled orders count with what remains (the fill is in the position).
    part = [order(qty="0.009", filled="0.004")]
    assert check(e, order(qty="0.005"), {BTC: position(qty="0.004", avg="60000")},
                 part) == "position could reach 0.014 BTCUSDT, max_position is 0.01"
    assert check(e, order(qty="0.001"), {BTC: position(qty="0.004", avg="60000")},
                 part) is None


def test_position_limit_short_side_and_reducing_always_passes():
    e = engine(**{**BIG, "max_position": D("0.05")})
    short = {BTC: position(qty="-0.04", avg="60000")}
    assert check(e, order(Side.SELL, qty="0.01", price="60000"), short) is None
    assert check(e, order(Side.SELL, qty="0.02", price="60000"), short) == \
        "position could reach -0.06 BTCUSDT, max_position is 0.05"
    over = {BTC: position(qty="0.06", avg="60000")}   # the limit was lowered
    assert check(e, order(Side.SELL, qty="0.12", price="60000"), over) is None
    assert check(e, order(Side.SELL, qty="0.1201", price="60000"), over) == \
        "position could reach -0.0601 BTCUSDT, max_position is 0.05"


def test_instrument_max_position_overrides_the_global_one():
    inst = {**INSTRUMENTS, ETH: InstrumentCfg(tick_size="0.01", lot_size="0.0001",
                                              max_position="2")}
    from daemon.config import RiskCfg
    e = RiskEngine(RiskCfg(**{**BIG, "max_position": D("0.05")}), inst)
    assert e.max_position(ETH) == D("2") and e.max_position(BTC) == D("0.05")
    assert check(e, order(symbol=ETH, qty="2", price="3000")) is None
    assert check(e, order(symbol=ETH, qty="2.0001", price="3000")) == \
        "position could reach 2.0001 ETHUSDT, max_position is 2"
    assert check(e, order(qty="0.0501")) == \
        "position could reach 0.0501 BTCUSDT, max_position is 0.05"


def test_gross_exposure_worst_case_boundary():
    e = engine(**{**BIG, "max_gross_exposure": D("1000")})
    m = marks(BTCUSDT="50000", ETHUSDT="3000")
    pos = {BTC: position(qty="0.01", avg="50000")}                  # 500
    opens = [order(qty="0.004", price="50000")]                       # + 200 if filled
    assert check(e, order(qty="0.006", price="50000"), pos, opens, m) is None   # 1000
    assert check(e, order(qty="0.00601", price="50000"), pos, opens, m) == \
        ("gross exposure could reach 1000.50000, max_gross_exposure is 1000 "
         "(now 700.000)")
    # Another symbol adds to gross whatever its direction.
    eth_short = {**pos, ETH: position(ETH, qty="-0.1", avg="3000")}  # +300
    assert check(e, order(qty="0.0000", price="50000"), eth_short, opens, m) is None
    assert check(e, order(qty="0.00001", price="50000"), eth_short, opens, m) == \
        ("gross exposure could reach 1000.50000, max_gross_exposure is 1000 "
         "(now 1000.000)")


def test_gross_exposure_reducing_order_passes_when_over():
    e = engine(**{**BIG, "max_gross_exposure": D("100")})
    pos = {BTC: position(qty="0.01", avg="50000")}                  # 500, over 100
    m = marks(BTCUSDT="50000")
    assert check(e, order(Side.SELL, qty="0.01", price="50000"), pos, (), m) is None
    assert check(e, order(Side.SELL, qty="0.02", price="50000"), pos, (), m) is None
    assert check(e, order(Side.SELL, qty="0.02001", price="50000"), pos, (), m) == \
        ("gross exposure could reach 500.50000, max_gross_exposure is 100 "
         "(now 500.00)")


def test_net_exposure_boundary():
    e = engine(**{**BIG, "max_net_exposure": D("600")})
    m = marks(BTCUSDT="50000", ETHUSDT="3000")
    pos = {BTC: position(qty="0.01", avg="50000"), ETH: position(ETH, qty="-0.1", avg="3000")}
    # net long side: 500 - 300 = 200 (gross 800 would not matter here)
    assert check(e, order(qty="0.008", price="50000"), pos, (), m) is None      # 600
    assert check(e, order(qty="0.00801", price="50000"), pos, (), m) == \
        "net exposure could reach 600.50000, max_net_exposure is 600 (now 200.00)"
    # The short side: BTC 500 with every ETH sell filled.
    assert check(e, order(qty="0.1", symbol=ETH, price="3000"), pos, (), m) is None
    assert check(e, order(Side.SELL, qty="0.1", symbol=ETH, price="3000"), pos, (), m) is None
    assert check(e, order(Side.SELL, qty="0.2", symbol=ETH, price="3000"), pos, (), m) is None
    assert check(e, order(Side.SELL, qty="0.2666", symbol=ETH, price="3000"), pos, (), m) \
        is None                                              # 500 - 1099.8 = -599.8
    assert check(e, order(Side.SELL, qty="0.2667", symbol=ETH, price="3000"), pos, (), m) == \
        "net exposure could reach 600.1000, max_net_exposure is 600 (now 200.00)"


def test_net_exposure_reducing_order_passes_when_over():
    e = engine(**{**BIG, "max_net_exposure": D("100")})
    pos = {BTC: position(qty="-0.01", avg="50000")}                 # net -500, over 100
    m = marks(BTCUSDT="50000")
    assert check(e, order(qty="0.02", price="50000"), pos, (), m) is None
    assert check(e, order(qty="0.02001", price="50000"), pos, (), m) == \
        "net exposure could reach 500.50000, max_net_exposure is 100 (now 500.00)"


def test_exposure_prices_a_symbol_without_mark_at_last_mark_then_avg_price():
    e = engine(**{**BIG, "max_gross_exposure": D("1000")})
    pos = {BTC: position(qty="0.01", avg="50000"), ETH: position(ETH, qty="0.1", avg="2000")}
    # ETH has no mark and was never seen: its average price, 200.
    assert check(e, order(qty="0.006", price="50000"), pos, (), marks(BTCUSDT="50000")) \
        is None
    assert check(e, order(qty="0.00601", price="50000"), pos, (), marks(BTCUSDT="50000")) \
        == "gross exposure could reach 1000.50000, max_gross_exposure is 1000 (now 700.00)"
    # Once a mark was seen, it stands in while the mark is gone: 300.
    check(e, order(qty="0", price="50000"), pos, (), marks(BTCUSDT="50000", ETHUSDT="3000"))
    assert check(e, order(qty="0.00401", price="50000"), pos, (), marks(BTCUSDT="50000")) \
        == "gross exposure could reach 1000.50000, max_gross_exposure is 1000 (now 800.00)"
    # A mark of 0 is no mark either.
    assert check(e, order(qty="0.00401", price="50000"), pos, (),
                 marks(BTCUSDT="50000", ETHUSDT="0")) == \
        "gross exposure could reach 1000.50000, max_gross_exposure is 1000 (now 800.00)"


def test_order_rate_window_edges():
    e = engine(**{**BIG, "max_orders_per_min": 3})
    for t in (0, 1, 2):
        assert check(e, order(), now=T0 + t) is None
        e.note_sent(order(), T0 + t)
    assert check(e, order(), now=T0 + 2) == \
        "order rate: 3 in the last 60 s, max_orders_per_min is 3"
    assert check(e, order(), now=T0 + MIN_NS) is not None   # exactly 60 s old still counts
    assert check(e, order(), now=T0 + MIN_NS + 1) is None


def test_cancel_rate_is_its_own_check():
    e = engine(max_cancels_per_min=2)
    assert e.check_cancel(T0) is None
    e.note_cancel(T0)
    assert e.check_cancel(T0) is None
    e.note_cancel(T0 + 5)
    assert e.check_cancel(T0 + 5) == \
        "cancel rate: 2 in the last 60 s, max_cancels_per_min is 2"
    assert e.check_cancel(T0 + MIN_NS) is not None
    assert e.check_cancel(T0 + MIN_NS + 1) is None
    # Cancels do not count as orders, nor orders as cancels.
    assert check(e, order(), now=T0 + 5) is None


def test_a_halted_trip_refuses_every_order_and_reducing_only_growth():
    e = engine(**BIG)
    pos = {BTC: position(qty="0.01", avg="60000")}
    e.losses.trips["drawdown"] = RiskTrip("drawdown", "reducing", "dd 1", {}, T0)
    assert check(e, order(Side.SELL, qty="0.01"), pos) is None
    assert check(e, order(Side.SELL, qty="0.006"), pos, [order(Side.SELL, qty="0.004")]) \
        is None
    assert check(e, order(Side.SELL, qty="0.02"), pos) == \
        ("risk limit tripped (reducing): position could reach -0.01 BTCUSDT from 0.01; "
         "drawdown: dd 1")
    assert check(e, order(qty="0.00001"), pos) is not None
    assert check(e, order(Side.SELL, qty="0.007"), pos, [order(Side.SELL, qty="0.004")]) \
        is not None
    assert check(e, order(qty="0.00001"), {}) == \
        ("risk limit tripped (reducing): position could reach 0.00001 BTCUSDT from 0; "
         "drawdown: dd 1")
    short = {BTC: position(qty="-0.01", avg="60000")}
    assert check(e, order(qty="0.01"), short) is None
    assert check(e, order(qty="0.01001"), short) is not None
    e.losses.trips["daily_loss"] = RiskTrip("daily_loss", "halted", "loss 2", {}, T0)
    assert check(e, order(Side.SELL, qty="0.01"), pos) == \
        "risk limit tripped (halted): daily_loss: loss 2"
    e.reset()
    assert check(e, order(qty="0.00001"), pos) is None


def test_checks_come_in_order():
    # Several limits broken at once: the reason is the first in the documented order.
    e = engine(max_order_qty=D("0.001"), max_order_notional=D("10"), max_position=D("0.0001"))
    assert check(e, order(qty="0.002", price="70000")).startswith("order quantity")
    assert check(e, order(qty="0.001", price="70000")).startswith("order notional")
    e = engine(max_position=D("0.0001"), max_open_orders=1, max_open_orders_per_symbol=1)
    assert check(e, order(price="70000")).startswith("limit price")
    assert check(e, order(), opens=[order()]).startswith("1 open orders")
    assert check(e, order(qty="0.001")).startswith("position could reach")


# -- the building blocks ---------------------------------------------------------------------
def test_books_and_exposures_by_hand():
    bk = limits.books({BTC: D("0.01"), ETH: D("-1")},
                      [order(qty="0.002"), order(Side.SELL, qty="0.005", price="61000"),
                       order(symbol="SOLUSDT", qty="3", price="100")])
    assert bk[BTC] == Book(D("0.012"), D("0.005"))
    assert bk[ETH] == Book(D("-1"), D("-1"))
    assert bk["SOLUSDT"] == Book(D("3"), D("0"))
    gross, net = limits.exposures(bk, {BTC: D("50000"), ETH: D("3000"), "SOLUSDT": D("100")})
    assert gross == D("600") + D("3000") + D("300")
    # longs filled: 600 - 3000 + 300 = -2100; shorts filled: 250 - 3000 + 0 = -2750
    assert net == D("2750")
    assert limits.exposures(bk, {BTC: D("50000")}) == (D("600"), D("600"))
    assert limits.books({}, [order(qty="0.01", filled="0.004")]) == \
        {BTC: Book(D("0.006"), D("0"))}
    assert Book(D("-2"), D("-3")).gross == D("3")
    assert Book(D("1"), D("-3")).add(Side.SELL, D("1")) == Book(D("1"), D("-4"))


def test_exposures_skip_any_unpriced_symbol_wherever_it_comes():
    bk = {ETH: Book(D("1"), D("1")), BTC: Book(D("0.01"), D("-0.01"))}
    assert limits.exposures(bk, {BTC: D("50000")}) == (D("500"), D("500"))


def test_rate_window_counts_and_forgets():
    w = RateWindow()
    assert w.count(0) == 0
    for t in (0, 10, 20):
        w.note(t)
    assert w.count(20) == 3
    assert w.count(MIN_NS + 10) == 2
    assert w.count(10 * MIN_NS) == 0
    assert w.check(0, 1, "order", "k") is None
