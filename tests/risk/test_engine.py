"""The RiskEngine facade: status with every limit as used / limit, trips, reset, a JSON
snapshot, and check() that never raises whatever Decimal figures it is given."""
from __future__ import annotations

import json

import pytest
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


# -- details the facade must get right ----------------------------------------------------
def test_sample_keeps_only_real_marks_once_per_interval():
    e = engine(var_sample_interval_s=60.0)
    pos = {BTC: position(qty="0.01", avg="50000")}
    assert e.sample(pos, {BTC: D("60000"), ETH: None}, T0)
    assert not e.sample(pos, {BTC: D("60001")}, T0 + MIN_NS - 1)
    assert e.sample(pos, {BTC: None, ETH: D("3000")}, T0 + MIN_NS)
    assert [m for _, m in e.window.samples] == [{BTC: 60000.0}, {ETH: 3000.0}]


def test_marks_below_one_are_prices():
    inst = {**INSTRUMENTS, "DOGEUSDT": INSTRUMENTS[ETH]}
    e = RiskEngine(engine(max_gross_exposure=D("100"), max_order_qty=D("1e6"),
                          max_position=D("1e6")).cfg, inst)
    kw = dict(open_orders=[], now_ns=T0)
    doge = {"DOGEUSDT": position("DOGEUSDT", qty="100", avg="0.4")}
    mk = marks(DOGEUSDT="0.5")
    assert e.check(order(qty="100", price="0.5", symbol="DOGEUSDT"), positions=doge,
                   mark=mk, **kw) is None                     # 50 + 50
    assert e.check(order(qty="101", price="0.5", symbol="DOGEUSDT"), positions=doge,
                   mark=mk, **kw) == \
        "gross exposure could reach 100.5, max_gross_exposure is 100 (now 50.0)"
    # No mark for a held coin below 1: its average price stands in.
    held = {**doge, BTC: position(qty="0", avg="0")}
    e2 = RiskEngine(e.cfg, inst)
    assert e2.check(order(qty="0.0012", price="50000"), positions=held,
                    mark=marks(BTCUSDT="50000"), **kw) is None           # 40 + 60
    assert e2.check(order(qty="0.00121", price="50000"), positions=held,
                    mark=marks(BTCUSDT="50000"), **kw) == \
        "gross exposure could reach 100.50000, max_gross_exposure is 100 (now 40.0)"
    assert e2.status(held, {BTC: D("50000")}, T0)["limits"]["gross_exposure"]["used"] == "40"
    # With its mark (below 1) the coin counts at the mark, not at its average price.
    assert e2.check(order(qty="0.00121", price="50000"), positions=held,
                    mark=marks(BTCUSDT="50000", DOGEUSDT="0.5"), **kw) == \
        "gross exposure could reach 110.50000, max_gross_exposure is 100 (now 50.0)"


def test_reducing_trip_edges():
    e = engine()
    e.losses.trips["x"] = RiskTrip("x", "reducing", "r1", {}, T0)
    e.losses.trips["y"] = RiskTrip("y", "reducing", "r2", {}, T0)
    pos = {BTC: position(qty="0.01", avg="60000")}
    kw = dict(open_orders=[], mark=marks(BTCUSDT="60000"), now_ns=T0)
    assert e.check(order(qty="0"), positions=pos, **kw) is None        # adds nothing
    assert e.check(order(qty="0"), positions={}, **kw) is None         # flat, adds nothing
    assert e.check(order(qty="0.001"), positions=pos, **kw) == \
        ("risk limit tripped (reducing): position could reach 0.011 BTCUSDT from 0.01; "
         "x: r1; y: r2")


def test_var_check_counts_resting_orders_on_the_same_side():
    e, btc, _ = _warm(max_order_notional=D("1e6"))
    m = D(repr(float(btc[-1])))
    mark = marks(BTCUSDT=str(m))
    resting = [order(qty="0.01", price=str(m))]
    v_two = e._var_of({BTC: D("0.015")}, {BTC: m})
    v_one = e._var_of({BTC: D("0.01")}, {BTC: m})
    e.cfg = e.cfg.model_copy(update={"max_var": v_two - D("0.00000001")})
    assert e.check(order(qty="0.005", price=str(m)), positions={}, open_orders=resting,
                   mark=mark, now_ns=T0) == \
        (f"VaR (historical 0.99) could reach {v_two.normalize():f}, max_var is "
         f"{v_two - D('0.00000001')} (now {v_one.normalize():f})")
    # An order that changes nothing never makes VaR worse, even above the limit.
    e.cfg = e.cfg.model_copy(update={"max_var": D("0.00000001")})
    assert e.check(order(qty="0", price=str(m)), positions={}, open_orders=resting,
                   mark=mark, now_ns=T0) is None


def _warm(**cfg):
    import numpy as np
    e = engine(**cfg)
    rng = np.random.default_rng(9)
    btc = np.round(60000 * np.cumprod(1 + rng.standard_t(5, 60) * 0.002), 2)
    for i, p in enumerate(btc):
        e.sample({}, {BTC: D(repr(float(p)))}, T0 + i * MIN_NS)
    return e, btc, None


def test_a_stress_limit_below_one_is_on():
    e = engine(max_stress_loss=D("0.5"))
    pos = {BTC: position(qty="0.0001", avg="50000")}
    # -20% on 0.0001 BTC at 50000 is 1 lost: beyond 0.5, and made worse by a buy.
    assert e.check(order(qty="0.0001", price="50000"), positions=pos, open_orders=[],
                   mark=marks(BTCUSDT="50000"), now_ns=T0) == \
        "stress loss could reach 2 (price -20%), max_stress_loss is 0.5 (now 1)"


def test_var_and_stress_trips_carry_their_time_and_are_logged(caplog):
    e, btc, _ = _warm(max_var=D("0.00000001"), var_action="halted",
                      max_stress_loss=D("0.5"), stress_action="reducing")
    m = D(repr(float(btc[-1])))
    pos = {BTC: position(qty="0.01", avg=str(m))}
    with caplog.at_level("WARNING", logger="daemon.risk.engine"):
        trips = e.evaluate(pos, {BTC: m}, T0 + 5)
    assert [(t.limit, t.action, t.since_ns) for t in trips] == \
        [("var", "halted", T0 + 5), ("stress", "reducing", T0 + 5)]
    assert [r.getMessage() for r in caplog.records] == \
        [f"risk limit {t.limit} tripped ({t.action}): {t.reason}" for t in trips]
    assert e.trips == trips and e.action == "halted"


def test_restore_says_what_is_wrong():
    e = engine()
    with pytest.raises(ValueError, match=r"^risk engine snapshot version 2, expected 1$"):
        e.restore({"version": 2})
    with pytest.raises(ValueError, match=r"^risk engine snapshot version \[1\], expected 1$"):
        e.restore([1])
    with pytest.raises(ValueError, match=r"^risk engine snapshot unreadable: no loss-limit "
                                         r"state$"):
        e.restore({"version": 1})
    with pytest.raises(ValueError, match=r"^risk engine snapshot unreadable: TypeError"):
        e.restore({"version": 1, "var_window": 5, "losses": {}})


def test_instrument_max_position_in_size_and_status():
    inst = {**INSTRUMENTS, ETH: INSTRUMENTS[ETH].model_copy(update={"max_position": D("2")})}
    e = RiskEngine(engine(max_order_qty=D("10"), max_order_notional=D("1e6")).cfg, inst)
    pos = {ETH: position(ETH, qty="1.5", avg="3000")}
    assert e.size(ETH, Side.BUY, D("5"), edge=D("100"), variance=D("1"), positions=pos,
                  open_orders=[], mark=marks(ETHUSDT="3000")) == D("0.5")
    st_ = e.status(pos, {ETH: D("3000")}, T0,
                   open_orders=[order(symbol=ETH, price="3000"), order(), order()])
    assert st_["limits"]["position"] == {ETH: {"used": "1.5", "limit": "2"},
                                         BTC: {"used": "0", "limit": "0.05"}}
    assert st_["limits"]["open_orders_per_symbol"] == {BTC: {"used": "2", "limit": "6"},
                                                       ETH: {"used": "1", "limit": "6"}}


def test_open_sell_orders_count_towards_the_worst_case_short():
    """Exposure is judged on the worst case: the position minus every open sell. A resting
    sell of 0.001 plus a new one of 0.001 could make a flat book 0.002 short (120 at
    60000): beyond max_gross_exposure 100, though each order alone is 60."""
    e = engine(max_gross_exposure=D("100"), max_order_qty=D("1e6"), max_position=D("1e6"))
    kw = dict(positions={}, mark=marks(BTCUSDT="60000"), now_ns=T0)
    resting = order(Side.SELL, qty="0.001", price="60000")
    assert e.check(order(Side.SELL, qty="0.001", price="60000"), open_orders=[], **kw) is None
    assert e.check(order(Side.SELL, qty="0.001", price="60000"), open_orders=[resting],
                   **kw) == "gross exposure could reach 120.000, max_gross_exposure is 100 " \
                            "(now 60.000)"


def test_net_exposure_adds_a_symbol_new_to_the_books_to_those_already_held():
    """Long 0.001 BTC (60) and a first ETH buy of 0.05 (150): net long 210, beyond
    max_net_exposure 200, though the ETH order alone is 150."""
    e = engine(max_net_exposure=D("200"), max_order_qty=D("1e6"), max_position=D("1e6"))
    kw = dict(positions={BTC: position(qty="0.001", avg="60000")}, open_orders=[],
              mark=marks(BTCUSDT="60000", ETHUSDT="3000"), now_ns=T0)
    assert e.check(order(qty="0.04", price="3000", symbol=ETH), **kw) is None     # 180
    assert e.check(order(qty="0.05", price="3000", symbol=ETH), **kw) == \
        "net exposure could reach 210.000, max_net_exposure is 200 (now 60.000)"
