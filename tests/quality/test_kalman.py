"""Layer 2, Kalman: the local-level filter against statsmodels' UnobservedComponents
(level="local level") on the same series, same variances and the same known
initialisation, missing observations included; and the outlier/gap detector."""
from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.statespace.structural import UnobservedComponents

from daemon.quality.kalman import LocalLevel, PriceFilter

S = 1_000_000_000


def _statsmodels_filtered(y: np.ndarray, q: float, r: float, a1: float, p1: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    mod = UnobservedComponents(y, level="local level")
    mod.ssm.initialize_known(np.array([a1]), np.array([[p1]]))
    res = mod.filter(np.array([r, q]))    # params: sigma2.irregular, sigma2.level
    return res.filtered_state[0], res.filtered_state_cov[0, 0]


@pytest.mark.parametrize("q, r", [(1.0, 0.25), (0.01, 4.0), (3.0, 3.0)])
def test_local_level_equals_statsmodels(q, r):
    rng = np.random.default_rng(11)
    level = np.cumsum(rng.normal(0, math.sqrt(q), 400))
    y = level + rng.normal(0, math.sqrt(r), 400)
    y[[5, 6, 7, 100, 250, 251]] = np.nan          # gaps: predict only
    a1, p1 = 0.0, 10.0                            # statsmodels: the state predicted for t=1
    want_a, want_p = _statsmodels_filtered(y, q, r, a1, p1)
    kf = LocalLevel(q, r, a0=a1, p0=p1 - q)       # ours predicts first: P1 = p0 + q
    got_a, got_p = [], []
    for v in y:
        kf.step(None if np.isnan(v) else float(v), 1.0)
        got_a.append(kf.a)
        got_p.append(kf.p)
    np.testing.assert_allclose(got_a, want_a, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got_p, want_p, atol=1e-6, rtol=0)


def test_uneven_steps_grow_the_variance_by_q_dt():
    kf = LocalLevel(2.0, 1.0, a0=0.0, p0=0.0)
    kf.step(None, 2.5)
    assert kf.p == pytest.approx(5.0) and kf.a == 0.0
    v, f = kf.step(1.0, 0.5)
    assert v == 1.0 and f == pytest.approx(7.0)
    assert kf.a == pytest.approx(6.0 / 7.0)


def _feed(pf: PriceFilter, prices, t0=0, step=S // 10):
    out = []
    for i, p in enumerate(prices):
        out.append(pf.update(p, t0 + i * step))
    return out


def test_price_spike_is_an_outlier_and_does_not_move_the_level():
    pf = PriceFilter(1.0, 0.25, z=12.0, adapt_n=200, gap_s=10.0)
    rng = np.random.default_rng(3)
    prices = list(60_000 * (1 + 1e-4 * np.cumsum(rng.normal(0, 0.3, 500))))
    flags = _feed(pf, prices)
    assert not any(flags)
    before = pf.level()
    assert pf.update(prices[-1] * 1.01, 500 * S // 10)          # 100 bps spike
    assert pf.outliers == 1 and pf.level() == before
    assert not pf.update(prices[-1], 501 * S // 10)             # back to normal: accepted


def test_gap_is_counted_and_widens_the_test():
    steady = PriceFilter(1.0, 0.25, z=12.0, adapt_n=200, gap_s=10.0)
    after_gap = PriceFilter(1.0, 0.25, z=12.0, adapt_n=200, gap_s=10.0)
    _feed(steady, [100.0] * 50)
    _feed(after_gap, [100.0] * 50)
    # A 50 bps move 0.1 s later is an outlier (F = P + q dt + r, |z| ~ 80); 60 s later
    # the level's variance has grown by q * 60 and the same move is plausible (|z| ~ 6).
    assert steady.update(100.5, 50 * S // 10)
    assert not after_gap.update(100.5, 49 * S // 10 + 60 * S)
    assert after_gap.gaps == 1 and after_gap.outliers == 0 and steady.gaps == 0


def test_degenerate_prices():
    pf = PriceFilter(1.0, 0.25, z=12.0, adapt_n=200, gap_s=10.0)
    for p in (math.nan, math.inf, -1.0, 0.0):
        assert not pf.update(p, 0)
    assert pf.rejected == 4 and pf.level() is None
    _feed(pf, [5.0] * 1000)                                     # constant
    assert pf.outliers == 0 and pf.level() == 5.0
    assert pf.update(5e300, 10**12)                             # absurd: outlier, finite z
    assert math.isfinite(pf.last_z) and pf.level() == 5.0
    assert not pf.update(5.0, 10**12)                           # same instant: dt 0
