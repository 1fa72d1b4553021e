"""Inverse (COIN-M) contracts: Instrument filters and notionals, Position PnL in coin against
hand computations, the paper venue's coin fees, and the journal rebuilding inverse
positions. BTCUSD_PERP: 100 USD per contract, quantity in contracts.

Prices are chosen so that 1/price is a terminating decimal (1/50000 = 0.00002,
1/62500 = 0.000016, 1/40000 = 0.000025): the hand computations are exact."""
from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction
from itertools import count

import pytest

from daemon.execution.orders import (INVERSE, LINEAR, Fill, Instrument, Liquidity, Order,
                                     OrderStatus, OrderType, Position, Side, TimeInForce)
from daemon.store.journal import Journal
from tests.test_paper_venue import Sim

PERP = "coinm:BTCUSD_PERP"
INV = Instrument(PERP, D("0.1"), D("1"), D("0"), INVERSE, D("100"))
LIN = Instrument("BTCUSDT", D("0.01"), D("0.00001"), D("5"))
_ids = count(1)


def fill(side: Side, qty: str, price: str, fee: str = "0", symbol: str = PERP) -> Fill:
    n = next(_ids)
    return Fill(f"f{n}", f"c{n}", symbol, side, D(price), D(qty), D(fee), Liquidity.TAKER,
                n)


def pos_after(*fills: Fill) -> Position:
    p = INV.new_position()
    for f in fills:
        p.apply(f)
    return p


# -- Instrument ---------------------------------------------------------------------------
def test_inverse_notionals() -> None:
    # 10 contracts of 100 USD: 1000 USD whatever the price; 1000/50000 = 0.02 BTC.
    assert INV.notional_quote(D("50000"), D("10")) == D("1000")
    assert INV.notional_quote(D("62500"), D("10")) == D("1000")
    assert INV.notional_settle(D("50000"), D("10")) == D("0.02")
    assert INV.notional_settle(D("62500"), D("10")) == D("0.016")
    assert LIN.notional_quote(D("60000"), D("0.001")) == LIN.notional_settle(
        D("60000"), D("0.001")) == D("60")
    assert INV.inverse and not LIN.inverse


def test_inverse_check_counts_whole_contracts_and_needs_no_price() -> None:
    assert INV.round_qty(D("3.7")) == D("3")
    assert INV.check(None, INV.round_qty(D("0.9")), None) == \
        "quantity rounds to zero at lot size 1"
    # No minimum notional on COIN-M and the USD notional needs no price: a market order
    # passes without a reference price (a linear one cannot be checked without it).
    assert INV.check(None, D("1"), None) is None
    assert LIN.check(None, D("0.001"), None) == "no price to check the minimum notional against"
    assert INV.check(D("-1"), D("1"), None) == "price must be positive, got -1"
    # A minimum notional, when set, is USD: contracts x contract size.
    with_min = Instrument(PERP, D("0.1"), D("1"), D("500"), INVERSE, D("100"))
    assert with_min.check(D("50000"), D("4"), None) == "notional 400 below minimum 500"
    assert with_min.check(D("50000"), D("5"), None) is None
    assert with_min.check(D("1000000"), D("4"), None) == "notional 400 below minimum 500"


@pytest.mark.parametrize("kw, words", [
    ({"kind": "quanto"}, "kind must be one of"),
    ({"kind": INVERSE, "contract_size": D("0")}, "contract_size must be positive"),
    ({"kind": INVERSE, "contract_size": D("-10")}, "contract_size must be positive"),
    ({"kind": LINEAR, "contract_size": D("100")}, "contract_size is for inverse"),
    ({"kind": INVERSE, "contract_size": D("100"), "min_notional": D("-1")},
     "min_notional must be >= 0"),
])
def test_instrument_refuses_a_contract_that_cannot_be(kw: dict, words: str) -> None:
    args = {"symbol": PERP, "tick_size": D("0.1"), "lot_size": D("1"), "min_notional": D("0"),
            **kw}
    with pytest.raises(ValueError, match=words):
        Instrument(**args)


def test_instrument_accepts_no_minimum_notional_and_a_linear_size_of_one() -> None:
    # COIN-M has no minimum notional (the minimum is one contract): 0 is allowed.
    inv = Instrument(PERP, D("0.1"), D("1"), D("0"), INVERSE, D("10"))
    assert inv.min_notional == 0 and inv.contract_size == D("10")
    lin = Instrument("BTCUSDT", D("0.01"), D("0.00001"), D("0"), LINEAR, D("1"))
    assert lin.check(D("60000"), D("0.00001"), None) is None


def test_new_position_settles_like_its_instrument() -> None:
    p = INV.new_position()
    assert (p.symbol, p.kind, p.contract_size, p.qty) == (PERP, INVERSE, D("100"), 0)
    assert LIN.new_position() == Position("BTCUSDT")


# -- Position: PnL in coin -------------------------------------------------------------------
def test_round_trip_long_pnl_in_coin_by_hand() -> None:
    # 10 contracts x 100 USD x (1/50000 - 1/62500) = 1000 x 0.000004 = 0.004 BTC.
    # Taker 5 bps of the coin notional: 0.02 BTC -> 0.00001, 0.016 BTC -> 0.000008.
    p = pos_after(fill(Side.BUY, "10", "50000", "0.00001"))
    assert (p.qty, p.avg_price) == (D("10"), D("50000"))
    assert p.unrealized(D("62500")) == D("0.004")
    # Its quote value is 1000 USD whatever the mark; a linear position's moves with it.
    assert p.notional_quote(D("62500")) == p.notional_quote(D("1")) == D("1000")
    assert Position("BTCUSDT", D("-0.02")).notional_quote(D("50000")) == D("-1000.00")
    # The same move on a linear position of the same USD size (0.02 BTC) makes 250 USD,
    # but the inverse one makes 0.004 BTC = 250 USD at the exit price: not the same figure.
    p.apply(fill(Side.SELL, "10", "62500", "0.000008"))
    assert p.qty == 0 and p.avg_price == 0
    assert p.realized_pnl == D("0.004")
    assert p.fees == D("0.000018")
    assert p.unrealized(D("70000")) == 0
    # In quote currency at the exit price: (0.004 - 0.000018) x 62500 = 248.875 USD.
    assert p.pnl_quote(D("62500")) == D("248.875")


def test_round_trip_short_pnl_sign_flipped() -> None:
    # Short from 62500, cover at 50000: 1000 x (1/50000 - 1/62500) = +0.004 BTC.
    p = pos_after(fill(Side.SELL, "10", "62500"))
    assert p.unrealized(D("50000")) == D("0.004")
    assert p.unrealized(D("80000")) == D("1000") * (D("0.000016") - D("0.0000125")) * -1
    p.apply(fill(Side.BUY, "10", "50000"))
    assert p.realized_pnl == D("0.004") and p.qty == 0
    # And the losing way: short from 50000, cover at 62500.
    q = pos_after(fill(Side.SELL, "10", "50000"), fill(Side.BUY, "10", "62500"))
    assert q.realized_pnl == D("-0.004")


def test_average_entry_is_the_contract_weighted_harmonic_mean() -> None:
    # 10 @ 50000 + 10 @ 40000: 20 / (10/50000 + 10/40000) = 44444.44..., not 45000.
    p = pos_after(fill(Side.BUY, "10", "50000"), fill(Side.BUY, "10", "40000"))
    assert abs(Fraction(p.avg_price) - Fraction(400000, 9)) < Fraction(1, 10**20)
    # Closing all at 62500 realises the sum of the two legs: 0.004 + 0.009 = 0.013 BTC.
    p.apply(fill(Side.SELL, "20", "62500"))
    assert abs(Fraction(p.realized_pnl) - Fraction(13, 1000)) < Fraction(1, 10**20)
    assert p.realized_pnl.quantize(D("1e-18")) == D("0.013")


def test_partial_close_keeps_the_entry_of_the_rest() -> None:
    p = pos_after(fill(Side.BUY, "10", "50000"))
    p.apply(fill(Side.SELL, "4", "62500"))            # 400 x 0.000004 = 0.0016
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("6"), D("50000"), D("0.0016"))
    p.apply(fill(Side.SELL, "6", "40000"))            # 600 x (0.00002 - 0.000025) = -0.003
    assert (p.qty, p.realized_pnl) == (D("0"), D("-0.0014"))


def test_flip_through_zero_opens_the_rest_at_the_fill_price() -> None:
    p = pos_after(fill(Side.BUY, "10", "50000"))
    p.apply(fill(Side.SELL, "15", "62500"))           # closes 10 (+0.004), opens 5 short
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("-5"), D("62500"), D("0.004"))
    p.apply(fill(Side.BUY, "5", "50000"))             # short 5 covered: +500 x 0.000004
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("0"), D("0"), D("0.006"))


def test_linear_position_is_unchanged() -> None:
    p = Position("BTCUSDT")
    for f in (fill(Side.BUY, "0.01", "50000", "0.25", "BTCUSDT"),
              fill(Side.SELL, "0.01", "62500", "0.3125", "BTCUSDT")):
        p.apply(f)
    assert (p.realized_pnl, p.fees, p.kind) == (D("125.00"), D("0.5625"), LINEAR)
    assert p.pnl_quote(D("1")) == p.pnl_quote(D("70000")) == D("124.4375")


def test_unrealized_and_quote_pnl_of_open_positions() -> None:
    # Linear: long 0.02 from 50000, mark 62500: (62500 - 50000) x 0.02 = 250 quote; short
    # the same: -250. Quote PnL adds realised - fees and is not converted.
    lin = Position("BTCUSDT", D("0.02"), D("50000"), D("10"), D("1"))
    assert lin.unrealized(D("62500")) == D("250.00")
    assert Position("BTCUSDT", D("-0.02"), D("50000")).unrealized(D("62500")) == D("-250.00")
    assert lin.pnl_quote(D("62500")) == D("259.00")
    # Inverse: long 10 from 50000 with 0.001 BTC realised and 0.0001 BTC fees, mark 62500:
    # (0.001 - 0.0001 + 0.004) BTC x 62500 = 306.25 USD.
    inv = pos_after(fill(Side.BUY, "10", "50000"))
    inv.realized_pnl, inv.fees = D("0.001"), D("0.0001")
    assert inv.pnl_quote(D("62500")) == D("306.25")
    # Short 10 from 62500, mark 50000: +0.004 BTC unrealised, x 50000 = 200 USD.
    short = pos_after(fill(Side.SELL, "10", "62500"))
    assert short.pnl_quote(D("50000")) == D("200")


# -- the paper venue: coin fees --------------------------------------------------------------
def inverse_sim() -> Sim:
    # Book in contracts, as COIN-M depth is.
    return Sim([(49_999.9, 50.0), (49_000.0, 100.0)], [(50_000.0, 30.0), (50_100.0, 40.0)],
               symbol=PERP, instruments={PERP: INV}, maker_fee_bps=1.0, taker_fee_bps=5.0)


def test_paper_venue_fills_an_inverse_order_with_coin_fees() -> None:
    s = inverse_sim()
    cid = s.order(Side.BUY, "10", type=OrderType.MARKET, tif=TimeInForce.IOC, symbol=PERP)
    s.at(1000)
    (f,) = s.rec.fills(cid)
    assert (f.symbol, f.price, f.qty, f.liquidity) == (PERP, D("50000"), D("10"),
                                                        Liquidity.TAKER)
    # 5 bps of 10 x 100 / 50000 = 0.02 BTC: 0.00001 BTC (a linear fee would be 250).
    assert f.fee == D("0.00001000")
    # Resting bid at 40000 on an empty level, swept by a sell print: maker, 1 bp of
    # 20 x 100 / 40000 = 0.05 BTC = 0.000005 BTC.
    bid = s.order(Side.BUY, "20", "40000", symbol=PERP)
    s.at(3000)
    s.trade(4000, 39_000.0, 25.0, sell=True, symbol=PERP)
    (m,) = s.rec.fills(bid)
    assert (m.price, m.qty, m.liquidity, m.fee) == (D("40000"), D("20"), Liquidity.MAKER,
                                                    D("0.00000500"))
    # The position these fills make: long 10 @ 50000 + 20 @ 40000, fees in coin.
    p = pos_after(f, m)
    assert p.fees == D("0.000015")
    assert abs(Fraction(p.avg_price) - Fraction(30, 1) / (Fraction(10, 50000)
                                                           + Fraction(20, 40000))) \
        < Fraction(1, 10**18)


def test_paper_venue_floors_inverse_fills_to_whole_contracts() -> None:
    # The lot step comes from the instrument: a print of 7.6 contracts fills 7.
    s = inverse_sim()
    bid = s.order(Side.BUY, "10", "40000", symbol=PERP)
    s.at(1000)
    s.trade(2000, 39_000.0, 7.6, sell=True, symbol=PERP)
    (m,) = s.rec.fills(bid)
    assert m.qty == D("7")


def test_paper_venue_linear_fees_unchanged_beside_an_inverse_instrument() -> None:
    s = Sim([(100.0, 5.0)], [(101.0, 5.0)], instruments={PERP: INV, "BTCUSDT": LIN},
            taker_fee_bps=5.0)
    cid = s.order(Side.BUY, "2", type=OrderType.MARKET, tif=TimeInForce.IOC)
    s.at(1000)
    (f,) = s.rec.fills(cid)
    assert f.fee == D("0.10100000")              # 101 x 2 x 5 bps, quote currency


# -- the journal: inverse positions from the fills -----------------------------------------
def _order(f: Fill) -> Order:
    return Order(f.client_id, f.symbol, f.side, OrderType.MARKET, f.qty, None,
                 TimeInForce.IOC, status=OrderStatus.FILLED, filled_qty=f.qty,
                 avg_price=f.price)


def test_journal_rebuilds_inverse_positions_given_the_instruments(tmp_path) -> None:
    insts = {PERP: INV, "BTCUSDT": LIN}
    fills = [fill(Side.BUY, "10", "50000", "0.00001"),
             fill(Side.BUY, "0.01", "50000", "0.25", "BTCUSDT"),
             fill(Side.SELL, "4", "62500", "0.0000032"),
             fill(Side.SELL, "0.01", "62500", "0.3125", "BTCUSDT")]
    live = {PERP: INV.new_position(), "BTCUSDT": LIN.new_position()}
    j = Journal(tmp_path / "journal.db")
    try:
        for f in fills:
            live[f.symbol].apply(f)
            j.record_order(_order(f), f.ts_ns)
            j.record_fill(f, _order(f), live[f.symbol])
    finally:
        j.close()
    j = Journal(tmp_path / "journal.db", must_exist=True)
    try:
        table, replayed = j.positions(insts), j.positions_from_fills(insts)
        assert table == replayed == live
        assert table[PERP].kind == INVERSE and table[PERP].contract_size == D("100")
        assert table[PERP].realized_pnl == D("0.0016") and table[PERP].qty == D("6")
        assert table["BTCUSDT"].realized_pnl == D("125.00")
        # Without the instruments everything is linear (the default is kept), and the
        # inverse PnL comes out wrong: that is why the instruments must be given.
        plain = j.positions_from_fills()
        assert plain[PERP].kind == LINEAR and plain[PERP].realized_pnl == D("50000")
        assert plain["BTCUSDT"] == live["BTCUSDT"]
        assert j.positions()[PERP].kind == LINEAR
    finally:
        j.close()
