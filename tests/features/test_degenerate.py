"""Degenerate input: constant prices, zero volume, a single trade, NaN/inf, huge outliers.
Never an exception, never NaN/inf out of a feature, readiness always reported (a value is
None exactly when not ready). Hypothesis drives arbitrary streams through every feature and
through the whole engine.

`_Top` is a stand-in book exposing the OrderBook reading interface (best_bid, best_ask,
levels, valid): it can hold sizes and prices the real book never would (NaN, inf, zero),
which is the point here."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.config import FeaturesCfg
from daemon.features import indicators, liquidity, volatility, vpin
from daemon.features.engine import FeatureEngine
from daemon.market.bars import Bar
from daemon.market.events import Trade

S = 1_000_000_000
SYM = "BTCUSDT"

weird = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1e300, 1e100, 60_000.0, 1e12, 5e-324]),
    st.floats(min_value=1.0, max_value=1e6),
)


class _Top:
    def __init__(self, bid, ask, valid=True):
        self._b, self._a, self.valid = bid, ask, valid

    def best_bid(self):
        return self._b

    def best_ask(self):
        return self._a

    def levels(self, is_bid, n):
        return [self._b if is_bid else self._a] * min(n, 2)


def _clean(eng: FeatureEngine) -> None:
    for sym, feats in eng.status().items():
        for name, v in feats.items():
            x = v["value"]
            assert (x is None) == (not v["ready"]), (sym, name, v)
            assert x is None or (isinstance(x, float) and math.isfinite(x)), (sym, name, v)


def _out_ok(x) -> None:
    assert x is None or math.isfinite(x)


@settings(max_examples=150, deadline=None)
@given(st.lists(weird, min_size=1, max_size=80))
def test_single_series_features_never_emit_nan(xs) -> None:
    fs = [indicators.EMA(3), indicators.SMA(3), indicators.RSI(3), indicators.MACD(2, 4, 2),
          indicators.Bollinger(3, 2.0), volatility.EwmaVol(0.9, 2), volatility.RealisedVol(3),
          liquidity.RollSpread(3), volatility.LogReturns()]
    g = volatility.Garch11()
    g.set_params(1e-6, 0.1, 0.8, ts_ns=0)
    for x in xs:
        for f in fs:
            _out_ok(f.update(x))
        _out_ok(g.update(x))
    m = fs[3]
    b = fs[4]
    for v in (m.macd, m.signal, m.hist, b.upper, b.lower, b.mid, fs[5].value, g.value):
        _out_ok(v)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(weird, weird, weird, weird), min_size=1, max_size=60))
def test_bar_features_never_emit_nan(bars) -> None:
    atr, cs = indicators.ATR(3), liquidity.CorwinSchultz(2)
    am, ky, vw = liquidity.Amihud(2), liquidity.KyleLambda(3), indicators.RollingVWAP(2)
    vp = vpin.VPIN(100.0, 2, 3)
    for h, lo, c, v in bars:
        _out_ok(atr.update(h, lo, c))
        _out_ok(cs.update(h, lo, c))
        _out_ok(am.update(c, v))
        _out_ok(ky.update(c, v))
        _out_ok(vw.update(v, h))
        _out_ok(vp.update(c, v))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["trade", "book", "bar", "bad_book"]), weird, weird,
                          st.booleans(), st.integers(0, 5 * S)), min_size=1, max_size=60))
def test_engine_on_arbitrary_streams_stays_clean(events) -> None:
    cfg = FeaturesCfg(bar_interval_s=1.0, ema_period=2, sma_period=2, rsi_period=2,
                      macd_fast=2, macd_slow=3, macd_signal=2, atr_period=2,
                      bollinger_period=2, vwap_bars=2, ewma_warmup=2, realised_vol_bars=2,
                      ofi_window_s=1.0, trade_imbalance_trades=2, burst_warmup_buckets=2,
                      vpin_bucket_notional=100.0, vpin_buckets=2, vpin_sigma_bars=2,
                      kyle_bars=2, roll_trades=2, cs_bars=2, amihud_bars=2)
    eng = FeatureEngine(cfg, [SYM])
    eng.set_garch_params(SYM, 1e-6, 0.1, 0.8, ts_ns=0)
    t = 0
    for kind, a, b, flag, dt in events:
        t += dt
        if kind == "trade":
            eng.on_trade(Trade(SYM, t, t // 1_000_000, 1, a, b, flag))
        elif kind == "book":
            eng.on_book(SYM, _Top((a, b), (b, a)), t)
        elif kind == "bad_book":
            eng.on_book(SYM, _Top((a, b), None, valid=flag), t)
        else:
            eng.on_bar(SYM, Bar(SYM, t, t + S, a, max(a, b), min(a, b), b, abs(b), a * b,
                                b, a, 1, t, t))
        _clean(eng)
    eng.finish()
    _clean(eng)


def _engine() -> FeatureEngine:
    return FeatureEngine(FeaturesCfg(bar_interval_s=1.0, vpin_bucket_notional=1000.0,
                                     vpin_buckets=5, burst_warmup_buckets=10, kyle_bars=5,
                                     roll_trades=20, cs_bars=5, amihud_bars=5, vwap_bars=5,
                                     trade_imbalance_trades=20, ofi_window_s=2.0), [SYM])


def test_constant_prices() -> None:
    eng = _engine()
    book = _Top((100.0, 1.0), (100.1, 1.0))
    for i in range(200):
        t = i * S // 4
        eng.on_trade(Trade(SYM, t, t // 1_000_000, i, 100.0, 1.0, i % 2 == 0))
        eng.on_book(SYM, book, t)
    _clean(eng)
    g = eng.store.get
    assert g(SYM, "rsi").value == 50.0           # no gain, no loss: neutral
    assert g(SYM, "atr").value == 0.0 and g(SYM, "realised_vol").value == 0.0
    assert g(SYM, "ewma_vol").value == 0.0
    assert g(SYM, "bb_upper").value == g(SYM, "bb_lower").value == 100.0
    assert g(SYM, "roll_spread").value == 0.0 and g(SYM, "cs_spread").value == 0.0
    assert g(SYM, "amihud").value == 0.0 and g(SYM, "ofi").value == 0.0
    assert g(SYM, "vpin").value == 0.0            # sigma 0: every bucket balanced
    assert g(SYM, "microburst").value == 0.0
    assert g(SYM, "trade_imbalance").value == 0.0
    # constant prices: lambda is 0 if the flow varies, not ready if it does not (here the
    # alternating trades make equal buy and sell per bar: S = 0 every bar)
    assert not g(SYM, "kyle_lambda").ready


def test_zero_volume() -> None:
    eng = _engine()
    for i in range(100):
        t = i * S // 4
        eng.on_trade(Trade(SYM, t, t // 1_000_000, i, 100.0 + i % 3, 0.0, False))
    _clean(eng)
    g = eng.store.get
    for name in ("trade_imbalance", "vwap", "vpin", "amihud"):
        assert not g(SYM, name).ready, name
    assert g(SYM, "ema").ready                     # prices still move


def test_single_trade() -> None:
    eng = _engine()
    eng.on_trade(Trade(SYM, 5, 0, 1, 100.0, 1.0, False))
    eng.finish()
    _clean(eng)
    assert not any(v["ready"] for v in eng.status()[SYM].values())


def test_nan_and_inf_input_is_dropped_not_propagated() -> None:
    eng = _engine()
    book = _Top((100.0, 1.0), (100.1, 2.0))
    for i in range(120):
        t = i * S // 4
        p = [100.0, float("nan"), 100.2, float("inf"), 99.9][i % 5]
        eng.on_trade(Trade(SYM, t, t // 1_000_000, i, p, 1.0, i % 3 == 0))
        eng.on_book(SYM, book if i % 7 else _Top((float("nan"), 1.0), (100.1, 2.0)), t)
    _clean(eng)
    assert eng.store.get(SYM, "ema").ready and eng.store.get(SYM, "roll_spread").ready


def test_huge_outlier_is_absorbed() -> None:
    eng = _engine()
    for i in range(200):
        t = i * S // 4
        p = 1e12 if i == 100 else 100.0 + (i % 4) * 0.1
        eng.on_trade(Trade(SYM, t, t // 1_000_000, i, p, 1e9 if i == 150 else 1.0, i % 2 == 0))
    _clean(eng)
    v = eng.store.get(SYM, "roll_spread")
    assert v.ready and v.value > 0
    assert eng.store.get(SYM, "atr").ready


def test_denormal_prices_are_dropped() -> None:
    """Found by hypothesis: 1.0 / 5e-324 overflows to inf (log -> inf) and 5e-324 / 2.0
    underflows to 0 (log -> ValueError). Prices below 1e-100 are now dropped."""
    for xs in ([5e-324, 1.0], [2.0, 5e-324]):
        lr, rs = volatility.LogReturns(), liquidity.RollSpread(3)
        for x in xs:
            _out_ok(lr.update(x))
            _out_ok(rs.update(x))
        assert lr.dropped == 1 and rs.dropped == 1
