"""Indicators against TA-Lib (the `ta-lib` wheel, a dev-only dependency) on the same input,
and the warm-up conventions spelled out.

Warm-up, explained: TA-Lib seeds EMA with the simple average of the first n inputs and
reports from index n-1 (its "lookback"); RSI and ATR seed Wilder's average with the simple
average of the first n changes / true ranges and report from index n; MACD seeds its fast
EMA at the slow EMA's first index and reports from slow+signal-2. Our features are ready at
exactly those indexes with the same values. TA-Lib's "unstable period" setting only blanks
more leading outputs (the seed stays at the start of the data), so the values that remain
are unchanged -- tested below -- while an EMA seeded with the first input (pandas
ewm(adjust=False)) differs during warm-up and converges as (1 - alpha)^k.
"""
from __future__ import annotations

import numpy as np
import pytest

talib = pytest.importorskip("talib", reason="ta-lib (dev extra) is the reference here")

from daemon.features.indicators import ATR, EMA, MACD, RSI, SMA, Bollinger, RollingVWAP  # noqa: E402


def _series(seed: int = 7, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 60_000 + np.cumsum(rng.normal(0, 15, n))
    high = close + rng.uniform(0, 10, n)
    low = close - rng.uniform(0, 10, n)
    return high, low, close


def _run(update, xs) -> np.ndarray:
    return np.array([np.nan if (v := update(x)) is None else v for x in xs])


def _same(ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-10) -> None:
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), "warm-up (not ready) differs"
    np.testing.assert_allclose(ours[~np.isnan(ours)], ref[~np.isnan(ref)], rtol=rtol)


@pytest.mark.parametrize("n", [1, 2, 10, 30])
def test_ema_equals_talib(n: int) -> None:
    _, _, c = _series()
    _same(_run(EMA(n).update, c), talib.EMA(c, n))


@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_equals_talib(n: int) -> None:
    _, _, c = _series(3)
    _same(_run(RSI(n).update, c), talib.RSI(c, n), rtol=1e-9)


@pytest.mark.parametrize("fast,slow,sig", [(12, 26, 9), (3, 10, 4), (5, 6, 1)])
def test_macd_equals_talib(fast: int, slow: int, sig: int) -> None:
    _, _, c = _series(11)
    m = MACD(fast, slow, sig)
    rows = []
    for x in c:
        m.update(x)
        rows.append((np.nan, np.nan, np.nan) if m.signal is None else (m.macd, m.signal, m.hist))
    ours = np.array(rows)
    ref = talib.MACD(c, fast, slow, sig)
    for k in range(3):
        _same(ours[:, k], ref[k], rtol=1e-9)


def test_macd_fast_ema_is_seeded_like_talib_not_from_the_start() -> None:
    """TA-Lib seeds the fast EMA at the slow EMA's first index from the last `fast` inputs;
    a fast EMA started at input `fast` would give a different first MACD. The test fails if
    the seeding is changed to the independent one."""
    _, _, c = _series(5, 60)
    independent = _run(EMA(12).update, c)[25] - _run(EMA(26).update, c)[25]
    m = MACD(12, 26, 1)
    for x in c[:26]:
        m.update(x)
    ref = talib.MACD(c, 12, 26, 1)[0][25]
    assert m.macd == pytest.approx(ref, rel=1e-12)
    assert abs(independent - ref) > 1e-6


@pytest.mark.parametrize("n", [1, 14, 20])
def test_atr_equals_talib(n: int) -> None:
    h, lo, c = _series(9)
    a = ATR(n)
    ours = np.array([np.nan if (v := a.update(x, y, z)) is None else v
                     for x, y, z in zip(h, lo, c)])
    _same(ours, talib.ATR(h, lo, c, n), rtol=1e-9)


@pytest.mark.parametrize("n,k", [(20, 2.0), (5, 1.5)])
def test_bollinger_equals_talib(n: int, k: float) -> None:
    _, _, c = _series(13)
    b = Bollinger(n, k)
    rows = []
    for x in c:
        b.update(x)
        rows.append((np.nan,) * 3 if b.mid is None else (b.upper, b.mid, b.lower))
    ours = np.array(rows)
    ref = talib.BBANDS(c, n, k, k, 0)
    for j in range(3):
        _same(ours[:, j], ref[j], rtol=1e-10)


def test_sma_equals_talib_over_many_window_recomputes() -> None:
    _, _, c = _series(1, 2000)
    _same(_run(SMA(7).update, c), talib.SMA(c, 7), rtol=1e-12)


def test_rolling_vwap_hand_computed() -> None:
    v = RollingVWAP(2)
    assert v.update(100.0 * 1, 1.0) is None          # one bar: not ready
    assert v.update(103.0 * 2, 2.0) == pytest.approx((100 + 206) / 3)
    assert v.update(99.0 * 1, 1.0) == pytest.approx((206 + 99) / 3)   # first bar left
    z = RollingVWAP(2)
    z.update(0.0, 0.0)
    assert z.update(0.0, 0.0) is None                  # no volume: no VWAP


@pytest.mark.parametrize("unstable", [5, 20])
def test_talib_unstable_period_only_hides_outputs(unstable: int) -> None:
    _, _, c = _series(21)
    ours = _run(EMA(10).update, c)
    talib.set_unstable_period("EMA", unstable)
    try:
        ref = talib.EMA(c, 10)
    finally:
        talib.set_unstable_period("EMA", 0)
    first = 9 + unstable
    assert np.isnan(ref[:first]).all() and not np.isnan(ours[9:first]).any()
    np.testing.assert_allclose(ours[first:], ref[first:], rtol=1e-12)


def test_first_value_seeded_ema_converges_geometrically() -> None:
    _, _, c = _series(4)
    n = 10
    alpha = 2 / (n + 1)
    ours = _run(EMA(n).update, c)
    naive = np.empty_like(c)
    naive[0] = c[0]
    for i in range(1, len(c)):
        naive[i] = naive[i - 1] + alpha * (c[i] - naive[i - 1])
    d0 = naive[n - 1] - ours[n - 1]
    assert abs(d0) > 1e-6                     # the seeds really differ
    for k in range(0, 200):
        assert naive[n - 1 + k] - ours[n - 1 + k] == pytest.approx(d0 * (1 - alpha) ** k,
                                                                   rel=1e-6, abs=1e-9)
