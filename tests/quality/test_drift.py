"""Drift: PSI on a hand-computed table, KL divergence and Wasserstein distance against
scipy.stats (entropy, wasserstein_distance), and the reference/live window monitor.

PSI (Siddiqi, *Credit Risk Scorecards*, Wiley 2006): sum (a - e) ln(a / e) over bins.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from daemon.quality import drift as dr


def test_psi_hand_computed_table():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    live = np.array([0.2, 0.2, 0.2, 0.4])
    # (0.2-0.1) ln 2 + 0 + (0.2-0.3) ln(2/3) + 0 = 0.0693147 + 0.0405465 = 0.1098612
    assert dr.psi(live, ref) == pytest.approx(0.1098612, abs=1e-7)
    assert dr.psi(ref, ref) == 0.0
    # An empty live bin is floored at EPS = 1e-4, not infinite:
    # (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5)
    want = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    assert dr.psi(np.array([0.0, 1.0]), np.array([0.5, 0.5])) == pytest.approx(want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_equals_scipy_entropy(seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(10))
    q = rng.dirichlet(np.ones(10))
    p[3] = 0.0
    assert dr.kl(p, q) == pytest.approx(stats.entropy(dr.floored(p), dr.floored(q)),
                                        rel=1e-12)
    assert dr.kl(q, q) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wasserstein_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, 300)
    b = rng.standard_t(3, 500) + 0.3
    b[:50] = 0.25                       # ties
    assert dr.wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b),
                                                 rel=1e-12)
    assert dr.wasserstein(a, a) == 0.0
    assert dr.wasserstein(np.array([0.0]), np.array([2.0])) == 2.0


def test_bins_are_reference_quantiles():
    ref = np.arange(100.0)
    edges = dr.quantile_edges(ref, 4)
    np.testing.assert_allclose(edges, np.quantile(ref, [0.25, 0.5, 0.75]))
    np.testing.assert_allclose(dr.binned(ref, edges), [0.25, 0.25, 0.25, 0.25])
    assert len(dr.quantile_edges(np.ones(50), 10)) == 1       # ties merge


def _mon() -> dr.DriftMonitor:
    return dr.DriftMonitor(reference=600, live=300, bins=10, psi_max=0.25, kl_max=0.5,
                           w_max=1.0)


def test_monitor_quiet_on_the_same_distribution_and_fires_on_a_shift():
    rng = np.random.default_rng(9)
    m = _mon()
    for x in rng.normal(0, 1, 899):
        m.push(float(x))
    assert m.check() == {"ready": False, "samples": 899, "needed": 900}
    m.push(0.0)
    same = m.check()
    assert same["ready"] and not same["drift"] and same["psi"] < 0.1
    for x in rng.normal(0, 3, 300):     # volatility triples in the live window
        m.push(float(x))
    r = m.check()
    assert r["drift"] and r["psi"] > 0.25 and r["kl"] > 0.1
    # The figures are the module's functions on the two windows (oldest first).
    chrono = np.roll(m.ring, -m.pos)
    ref, live = chrono[:600], chrono[600:]
    assert r["wasserstein"] == pytest.approx(stats.wasserstein_distance(live, ref), abs=1e-9)


def test_monitor_degenerate():
    m = _mon()
    for _ in range(900):
        m.push(1.0)
    for bad in (math.nan, math.inf):
        m.push(bad)
    assert m.skipped == 2
    r = m.check()
    assert r["ready"] and not r["drift"] and r["psi"] == 0.0
    for _ in range(300):
        m.push(2.0)
    r = m.check()
    assert r["drift"] and all(math.isfinite(v) for v in (r["psi"], r["kl"],
                                                        r["wasserstein_sd"]))
