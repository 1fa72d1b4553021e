"""The quoter's spread floor (the Glosten-Milgrom floor from daemon/analytics/runner.py):
its half spread is max(configured half spread, floor / 2), measured on the prices of the
post-only orders it sends through a real gateway (tests/test_sabotage.py's Rig: real
journal, paper venue, risk and breakers)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.config import StrategyCfg
from daemon.execution.orders import Side
from daemon.strategy.quoter import Quoter
from tests.test_sabotage import SYM, Rig

MID = Decimal("60000")   # the Rig's book: 59999.99 / 60000.01


def _quote(tmp_path, floor) -> dict[Side, Decimal]:
    r = Rig(tmp_path)
    asked: list[str] = []

    def spread_floor(symbol: str):
        asked.append(symbol)
        return floor

    q = Quoter(StrategyCfg(half_spread_bps=5.0), r.gw, market=None, can_trade=lambda: True,
               spread_floor=spread_floor)
    q.on_market(SYM, r.book, 1_000)
    assert asked == [SYM]
    px = {o.side: o.price for o in r.gw.open.values()}
    assert sorted(px) == [Side.BUY, Side.SELL]
    return px


def _half_bps(px: dict[Side, Decimal]) -> tuple[Decimal, Decimal]:
    return ((MID - px[Side.BUY]) / MID * 10_000, (px[Side.SELL] - MID) / MID * 10_000)


def test_a_floor_wider_than_the_configured_spread_widens_both_quotes(tmp_path):
    bid_bps, ask_bps = _half_bps(_quote(tmp_path, 30.0))   # floor 30 bps -> 15 bps a side
    assert abs(bid_bps - 15) < Decimal("0.01") and abs(ask_bps - 15) < Decimal("0.01")


@pytest.mark.parametrize("floor", [4.0, 10.0, None, 0.0, float("nan")])
def test_a_narrow_or_missing_floor_leaves_the_configured_spread(tmp_path, floor):
    bid_bps, ask_bps = _half_bps(_quote(tmp_path, floor))
    assert abs(bid_bps - 5) < Decimal("0.01") and abs(ask_bps - 5) < Decimal("0.01")


def test_without_a_floor_callable_the_quoter_is_unchanged(tmp_path):
    r = Rig(tmp_path)
    q = Quoter(StrategyCfg(half_spread_bps=5.0), r.gw, market=None, can_trade=lambda: True)
    q.on_market(SYM, r.book, 1_000)
    bid_bps, ask_bps = _half_bps({o.side: o.price for o in r.gw.open.values()})
    assert abs(bid_bps - 5) < Decimal("0.01") and abs(ask_bps - 5) < Decimal("0.01")
