"""The RiskEngine facade: status with every limit as used / limit, trips, reset, a JSON
snapshot, and check() that never raises whatever Decimal figures it is given."""
from __future__ import annotations

import json
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings, strategies as st

from daemon.execution.orders import Order, OrderType, Side, TimeInForce
from daemon.risk.engine import RiskEngine
from daemon.risk.losses import RiskTrip
from tests.risk.common import (BTC, DAY_NS, ETH, INSTRUMENTS, MIN_NS, T0, engine, fill,
                               marks, order, position, trade)


def test_status_shows_every_limit_used_against_its_limit():
    e = engine(max_open_orders=8, max_open_orders_per_symbol=4, max_orders_per_min=50,
               max_cancels_per_min=40, max_var=D("25"), capital=D("2000"))
    pos = {BTC: position(qty="0.02", avg="50000"), ETH: position(ETH, qty="-0.5", avg="2000")}
    opens = [order(qty="0.01", price="49900"), order(Side.SELL, qty="0.2", price="2010",
                                                      symbol=ETH)]
    for t in range(3):
        e.note_sent(opens[0], T0 + t)
    e.note_cancel(T0)
    mk = {BTC: D("50000"), ETH: D("2000")}
    e.evaluate(pos, mk, T0)
    st_ = e.status(pos, mk, T0 + 10, open_orders=opens)
    lim = st_["limits"]
    assert lim["max_order_qty"] == {"limit": "1"}
    assert lim["max_order_notional"] == {"limit": "1000"}
    assert lim["price_band_bps"] == {"limit": "200"}
    assert lim["open_orders"] == {"used": "2", "limit": "8"}
    assert lim["open_orders_per_symbol"] == {BTC: {"used": "1", "limit": "4"},
                                             ETH: {"used": "1", "limit": "4"}}
    assert lim["position"] == {BTC: {"used": "0.02", "limit": "0.05"},
                               ETH: {"used": "0.5", "limit": "0.05"}}
    # gross: BTC 0.03 * 50000 + ETH 0.7 * 2000; net: longs 1500 - 1000, shorts 1000 - 1400
    assert lim["gross_exposure"] == {"used": "2900", "limit": "10000"}
    assert lim["net_exposure"] == {"used": "500", "limit": "10000"}
    assert lim["orders_per_min"] == {"used": "3", "limit": "50"}
    assert lim["cancels_per_min"] == {"used": "1", "limit": "40"}
    assert lim["daily_loss"] == {"used": "0", "limit": "50"}
    assert lim["drawdown"] == {"used": "0", "limit": "100"}
    assert lim["losing_streak"] == {"used": "0", "limit": "25"}
    assert lim["var"] == {"used": None, "limit": "25"}        # warming up
    assert lim["stress"]["limit"] == "off"
    assert st_["equity"] == "2000" and st_["day"] == "2024-10-04"
    assert st_["day_start_equity"] == "2000" and st_["peak"] == "2000"
    assert st_["var"] == {"method": "historical", "level": "0.99", "returns": 0,
                          "window": 1440, "min_returns": 30, "interval_s": 60.0, "table": {}}
    assert st_["action"] is None and st_["trips"] == []
    # An ETH limit of its own shows up as such.
    json.dumps(st_)


def test_status_before_any_evaluate_and_with_a_trip():
    e = engine(daily_loss_limit=D("10"))
    st0 = e.status({}, {}, T0)
    assert st0["equity"] is None and st0["day"] is None
    assert st0["limits"]["daily_loss"] == {"used": None, "limit": "10"}
    assert st0["limits"]["open_orders_per_symbol"] == {} and st0["limits"]["position"] == {}
    p = position()
    e.evaluate({BTC: p}, {BTC: D("60000")}, T0)
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.5"))
    [t] = e.evaluate({BTC: p}, {BTC: D("59000")}, T0 + 7)
    st_ = e.status({BTC: p}, {BTC: D("59000")}, T0 + 8)
    assert st_["action"] == "halted"
    assert st_["trips"] == [{"limit": "daily_loss", "action": "halted", "reason": t.reason,
                             "figures": t.figures, "since_ns": T0 + 7}]
    assert st_["limits"]["daily_loss"] == {"used": "10.5", "limit": "10"}


def test_trips_property_and_reset_everything():
    e = engine(max_var=D("1"), var_action="halted")
    e.losses.trips["var"] = RiskTrip("var", "halted", "v", {}, T0)
    assert e.trips == [RiskTrip("var", "halted", "v", {}, T0)] and e.action == "halted"
    e.reset()
    assert e.trips == [] and e.action is None


def test_snapshot_is_plain_json_with_decimals_as_strings():
    e = engine(max_losing_streak=1)
    p = position()
    e.evaluate({BTC: p}, {BTC: D("60000")}, T0)
    trade(e, p, fill(Side.BUY, "0.01", "60000", fee="0.25"))
    trade(e, p, fill(Side.SELL, "0.01", "59999", fee="0.25"))
    trade(e, p, fill(Side.BUY, "0.01", "59999", fee="0.25"))
    e.evaluate({BTC: p}, {BTC: D("60000")}, T0 + 1)
    e.sample({}, {BTC: D("60000.5")}, T0)
    snap = e.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    los = snap["losses"]
    assert los["day"] == 20_000 and los["day_start_equity"] == "1000"
    assert los["streak"] == 1 and los["round_trips"] == {BTC: {"realized": "-0.01",
                                                               "fees": "0.50"}}
    assert los["trips"][0]["limit"] == "losing_streak"
    assert snap["var_window"] == [[T0, {BTC: 60000.5}]]


def test_a_day_rollover_in_event_time_keeps_the_trip_and_status_says_the_new_day():
    e = engine(daily_loss_limit=D("5"))
    p = position()
    e.evaluate({BTC: p}, {BTC: D("60000")}, T0 + DAY_NS - MIN_NS)
    trade(e, p, fill(Side.BUY, "0.01", "60000"))
    assert len(e.evaluate({BTC: p}, {BTC: D("59000")}, T0 + DAY_NS - 1)) == 1
    assert e.evaluate({BTC: p}, {BTC: D("61000")}, T0 + DAY_NS) == []
    st_ = e.status({BTC: p}, {BTC: D("61000")}, T0 + DAY_NS)
    assert st_["day"] == "2024-10-05" and st_["action"] == "halted"


# -- check() never raises ----------------------------------------------------------------
dec = st.decimals(min_value=D("-1e12"), max_value=D("1e12"), allow_nan=False,
                  allow_infinity=False, places=8)
pos_dec = st.decimals(min_value=D("0"), max_value=D("1e9"), allow_nan=False,
                      allow_infinity=False, places=8)
mark_ = st.one_of(st.none(), dec)


@st.composite
def orders(draw):
    sym = draw(st.sampled_from([BTC, ETH, "SOLUSDT"]))
    typ = draw(st.sampled_from(list(OrderType)))
    price = draw(dec) if typ is OrderType.LIMIT else None
    return Order("h", sym, draw(st.sampled_from(list(Side))), typ, draw(dec), price,
                 TimeInForce.GTC, filled_qty=draw(pos_dec))


_FED = engine(max_var=D("10"), max_stress_loss=D("10"), var_action="reducing",
              stress_action="halted", var_window=500)
for _i in range(40):
    _FED.sample({}, {BTC: D(60000 + (_i * 37) % 400), ETH: D(3000 + (_i * 13) % 90)},
                T0 + _i * MIN_NS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(o=orders(), opens=st.lists(orders(), max_size=4),
       qtys=st.dictionaries(st.sampled_from([BTC, ETH]), dec, max_size=2),
       avgs=st.tuples(pos_dec, pos_dec), m_btc=mark_, m_eth=mark_, now=st.integers(0, 2**62))
def test_check_evaluate_size_status_never_raise(o, opens, qtys, avgs, m_btc, m_eth, now):
    pos = {s: position(s, qty=str(q), avg=str(avgs[i])) for i, (s, q) in
           enumerate(qtys.items())}
    mk = marks(**{k: str(v) for k, v in (("BTCUSDT", m_btc), ("ETHUSDT", m_eth))
                  if v is not None})
    for e in (engine(), _FED):
        r = e.check(o, positions=pos, open_orders=opens, mark=mk, now_ns=now)
        assert r is None or isinstance(r, str)
        e.size(o.symbol, o.side, abs(o.qty), edge=D("0.01"), variance=D("0.01"),
               positions=pos, open_orders=opens, mark=mk)
        mdict = {BTC: m_btc, ETH: m_eth}
        e.evaluate(pos, mdict, now, open_orders=opens)
        json.dumps(e.status(pos, mdict, now, open_orders=opens))
        e.reset()


def test_engine_accepts_instrument_configs_as_given():
    e = RiskEngine(engine().cfg, INSTRUMENTS)
    assert e.instruments == INSTRUMENTS and e.instruments is not INSTRUMENTS
