"""EKOP PIN by maximum likelihood: a published worked example, recovery of known
parameters from simulated data (several seeds), stability on huge counts where the naive
likelihood overflows, the trade classification, and degenerate input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from daemon.analytics import pin
from tests.analytics import pin_reference as ref


def test_pinstimation_worked_example_is_reproduced() -> None:
    # PINstimation vignette, Example 1 (see pin_reference.py for the citation).
    r = pin.fit(ref.BUYS, ref.SELLS)
    assert r.ok, r.reason
    e = r.value
    exp = ref.EXPECTED
    assert e.alpha == pytest.approx(exp["alpha"], abs=5e-5)
    assert e.delta == pytest.approx(exp["delta"], abs=5e-5)
    assert e.mu == pytest.approx(exp["mu"], abs=0.01)
    assert e.eps_b == pytest.approx(exp["eps_b"], abs=0.01)
    assert e.eps_s == pytest.approx(exp["eps_s"], abs=0.01)
    assert e.pin == pytest.approx(exp["pin"], abs=1e-5)
    assert e.loglik == pytest.approx(exp["loglik"], abs=1e-3)
    assert e.n_periods == 60


def test_loglik_at_the_published_estimates_matches_the_published_likelihood() -> None:
    exp = ref.EXPECTED
    ll = pin.loglik(exp["alpha"], exp["delta"], exp["mu"], exp["eps_b"], exp["eps_s"],
                    ref.BUYS, ref.SELLS)
    assert ll == pytest.approx(exp["loglik"], abs=1e-3)


def _naive_loglik(a, d, mu, eb, es, buys, sells) -> float:
    """The likelihood as written in EKOP (1996), in floating point, no factorisation."""
    from scipy.special import factorial
    b = np.asarray(buys, dtype=float)
    s = np.asarray(sells, dtype=float)
    with np.errstate(all="ignore"):
        def p(k, lam):
            return np.exp(-lam) * lam ** k / factorial(k)
        L = ((1 - a) * p(b, eb) * p(s, es) + a * d * p(b, eb) * p(s, es + mu)
             + a * (1 - d) * p(b, eb + mu) * p(s, es))
        return float(np.sum(np.log(L)))


def test_log_space_likelihood_equals_the_naive_one_on_small_counts() -> None:
    b, s = [3, 0, 7, 12, 2], [5, 9, 1, 4, 0]
    args = (0.3, 0.4, 6.0, 4.0, 3.5)
    assert pin.loglik(*args, b, s) == pytest.approx(_naive_loglik(*args, b, s), rel=1e-12)


def simulate(alpha, delta, mu, eb, es, days, seed):
    rng = np.random.default_rng(seed)
    event = rng.random(days) < alpha
    bad = rng.random(days) < delta
    buys = rng.poisson(eb + mu * (event & ~bad))
    sells = rng.poisson(es + mu * (event & bad))
    return buys.tolist(), sells.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_recovers_known_parameters_from_simulated_days(seed: int) -> None:
    alpha, delta, mu, eb, es, days = 0.4, 0.6, 400.0, 300.0, 250.0, 250
    b, s = simulate(alpha, delta, mu, eb, es, days, seed)
    r = pin.fit(b, s)
    assert r.ok, r.reason
    e = r.value
    # Sampling standard errors: alpha ~ sqrt(a(1-a)/N), delta ~ sqrt(d(1-d)/(aN)), rates ~
    # sqrt(lambda / (days observed)). With mu far above the noise, days are classified
    # almost surely, so 4 standard errors bound the estimate.
    se_a = math.sqrt(alpha * (1 - alpha) / days)
    se_d = math.sqrt(delta * (1 - delta) / (alpha * days))
    assert abs(e.alpha - alpha) < 4 * se_a
    assert abs(e.delta - delta) < 4 * se_d
    assert abs(e.mu - mu) < 4 * math.sqrt((mu + max(eb, es)) / (alpha * days * min(delta, 1 - delta))) + 1
    assert abs(e.eps_b - eb) < 4 * math.sqrt(eb / days) + 1
    assert abs(e.eps_s - es) < 4 * math.sqrt(es / days) + 1
    true_pin = alpha * mu / (alpha * mu + eb + es)
    assert abs(e.pin - true_pin) < 0.05


def test_huge_counts_stay_finite_where_the_naive_likelihood_overflows() -> None:
    # Thousands of trades per period (a busy BTCUSDT day has hundreds of thousands).
    b, s = simulate(0.3, 0.5, 6000.0, 20000.0, 18000.0, 120, seed=7)
    naive = _naive_loglik(0.3, 0.5, 6000.0, 20000.0, 18000.0, b, s)
    assert not math.isfinite(naive)  # e^-20000 underflows to 0, 20000^k overflows: nan/-inf
    ll = pin.loglik(0.3, 0.5, 6000.0, 20000.0, 18000.0, b, s)
    assert math.isfinite(ll)
    r = pin.fit(b, s)
    assert r.ok, r.reason
    e = r.value
    vals = (e.alpha, e.delta, e.mu, e.eps_b, e.eps_s, e.pin, e.loglik)
    assert all(math.isfinite(v) for v in vals)
    assert abs(e.alpha - 0.3) < 0.15 and abs(e.mu - 6000) < 300


def test_yan_zhang_grid_is_the_published_construction() -> None:
    starts = pin.yan_zhang_starts([100, 200], [150, 150])
    assert all(es > 0 and mu > 0 for _, _, mu, _, es in starts)
    a, d, mu, eb, es = starts[0]  # alpha = delta = gamma = 0.1
    assert (a, d) == (0.1, 0.1)
    assert eb == pytest.approx(15.0)
    assert mu == pytest.approx((150 - 15) / (0.1 * 0.9))
    assert es == pytest.approx(150 - 0.1 * 0.1 * mu)
    assert len(starts) <= 125


def test_counts_by_period_classifies_by_aggressor_side() -> None:
    # buyer_is_maker=True: the seller crossed the spread -> a sell.
    trades = [(1_000, False), (1_500, True), (1_999, False), (4_100, True), (4_200, True)]
    starts, buys, sells = pin.counts_by_period(trades, 1_000)
    assert starts == [1_000, 2_000, 3_000, 4_000]
    assert buys == [2, 0, 0, 0]
    assert sells == [1, 0, 0, 2]
    assert pin.counts_by_period([], 1_000) == ([], [], [])
    with pytest.raises(ValueError):
        pin.counts_by_period(trades, 0)


@pytest.mark.parametrize("buys,sells,why", [
    ([], [], "at least 2"),
    ([5], [4], "at least 2"),
    ([1, 2, 3], [1, 2], "same length"),
    ([1, -2, 3], [1, 2, 3], "non-negative"),
    ([1, 2.5, 3], [1, 2, 3], "non-negative integers"),
    ([1, float("nan"), 3], [1, 2, 3], "non-finite"),
    ([1, float("inf"), 3], [1, 2, 3], "non-finite"),
    ([0, 0, 0], [1, 2, 3], "no buys"),
    ([0, 0, 0], [0, 0, 0], "no buys"),
])
def test_unusable_input_gives_a_reason_not_a_number(buys, sells, why) -> None:
    r = pin.fit(buys, sells)
    assert r.value is None and why in (r.reason or "")


def test_no_information_events_gives_a_finite_small_pin() -> None:
    b, s = simulate(0.0, 0.5, 0.0, 200.0, 200.0, 60, seed=3)
    r = pin.fit(b, s)
    assert r.ok, r.reason
    assert 0 <= r.value.pin < 0.1 and math.isfinite(r.value.loglik)


def test_pin_value_of_no_trading_is_none() -> None:
    assert pin.pin_value(0.0, 0.0, 0.0, 0.0) is None
    assert pin.pin_value(0.5, 100.0, 50.0, 50.0) == pytest.approx(50 / 150)


def test_fit_on_a_shared_capture_read_like_the_market_tests() -> None:
    from daemon.market.capture import CaptureReader
    from daemon.market.decode import Decoder
    from daemon.market.events import Trade
    from tests.market.conftest import shared_data_dir

    path = shared_data_dir() / "binance" / "spot_btcusdt_20240808.gz"
    if not path.parent.is_dir():
        pytest.skip(f"shared market data folder {path.parent} not found (set BOT4_DATA_DIR)")
    dec = Decoder()
    trades = [ev for ns, raw in CaptureReader([path])
              if isinstance(ev := dec.decode(ns, raw), Trade)]
    starts, buys, sells = pin.counts_from_trades(trades, 10_000)
    assert sum(buys) + sum(sells) == len(trades) > 1000
    assert sum(sells) == sum(t.buyer_is_maker for t in trades)
    r = pin.fit(buys, sells)
    assert r.ok, r.reason
    e = r.value
    assert 0 <= e.pin <= 1 and all(math.isfinite(v) for v in (e.mu, e.eps_b, e.eps_s, e.loglik))
    print(f"\nBTCUSDT 2024-08-08 capture, {len(buys)} x 10 s periods: PIN {e.pin:.3f}")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_count = st.one_of(st.integers(0, 20), st.integers(0, 200_000))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(_count, _count), min_size=2, max_size=40))
def test_any_counts_give_a_finite_fit_or_a_reason(pairs) -> None:
    b = [p[0] for p in pairs]
    s = [p[1] for p in pairs]
    r = pin.fit(b, s)
    if r.value is None:
        assert r.reason
        return
    e = r.value
    assert all(math.isfinite(v) for v in (e.alpha, e.delta, e.mu, e.eps_b, e.eps_s, e.pin, e.loglik))
    assert 0 <= e.alpha <= 1 and 0 <= e.delta <= 1 and 0 <= e.pin <= 1
