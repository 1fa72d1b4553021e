"""Layer 4, change points: the tabular CUSUM on Montgomery's worked example, and BOCPD
against a direct (linear-space, untruncated) implementation of Adams and MacKay (2007)
with scipy's Student-t, on a synthetic series with a known change, and with extreme
outliers that must not produce a change point.

Montgomery, D. C., *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009,
Example 9.1 / Table 9.1: 30 observations, the first 20 from N(10, 1), the last 10 from
N(11, 1); mu0 = 10, sigma = 1, K = 0.5, H = 5. Published result: C+ first exceeds H at
sample 29 (C+_29 = 5.28), N+ = 7 (the shift began after sample 22), and C- never signals.
Page, E. S. (1954), "Continuous inspection schemes", Biometrika 41, 100-115.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from daemon.quality.changepoint import Bocpd, Cusum, TabularCusum

MONTGOMERY_9_1 = [9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03,
                  11.47, 10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33,
                  12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52]


def test_cusum_montgomery_example_9_1():
    c = TabularCusum(mu0=10.0, sigma=1.0, k=0.5, h=5.0)
    first = None
    for i, x in enumerate(MONTGOMERY_9_1, 1):
        side = c.update(x)
        if i == 4:
            assert c.cp == pytest.approx(1.16)           # Table 9.1, period 4
        if i == 5:
            assert c.cp == pytest.approx(2.82)
        if side and first is None:
            first = (i, side, c.cp, c.np_)
            break
    assert first[0] == 29 and first[1] == "up"
    assert first[2] == pytest.approx(5.28, abs=1e-9) and first[3] == 7
    # The process mean estimate of the example: mu0 + K + C+ / N+ = 11.25.
    assert 10 + 0.5 + first[2] / first[3] == pytest.approx(11.25, abs=0.005)
    lower = TabularCusum(10.0, 1.0, 0.5, 5.0)
    assert [lower.update(x) for x in MONTGOMERY_9_1].count("down") == 0
    assert max(0.0, lower.cm) < 5.0


def test_cusum_learning_its_level_detects_both_directions():
    # In-control ARL of k = 0.5, h = 5 is ~465 samples two-sided (Montgomery table 9.3);
    # a 2-sigma shift is found in ~4 samples.
    for shift, side in ((2.0, "up"), (-2.0, "down")):
        rng = np.random.default_rng(5)
        c = Cusum(k=0.5, h=5.0, warmup=200)
        for x in rng.normal(10, 1, 200):
            assert c.update(float(x)) is None          # warm-up: learning mu0 and sigma
        assert c.tab is not None and c.tab.mu0 == pytest.approx(10, abs=0.2)
        sides = [c.update(float(x)) for x in rng.normal(10 + shift, 1, 15)]
        assert side in sides and sides.index(side) < 10
    c = Cusum(0.5, 5.0, 10)
    for bad in (math.nan, math.inf, -math.inf):
        assert c.update(bad) is None
    assert c.skipped == 3
    const = Cusum(0.5, 5.0, 10)
    assert all(const.update(3.0) is None for _ in range(100)) and const.signals == 0


def _reference_bocpd(xs: np.ndarray, hazard: float) -> np.ndarray:
    """Adams & MacKay (2007) algorithm 1, linear space, no truncation, Normal-Gamma prior
    (0, 1, 1, 1) and scipy's Student-t predictive. Returns the run-length posterior of
    the last step."""
    r = np.array([1.0])
    mu, kappa, alpha, beta = (np.array([0.0]), np.array([1.0]), np.array([1.0]),
                              np.array([1.0]))
    for x in xs:
        pred = stats.t.pdf(x, df=2 * alpha, loc=mu,
                           scale=np.sqrt(beta * (kappa + 1) / (alpha * kappa)))
        growth = r * pred * (1 - hazard)
        cp = np.sum(r * pred * hazard)
        r = np.concatenate(([cp], growth))
        r /= r.sum()
        mu, kappa, alpha, beta = (
            np.concatenate(([0.0], (kappa * mu + x) / (kappa + 1))),
            np.concatenate(([1.0], kappa + 1)), np.concatenate(([1.0], alpha + 0.5)),
            np.concatenate(([1.0], beta + kappa * (x - mu) ** 2 / (2 * (kappa + 1)))))
    return r


def test_bocpd_posterior_equals_the_direct_algorithm():
    rng = np.random.default_rng(2)
    xs = np.concatenate([rng.normal(0, 1, 60), rng.normal(1.5, 1, 40)])
    b = Bocpd(expected_run=50, max_run=1000, clip=1e9, warmup=1)
    b.update(0.0)            # warm-up: centre 0, spread floor -> set them to identity
    b.center, b.spread = 0.0, 1.0
    for x in xs:
        b.update(float(x))
    want = _reference_bocpd(xs, 1 / 50)
    np.testing.assert_allclose(b.run_length_probability(), want, atol=1e-10)


def _changes(xs, **kw) -> list[int]:
    b = Bocpd(kw.get("expected_run", 250), kw.get("max_run", 300), kw.get("clip", 3.0),
              kw.get("warmup", 30))
    out = [b.update(float(x)) for x in xs]
    assert abs(b.run_length_probability().sum() - 1) < 1e-9
    assert np.all(np.isfinite(b.log_r))
    return [c + b.warmup for c in out if c is not None]    # as indices into xs


def test_bocpd_finds_a_known_mean_shift():
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.normal(0, 1, 300), rng.normal(3, 1, 200)])
    found = _changes(xs)
    assert len(found) == 1 and abs(found[0] - 300) <= 3


def test_bocpd_survives_extreme_outliers():
    rng = np.random.default_rng(1)
    xs = rng.normal(0, 1, 600)
    xs[200], xs[300], xs[400], xs[450] = 1e12, math.inf, -1e300, 1e9
    assert _changes(xs) == []
    # The same without the winsorising: the outlier itself is taken for a new run.
    assert _changes(xs[:250], clip=1e300) != []


def test_bocpd_truncation_and_degenerate_input():
    rng = np.random.default_rng(4)
    b = Bocpd(250, 50, 3.0, 30)
    for x in rng.normal(0, 1, 500):
        b.update(float(x))
    assert len(b.log_r) == 51 and abs(b.run_length_probability().sum() - 1) < 1e-9
    assert b.update(math.nan) is None and b.skipped == 1
    const = Bocpd(250, 300, 3.0, 10)
    assert [const.update(7.0) for _ in range(300)].count(None) == 300
    assert np.all(np.isfinite(const.log_r))
