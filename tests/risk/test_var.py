"""VaR/CVaR: the three estimators against independent computations with numpy/scipy on
the same window, the Cornish-Fisher expansion against textbook and published figures, the
rolling window of marks, and VaR as a pre-trade and a continuous limit."""
from __future__ import annotations

import math
from decimal import Decimal as D

import numpy as np
import pytest
from scipy import integrate, stats

from daemon.execution.orders import Side
from daemon.risk import var
from tests.risk.common import BTC, ETH, MIN_NS, T0, engine, marks, order, position

LEVELS = (0.95, 0.975, 0.99)


def sample_pnl(n: int = 500, seed: int = 11) -> np.ndarray:
    """Skewed, fat-tailed P&L (a mix of Student-t and a few jumps down)."""
    rng = np.random.default_rng(seed)
    p = rng.standard_t(4, n) * 3.0 + 0.2
    p[rng.random(n) < 0.03] -= 15.0
    return p


@pytest.mark.parametrize("n", [30, 31, 500])
@pytest.mark.parametrize("level", LEVELS)
def test_historical_matches_numpy(level, n):
    p = sample_pnl(n=n)
    losses = -p
    q = np.quantile(losses, level, method="linear")
    v, cv = var.historical(p, level)
    assert v == pytest.approx(q, rel=1e-12)
    assert cv == pytest.approx(losses[losses >= q].mean(), rel=1e-12)
    assert cv >= v


def test_historical_at_the_edges_of_the_sample():
    p = sample_pnl(n=50)
    assert var.historical(p, 1.0) == (float(-p.min()), float(-p.min()))
    assert var.historical(p, 0.0)[0] == float(-p.max())


@pytest.mark.parametrize("level", LEVELS)
def test_gaussian_matches_scipy(level):
    p = sample_pnl(seed=3)
    mu, sd = p.mean(), p.std(ddof=1)
    z = stats.norm.ppf(level)
    v, cv = var.gaussian(p, level)
    assert v == pytest.approx(-mu + sd * z, rel=1e-9)
    assert cv == pytest.approx(-mu + sd * stats.norm.pdf(z) / (1 - level), rel=1e-9)


def _cf_w(z, s, k):
    # Written out independently of daemon.risk.var (Maillard 2012, eq. 1; Zangari 1996).
    return z + (z ** 2 - 1) * s / 6 + (z ** 3 - 3 * z) * k / 24 - (2 * z ** 3 - 5 * z) * s ** 2 / 36


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cornish_fisher_matches_scipy_and_numerical_tail_integral(level, seed):
    p = sample_pnl(n=400, seed=seed)
    mu, sd = p.mean(), p.std(ddof=1)
    s, k = stats.skew(p, bias=True), stats.kurtosis(p, fisher=True, bias=True)
    alpha = 1 - level
    q = mu + sd * _cf_w(stats.norm.ppf(alpha), s, k)
    # CVaR: the CF quantile averaged over the tail, integrated numerically in u.
    tail, _ = integrate.quad(lambda u: mu + sd * _cf_w(stats.norm.ppf(u), s, k), 0, alpha,
                             limit=200)
    v, cv = var.cornish_fisher(p, level)
    assert v == pytest.approx(-q, rel=1e-9)
    assert cv == pytest.approx(-tail / alpha, rel=1e-6)


def test_cornish_fisher_collapses_to_gaussian_without_skew_or_kurtosis():
    for level in LEVELS:
        t = stats.norm.ppf(1 - level)
        assert var.cf_z(t, 0.0, 0.0) == pytest.approx(t, rel=1e-15)
        assert var.cf_tail_mean(t, 0.0, 0.0) == pytest.approx(
            -stats.norm.pdf(t) / (1 - level), rel=1e-12)
    p = np.array([-2.0, -1.0, 0.0, 1.0, 2.0] * 10)       # symmetric: S = 0
    assert var.cornish_fisher(p, 0.95)[0] != var.gaussian(p, 0.95)[0]   # K != 0 here


def test_textbook_example_hull():
    """J. C. Hull, "Options, Futures, and Other Derivatives", the Cornish-Fisher expansion
    in the Value at Risk chapter: a portfolio change with mean -0.2, standard deviation
    2.2 and skewness -0.4; at the 1% point (z = -2.326)
        w = z + (z^2 - 1) * skew / 6 = -2.326 - (2.326^2 - 1) * 0.4 / 6 = -2.62,
    so the 1% percentile is -0.2 - 2.62 * 2.2 = -5.96: a 99% VaR of 5.96. Hull stops at
    the skewness term; the four-moment expansion used here adds the kurtosis term (0
    with no excess kurtosis) and -(2z^3 - 5z) skew^2 / 36, which is taken back out to
    compare."""
    z, skew = -2.326, -0.4
    w4 = var.cf_z(z, skew, 0.0)
    w_hull = w4 + (2 * z ** 3 - 5 * z) * skew ** 2 / 36
    assert round(w_hull, 2) == -2.62
    assert round(-0.2 + round(w_hull, 2) * 2.2, 2) == -5.96
    # The full expansion at the exact normal quantile.
    zq = stats.norm.ppf(0.01)
    assert var.cf_z(zq, skew, 0.0) == pytest.approx(
        zq + (zq ** 2 - 1) * skew / 6 - (2 * zq ** 3 - 5 * zq) * skew ** 2 / 36, rel=1e-15)


@pytest.mark.parametrize("p, skew, exkurt, expected", [
    # Published values of the four-moment expansion (the mir.stat library's documented
    # examples of cornishFisherInvCDF(p, skewness, excessKurtosis), 7 digits).
    (0.9, 0.1, 0.0, 1.292868), (0.9, 0.1, 1.0, 1.220374), (0.9, 0.1, -1.0, 1.365363),
    (0.99, 0.1, 0.0, 2.396116), (0.99, 0.1, 1.0, 2.629904), (0.99, 0.1, -1.0, 2.162328),
    (0.01, 0.1, 0.0, -2.249053), (0.01, 0.1, 1.0, -2.482841), (0.01, 0.1, -1.0, -2.015265),
    (0.5, 1.0, 0.0, -1 / 6), (0.5, -1.0, 0.0, 1 / 6),
])
def test_cornish_fisher_published_values(p, skew, exkurt, expected):
    assert var.cf_z(stats.norm.ppf(p), skew, exkurt) == pytest.approx(expected, abs=1e-6)


def test_estimate_needs_enough_returns_and_rounds():
    p = sample_pnl(n=29)
    assert var.estimate(p, "historical", 0.99) is None
    assert var.table(p, [0.95]) == {}
    p = sample_pnl(n=30)
    v, cv = var.estimate(p, "gaussian", 0.95)
    g = var.gaussian(p, 0.95)
    assert v == D(repr(round(g[0], 8))) and cv == D(repr(round(g[1], 8)))
    t = var.table(p, [0.95, 0.99])
    assert set(t) == {"historical", "gaussian", "cornish_fisher"}
    assert t["gaussian"]["0.95"] == {"var": str(v), "cvar": str(cv)}
    assert set(t["cornish_fisher"]) == {"0.95", "0.99"}


def test_constant_pnl_has_no_risk():
    p = np.full(50, 1.0)
    assert var.gaussian(p, 0.99) == (-1.0, -1.0)
    assert var.cornish_fisher(p, 0.99) == pytest.approx((-1.0, -1.0))
    assert var.historical(p, 0.99) == (-1.0, -1.0)


# -- the window -------------------------------------------------------------------------
def test_window_samples_once_per_interval_and_keeps_window_returns():
    w = var.MarkWindow(window=3, interval_ns=MIN_NS)
    assert w.sample({BTC: D("100")}, T0)
    assert not w.sample({BTC: D("101")}, T0 + MIN_NS - 1)
    assert w.sample({BTC: D("110")}, T0 + MIN_NS)
    assert w.n_returns == 1
    for i, m in enumerate(["99", "99", "198"], 2):
        assert w.sample({BTC: D(m)}, T0 + i * MIN_NS)
    assert w.n_returns == 3 and len(w.samples) == 4
    r = w.returns([BTC])
    assert r[:, 0] == pytest.approx([99 / 110 - 1, 0.0, 1.0])


def test_window_return_is_zero_where_a_symbol_is_unpriced():
    w = var.MarkWindow(window=10, interval_ns=1)
    w.sample({BTC: D("100"), ETH: D("10")}, 1)
    w.sample({BTC: D("101"), ETH: None}, 2)
    w.sample({BTC: D("102"), ETH: D("11")}, 3)
    w.sample({BTC: D("0"), ETH: D("12")}, 4)
    w.sample({BTC: D("0.5"), ETH: D("12")}, 5)         # a coin below 1 is still a price
    w.sample({BTC: D("0.75"), ETH: D("12")}, 6)
    r = w.returns([BTC, ETH])
    np.testing.assert_allclose(r, [[0.01, 0.0], [1 / 101, 0.0], [0.0, 1 / 11], [0.0, 0.0],
                                   [0.5, 0.0]], rtol=1e-12)
    assert w.returns([]).shape == (5, 0)
    # Exposures may come as Decimals: they are read as floats.
    assert var.pnl(np.array([[0.01], [-0.02]]), [D("100")]).tolist() == \
        pytest.approx([1.0, -2.0])
    assert var.pnl(np.array([[0.01, -0.02], [0.0, 0.1]]), [100.0, 10.0]).tolist() == \
        pytest.approx([1.0 - 0.2, 1.0])


# -- through the engine -----------------------------------------------------------------------
def _path(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    btc = 60000 * np.cumprod(1 + rng.standard_t(5, n) * 0.002)
    eth = 3000 * np.cumprod(1 + rng.standard_t(5, n) * 0.003)
    return np.round(btc, 2), np.round(eth, 2)


def _fed(n: int = 200, **cfg):
    e = engine(**cfg)
    btc, eth = _path(n)
    for i in range(n):
        e.sample({}, {BTC: D(repr(float(btc[i]))), ETH: D(repr(float(eth[i])))},
                 T0 + i * MIN_NS)
    return e, btc, eth


def test_status_table_matches_an_independent_portfolio_computation():
    e, btc, eth = _fed(200, var_window=199)
    pos = {BTC: position(qty="0.02", avg="60000"), ETH: position(ETH, qty="-0.5", avg="3000")}
    mk = {BTC: D(repr(float(btc[-1]))), ETH: D(repr(float(eth[-1])))}
    st = e.status(pos, mk, T0 + 200 * MIN_NS)
    rb, re_ = btc[1:] / btc[:-1] - 1, eth[1:] / eth[:-1] - 1
    pnl = 0.02 * btc[-1] * rb - 0.5 * eth[-1] * re_
    assert st["var"]["returns"] == 199
    losses = -pnl
    for level in (0.95, 0.99):
        row = {m: st["var"]["table"][m][f"{level:g}"] for m in var.METHODS}
        q = np.quantile(losses, level)
        assert float(row["historical"]["var"]) == pytest.approx(q, abs=1e-7)
        assert float(row["historical"]["cvar"]) == pytest.approx(losses[losses >= q].mean(),
                                                                 abs=1e-7)
        z = stats.norm.ppf(level)
        mu, sd = pnl.mean(), pnl.std(ddof=1)
        assert float(row["gaussian"]["var"]) == pytest.approx(-mu + sd * z, abs=1e-7)
        s, k = stats.skew(pnl), stats.kurtosis(pnl)
        assert float(row["cornish_fisher"]["var"]) == pytest.approx(
            -(mu + sd * _cf_w(stats.norm.ppf(1 - level), s, k)), abs=1e-7)
    assert st["limits"]["var"]["limit"] == "off"
    assert D(st["limits"]["var"]["used"]) == D(row["historical"]["var"])


def _var_engine(max_var: str, **cfg):
    e, btc, _ = _fed(100, max_var=D(max_var), var_window=500, **cfg)
    return e, D(repr(float(btc[-1])))


def test_pre_trade_var_limit_trips_with_its_figures_and_not_at_the_limit():
    e, m = _var_engine("1000")
    mark = marks(BTCUSDT=str(m))
    pos = {BTC: position(qty="0.01", avg=str(m))}
    o = order(qty="0.01", price=str(m))
    kw = dict(positions=pos, open_orders=[], mark=mark, now_ns=T0)
    now = e._var_of({BTC: D("0.01")}, {BTC: m})
    after = e._var_of({BTC: D("0.02")}, {BTC: m})
    assert after > now > 0
    # Historical VaR is linear in the exposure here (one symbol, same sign).
    assert abs(after - 2 * now) <= D("0.00000002")
    e.cfg = e.cfg.model_copy(update={"max_var": after})
    assert e.check(o, **kw) is None
    e.cfg = e.cfg.model_copy(update={"max_var": after - D("0.00000001")})
    assert e.check(o, **kw) == (
        f"VaR (historical 0.99) could reach {after.normalize():f}, max_var is "
        f"{after - D('0.00000001')} (now {now.normalize():f})")
    # An order that lowers VaR passes even above the limit.
    e.cfg = e.cfg.model_copy(update={"max_var": D("0.0001")})
    assert e.check(order(Side.SELL, qty="0.005", price=str(m)), **kw) is None
    assert e.check(order(Side.SELL, qty="0.03", price=str(m)), **kw) is not None


def test_pre_trade_var_uses_the_configured_method():
    e, m = _var_engine("1000", var_method="cornish_fisher", var_limit_level=0.95,
                       max_order_notional=D("1e6"))
    cf = e._var_of({BTC: D("0.02")}, {BTC: m})
    e.cfg = e.cfg.model_copy(update={"max_var": cf - D("0.00000001")})
    reason = e.check(order(qty="0.02", price=str(m)), positions={}, open_orders=[],
                     mark=marks(BTCUSDT=str(m)), now_ns=T0)
    assert reason.startswith(f"VaR (cornish_fisher 0.95) could reach {cf.normalize():f}")


def test_var_limit_zero_is_off_even_with_a_full_window():
    e, m = _var_engine("0")
    assert e.check(order(qty="0.01", price=str(m)), positions={}, open_orders=[],
                   mark=marks(BTCUSDT=str(m)), now_ns=T0) is None
    assert e.status({}, {BTC: m}, T0)["limits"]["var"]["limit"] == "off"


def test_var_limit_passes_while_warming_up():
    e = engine(max_var=D("0.0001"))
    for i in range(30):    # 29 returns: one short
        e.sample({}, {BTC: D(60000 + 7 * (i % 3))}, T0 + i * MIN_NS)
    assert e.check(order(), positions={}, open_orders=[], mark=marks(BTCUSDT="60000"),
                   now_ns=T0) is None
    e.sample({}, {BTC: D(60100)}, T0 + 30 * MIN_NS)
    assert e.check(order(), positions={}, open_orders=[], mark=marks(BTCUSDT="60000"),
                   now_ns=T0).startswith("VaR (historical 0.99) could reach")


def test_continuous_var_trip_with_its_action():
    e, m = _var_engine("1000", var_action="reducing")
    pos = {BTC: position(qty="0.05", avg=str(m))}
    v = e._var_of({BTC: D("0.05")}, {BTC: m})
    e.cfg = e.cfg.model_copy(update={"max_var": v})
    assert e.evaluate(pos, {BTC: m}, T0) == []
    e.cfg = e.cfg.model_copy(update={"max_var": v - D("0.00000001")})
    [t] = e.evaluate(pos, {BTC: m}, T0 + 1)
    assert (t.limit, t.action) == ("var", "reducing")
    assert t.reason == (f"VaR (historical 0.99) {v.normalize():f} beyond max_var "
                        f"{v - D('0.00000001')}")
    assert t.figures == {"var": f"{v.normalize():f}", "limit": str(v - D("0.00000001")),
                         "method": "historical", "level": "0.99"}
    assert e.evaluate(pos, {BTC: m}, T0 + 2) == []
    # With var_action off the same VaR trips nothing.
    off, _ = _var_engine("0.0001")
    assert off.evaluate(pos, {BTC: m}, T0) == []


@pytest.mark.parametrize("steps", [
    ("returns", "sample", "replace"),      # an empty window cached, then changed twice
    ("returns", "replace", "sample"),
    ("sample", "returns", "replace"),
])
def test_the_returns_cache_never_serves_an_older_window(steps):
    w = var.MarkWindow(window=10, interval_ns=1)
    t = iter(range(100, 200))
    for step in steps:
        if step == "returns":
            w.returns([BTC])
        elif step == "sample":
            w.sample({BTC: D("100")}, next(t))
        else:
            w.replace([(1, {BTC: 50.0}), (2, {BTC: 60.0}), (3, {BTC: 30.0})])
    np.testing.assert_array_equal(w.returns([BTC]), w._build([BTC]))
