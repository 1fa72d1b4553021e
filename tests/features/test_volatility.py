"""Volatility features against `arch` (dev-only): the EWMA (RiskMetrics) and GARCH(1,1)
variance recursions given parameters, with our initial-variance conventions passed to arch
as its backcast; realised volatility by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

arch_vol = pytest.importorskip("arch.univariate", reason="arch (dev extra) is the reference")

from daemon.features.volatility import EwmaVol, Garch11, LogReturns, RealisedVol  # noqa: E402

_BOUNDS = None


def _returns(seed: int = 2, n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_t(5, n) * 1e-3


def _bounds(n: int) -> np.ndarray:
    return np.column_stack([np.full(n, 1e-300), np.full(n, 1e300)])


@pytest.mark.parametrize("lam,warmup", [(0.94, 20), (0.97, 1), (0.5, 5)])
def test_ewma_equals_arch_ewma_variance(lam: float, warmup: int) -> None:
    r = _returns()
    e = EwmaVol(lam, warmup)
    ours = []
    for x in r:
        e.update(x)
        ours.append(e.var)
    assert all(v is None for v in ours[:warmup - 1]) and ours[warmup - 1] is not None
    seed = float(np.mean(r[:warmup] ** 2))           # our convention: mean of the first r^2
    assert ours[warmup - 1] == pytest.approx(seed, rel=1e-12)
    rest = r[warmup:]
    sigma2 = np.empty(len(rest))
    arch_vol.EWMAVariance(lam).compute_variance(np.empty(0), rest, sigma2, seed,
                                                _bounds(len(rest)))
    # arch's sigma2[k] is the variance of rest[k] given data before it = our forecast after
    # the previous return
    np.testing.assert_allclose(np.array(ours[warmup - 1:-1]), sigma2, rtol=1e-12)
    assert e.value == pytest.approx(math.sqrt(ours[-1]))


@pytest.mark.parametrize("omega,alpha,beta", [(1e-7, 0.08, 0.9), (2e-6, 0.2, 0.5)])
def test_garch_forecast_equals_arch_recursion(omega: float, alpha: float, beta: float) -> None:
    r = _returns(5)
    g = Garch11()
    assert g.update(r[0]) is None and g.value is None      # no fit yet: not ready
    g.set_params(omega, alpha, beta, ts_ns=1)
    uncond = omega / (1 - alpha - beta)
    assert g.var == pytest.approx(uncond)
    ours = []
    for x in r:
        ours.append(g.var)
        g.update(x)
    sigma2 = np.empty(len(r))
    # the unconditional variance is the recursion's fixed point, so arch's backcast (its
    # stand-in for r_{-1}^2 and sigma2_{-1}) equal to it gives sigma2[0] = uncond too
    arch_vol.GARCH(1, 0, 1).compute_variance(np.array([omega, alpha, beta]), r, sigma2,
                                             uncond, _bounds(len(r)))
    np.testing.assert_allclose(np.array(ours), sigma2, rtol=1e-12)


def test_garch_given_initial_variance_and_percent_scale() -> None:
    """Parameters fitted on percent returns (scale 100) and the fit's last conditional
    variance: sigma2_1 = omega + alpha (100 r0)^2 + beta sigma2_0, reported / 100."""
    g = Garch11()
    g.set_params(0.02, 0.1, 0.85, ts_ns=5, sigma2=0.5, scale=100.0)
    assert g.value == pytest.approx(math.sqrt(0.5) / 100)
    g.update(0.01)                       # 1 % = 1.0 in percent units
    assert g.var == pytest.approx(0.02 + 0.1 * 1.0 + 0.85 * 0.5)
    assert g.value == pytest.approx(math.sqrt(0.02 + 0.1 + 0.425) / 100)


@pytest.mark.parametrize("bad", [(0.0, 0.1, 0.8), (1e-6, 0.5, 0.5), (1e-6, -0.1, 0.5),
                                 (float("nan"), 0.1, 0.8), (1e-6, 0.1, float("inf"))])
def test_garch_refuses_unusable_parameters(bad: tuple[float, float, float]) -> None:
    g = Garch11()
    with pytest.raises(ValueError):
        g.set_params(*bad, ts_ns=0)
    assert g.value is None


def test_realised_vol_hand_computed() -> None:
    rv = RealisedVol(3)
    assert rv.update(0.01) is None and rv.update(-0.02) is None
    assert rv.update(0.02) == pytest.approx(math.sqrt(1e-4 + 4e-4 + 4e-4))
    assert rv.update(0.0) == pytest.approx(math.sqrt(8e-4))


def test_log_returns_drop_bad_prices() -> None:
    lr = LogReturns()
    assert lr.update(100.0) is None
    assert lr.update(0.0) is None and lr.update(float("nan")) is None and lr.dropped == 2
    assert lr.update(110.0) == pytest.approx(math.log(1.1))


def test_garch_constant_mean_and_integrated_with_initial_variance() -> None:
    g = Garch11()
    with pytest.raises(ValueError):
        g.set_params(1e-6, 0.1, 0.9, ts_ns=0)            # IGARCH: no unconditional variance
    g.set_params(1e-6, 0.1, 0.9, ts_ns=0, sigma2=2e-6, mu=0.001)
    g.update(0.003)
    assert g.var == pytest.approx(1e-6 + 0.1 * 0.002 ** 2 + 0.9 * 2e-6)
