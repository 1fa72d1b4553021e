"""The quoter's spread floor (the Glosten-Milgrom floor from daemon/analytics/runner.py):
its half spread is max(configured half spread, floor / 2), measured on the prices of the
post-only orders its intents became in a real core (tests/engine_rig.py: engine, gateway,
journal, paper venue, risk and breakers)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.execution.orders import Side
from tests.engine_rig import EngineRig

MID = Decimal("60000")   # the book below: 59999.99 / 60000.01
BOOK = ([(59999.99, 1.0), (59999.0, 2.0)], [(60000.01, 1.0), (60001.0, 2.0)])


class _Floor:
    """Stands in for the analytics runner: the floor it would have fitted."""

    def __init__(self, floor: float | None) -> None:
        self.floor, self.asked = floor, []

    def floor_bps(self, symbol: str) -> float | None:
        self.asked.append(symbol)
        return self.floor

    def on_trade(self, trade) -> None:
        pass


def _quote(tmp_path, floor, *, with_floor: bool = True) -> dict[Side, Decimal]:
    r = EngineRig(tmp_path, strategy={"quoter": {"half_spread_bps": 5.0}})
    if with_floor:
        r.engine.analytics = _Floor(floor)
    r.start(*BOOK)
    if with_floor:
        assert set(r.engine.analytics.asked) == {"BTCUSDT"}
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


def test_without_analytics_the_quoter_is_unchanged(tmp_path):
    bid_bps, ask_bps = _half_bps(_quote(tmp_path, None, with_floor=False))
    assert abs(bid_bps - 5) < Decimal("0.01") and abs(ask_bps - 5) < Decimal("0.01")
