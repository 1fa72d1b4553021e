"""Glosten–Milgrom spread floor on hand-computed values, tick rounding and bad input."""
from __future__ import annotations

import math
from decimal import Decimal

import pytest

from daemon.analytics.glosten_milgrom import gm_spread


def test_hand_values() -> None:
    # alpha 0.2, sigma 0.0002 per sqrt(s), horizon 100 s: g/2 = 0.0002 * 10 = 0.002,
    # half-spread = alpha g/2 m = 0.2 * 0.002 * 50000 = 20, spread 40 = 8 bps.
    r = gm_spread(0.2, 0.0002, 100.0, Decimal("50000"))
    assert r.ok
    v = r.value
    assert v.value_gap_rel == pytest.approx(0.004)
    assert v.half_spread == Decimal("20.0000")
    assert v.spread == Decimal("40.0000")
    assert v.spread_bps == Decimal("8")
    assert isinstance(v.spread, Decimal)


def test_no_informed_trading_means_no_floor() -> None:
    r = gm_spread(0.0, 0.001, 60.0, Decimal("100"))
    assert r.ok and r.value.spread == 0


def test_full_information_spread_is_the_whole_value_gap() -> None:
    r = gm_spread(1.0, 0.001, 25.0, Decimal("100"))  # g/2 = 0.005 -> V_H - V_L = 1.0
    assert r.ok and r.value.spread == pytest.approx(Decimal("1.0"))


def test_tick_rounds_the_half_spread_up() -> None:
    r = gm_spread(0.2, 0.0002, 100.0, Decimal("50000"), tick=Decimal("0.3"))
    assert r.ok
    assert r.value.half_spread == Decimal("20.1")  # 67 ticks; 66 ticks (19.8) would undercut
    assert r.value.spread == Decimal("40.2")


@pytest.mark.parametrize("args", [
    (float("nan"), 0.001, 1.0, Decimal("1")), (1.5, 0.001, 1.0, Decimal("1")),
    (-0.1, 0.001, 1.0, Decimal("1")), (0.2, float("inf"), 1.0, Decimal("1")),
    (0.2, -0.001, 1.0, Decimal("1")), (0.2, 0.001, float("nan"), Decimal("1")),
    (0.2, 0.001, 1.0, Decimal("0")), (0.2, 0.001, 1.0, Decimal("NaN")),
    (0.2, 1e300, 1e300, Decimal("1")),  # the value gap overflows
])
def test_bad_input_is_a_reason(args) -> None:
    r = gm_spread(*args)
    assert r.value is None and r.reason


def test_bad_tick_is_a_reason() -> None:
    assert gm_spread(0.2, 0.001, 1.0, Decimal("1"), tick=Decimal("0")).value is None
    assert not math.isnan(float(gm_spread(0.2, 0.001, 1.0, Decimal("1")).value.spread))
