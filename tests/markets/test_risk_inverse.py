"""Risk limits in quote currency for inverse (COIN-M) instruments: an order's notional and
the exposure are contracts x contract size USD (not x the mark), equity converts coin PnL
at the mark, stress and sizing work in USD and contracts. Hand computations throughout."""
from __future__ import annotations

from decimal import Decimal as D

from daemon.config import InstrumentCfg, RiskCfg
from daemon.execution.orders import INVERSE, Instrument, Position, Side
from daemon.risk import stress
from daemon.risk.engine import RiskEngine
from daemon.risk.losses import LossLimits, equity
from tests.risk.common import BTC, INSTRUMENTS, T0, fill, marks, order

PERP = "coinm:BTCUSD_PERP"
INV = Instrument(PERP, D("0.1"), D("1"), D("0"), INVERSE, D("100"))
INSTS = {**INSTRUMENTS,
         PERP: InstrumentCfg(tick_size="0.1", lot_size="1", min_notional="0", kind="inverse",
                             contract_size="100", max_position="1000")}
LOOSE = dict(max_order_qty="1000", max_gross_exposure="1000000", max_net_exposure="1000000",
             price_band_bps=5000.0)


def engine(**risk: object) -> RiskEngine:
    return RiskEngine(RiskCfg(**{**LOOSE, **risk}), INSTS)


def long_perp(qty: str = "10", price: str = "50000", fee: str = "0") -> Position:
    p = INV.new_position()
    p.apply(fill(Side.BUY, qty, price, fee, symbol=PERP))
    return p


def test_order_notional_of_an_inverse_order_is_contracts_times_contract_size() -> None:
    e = engine(max_order_notional="1000")
    m = marks(**{PERP: "50000"})
    # 10 contracts = 1000 USD: at the limit, passes (price x qty would be 500000).
    assert e.check(order(Side.BUY, "10", "50000", PERP), positions={}, open_orders=[],
                   mark=m, now_ns=T0) is None
    reason = e.check(order(Side.BUY, "11", "50000", PERP), positions={}, open_orders=[],
                     mark=m, now_ns=T0)
    assert reason == "order notional 1100 above max_order_notional 1000"
    # A linear order beside it is still priced at price x qty.
    assert e.check(order(Side.BUY, "0.02", "60000", BTC), positions={}, open_orders=[],
                   mark=marks(BTCUSDT="60000"), now_ns=T0) == \
        "order notional 1200.00 above max_order_notional 1000"


def test_gross_exposure_of_an_inverse_position_is_in_usd() -> None:
    e = engine(max_gross_exposure="2500")
    pos = {PERP: long_perp("20")}                      # 2000 USD
    m = marks(**{PERP: "50000"})
    assert e.check(order(Side.BUY, "5", "50000", PERP), positions=pos, open_orders=[],
                   mark=m, now_ns=T0) is None      # 2500: at the limit
    reason = e.check(order(Side.BUY, "6", "50000", PERP), positions=pos, open_orders=[],
                     mark=m, now_ns=T0)
    assert reason is not None and reason.startswith("gross exposure could reach 2600")
    st = e.status(pos, {PERP: D("50000")}, T0)
    assert st["limits"]["gross_exposure"]["used"] == "2000"
    # The USD value of a contract does not move with the price.
    assert e.status(pos, {PERP: D("80000")}, T0)["limits"]["gross_exposure"]["used"] == "2000"


def test_equity_converts_coin_pnl_at_the_mark() -> None:
    # Long 10 @ 50000, fee 0.00001 BTC; at 62500: (0.004 - 0.00001) x 62500 = 249.375 USD.
    pos = {PERP: long_perp(fee="0.00001")}
    assert equity(D("1000"), pos, {PERP: D("62500")}) == D("1249.375")
    # Beside a linear position, each in its own way.
    lin = Position(BTC, D("0.01"), D("60000"), D("5"), D("1"))
    assert equity(D("1000"), {**pos, BTC: lin}, {PERP: D("62500"), BTC: D("61000")}) == \
        D("1249.375") + D("5") - D("1") + D("10")
    # Coin amounts and no price: unknown, not "capital".
    assert equity(D("1000"), pos, {PERP: None}) is None
    assert equity(D("1000"), pos, {PERP: D("0")}) is None, "a zero mark is no price"
    assert equity(D("1000"), pos, {}) is None
    # Flat, but with realised coin PnL (and no fees): still coin that needs a price.
    flat = INV.new_position()
    flat.realized_pnl = D("0.002")
    assert equity(D("1000"), {PERP: flat}, {}) is None
    flat.realized_pnl, flat.fees = D("0"), D("0.0001")
    assert equity(D("1000"), {PERP: flat}, {}) is None
    # Any positive mark values it, even a small one (a coin worth 0.5 USD).
    flat.realized_pnl, flat.fees = D("2"), D("0")
    assert equity(D("1000"), {PERP: flat}, {PERP: D("0.5")}) == D("1001.0")
    assert equity(D("1000"), {PERP: INV.new_position()}, {}) == D("1000")


def test_loss_limits_wait_for_a_price_to_value_coin_then_trip_in_usd() -> None:
    cfg = RiskCfg(daily_loss_limit="50", max_drawdown="100")
    ll = LossLimits(cfg)
    pos = {PERP: long_perp()}
    assert ll.evaluate(pos, {PERP: None}, T0) == []
    assert ll.day_start is None and ll.equity is None, "no day start from a wrong figure"
    assert ll.evaluate(pos, {PERP: D("50000")}, T0) == []
    assert ll.day_start == D("1000")
    # At 47600: 1000 x (1/50000 - 1/47600) BTC x 47600 = 1000 x (47600/50000 - 1) = -48 USD,
    # inside the daily loss limit of 50 (a linear reading, 10 x 2400, would be far beyond).
    assert ll.evaluate(pos, {PERP: D("47600")}, T0) == []
    assert abs(ll.equity - D("952")) < D("1e-20")
    (trip,) = ll.evaluate(pos, {PERP: D("47000")}, T0)
    assert trip.limit == "daily_loss"
    # 1000 x (47000/50000 - 1) = -60 USD.
    assert abs(D(trip.figures["loss"]) - D("60")) < D("1e-20")


def test_stress_values_inverse_positions_in_usd() -> None:
    # -10%: 10 contracts x 100 x (45000/50000 - 1) = -100 USD, which is the coin loss
    # 1000 x (1/50000 - 1/45000) BTC valued at 45000.
    sc = stress.Scenario("price -10%", price_shock=D("-0.10"))
    pnl = stress.scenario_pnl(sc, {PERP: D("10")}, [], {PERP: D("50000")}, {}, D("2"),
                              {PERP: D("100")})
    assert pnl == D("-100")
    coin = D("1000") * (D(1) / D("50000") - D(1) / D("45000"))
    assert abs(coin * D("45000") - pnl) < D("1e-20")
    # A resting buy of 10 at 47500 fills on the way down, valued at 45000:
    # 1000 x (45000/47500 - 1) = -52.63... USD.
    o = order(Side.BUY, "10", "47500", PERP)
    with_order = stress.scenario_pnl(sc, {PERP: D("10")}, [o], {PERP: D("50000")}, {},
                                     D("2"), {PERP: D("100")})
    assert abs(with_order - (D("-100") + D("1000") * (D("45000") / D("47500") - 1))) \
        < D("1e-20")
    # Spread x5 of a 10 USD spread: half of 50 is 25 USD per coin; 1000 USD is 0.02 BTC:
    # 0.02 x 25 = 0.5 USD (a linear 10 BTC would pay 250).
    spread = stress.Scenario("spread x5", spread_mult=D("5"))
    assert stress.scenario_pnl(spread, {PERP: D("10")}, [], {PERP: D("50000")},
                               {PERP: D("10")}, D("2"), {PERP: D("100")}) == D("-0.5")
    # Linear and inverse together: each in its own way, summed (-10% on 0.1 BTC = -500).
    both = stress.scenario_pnl(sc, {BTC: D("0.1"), PERP: D("10")}, [],
                               {BTC: D("50000"), PERP: D("50000")}, {}, D("2"),
                               {PERP: D("100")})
    assert both == D("-600")
    both = stress.scenario_pnl(sc, {PERP: D("10"), BTC: D("0.1")}, [],
                               {BTC: D("50000"), PERP: D("50000")}, {}, D("2"),
                               {PERP: D("100")})
    assert both == D("-600")
    # run() passes the contract sizes on to every scenario.
    res = dict(stress.run([sc, spread], {PERP: D("10")}, [], {PERP: D("50000")},
                          {PERP: D("10")}, D("2"), {PERP: D("100")}))
    assert res == {"price -10%": D("-100"), "spread x5": D("-0.5")}
    # Without contract sizes the arithmetic is the linear one (unchanged).
    assert stress.scenario_pnl(sc, {BTC: D("0.1")}, [], {BTC: D("50000")}, {}, D("2")) == \
        D("-500.0")


def test_engine_stress_limit_values_an_inverse_position_in_usd() -> None:
    # 10 contracts: -20% is 1000 x -0.2 = -200 USD (a linear reading would be -100000).
    e = engine(max_stress_loss="150")
    pos = {PERP: long_perp()}
    st = e.status(pos, {PERP: D("50000")}, T0)
    assert st["stress"]["worst"] == {"scenario": "price -20%", "loss": "200"}
    reason = e.check(order(Side.BUY, "1", "50000", PERP), positions=pos, open_orders=[],
                     mark=marks(**{PERP: "50000"}), now_ns=T0)
    assert reason == ("stress loss could reach 220 (price -20%), max_stress_loss is 150 "
                      "(now 200)")


def test_sizing_caps_inverse_orders_in_contracts() -> None:
    e = engine(max_order_notional="1000")
    pos = {PERP: INV.new_position()}
    # Notional cap: 1000 USD / 100 USD per contract = 10 contracts, at any price.
    for px in ("50000", "20000"):
        # Kelly: 0.25 x (100 / 1) x 1000 USD / 100 USD = 250 contracts, not binding.
        q = e.size(PERP, Side.BUY, D("500"), edge=100, variance=1, positions=pos,
                   open_orders=[], mark=marks(**{PERP: px}))
        assert q == D("10")
    # Kelly in contracts: 0.25 x (1 / 1) x 1000 USD / 100 USD = 2.5 -> 2 contracts,
    # whatever the price (at 50000 a linear reading would give 0.005 -> 0).
    for px in ("50000", "20000"):
        assert e.size(PERP, Side.BUY, D("500"), edge=1, variance=1, positions=pos,
                      open_orders=[], mark=marks(**{PERP: px})) == D("2")


def test_base_currency_quantity_limits_become_contracts_at_the_mark() -> None:
    # [risk] max_order_qty = 1 BTC and max_position = 0.05 BTC; at 50000 a contract of
    # 100 USD is 0.002 BTC: 500 and 25 contracts. No [instruments] max_position here.
    insts = {PERP: InstrumentCfg(tick_size="0.1", lot_size="1", min_notional="0",
                                 kind="inverse", contract_size="100")}
    e = RiskEngine(RiskCfg(max_order_qty="1", max_position="0.05",
                           max_order_notional="1000000", max_gross_exposure="1000000",
                           max_net_exposure="1000000"), insts)
    m = marks(**{PERP: "50000"})
    assert e.max_position(PERP, D("50000")) == D("25")
    assert e.max_position(PERP, D("61000")) == D("30")      # 30.5 down to the lot
    assert e.max_position(PERP) == D("0.05"), "no mark: the base figure, on the safe side"
    assert e.check(order(Side.BUY, "25", "50000", PERP), positions={}, open_orders=[], mark=m,
                   now_ns=T0) is None
    assert e.check(order(Side.BUY, "26", "50000", PERP), positions={}, open_orders=[], mark=m,
                   now_ns=T0) == \
        f"position could reach 26 {PERP}, max_position is 25"
    e2 = RiskEngine(RiskCfg(max_order_qty="1", max_position="100",
                            max_order_notional="1000000", max_gross_exposure="1000000",
                            max_net_exposure="1000000"), insts)
    assert e2.check(order(Side.BUY, "501", "50000", PERP), positions={}, open_orders=[],
                    mark=m, now_ns=T0) == \
        f"order quantity 501 {PERP} above max_order_qty 500"
    # The limit price does not move the conversion: the mark does.
    assert e2.check(order(Side.BUY, "500", "49900", PERP), positions={}, open_orders=[],
                    mark=m, now_ns=T0) is None
    # Sizing uses the same figures.
    assert e.size(PERP, Side.BUY, D("1000"), edge=100, variance=1, positions={},
                  open_orders=[], mark=m) == D("25")
    assert e.status({}, {PERP: D("50000")}, T0, open_orders=[order(Side.BUY, "3", "50000",
                                                                    PERP)]
                    )["limits"]["position"][PERP]["limit"] == "25"


def test_quantity_limit_conversion_edges() -> None:
    insts = {PERP: InstrumentCfg(tick_size="0.1", lot_size="1", min_notional="0",
                                 kind="inverse", contract_size="100"),
             "coinm:LOT2": InstrumentCfg(tick_size="0.1", lot_size="2", min_notional="0",
                                         kind="inverse", contract_size="100")}
    e = RiskEngine(RiskCfg(max_position="0.05"), insts)
    assert e.max_position(PERP, D("0")) == D("0.05"), "a zero mark is no mark"
    assert e.max_position(PERP, D("0.5")) == 0, "0.00025 contracts, down to the lot"
    assert e.max_position(PERP, D("61400")) == D("30"), "30.7 down, not to the nearest"
    assert e.max_position(PERP, D("63000")) == D("31"), "31.5 down, not half-even"
    # Lots of 2 contracts: 25 at 50000 is 12 lots = 24 contracts.
    assert e.max_position("coinm:LOT2", D("50000")) == D("24")


def test_limit_order_without_a_mark_converts_at_its_own_price() -> None:
    e = engine(max_order_qty="1")
    # No mark: 1 BTC at the order's 50000 is 500 contracts, so 501 breaks max_order_qty
    # (and not "max_order_qty 1", the unconverted figure).
    assert e.check(order(Side.BUY, "501", "50000", PERP), positions={}, open_orders=[],
                   mark=marks(), now_ns=T0) == \
        f"order quantity 501 {PERP} above max_order_qty 500"


def test_linear_exposure_beside_an_inverse_instrument_is_price_times_qty() -> None:
    e = engine()
    pos = {BTC: Position(BTC, D("0.01"), D("60000")), PERP: long_perp("20")}
    st = e.status(pos, {BTC: D("61000"), PERP: D("50000")}, T0)
    assert st["limits"]["gross_exposure"]["used"] == "2610"     # 610 + 2000
    assert st["limits"]["net_exposure"]["used"] == "2610"


def test_net_headroom_sums_linear_and_inverse_shorts() -> None:
    # Shorts of 500 USD (0.01 BTC at 50000) and 1000 USD (10 contracts): with max_net 2000
    # another sell may add 500 USD = 5 contracts.
    e = engine(max_net_exposure="2000")
    perp = INV.new_position()
    perp.apply(fill(Side.SELL, "10", "50000", symbol=PERP))
    pos = {BTC: Position(BTC, D("-0.01"), D("50000")), PERP: perp}
    assert e.size(PERP, Side.SELL, D("1000"), edge=100, variance=1, positions=pos,
                  open_orders=[], mark=marks(**{BTC: "50000", PERP: "50000"})) == D("5")
