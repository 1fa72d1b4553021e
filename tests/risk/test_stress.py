"""Stress scenarios computed by hand on a small book of positions and open orders, the
worst loss in status, as a pre-trade limit (the new order included as a resting order)
and as a continuous trip."""
from __future__ import annotations

from decimal import Decimal as D

from daemon.execution.orders import Side
from daemon.risk import stress
from tests.risk.common import BTC, ETH, T0, engine, marks, order, position

MARKS = {BTC: D("50000"), ETH: D("2000")}


def book():
    pos = {BTC: position(qty="0.02", avg="49000"), ETH: position(ETH, qty="-1", avg="2100")}
    opens = [order(qty="0.01", price="49500"), order(Side.SELL, qty="0.01", price="50500"),
             order(qty="0.5", price="1990", symbol=ETH), order(qty="0.001", price=None)]
    return pos, opens


# By hand (BTC 50000, ETH 2000; long 0.02 BTC, short 1 ETH):
# -10%: positions -100 + 200; BTC bid 49500 fills, -45; ETH bid 1990 fills, -95;
#       the market buy fills at 50000, -5; the ask at 50500 is never reached  -> -45
# -20%: -200 + 400 - 95 - 195 - 10                                             -> -100
# +10%: +100 - 200; the ask at 50500 fills, -45; the market buy +5; bids stay  -> -140
# spread x5: BTC 0.02 * 5 * 1.0 / 2 = 0.05; ETH has no quoted spread: 10 bps of 2000 = 2,
#       1 * 5 * 2 / 2 = 5                                                      -> -5.05
# fill all: +5 (bid) +5 (ask) +5 (ETH bid) +0 (market)                          -> +15
EXPECTED = [("price -10%", D("-45")), ("price -20%", D("-100")), ("price +10%", D("-140")),
            ("spread x5", D("-5.05")), ("fill all", D("15"))]


def test_default_scenarios_by_hand():
    e = engine()
    pos, opens = book()
    res = stress.run(e.scenarios, {s: p.qty for s, p in pos.items()}, opens, MARKS,
                     {BTC: D("1.0")}, D("10"))
    assert [n for n, _ in res] == [n for n, _ in EXPECTED]
    assert [p for _, p in res] == [p for _, p in EXPECTED]
    assert stress.worst(res) == ("price +10%", D("140"))


def test_scenario_list_follows_the_config():
    scs = stress.scenarios([D("-0.05")], D("2.5"), False)
    assert [s.name for s in scs] == ["price -5%", "spread x2.5"]
    assert scs[0] == stress.Scenario("price -5%", price_shock=D("-0.05"))
    assert scs[1] == stress.Scenario("spread x2.5", spread_mult=D("2.5"))


def test_unpriced_symbols_are_left_out_and_nothing_lost_is_zero():
    pos = {ETH: D("1"), BTC: D("0.01")}          # the unpriced symbol first
    sc = stress.Scenario("p", price_shock=D("-0.5"))
    opens = [order(qty="1", price="1", symbol=ETH), order(qty="0.01", price="100")]
    assert stress.scenario_pnl(sc, pos, opens, {BTC: D("100")}, {}, D("10")) == D("-1")
    sp = stress.Scenario("s", spread_mult=D("3"))
    assert stress.scenario_pnl(sp, pos, [], {BTC: D("100")}, {}, D("20")) == D("-0.003")
    assert stress.worst([("a", D("1")), ("b", D("0"))]) == (None, D("0"))
    assert stress.worst([("a", D("-1")), ("b", D("-3")), ("c", D("-2"))]) == ("b", D("3"))


def test_status_shows_every_scenario_and_the_worst():
    e = engine()
    pos, opens = book()
    st = e.status(pos, MARKS, T0, open_orders=opens, spreads={BTC: D("1.0")})
    assert st["stress"] == {
        "scenarios": {n: f"{p.normalize():f}" for n, p in EXPECTED},
        "worst": {"scenario": "price +10%", "loss": "140"}, "limit": "off"}
    assert st["limits"]["stress"] == {"used": "140", "limit": "off"}


def test_pre_trade_stress_limit_counts_the_new_order_as_resting():
    pos, opens = book()
    kw = dict(positions=pos, open_orders=opens, mark=marks(BTCUSDT="50000", ETHUSDT="2000"),
              now_ns=T0)
    ask = order(Side.SELL, qty="0.01", price="50000")   # +10% fills it: -50 more
    e = engine(max_stress_loss=D("190"))
    assert e.check(ask, **kw) is None
    e = engine(max_stress_loss=D("189.99"))
    assert e.check(ask, **kw) == \
        "stress loss could reach 190 (price +10%), max_stress_loss is 189.99 (now 140)"
    # Above the limit already: an order that leaves the worst case as it is passes (an ask
    # above every shocked price fills only in "fill all", at a profit) ...
    e = engine(max_stress_loss=D("100"))
    assert e.check(order(Side.SELL, qty="0.001", price="56000"), **kw) is None
    # ... one that makes another scenario the worst is refused: -20% fills this bid.
    assert e.check(order(qty="0.01", price="50000"), **kw) == \
        "stress loss could reach 200 (price -20%), max_stress_loss is 100 (now 140)"
    # Off (0): no stress check at all.
    assert engine().check(ask, **kw) is None


def test_continuous_stress_trip_with_its_action():
    pos, opens = book()
    e = engine(max_stress_loss=D("140"), stress_action="halted")
    assert e.evaluate(pos, MARKS, T0, open_orders=opens) == []
    e = engine(max_stress_loss=D("139.99"), stress_action="halted")
    [t] = e.evaluate(pos, MARKS, T0, open_orders=opens, spreads={BTC: D("1")})
    assert (t.limit, t.action, t.since_ns) == ("stress", "halted", T0)
    assert t.reason == "stress loss 140 (price +10%) beyond max_stress_loss 139.99"
    assert t.figures == {"loss": "140", "scenario": "price +10%", "limit": "139.99"}
    assert e.evaluate(pos, MARKS, T0 + 1, open_orders=opens) == []
    assert e.action == "halted"
    # A wide quoted spread makes the spread scenario the worst.
    e = engine(max_stress_loss=D("139.99"), stress_action="reducing")
    [t] = e.evaluate(pos, MARKS, T0, open_orders=opens, spreads={BTC: D("1"), ETH: D("60")})
    assert t.figures["scenario"] == "spread x5" and t.figures["loss"] == "150.05"
    assert e.action == "reducing"
