"""VPIN and the liquidity estimators on hand-computed cases from their definitions:
Easley, Lopez de Prado & O'Hara (2012, RFS 25(5), eqs. for bulk volume classification and
VPIN); Roll (1984, JF 39(4)); Corwin & Schultz (2012, JF 67(2), eqs. 14, 18, 19); Amihud
(2002, JFM 5(1)); Kyle (1985, Econometrica 53(6): price change linear in order flow)."""
from __future__ import annotations

import math
import random

import pytest

from daemon.features.liquidity import Amihud, CorwinSchultz, KyleLambda, RollSpread, \
    corwin_schultz
from daemon.features.vpin import VPIN, bvc_buy_fraction


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_vpin_hand_computed() -> None:
    """bucket 100 (quote), n = 2 buckets, sigma over the last 2 bar price changes.
    bar0 close 100: no dP, not classified.
    bar1 close 101, V 100: dP = +1, sigma of [1] = 0 -> buy fraction 1/2: bucket 1 = 50/50,
        |B - S| = 0.
    bar2 close 100, V 150: dP = -1, sigma of [1, -1] = 1, f = Z(-1) = 0.158655: bucket 2 gets
        100 (|2*15.8655 - 100| = 68.269), 50 stay in the open bucket (buy 7.933).
        VPIN = (0 + 68.269) / (2 * 100) = 0.34135.
    bar3 close 102, V 50: dP = +2, sigma of [-1, 2] = 1.5, f = Z(4/3) = 0.908789: bucket 3 =
        buy 7.933 + 45.439 = 53.372, |B - S| = 6.745; VPIN = (68.269 + 6.745) / 200 = 0.37507.
    """
    v = VPIN(100.0, n=2, sigma_bars=2)
    assert v.update(100.0, 50.0) is None
    assert v.update(101.0, 100.0) is None           # one bucket only
    b2 = abs(2 * 100 * _phi(-1.0) - 100)
    assert v.update(100.0, 150.0) == pytest.approx(b2 / 200)
    assert v.value == pytest.approx(0.34135, abs=1e-5)
    b3 = abs(2 * (50 * _phi(-1.0) + 50 * _phi(2 / 1.5)) - 100)
    assert v.update(102.0, 50.0) == pytest.approx((b2 + b3) / 200)
    assert v.value == pytest.approx(0.37507, abs=1e-5)
    assert v.buckets == 3


def test_vpin_huge_bar_is_bounded_and_constant_prices_are_balanced() -> None:
    v = VPIN(10.0, n=5, sigma_bars=3)
    v.update(100.0, 1.0)
    v.update(100.0, 1e90)                 # 1e89 buckets' worth: O(n), not a loop over them
    assert v.value == 0.0                 # sigma 0: half buy, half sell
    assert bvc_buy_fraction(1.0, 0.0) == 0.5


def test_roll_hand_computed() -> None:
    """prices 100, 101, 100, 101, 100: dp = L, -L, L, -L with L = ln(1.01) * 1e4 bps;
    pairs (L,-L), (-L,L), (L,-L): means L/3 and -L/3, population covariance
    ((2/3)(-2/3) + (-4/3)(4/3) + (2/3)(-2/3)) L^2 / 3 = -(8/9) L^2, so the spread is
    2 L sqrt(8/9) = 187.63 bps."""
    r = RollSpread(3)
    vals = [r.update(p) for p in (100.0, 101.0, 100.0, 101.0)]
    assert vals == [None, None, None, None]
    L = math.log(1.01) * 1e4
    assert r.update(100.0) == pytest.approx(2 * L * math.sqrt(8 / 9))
    assert r.value == pytest.approx(187.625, abs=1e-3)


def test_roll_positive_covariance_is_zero_spread() -> None:
    r = RollSpread(3)
    for p in (100.0, 101.0, 102.0, 103.0, 104.0):   # a trend: no bounce, cov >= 0
        r.update(p)
    assert r.value == 0.0


def test_roll_recovers_the_spread_of_a_pure_bounce() -> None:
    """Roll's model: constant value, trades at mid +- s/2 with independent directions:
    cov(dp_t, dp_{t-1}) = -s^2/4, so 2 sqrt(-cov) = s."""
    rng = random.Random(3)
    mid, s = 1000.0, 1.0                      # 10 bps relative spread
    r = RollSpread(20_000)
    for _ in range(20_002):
        r.update(mid + (s / 2 if rng.random() < 0.5 else -s / 2))
    assert r.value == pytest.approx(10.0, rel=0.03)


def test_corwin_schultz_recovers_the_spread_without_volatility() -> None:
    """With no volatility the high is the ask and the low the bid on every bar, so
    beta = 2 ln(H/L)^2, gamma = ln(H/L)^2 and alpha = ln(H/L) (using sqrt(3 - 2 sqrt 2) =
    sqrt 2 - 1), hence S = 2 (H/L - 1) / (1 + H/L) = 2 (H - L) / (H + L): exact."""
    assert corwin_schultz(100.05, 99.95, 100.05, 99.95) == pytest.approx(0.1 / 100, rel=1e-9)
    cs = CorwinSchultz(2)
    for _ in range(3):
        cs.update(100.05, 99.95, 100.0)
    assert cs.value == pytest.approx(10.0, rel=1e-9)     # bps


def test_corwin_schultz_hand_values_and_floor() -> None:
    # (101, 99) then (102, 100): beta = 0.00040003 + 0.00039214, gamma = ln(102/99)^2
    b = math.log(101 / 99) ** 2 + math.log(102 / 100) ** 2
    g = math.log(102 / 99) ** 2
    assert b == pytest.approx(0.00079217, rel=1e-4) and g == pytest.approx(0.00089121, rel=1e-4)
    # alpha = (sqrt(2b) - sqrt(b)) / 0.171573 - sqrt(g / 0.171573) = 0.067949 - 0.072071 < 0
    assert corwin_schultz(101, 99, 102, 100) == 0.0          # negative estimate floored at 0
    # a wide first bar then a narrow one: positive
    s = corwin_schultz(101, 99, 100.5, 99.5)
    b = math.log(101 / 99) ** 2 + math.log(100.5 / 99.5) ** 2
    g = math.log(101 / 99) ** 2
    a = (math.sqrt(2 * b) - math.sqrt(b)) / (3 - 2 * math.sqrt(2)) - math.sqrt(g / (3 - 2 * math.sqrt(2)))
    assert s == pytest.approx(2 * (math.exp(a) - 1) / (1 + math.exp(a))) and s > 0


def test_corwin_schultz_gap_adjustment() -> None:
    """Section II.B: a bar whose low is above the previous close is shifted down by the gap,
    so a jump between bars is not read as a spread."""
    cs = CorwinSchultz(1)
    cs.update(100.05, 99.95, 100.0)
    cs.update(110.05, 109.95, 110.0)     # same width, 10 higher: adjusted to (100.05-ish)
    # shifted bar: low 100.0 (= previous close), high 100.1 -> about the no-volatility case
    assert cs.value == pytest.approx(corwin_schultz(100.05, 99.95, 100.1, 100.0) * 1e4)


def test_amihud_hand_computed() -> None:
    a = Amihud(2)
    a.update(100.0, 5e5)
    assert a.update(101.0, 1e6) is None
    a.update(100.0, 2e6)
    expect = (math.log(1.01) * 1e6 / 1e6 + math.log(1.01) * 1e6 / 2e6) / 2
    assert a.value == pytest.approx(expect)
    a.update(100.0, 0.0)                 # a bar with no volume is skipped
    assert a.value == pytest.approx(expect)


def test_kyle_lambda_recovers_a_linear_impact() -> None:
    """r_i = a + lambda * S_i exactly: the OLS slope is lambda (reported * 1e10)."""
    lam, a = 2e-10, 1e-5
    k = KyleLambda(10)
    price = 100.0
    k.update(price, 0.0)
    rng = random.Random(1)
    for _ in range(30):
        s = rng.uniform(-1e6, 1e6)
        price *= math.exp(a + lam * s)
        k.update(price, s)
    assert k.value == pytest.approx(lam * 1e10, rel=1e-6)


def test_kyle_lambda_not_ready_without_flow_variance() -> None:
    k = KyleLambda(5)
    for i in range(10):
        k.update(100.0 + i, 1000.0)      # constant signed volume: slope undefined
    assert k.value is None


def test_corwin_schultz_gap_adjustment_across_a_huge_jump_is_skipped() -> None:
    """Found by hypothesis: after a 1.0 bar, a flat bar at 9007199254740996 shifted down by
    the gap rounds its high to 0.0 (log of 0: ValueError). The pair is now skipped."""
    cs = CorwinSchultz(1)
    cs.update(1.0, 1.0, 1.0)
    assert cs.update(9007199254740996.0, 9007199254740996.0, 9007199254740996.0) is None
    assert cs.dropped == 1
