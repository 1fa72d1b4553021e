"""The operator's PnL (page total, /metrics bot4_pnl and per-symbol gauges) in quote
currency for linear and inverse positions. Before: unrealised was (mark - entry) x qty for
every position and coin amounts of a COIN-M one were added to dollars as they were."""
from __future__ import annotations

from decimal import Decimal as D

from daemon.execution.orders import INVERSE, Fill, Instrument, Liquidity, Position, Side
from daemon.operator.view import pnl_of

PERP = "coinm:BTCUSD_PERP"
INV = Instrument(PERP, D("0.1"), D("1"), D("0"), INVERSE, D("100"))


def _inverse_long() -> Position:
    # Long 10 contracts of 100 USD from 50000, 0.001 BTC realised and 0.0001 BTC fees.
    p = INV.new_position()
    p.apply(Fill("f1", "c1", PERP, Side.BUY, D("50000"), D("10"), D("0"), Liquidity.TAKER, 1))
    p.realized_pnl, p.fees = D("0.001"), D("0.0001")
    return p


def test_inverse_figures_are_converted_to_quote_at_the_mark():
    marks = {PERP: D("62500"), "BTCUSDT": D("62500")}
    lin = Position("BTCUSDT", D("0.02"), D("50000"), D("10"), D("1"))
    total, per = pnl_of({PERP: _inverse_long(), "BTCUSDT": lin}, marks.get)
    # Inverse: unrealised 10 x 100 x (1/50000 - 1/62500) = 0.004 BTC; in USD at 62500:
    # realised 62.5, fees 6.25, unrealised 250: 306.25. Linear: 10 - 1 + 250 = 259.
    assert per[PERP]["realized"] == D("62.5") and per[PERP]["fees"] == D("6.25")
    assert per[PERP]["unrealized"] == D("250")
    assert per["BTCUSDT"] == {"qty": D("0.02"), "realized": D("10"), "fees": D("1"),
                              "unrealized": D("250.00"), "mark": D("62500"),
                              "avg_price": D("50000")}
    assert total == D("306.25") + D("259")


def test_an_inverse_position_without_a_mark_is_left_out_not_added_as_coin():
    lin = Position("BTCUSDT", D("0"), D("0"), D("3"), D("1"))
    total, per = pnl_of({PERP: _inverse_long(), "BTCUSDT": lin}, {}.get)
    assert per[PERP]["realized"] is None and per[PERP]["unrealized"] is None \
        and per[PERP]["fees"] is None and per[PERP]["qty"] == D("10")
    assert total == D("2")            # the linear one: realised - fees, nothing unrealised
    assert per["BTCUSDT"]["unrealized"] == D("0")


def test_a_short_linear_position_loses_as_the_mark_rises():
    short = Position("BTCUSDT", D("-0.02"), D("50000"))
    total, per = pnl_of({"BTCUSDT": short}, {"BTCUSDT": D("62500")}.get)
    assert total == per["BTCUSDT"]["unrealized"] == D("-250.00")
