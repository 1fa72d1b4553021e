"""FeatureEngine and FeatureStore with real books, trades, bars and fills: readiness,
the registry, event-time stamps, adverse selection of our fills, the GARCH hand-over,
and the Parquet export round trip."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from decimal import Decimal

import pytest

from daemon.config import FeaturesCfg
from daemon.execution.orders import Fill, Liquidity, Side
from daemon.features import store as store_mod
from daemon.features.engine import FeatureEngine, feature_specs
from daemon.features.store import FeatureSpec, FeatureStore, FeatureValue, PyarrowMissing
from daemon.market.bars import Bar
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Trade

S = 1_000_000_000
SYM = "BTCUSDT"


def _book() -> OrderBook:
    b = OrderBook(SYM, futures=False)
    b.on_snapshot(DepthSnapshot(SYM, 0, 10, [(100.0, 5.0), (99.0, 2.0)],
                                [(101.0, 3.0), (102.0, 1.0)]))
    return b


def _diff(book: OrderBook, ts: int, bids, asks) -> None:
    u = book.last_update_id
    book.on_diff(DepthDiff(SYM, ts, u + 1, u + 1, None, bids, asks))


def _trade(ts: int, price: float, qty: float = 1.0, buy: bool = True, tid: int = 0) -> Trade:
    return Trade(SYM, ts, ts // 1_000_000, tid, price, qty, not buy)


def _fill(ts: int, side: Side) -> Fill:
    return Fill("f1", "c1", SYM, side, Decimal("100.5"), Decimal("0.01"), Decimal("0"),
                Liquidity.MAKER, ts)


def test_registry_lists_every_feature_with_parameters() -> None:
    cfg = FeaturesCfg()
    eng = FeatureEngine(cfg, [SYM, "ETHUSDT"])
    reg = {r["name"]: r for r in eng.registry()}
    expected = {"ema", "sma", "rsi", "macd", "macd_signal", "macd_hist", "atr", "bb_mid",
                "bb_upper", "bb_lower", "vwap", "ewma_vol", "realised_vol", "garch_vol",
                "vpin", "kyle_lambda", "cs_spread", "amihud", "trade_imbalance",
                "roll_spread", "ofi", "ofi_ml", "microprice", "trade_rate_z", "ofi_burst_z",
                "microburst", "adverse_1s", "adverse_5s", "adverse_30s"}
    assert set(reg) == expected
    assert reg["ema"]["params"]["period"] == cfg.ema_period
    assert reg["vpin"]["params"] == {"bar_interval_s": 60.0, "bucket_notional": 1e6,
                                     "buckets": 50, "sigma_bars": 50}
    assert reg["ofi"]["source"] == "book" and reg["ofi"]["unit"] == "base qty"
    assert all(r["unit"] and r["source"] for r in reg.values())
    st = eng.status()
    assert set(st) == {SYM, "ETHUSDT"} and set(st[SYM]) == expected
    assert st[SYM]["vpin"] == {"value": None, "ts_ns": 0, "ready": False}
    assert eng.store.get(SYM, "vpin") == FeatureValue(None, 0, False)
    assert eng.store.get(SYM, "ofi").ready is False


def test_unknown_feature_or_symbol_is_a_key_error() -> None:
    eng = FeatureEngine(FeaturesCfg(), [SYM])
    with pytest.raises(KeyError, match="vpln"):
        eng.store.get(SYM, "vpln")
    with pytest.raises(KeyError):
        eng.store.get("XRPUSDT", "vpin")
    eng.on_trade(Trade("XRPUSDT", 1, 1, 1, 1.0, 1.0, False))
    assert eng.stats["unknown_symbol"] == 1


def test_registering_twice_is_refused() -> None:
    s = FeatureStore([SYM])
    s.register(FeatureSpec("x", "u", "trade"))
    with pytest.raises(ValueError):
        s.register(FeatureSpec("x", "u", "trade"))


def test_store_never_holds_nan_or_inf() -> None:
    s = FeatureStore([SYM])
    s.register(FeatureSpec("x", "u", "trade"))
    sl = s.slot(SYM, "x")
    for bad in (float("nan"), float("inf"), -float("inf")):
        s.put(sl, bad, 7)
        assert s.get(SYM, "x") == FeatureValue(None, 7, False)
    s.put(sl, 1.5, 8)
    assert s.get(SYM, "x") == FeatureValue(1.5, 8, True)
    assert s.rejected == 3


def test_book_features_ofi_microprice_and_readiness() -> None:
    eng = FeatureEngine(FeaturesCfg(ofi_window_s=2.0, ofi_levels=2), [SYM])
    book = _book()
    eng.on_book(SYM, book, 1 * S)
    assert eng.store.get(SYM, "microprice") == FeatureValue(100.625, 1 * S, True)   # (100*3 + 101*5) / 8
    assert not eng.store.get(SYM, "ofi").ready        # window not covered yet
    _diff(book, 2 * S, [(100.0, 7.0)], [])            # +2
    eng.on_book(SYM, book, 2 * S)
    _diff(book, 3 * S, [], [(100.5, 4.0)])            # ask down: -4
    eng.on_book(SYM, book, 3 * S)
    v = eng.store.get(SYM, "ofi")
    assert v == FeatureValue(-2.0, 3 * S, True)
    # level 2 also moved: old level-2 ask (102, 1) -> (101, 3) is lower: -3; bids unchanged
    assert eng.store.get(SYM, "ofi_ml").value == pytest.approx(-2.0 - 3.0)
    # an invalid book: the book features stop being ready at once
    book.valid = False
    eng.on_book(SYM, book, 4 * S)
    assert eng.store.get(SYM, "ofi") == FeatureValue(None, 4 * S, False)
    assert eng.store.get(SYM, "microprice").ready is False


def test_bars_built_from_trades_feed_bar_features_in_event_time() -> None:
    cfg = FeaturesCfg(bar_interval_s=1.0, ema_period=3, vwap_bars=2)
    eng = FeatureEngine(cfg, [SYM])
    for i, p in enumerate([100.0, 101.0, 102.0, 103.0]):
        eng.on_trade(_trade(i * S + 1000, p, tid=i))
    # bars for seconds 0, 1, 2 are complete (the trade at 3 s closed the third)
    ema = eng.store.get(SYM, "ema")
    assert ema == FeatureValue(pytest.approx(101.0), 3 * S, True)
    assert eng.store.get(SYM, "vwap").value == pytest.approx(101.5)
    assert eng.stats["bars"] == 3
    # a quiet market: a book event after the bar's end closes it
    book = _book()
    eng.on_book(SYM, book, 4 * S + 5)
    assert eng.stats["bars"] == 4
    assert eng.store.get(SYM, "ema").value == pytest.approx(101.0 + 0.5 * (103.0 - 101.0))


def test_external_bars_only_when_interval_is_zero() -> None:
    eng = FeatureEngine(FeaturesCfg(bar_interval_s=0.0, sma_period=2), [SYM])
    for i in range(5):
        eng.on_trade(_trade(i * S, 100.0 + i))
    assert eng.stats["bars"] == 0
    for i, c in enumerate((10.0, 20.0)):
        eng.on_bar(SYM, Bar(SYM, i * S, (i + 1) * S, c, c, c, c, 1.0, c, 0.5, 0.5, 1, 0, 0))
    assert eng.store.get(SYM, "sma") == FeatureValue(15.0, 2 * S, True)


def test_adverse_selection_of_own_fills_per_horizon() -> None:
    eng = FeatureEngine(FeaturesCfg(adverse_horizons_s=[1.0, 5.0]), [SYM])
    book = _book()                                       # mid 100.5
    eng.on_book(SYM, book, 10 * S)
    eng.on_own_fill(_fill(10 * S, Side.BUY))
    _diff(book, 10 * S + S // 2, [(100.0, 0.0), (99.0, 2.0)], [])   # bid gone: mid 100.0
    eng.on_book(SYM, book, 10 * S + S // 2)
    assert not eng.store.get(SYM, "adverse_1s").ready    # 1 s not reached yet
    eng.on_book(SYM, book, 11 * S)                       # first book event at t + 1 s
    adv = eng.store.get(SYM, "adverse_1s")
    # bought, then the mid fell 0.5 from 100.5: adverse +49.75 bps
    assert adv == FeatureValue(pytest.approx(0.5 / 100.5 * 1e4), 11 * S, True)
    assert not eng.store.get(SYM, "adverse_5s").ready
    eng.on_book(SYM, book, 15 * S)
    assert eng.store.get(SYM, "adverse_5s").value == pytest.approx(0.5 / 100.5 * 1e4)
    # a sell at mid 100.0 followed by the same mid: 0 bps, averaged in
    eng.on_own_fill(_fill(15 * S, Side.SELL))
    eng.on_book(SYM, book, 16 * S)
    assert eng.store.get(SYM, "adverse_1s").value == pytest.approx(0.5 / 100.5 * 1e4 / 2)


def test_fill_before_any_mid_is_not_measured() -> None:
    eng = FeatureEngine(FeaturesCfg(), [SYM])
    eng.on_own_fill(_fill(1, Side.BUY))
    eng.on_book(SYM, _book(), 100 * S)
    assert not eng.store.get(SYM, "adverse_1s").ready


def test_garch_handover_from_a_fit() -> None:
    eng = FeatureEngine(FeaturesCfg(bar_interval_s=0.0), [SYM])
    assert not eng.store.get(SYM, "garch_vol").ready
    eng.set_garch_params(SYM, 1e-7, 0.05, 0.9, ts_ns=5, sigma2=4e-6)
    assert eng.store.get(SYM, "garch_vol") == FeatureValue(pytest.approx(2e-3), 5, True)
    for i, c in enumerate((100.0, 101.0)):
        eng.on_bar(SYM, Bar(SYM, i * S, (i + 1) * S, c, c, c, c, 1.0, c, 0.5, 0.5, 1, 0, 0))
    r = math.log(1.01)
    assert eng.store.get(SYM, "garch_vol").value == pytest.approx(
        math.sqrt(1e-7 + 0.05 * r * r + 0.9 * 4e-6))
    with pytest.raises(ValueError):
        eng.set_garch_params(SYM, 1e-7, 0.5, 0.6, ts_ns=6)


def test_disabled_engine_does_nothing() -> None:
    eng = FeatureEngine(FeaturesCfg(enabled=False, bar_interval_s=1.0), [SYM])
    eng.on_book(SYM, _book(), 1)
    eng.on_trade(_trade(1, 100.0))
    assert eng.stats["books"] == 0 and not eng.store.get(SYM, "microprice").ready


def test_parquet_round_trip(tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet",
                             reason="pyarrow (the `features` and dev extras) not installed")
    eng = FeatureEngine(FeaturesCfg(history_rows=1000, bar_interval_s=1.0), [SYM])
    book = _book()
    eng.on_book(SYM, book, 1 * S)
    for i in range(5):
        eng.on_trade(_trade(i * S, 100.0 + i, tid=i))
    rows = list(eng.store.history)
    n = eng.store.export_parquet(tmp_path / "f.parquet")
    assert n == len(rows) > 10
    t = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert [(r["symbol"], r["feature"], r["ts_ns"], r["value"], r["ready"]) for r in t] == rows
    assert {"microprice", "trade_imbalance", "ema"} <= {r["feature"] for r in t}


def test_history_is_bounded() -> None:
    s = FeatureStore([SYM], history_rows=3)
    s.register(FeatureSpec("x", "u", "trade"))
    for i in range(10):
        s.put(s.slot(SYM, "x"), float(i), i, SYM, "x")
    assert [r[3] for r in s.history] == [7.0, 8.0, 9.0]


def test_export_without_history_or_pyarrow_says_why(tmp_path, monkeypatch) -> None:
    s = FeatureStore([SYM])
    with pytest.raises(RuntimeError, match="history_rows"):
        s.export_parquet(tmp_path / "x.parquet")
    s = FeatureStore([SYM], history_rows=5)
    monkeypatch.setitem(sys.modules, "pyarrow", None)     # import pyarrow -> ImportError
    with pytest.raises(PyarrowMissing, match=r"pip install 'bot4\[features\]'"):
        s.export_parquet(tmp_path / "x.parquet")
    assert store_mod.PyarrowMissing is PyarrowMissing


def test_specs_follow_config() -> None:
    names = [s.name for s in feature_specs(FeaturesCfg(adverse_horizons_s=[0.5, 2.0]))]
    assert "adverse_0.5s" in names and "adverse_2s" in names and "adverse_1s" not in names


def test_engine_hot_path_put_refuses_nan_and_inf_too() -> None:
    """Without history the engine writes slots through its own fast put: same guard."""
    eng = FeatureEngine(FeaturesCfg(), [SYM])
    sl = eng.store.slot(SYM, "ofi")
    for i, bad in enumerate((float("nan"), float("inf"), -float("inf"))):
        eng._put(sl, bad, i, SYM, "ofi")
        assert eng.store.get(SYM, "ofi") == FeatureValue(None, i, False)
    eng._put(sl, 1e308, 9, SYM, "ofi")
    assert eng.store.get(SYM, "ofi") == FeatureValue(1e308, 9, True)
    assert eng.store.rejected == 3


@dataclass(frozen=True)
class _Fit:
    """The fields of daemon.analytics.garch.GarchFit the hand-over reads."""
    mu: float
    omega: float
    alpha: float
    beta: float
    next_variance: float


def _bars(eng: FeatureEngine, closes, t0: int = 0) -> None:
    for i, c in enumerate(closes):
        eng.on_bar(SYM, Bar(SYM, t0 + i * S, t0 + (i + 1) * S, c, c, c, c, 1.0, c, 0.5, 0.5,
                            1, 0, 0))


def test_garch_fit_handover_rolls_forward_over_bars_that_came_meanwhile() -> None:
    eng = FeatureEngine(FeaturesCfg(bar_interval_s=0.0, garch_window_bars=30), [SYM])
    closes = [100.0 * math.exp(0.001 * ((i * 7) % 5 - 2)) for i in range(40)]
    _bars(eng, closes[:35])
    seq, window = eng.garch_window(SYM)
    assert seq == 34 and len(window) == 30
    assert window[-1] == pytest.approx(math.log(closes[34] / closes[33]))
    _bars(eng, closes[35:], t0=35 * S)                 # 5 more bars while the fit ran
    fit = _Fit(mu=1e-4, omega=2e-7, alpha=0.1, beta=0.85, next_variance=3e-6)
    assert eng.set_garch_fit(SYM, fit, upto=seq, ts_ns=99) == 5
    v = fit.next_variance
    for i in range(35, 40):
        e = math.log(closes[i] / closes[i - 1]) - fit.mu
        v = fit.omega + fit.alpha * e * e + fit.beta * v
    assert eng.store.get(SYM, "garch_vol") == FeatureValue(pytest.approx(math.sqrt(v)), 99, True)
    with pytest.raises(ValueError, match="only the last 30"):
        eng.set_garch_fit(SYM, fit, upto=1, ts_ns=100)     # too old to roll forward


def test_garch_fit_from_the_analytics_package() -> None:
    """The real daemon.analytics.garch fit (the other engineer's package), handed over with
    no bars in between: the forecast is its next_variance."""
    garch = pytest.importorskip("daemon.analytics.garch",
                                reason="daemon.analytics.garch not in this tree yet")
    eng = FeatureEngine(FeaturesCfg(bar_interval_s=0.0, garch_window_bars=200), [SYM])
    import random
    rng = random.Random(4)
    p, closes = 100.0, []
    for _ in range(201):
        p *= math.exp(rng.gauss(0, 1e-3))
        closes.append(p)
    _bars(eng, closes)
    seq, window = eng.garch_window(SYM)
    out = garch.fit(window)
    fit = out.value
    assert fit is not None
    assert eng.set_garch_fit(SYM, fit, upto=seq, ts_ns=7) == 0
    assert eng.store.get(SYM, "garch_vol").value == pytest.approx(math.sqrt(fit.next_variance))
