"""GARCH(1,1) MLE against the `arch` package on simulated GARCH data, with the same
initial-variance convention (arch's ``backcast`` set to our sample variance), on the
S&P 500 daily returns that arch ships (the data of arch's own "Volatility modeling"
worked example), and on degenerate input.

No published GARCH estimate is reproduced digit for digit: published fits (arch's
documentation, the Bollerslev–Ghysels DEM/GBP benchmark) use a different initial variance
(arch's EWMA backcast) or data not available here, so the reference is arch's optimiser on
the same likelihood.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from arch import arch_model

from daemon.analytics import garch


def simulate(n: int, omega: float, alpha: float, beta: float, seed: int, mu: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = np.empty(n)
    s2 = omega / (1 - alpha - beta)
    e = 0.0
    for t in range(n):
        s2 = omega + alpha * e * e + beta * s2
        e = math.sqrt(s2) * rng.standard_normal()
        r[t] = mu + e
    return r


def arch_fit(r: np.ndarray, mean: str, backcast: float):
    am = arch_model(r, mean=mean, vol="GARCH", p=1, q=1, dist="normal", rescale=False)
    return am.fit(disp="off", backcast=backcast, options={"ftol": 1e-12, "maxiter": 1000})


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", [(0.05, 0.1, 0.85), (0.01, 0.05, 0.94)])
def test_zero_mean_fit_matches_arch_with_the_same_backcast(seed: int, params) -> None:
    r = simulate(2000, *params, seed=seed)
    f = garch.fit(r)
    assert f.ok, f.reason
    v = f.value
    assert v.backcast == pytest.approx(float(np.mean(r ** 2)))
    ref = arch_fit(r, "Zero", v.backcast)
    om, a, b = ref.params["omega"], ref.params["alpha[1]"], ref.params["beta[1]"]
    assert v.loglik == pytest.approx(ref.loglikelihood, rel=1e-4)
    assert v.loglik >= ref.loglikelihood - 1e-6 * abs(ref.loglikelihood)  # we find the max too
    assert v.alpha == pytest.approx(a, abs=5e-3)
    assert v.beta == pytest.approx(b, abs=1e-2)
    assert v.omega == pytest.approx(om, rel=0.1, abs=1e-3)
    # And the estimates are near the truth (2000 obs; loose sampling bounds).
    assert abs(v.alpha - params[1]) < 0.05 and abs(v.beta - params[2]) < 0.1


@pytest.mark.parametrize("seed", [3, 4])
def test_constant_mean_fit_matches_arch(seed: int) -> None:
    r = simulate(1500, 0.05, 0.1, 0.85, seed=seed, mu=0.3)
    v = garch.fit(r, mean="constant").value
    assert v is not None
    ref = arch_fit(r, "Constant", v.backcast)
    assert v.loglik == pytest.approx(ref.loglikelihood, rel=1e-4)
    assert v.mu == pytest.approx(ref.params["mu"], abs=5e-3)
    assert v.alpha == pytest.approx(ref.params["alpha[1]"], abs=5e-3)
    assert v.beta == pytest.approx(ref.params["beta[1]"], abs=1e-2)


def test_sp500_worked_example_matches_arch() -> None:
    from arch.data import sp500
    px = sp500.load()["Adj Close"]
    r = (100 * px.pct_change().dropna()).to_numpy()[-2000:]
    v = garch.fit(r, mean="constant").value
    assert v is not None
    ref = arch_fit(r, "Constant", v.backcast)
    assert v.loglik == pytest.approx(ref.loglikelihood, rel=1e-4)
    assert v.alpha == pytest.approx(ref.params["alpha[1]"], abs=5e-3)
    assert v.beta == pytest.approx(ref.params["beta[1]"], abs=1e-2)
    assert 0.9 < v.persistence < 1.0  # equity volatility is highly persistent


def test_arch_default_backcast_is_a_different_likelihood() -> None:
    # Why the convention matters: arch's default backcast (EWMA of the first 75 squared
    # returns) evaluates another likelihood, so comparisons must pass ours explicitly.
    r = simulate(300, 0.05, 0.1, 0.85, seed=11)
    v = garch.fit(r).value
    am = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, rescale=False)
    default_bc = am.fit(disp="off").params
    ll_ours_at_default = -garch._nll(r, default_bc["omega"], default_bc["alpha[1]"],
                                     default_bc["beta[1]"], v.backcast)
    assert v.loglik >= ll_ours_at_default - 1e-9
    assert am.volatility.backcast(r) != pytest.approx(v.backcast, rel=1e-6)


def test_loglik_and_forecast_follow_the_stated_recursion() -> None:
    r = simulate(200, 0.05, 0.1, 0.85, seed=5)
    v = garch.fit(r).value
    b = float(np.mean(r ** 2))
    s2 = v.omega + (v.alpha + v.beta) * b  # sigma2_0 with e2_{-1} = sigma2_{-1} = b
    ll = 0.0
    for t in range(len(r)):
        if t > 0:
            s2 = v.omega + v.alpha * r[t - 1] ** 2 + v.beta * s2
        ll += -0.5 * (math.log(2 * math.pi) + math.log(s2) + r[t] ** 2 / s2)
    assert v.loglik == pytest.approx(ll, rel=1e-10)
    assert v.last_variance == pytest.approx(s2, rel=1e-10)
    assert v.next_variance == pytest.approx(v.omega + v.alpha * r[-1] ** 2 + v.beta * s2, rel=1e-10)


def test_scale_invariance_tiny_returns() -> None:
    # Real per-second log returns are ~1e-4: the fit must not depend on the units.
    r = simulate(1500, 0.05, 0.1, 0.85, seed=8)
    v1 = garch.fit(r).value
    v2 = garch.fit(r * 1e-4).value
    assert v2.alpha == pytest.approx(v1.alpha, abs=1e-4)
    assert v2.beta == pytest.approx(v1.beta, abs=1e-4)
    assert v2.omega == pytest.approx(v1.omega * 1e-8, rel=1e-3)
    assert v2.loglik == pytest.approx(v1.loglik - 1500 * math.log(1e-4), rel=1e-8)


def test_variance_targeting() -> None:
    r = simulate(2000, 0.05, 0.1, 0.85, seed=9)
    v = garch.fit(r, variance_targeting=True).value
    assert v is not None
    assert v.omega == pytest.approx(v.backcast * (1 - v.alpha - v.beta), rel=1e-9)
    assert v.unconditional_variance == pytest.approx(v.backcast, rel=1e-9)
    free = garch.fit(r).value
    assert v.loglik <= free.loglik + 1e-6  # a constrained optimum cannot beat the free one


@pytest.mark.parametrize("returns,why", [
    ([0.01] * 10, "at least"),
    ([0.0] * 100, "zero variance"),
    ([0.01, float("nan")] * 50, "non-finite"),
    ([0.01, float("inf")] * 50, "non-finite"),
    ([[0.1, 0.2]] * 50, "1-d"),
])
def test_degenerate_input_is_a_reason(returns, why) -> None:
    r = garch.fit(returns)
    assert r.value is None and why in (r.reason or "")


def test_constant_mean_on_constant_nonzero_returns_is_a_reason() -> None:
    assert garch.fit([0.01] * 100, mean="constant").value is None
    assert garch.fit([0.01] * 100, mean="bogus").value is None


def test_huge_outlier_stays_finite() -> None:
    r = simulate(500, 0.05, 0.1, 0.85, seed=12)
    r[250] = 1e6
    v = garch.fit(r).value
    assert v is not None
    assert all(math.isfinite(x) for x in (v.omega, v.alpha, v.beta, v.loglik, v.next_variance))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=30, max_size=120))
def test_any_finite_returns_give_a_finite_fit_or_a_reason(rets) -> None:
    r = garch.fit(rets)
    if r.value is None:
        assert r.reason
        return
    v = r.value
    assert all(math.isfinite(x) for x in (v.omega, v.alpha, v.beta, v.loglik, v.last_variance, v.next_variance))
    assert v.omega > 0 and v.alpha >= 0 and v.beta >= 0 and v.alpha + v.beta <= 1 + 1e-9


def test_a_fit_that_stops_outside_the_stationarity_bound_is_not_returned():
    """Found by hypothesis in a full run: SLSQP stopped unconverged at alpha + beta =
    1.0000005 on one huge return followed by small ones. A fit must satisfy the model's
    constraints (alpha + beta <= 1), or fall back to the best feasible start."""
    rets = [773341.625, 12.0, 5.0, 6.0, 11.0, 4.0, 1.0, 0.0, 0.0, 2.0, 4.0, 1.0, 2.0, 4.0,
            2.0, 1.0, 1.0, 2.0, 3.0, 0.0, 2.0, 2.0, 3.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 5.0]
    r = garch.fit(rets)
    if r.value is None:
        assert r.reason
        return
    v = r.value
    assert v.omega > 0 and v.alpha >= 0 and v.beta >= 0 and v.alpha + v.beta <= 1 + 1e-9
