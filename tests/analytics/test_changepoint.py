"""Exact PELT against ruptures' exact PELT (model "l2", jump=1) and against brute-force
optimal partitioning (O(n^2), no pruning) for the mean and the mean/variance costs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import ruptures as rpt

from daemon.analytics.changepoint import pelt, segmentation_cost


def brute_force(y: np.ndarray, pen: float, cost: str, min_size: int) -> tuple[float, list[int]]:
    """Optimal partitioning without pruning: the exact optimum by definition."""
    n = len(y)
    F = [math.inf] * (n + 1)
    F[0] = 0.0
    arg = [0] * (n + 1)
    for t in range(min_size, n + 1):
        for tau in range(0, t - min_size + 1):
            if not math.isfinite(F[tau]):
                continue
            seg = y[tau:t]
            if cost == "l2":
                c = float(np.sum((seg - seg.mean()) ** 2))
            else:
                c = len(seg) * math.log(max(float(seg.var()), 1e-12))
            v = F[tau] + c + pen
            if v < F[t] - 1e-9:
                F[t], arg[t] = v, tau
    bk, t = [n], n
    while arg[t] > 0:
        t = arg[t]
        bk.append(t)
    return F[n], sorted(bk)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("min_size", [1, 2, 5, 10])
def test_same_breakpoints_as_ruptures_exact_pelt(seed: int, min_size: int) -> None:
    signal, true_bkps = rpt.pw_constant(300, 1, 4, noise_std=1.0, seed=seed)
    y = signal[:, 0]
    pen = 3 * math.log(len(y))
    ref = rpt.Pelt(model="l2", min_size=min_size, jump=1).fit(y).predict(pen=pen)
    got = pelt(y, pen, cost="l2", min_size=min_size)
    assert got.ok, got.reason
    assert got.value == ref


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cost", ["l2", "normal"])
@pytest.mark.parametrize("min_size", [2, 4])
def test_optimal_like_brute_force(seed: int, cost: str, min_size: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.normal(0, 1, 40), rng.normal(2, 1, 30), rng.normal(2, 4, 40),
                        rng.normal(-1, 0.5, 20)])
    pen = 2 * math.log(len(y)) * (1 if cost == "normal" else 1.5)
    best, bk = brute_force(y, pen, cost, min_size)
    got = pelt(y, pen, cost=cost, min_size=min_size).value
    assert got is not None
    assert all(b - a >= min_size for a, b in zip([0] + got[:-1], got))
    # Same optimum; the two compute segment variances differently (cumulative sums vs
    # direct), so costs agree to rounding, amplified by log() on 2-point segments.
    mine, theirs = (segmentation_cost(y, b, pen, cost=cost) for b in (got, bk))
    assert got == bk or mine <= theirs + 1e-9 * abs(theirs)
    assert mine == pytest.approx(best, rel=1e-6)


def test_variance_change_found_by_the_normal_cost_only() -> None:
    rng = np.random.default_rng(42)
    y = np.concatenate([rng.normal(0, 1, 500), rng.normal(0, 5, 500)])
    got = pelt(y, 3 * math.log(1000), cost="normal", min_size=5).value
    assert got is not None and len(got) == 2 and abs(got[0] - 500) <= 10 and got[-1] == 1000


def test_large_level_keeps_precision() -> None:
    # BTC prices: a 1e5 level with a small mean shift must not drown in cumsum rounding.
    rng = np.random.default_rng(1)
    y = 60_000.0 + np.concatenate([rng.normal(0, 1, 200), rng.normal(5, 1, 200)])
    got = pelt(y, 10 * math.log(400), cost="l2", min_size=2).value
    assert got == rpt.Pelt(model="l2", min_size=2, jump=1).fit(y - 60_000).predict(pen=10 * math.log(400))


def test_constant_series_has_no_change_points() -> None:
    for cost in ("l2", "normal"):
        got = pelt([3.0] * 50, 5.0, cost=cost, min_size=2)
        assert got.ok and got.value == [50]


@pytest.mark.parametrize("kwargs,why", [
    ({"signal": [1.0, float("nan"), 2.0], "penalty": 1.0}, "non-finite"),
    ({"signal": [1.0, 2.0], "penalty": float("inf")}, "penalty"),
    ({"signal": [1.0, 2.0], "penalty": -1.0}, "penalty"),
    ({"signal": [1.0], "penalty": 1.0, "min_size": 2}, "at least"),
    ({"signal": [], "penalty": 1.0}, "at least"),
    ({"signal": [1.0, 2.0, 3.0], "penalty": 1.0, "cost": "rbf"}, "cost"),
    ({"signal": [1.0, 2.0, 3.0], "penalty": 1.0, "cost": "normal", "min_size": 1}, "min_size"),
    ({"signal": [[1.0], [2.0]], "penalty": 1.0}, "1-d"),
])
def test_bad_input_is_a_reason(kwargs, why) -> None:
    r = pelt(**kwargs)
    assert r.value is None and why in (r.reason or "")


def test_huge_outlier_is_its_own_segment_not_a_nan() -> None:
    y = np.zeros(100)
    y[50] = 1e12
    got = pelt(y, 10.0, cost="l2", min_size=1).value
    assert got == [50, 51, 100]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(y=st.lists(st.integers(-3, 3), min_size=2, max_size=30),
       min_size=st.integers(1, 3), pen=st.floats(0.0, 10.0), cost=st.sampled_from(["l2", "normal"]))
def test_pelt_optimum_equals_brute_force_on_small_series_with_ties(y, min_size, pen, cost) -> None:
    if cost == "normal":
        min_size = max(min_size, 2)
    arr = np.array(y, dtype=float)
    got = pelt(arr, pen, cost=cost, min_size=min_size)
    if len(y) < min_size:
        assert got.value is None
        return
    assert got.ok, got.reason
    best, _ = brute_force(arr, pen, cost, min_size)
    assert all(b - a >= min_size for a, b in zip([0] + got.value[:-1], got.value))
    assert segmentation_cost(arr, got.value, pen, cost=cost) == pytest.approx(best, rel=1e-6, abs=1e-6)
