"""Layer 1, Benford: first digits, chi-square, MAD and Nigrini's conformity bands.

References: Nigrini, M. J. (2012), *Benford's Law: Applications for Forensic Accounting,
Auditing, and Fraud Detection*, Wiley, table 7.1 (first-digit MAD: 0.006 close, 0.012
acceptable, 0.015 marginally acceptable, above: nonconformity); Benford proportions
log10(1 + 1/d); the chi-square worked by hand below and checked with scipy.stats.chisquare.
"""
from __future__ import annotations

import math

import pytest
from scipy import stats

from daemon.quality import benford as bf


def test_benford_proportions_are_the_published_ones():
    # Nigrini (2012) table 5.1, first digits, to 5 places.
    published = [0.30103, 0.17609, 0.12494, 0.09691, 0.07918, 0.06695, 0.05799, 0.05115,
                 0.04576]
    assert [round(p, 5) for p in bf.BENFORD] == published
    assert math.isclose(sum(bf.BENFORD), 1.0)


@pytest.mark.parametrize("x, d", [(1.0, 1), (0.001, 1), (1e-3, 1), (9.99, 9), (0.00045, 4),
                                  (1000, 1), (123456.0, 1), (5e-8, 5), (0.1, 1), (1e308, 1),
                                  (9.999999999999999e-5, 9), (0.0, 0), (-3.0, 0),
                                  (math.inf, 0), (math.nan, 0)])
def test_first_digit(x, d):
    assert bf.first_digit(x) == d


def test_chi_square_worked_example():
    # n = 100, observed [30, 18, 12, 10, 8, 7, 6, 5, 4]; expected 100 * log10(1 + 1/d) =
    # 30.103 17.609 12.494 9.691 7.918 6.695 5.799 5.115 4.576; by hand (4 places):
    # .0004 + .0087 + .0195 + .0099 + .0008 + .0139 + .0070 + .0026 + .0725 = 0.1353
    counts = [30, 18, 12, 10, 8, 7, 6, 5, 4]
    chi = bf.chi_square(counts)
    assert chi == pytest.approx(0.1353, abs=5e-4)
    ref = stats.chisquare(counts, [100 * p for p in bf.BENFORD])
    assert chi == pytest.approx(ref.statistic, rel=1e-12)
    assert chi < bf.CHI2_CRIT_8DF_5PCT == pytest.approx(stats.chi2.ppf(0.95, 8), abs=1e-3)


def test_mad_and_the_nigrini_bands():
    # MAD = mean |p_obs - p_benford| over the 9 digits: hand value for the table above:
    # (.00103 + .00391 + .00494 + .00309 + .00082 + .00305 + .00201 + .00115 + .00576) / 9
    counts = [30, 18, 12, 10, 8, 7, 6, 5, 4]
    assert bf.mad(counts) == pytest.approx(0.025756 / 9, abs=1e-6)
    assert bf.conformity(bf.mad(counts)) == "close"
    for m, label in ((0.0, "close"), (0.006, "close"), (0.0061, "acceptable"),
                     (0.012, "acceptable"), (0.0121, "marginal"), (0.015, "marginal"),
                     (0.0151, "nonconformity"), (1.0, "nonconformity")):
        assert bf.conformity(m) == label
    # Every trade the same size: one digit at 1.0.
    assert bf.mad([0, 0, 0, 0, 1000, 0, 0, 0, 0]) == pytest.approx(
        (1 - bf.BENFORD[4] + sum(bf.BENFORD) - bf.BENFORD[4]) / 9)
    assert bf.mad([0] * 9) > 0 and bf.chi_square([0] * 9) == 0.0


def test_rolling_window_and_reference():
    r = bf.RollingDigits(10)
    for x in (1, 2, 3, 4, 5, 6, 7, 8, 9, 1.5):
        r.push(x)
    assert r.full() and r.reference == [2, 1, 1, 1, 1, 1, 1, 1, 1]
    for _ in range(10):
        r.push(0.9)            # the window slides, the reference stays
    assert r.counts == [0, 0, 0, 0, 0, 0, 0, 0, 10]
    assert r.reference == [2, 1, 1, 1, 1, 1, 1, 1, 1]
    for bad in (0.0, -1.0, math.nan, math.inf):
        r.push(bad)
    assert r.skipped == 4 and sum(r.counts) == 10
