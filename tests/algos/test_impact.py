"""Impact estimates on hand-made books, trades and mids with known answers; the Kyle
regression against statsmodels OLS and the book fit against numpy least squares."""
from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
import statsmodels.api as sm

from daemon.execution.algos.impact import (
    InsufficientData,
    bucket_series,
    estimate_impact,
    half_spread,
    kyle_lambda,
    mid_volatility,
    ols,
    temporary_impact,
    walk_vwap,
)

D = Decimal
S = 1_000_000_000
ASKS = [(D("100.5"), D(1)), (D("101.5"), D(1)), (D("102.5"), D(2))]
BIDS = [(D("99.5"), D(1)), (D("98.5"), D(1)), (D("97.5"), D(2))]


def test_half_spread_and_walking_the_book() -> None:
    assert half_spread(BIDS, ASKS) == 0.5
    assert walk_vwap(ASKS, D(1)) == 100.5
    assert walk_vwap(ASKS, D(2)) == 101.0
    assert walk_vwap(ASKS, D(4)) == pytest.approx((100.5 + 101.5 + 2 * 102.5) / 4)
    assert walk_vwap(BIDS, D("1.5")) == pytest.approx((99.5 + 0.5 * 98.5) / 1.5)
    with pytest.raises(InsufficientData):
        walk_vwap(ASKS, D(5))
    with pytest.raises(ValueError):
        half_spread([(D(101), D(1))], [(D(100), D(1))])          # crossed


def test_temporary_impact_single_child_size() -> None:
    # n = 2 swept at once costs 1.0 per unit against mid 100 on either side; epsilon 0.5,
    # so eta n / tau = 0.5; with tau = 10, eta = 0.5 * 10 / 2 = 2.5.
    t = temporary_impact(BIDS, ASKS, [D(2)], tau=10.0)
    assert t.epsilon == 0.5
    assert t.eta == pytest.approx(2.5)
    assert t.costs == ((2.0, 1.0, 1.0),)


def test_temporary_impact_fit_matches_numpy_least_squares() -> None:
    sizes = [D(1), D(2), D(3), D(4)]
    tau = 5.0
    t = temporary_impact(BIDS, ASKS, sizes, tau)
    v, c = [], []
    for n in sizes:
        for levels, sign in ((ASKS, 1), (BIDS, -1)):
            v.append(float(n) / tau)
            c.append(sign * (walk_vwap(levels, n) - 100.0) - 0.5)
    slope, *_ = np.linalg.lstsq(np.array(v)[:, None], np.array(c), rcond=None)
    assert t.eta == pytest.approx(float(slope[0]), rel=1e-12)


def test_temporary_impact_is_zero_when_all_size_sits_at_the_touch() -> None:
    deep = [(D("100.5"), D(100))], [(D("99.5"), D(100))]
    t = temporary_impact(deep[1], deep[0], [D(1), D(50)], tau=1.0)
    assert t.eta == 0.0 and t.epsilon == 0.5


def _mid_path(flows: list[float], gamma: float, c: float, bucket: int):
    """Trades and mids where bucket j's mid moves by exactly c + gamma * flow_j; trades
    and mid updates land inside the bucket, one mid update at its start boundary."""
    trades, mids = [], [(0, 100.0)]
    mid = 100.0
    for j, f in enumerate(flows):
        t0 = j * bucket
        half = abs(f) / 2
        trades.append((t0 + 1, mid, half, f > 0))
        trades.append((t0 + bucket // 2, mid, half, f > 0))
        if j > 0:
            mid += c / 2                                   # boundary update: bucket j's
            mids.append((t0, mid))
            mid += gamma * f + c / 2
        else:
            mid += gamma * f + c
        mids.append((t0 + bucket - 1, mid))
    mids.append((len(flows) * bucket, mid))               # close the window
    return trades, mids


def test_kyle_lambda_recovers_an_exact_slope() -> None:
    flows = [3.0, -1.0, 0.5, -4.0, 2.0, 1.0]
    trades, mids = _mid_path(flows, gamma=0.002, c=0.001, bucket=10 * S)
    x, y = bucket_series(trades, mids, 10 * S)
    assert x == pytest.approx(flows)
    assert y == pytest.approx([0.001 + 0.002 * f for f in flows])
    r = kyle_lambda(trades, mids, 10 * S)
    assert r.slope == pytest.approx(0.002)
    assert r.intercept == pytest.approx(0.001)
    assert r.r2 == pytest.approx(1.0) and r.slope_se == pytest.approx(0.0, abs=1e-12)
    assert r.n == len(flows)


def test_buckets_are_half_open_for_trades_and_mid_moves_alike() -> None:
    mids = [(0, 10.0), (5, 11.0), (10, 13.0), (19, 12.0), (20, 12.0)]
    trades = [(0, 10.0, 1.0, True), (10, 10.0, 2.0, False), (19, 10.0, 1.0, True)]
    x, y = bucket_series(trades, mids, 10)
    assert x == [1.0, -1.0]                  # trade at 10 belongs to the second bucket
    assert y == [1.0, 1.0]                   # so does the move stamped at 10 (+2, then -1)
    with pytest.raises(ValueError):
        bucket_series(trades, mids, 10, start_ns=-1)


def test_kyle_lambda_against_statsmodels() -> None:
    rng = np.random.default_rng(42)
    flows = rng.normal(0, 5, size=300)
    noise = rng.normal(0, 0.01, size=300)
    trades, mids = [], [(0, 50.0)]
    mid = 50.0
    for j, (f, e) in enumerate(zip(flows, noise)):
        trades.append((j * S + 7, mid, abs(float(f)), f > 0))
        mid += 0.0015 * f + e
        mids.append((j * S + S // 2, float(mid)))
    mids.append((300 * S, float(mid)))
    r = kyle_lambda(trades, mids, S)
    ref = sm.OLS(np.array([m for m in bucket_series(trades, mids, S)[1]]),
                 sm.add_constant(flows)).fit()
    assert r.n == 300
    assert r.slope == pytest.approx(ref.params[1], rel=1e-9)
    assert r.intercept == pytest.approx(ref.params[0], rel=1e-6, abs=1e-12)
    assert r.slope_se == pytest.approx(ref.bse[1], rel=1e-9)
    assert r.r2 == pytest.approx(ref.rsquared, rel=1e-9)
    assert abs(r.slope - 0.0015) < 4 * r.slope_se          # and it finds the true slope


def test_ols_refuses_what_it_cannot_estimate() -> None:
    with pytest.raises(InsufficientData):
        ols([1.0], [2.0])
    with pytest.raises(InsufficientData):
        ols([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])               # no variation in flow
    r = ols([0.0, 1.0], [1.0, 3.0])
    assert (r.slope, r.intercept) == (2.0, 1.0) and math.isnan(r.slope_se)


def test_mid_volatility_hand_values() -> None:
    # Mid alternates 100, 101 every second: 10 changes of +-1, mean 0, var 10/9 per second.
    mids = [(k * S, 100.0 + (k % 2)) for k in range(11)]
    assert mid_volatility(mids, S, S) == pytest.approx(math.sqrt(10 / 9))
    assert mid_volatility(mids, S, 60 * S) == pytest.approx(math.sqrt(10 / 9 * 60))
    # Sparse mids are sampled last-value: grid 0..4 s reads 100,100,100,102,102, changes
    # 0,0,2,0: mean 0.5, sample variance 1.
    sparse = [(0, 100.0), (2 * S + S // 2, 102.0), (4 * S, 102.0)]
    assert mid_volatility(sparse, S, S) == pytest.approx(1.0)
    with pytest.raises(InsufficientData):
        mid_volatility([(0, 1.0), (S, 2.0)], S, S)


def test_mid_volatility_against_numpy() -> None:
    rng = np.random.default_rng(3)
    steps = rng.normal(0, 0.2, size=1000)
    path = 100 + np.cumsum(steps)
    mids = [(k * S // 10, float(m)) for k, m in enumerate(path)]        # every 100 ms
    got = mid_volatility(mids, S // 10, S)
    assert got == pytest.approx(np.std(np.diff(path), ddof=1) * math.sqrt(10), rel=1e-9)
    assert got == pytest.approx(0.2 * math.sqrt(10), rel=0.1)


def test_estimate_impact_bundles_the_four() -> None:
    flows = [3.0, -1.0, 0.5, -4.0, 2.0, 1.0]
    trades, mids = _mid_path(flows, gamma=0.002, c=0.0, bucket=10 * S)
    e = estimate_impact(BIDS, ASKS, [D(2)], 10.0, trades, mids, bucket_ns=10 * S,
                        sample_ns=10 * S, time_unit_ns=S)
    assert (e.epsilon, e.eta) == (0.5, pytest.approx(2.5))
    assert e.gamma == pytest.approx(0.002)
    assert e.sigma > 0
