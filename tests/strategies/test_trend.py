"""Issue 10, trend (daemon/strategy/trend.py): EMA crossover on bars with an ATR stop and
take-profit, on a real core fed by hand (tests/strategies/bar_market.py over
tests/engine_rig.py: engine, paper venue, gateway, risk, SQLite journal), its EMA/ATR
against TA-Lib on the very bars the engine built, a backtest on the shared captures
through `bot4d backtest`, and its config rules."""
from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import talib

from daemon import config
from daemon.config import ConfigError
from daemon.execution.orders import Side, TimeInForce
from tests.strategies.backtest_check import run_backtest_on_captures
from tests.engine_rig import EngineRig
from tests.strategies.bar_market import BarMarket

SMALL = {"fast": 2, "slow": 4, "atr_period": 2, "k_stop": 1.0, "k_tp": 2.0}
WARM = [60000, 59990, 59980, 59970, 59960]   # falling: fast below slow after warm-up
CROSS = 60000                                 # the bar after them crosses up


def _talib(heard, fast: int, slow: int, atr_n: int):
    h = np.array([b.high for b, _, _ in heard], dtype=float)
    lo = np.array([b.low for b, _, _ in heard], dtype=float)
    c = np.array([b.close for b, _, _ in heard], dtype=float)
    return talib.EMA(c, fast), talib.EMA(c, slow), talib.ATR(h, lo, c, atr_n)


def _entered(m: BarMarket):
    """The entry fill price and the talib ATR of the bar that crossed."""
    tags = [t for t, _ in m.fills_told]
    assert tags == ["entry:BTCUSDT"], tags
    return float(m.fills_told[0][1].price)


def test_warms_up_enters_on_the_up_cross_and_exits_at_the_target(tmp_path):
    m = BarMarket(tmp_path, "trend", SMALL)
    m.closes(WARM[:3])
    # Warm-up: slow EMA (4) + one bar for a cross, ATR(2) + 1 -> 5 bars.
    assert [st["standing_aside"] for _, st, _ in m.heard] == [
        f"BTCUSDT: warming up ({k}/5 bars)" for k in (1, 2, 3)]
    m.closes(WARM[3:])
    assert m.aside is None and "waiting for a cross" in m.strategy.intent
    assert m.orders() == []
    m.closes([CROSS])
    fast, slow, atr = _talib(m.heard, 2, 4, 2)
    assert fast[-2] < slow[-2] and fast[-1] > slow[-1], "the reference says: cross up here"
    (o,) = m.orders()
    assert (o["side"], o["tif"], o["qty"]) == ("buy", "ioc", "0.00020")
    assert o["created_ns"] == m.heard[-1][2]          # placed on the bar that crossed
    # A marketable limit: 10 bps (max_slippage_bps) through the mark, rounded outward.
    assert Decimal(o["price"]) == Decimal("60060.00")
    m.closes([60010])                                  # the IOC filled at the ask
    entry = _entered(m)
    assert entry == 60000.5
    st = m.strategy.status()["symbols_state"]["BTCUSDT"]
    assert st["stop"] == pytest.approx(entry - 1.0 * atr[-1], abs=1e-9)
    assert st["target"] == pytest.approx(entry + 2.0 * atr[-1], abs=1e-9)
    assert m.position() == Decimal("0.00020")
    m.closes([60030, 60060, 60090])
    exit_ = m.orders()[1]
    assert (exit_["side"], exit_["tif"], exit_["status"]) == ("sell", "ioc", "filled")
    # The exit went out on the first trade at or above the target.
    first = next(t for t, p in m.trades if t > o["created_ns"] and p >= st["target"])
    assert exit_["created_ns"] == first
    assert m.position() == 0
    assert m.aside.startswith("BTCUSDT: target ") and m.aside.endswith(
        "waiting for the next cross")
    assert m.strategy.stats["targets"] == 1 and m.strategy.stats["stops"] == 0
    assert [t for t, _ in m.fills_told] == ["entry:BTCUSDT", "exit:BTCUSDT"]


def test_the_stop_closes_the_position_and_it_waits_for_the_next_cross(tmp_path):
    m = BarMarket(tmp_path, "trend", SMALL)
    m.closes(WARM + [CROSS, 60005])
    entry = _entered(m)
    stop = m.strategy.status()["symbols_state"]["BTCUSDT"]["stop"]
    assert stop < entry
    n_bars = len(m.heard)
    m.bars([(60005, 60006, stop - 3, stop - 2)])
    orders = m.orders()
    assert len(orders) == 2 and orders[1]["side"] == "sell" and orders[1]["status"] == "filled"
    first = next(t for t, p in m.trades if t > orders[0]["created_ns"] and p <= stop)
    assert orders[1]["created_ns"] == first            # on the trade through the stop
    assert m.position() == 0 and m.strategy.stats["stops"] == 1
    assert m.aside.startswith("BTCUSDT: stop ") and "waiting for the next cross" in m.aside
    # Still below: no cross up, no order, still standing aside with the same reason.
    m.closes([stop - 5, stop - 10, stop - 12])
    assert len(m.orders()) == 2 and "waiting for the next cross" in m.aside
    fast, slow, _ = _talib(m.heard, 2, 4, 2)
    assert all(fast[k] < slow[k] for k in range(n_bars, len(m.heard)))
    # The next up-cross enters again.
    m.closes([stop + 40])
    fast, slow, _ = _talib(m.heard, 2, 4, 2)
    assert fast[-1] > slow[-1]
    assert len(m.orders()) == 3 and m.orders()[2]["side"] == "buy" and m.aside is None


def test_ema_and_atr_equal_talib_on_the_bars_the_engine_built(tmp_path):
    params = {"fast": 5, "slow": 12, "atr_period": 7, "k_stop": 2.0, "k_tp": 3.0}
    m = BarMarket(tmp_path, "trend", params)
    rnd = random.Random(11)
    p, closes = 60000.0, []
    for _ in range(70):
        p = round(p + rnd.gauss(0, 12), 2)
        closes.append(p)
    m.closes(closes, wick=3.0)
    assert len(m.heard) == 70
    fast, slow, atr = _talib(m.heard, 5, 12, 7)
    got = {k: np.array([np.nan if st["symbols_state"]["BTCUSDT"][k] is None
                        else st["symbols_state"]["BTCUSDT"][k] for _, st, _ in m.heard])
           for k in ("ema_fast", "ema_slow", "atr")}
    # Before TA-Lib's first value ours is not ready either; from it on they agree.
    for ours, ref in ((got["ema_fast"], fast), (got["ema_slow"], slow), (got["atr"], atr)):
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-12)
    # The bars are what we sent: open/high/low/close of each second.
    assert [b.close for b, _, _ in m.heard] == closes
    # Every entry (a buy from flat: long-only) was placed on a bar that TA-Lib says crossed
    # up, and there was at least one.
    bar_at = {t: k for k, (_, _, t) in enumerate(m.heard)}
    entries = [o for o in m.orders() if o["side"] == "buy"]
    assert entries
    for o in entries:
        k = bar_at[o["created_ns"]]
        assert fast[k - 1] - slow[k - 1] <= 0 < fast[k] - slow[k]


def test_no_mark_stands_aside_and_places_nothing(tmp_path):
    m = BarMarket(tmp_path, "trend", SMALL)
    m.closes(WARM)
    m.bars([(59960, 60002, 59958, CROSS)], close_last=False)
    m.rig.diff([], [], gap=True)            # a sequence gap: the book needs a snapshot
    m.rig.trade(CROSS, 0.001, dt_ms=1000)   # the next bar's first trade: the cross is heard
    assert len(m.heard) == 6
    fast, slow, _ = _talib(m.heard, 2, 4, 2)
    assert fast[-1] > slow[-1] and fast[-2] < slow[-2]
    assert m.aside == "BTCUSDT: no mark (cannot price the entry)"
    assert m.orders() == [] and m.rig.engine.ctx.mark("BTCUSDT") is None


def test_the_position_limit_refuses_the_entry_and_it_says_so(tmp_path):
    # 12 USDT at 60000 is 0.0002 BTC, above a max_position of 0.0001.
    m = BarMarket(tmp_path, "trend", SMALL, overrides={"risk": {"max_position": "0.0001"}})
    m.closes(WARM + [CROSS])
    assert m.orders() == []   # refused before the journal: nothing was sent
    assert m.aside.startswith("BTCUSDT: position limit: ") and "max_position" in m.aside
    assert m.rig.engine.refused_by_stage == {"risk": 1}
    m.closes([60010, 60020])   # no new cross: no retry
    assert m.rig.engine.refused_by_stage == {"risk": 1} and m.position() == 0


def test_long_only_on_spot_stands_aside_on_a_down_cross(tmp_path):
    m = BarMarket(tmp_path, "trend", SMALL)
    m.closes([59960, 59970, 59980, 59990, 60000, 59950])   # rising, then a down-cross
    fast, slow, _ = _talib(m.heard, 2, 4, 2)
    assert fast[-2] > slow[-2] and fast[-1] < slow[-1]
    assert m.aside == "BTCUSDT: down-cross, long-only (allow_short = false)"
    assert m.orders() == []


@pytest.mark.skipif(not hasattr(EngineRig, "last_id"),
                    reason="tests/engine_rig.py without futures depth ids (pu) yet")
def test_short_on_usdm_enters_on_the_down_cross_and_stops_above(tmp_path):
    m = BarMarket(tmp_path, "trend", {**SMALL, "allow_short": True},
                  overrides={"market": {"exchange": "usdm"}})
    m.closes([59960, 59970, 59980, 59990, 60000, 59950, 59945])
    (o,) = m.orders()
    assert (o["side"], o["status"]) == ("sell", "filled")
    assert m.position() == -Decimal(o["qty"]) < 0
    st = m.strategy.status()["symbols_state"]["BTCUSDT"]
    assert st["side"] == -1 and st["stop"] > st["entry_price"] > st["target"]
    m.bars([(59945, st["stop"] + 3, 59944, 59946)])   # through the stop, no cross up
    assert [o["side"] for o in m.orders()] == ["sell", "buy"] and m.position() == 0
    assert m.aside.startswith("BTCUSDT: stop ")


def test_a_cross_against_the_position_closes_it(tmp_path):
    m = BarMarket(tmp_path, "trend", {**SMALL, "k_stop": 50.0, "k_tp": 50.0})
    m.closes(WARM + [CROSS, 60004, 60006, 59990, 59950])
    sides = [o["side"] for o in m.orders()]
    assert sides == ["buy", "sell"] and m.position() == 0
    assert m.strategy.stats["cross_exits"] == 1
    assert m.strategy.status()["symbols_state"]["BTCUSDT"]["exit_why"] == \
        "cross against the position"


@pytest.mark.skipif(not hasattr(EngineRig, "last_id"),
                    reason="tests/engine_rig.py without futures depth ids (pu) yet")
def test_with_shorts_a_cross_against_the_long_reverses_once_the_close_filled(tmp_path):
    m = BarMarket(tmp_path, "trend", {**SMALL, "k_stop": 50.0, "k_tp": 50.0,
                                      "allow_short": True},
                  overrides={"market": {"exchange": "usdm"}})
    m.closes(WARM + [CROSS, 60004, 60006, 59990, 59950, 59945])
    orders = m.orders()
    assert [(o["side"], o["status"]) for o in orders] == [
        ("buy", "filled"), ("sell", "filled"), ("sell", "filled")]
    # The short went out only after the close had filled (one position at a time).
    close_fill = [f for t, f in m.fills_told if t == "exit:BTCUSDT"][0]
    assert orders[2]["created_ns"] > close_fill.ts_ns
    assert m.position() == -Decimal(orders[2]["qty"]) < 0
    st = m.strategy.status()["symbols_state"]["BTCUSDT"]
    assert st["phase"] == "open" and st["side"] == -1


def test_a_position_closed_outside_the_strategy_leaves_it_flat_and_trading(tmp_path):
    m = BarMarket(tmp_path, "trend", {**SMALL, "k_stop": 50.0, "k_tp": 50.0})
    m.closes(WARM + [CROSS, 60004])
    assert m.position() > 0
    # The operator flattens by hand (an order of no strategy tag).
    m.rig.gw.submit("BTCUSDT", Side.SELL, m.position(), Decimal("59000"), tif=TimeInForce.IOC)
    m.closes([60006])
    assert m.position() == 0
    st = m.strategy.status()["symbols_state"]["BTCUSDT"]
    assert st["phase"] == "flat" and st["exit_why"] == "closed outside the strategy"
    # Down, then the next up-cross enters again.
    m.closes([59990, 59950, 59940, 59930, 59990, 60010])
    buys = [o for o in m.orders() if o["side"] == "buy"]
    assert len(buys) == 2 and m.strategy.stats["entries"] == 2


def test_the_strategy_hears_the_fill_of_an_ioc_that_filled_at_once(tmp_path):
    """Engine defect fixed with this strategy: the ack and the fill of an IOC arrive in one
    gateway batch, and the ack's listener call (which already sees the order filled) made
    the engine forget the tag, so the fill never reached the strategy."""
    m = BarMarket(tmp_path, "trend", SMALL)
    m.closes(WARM + [CROSS, 60010])
    assert [(t, str(f.qty)) for t, f in m.fills_told] == [("entry:BTCUSDT", "0.00020")]
    assert m.strategy.status()["symbols_state"]["BTCUSDT"]["phase"] == "open"
    assert m.rig.engine._tag_of == {} and m.rig.engine._told == {}   # nothing kept


# -- backtest on the shared captures ---------------------------------------------------------
def test_backtest_on_the_shared_captures(tmp_path):
    res = run_backtest_on_captures(tmp_path, "trend")
    assert res["orders"] >= 2 and res["fills"] >= 2
    # One position at a time: never more than one order's size.
    assert res["max_abs_position"] <= Decimal("0.00020")


# -- config ------------------------------------------------------------------------------------
def _load(tmp_path: Path, body: str, env: dict | None = None) -> config.Config:
    p = tmp_path / "bot4.toml"
    p.write_text(body)
    return config.load(p, environ=env or {})


@pytest.mark.parametrize("body, words", [
    ('[strategy.trend]\nfast = 21\n', "[strategy.trend] fast: fast = 21 must be below slow"),
    ('[strategy.trend]\nfast = 5\nslow = 4\n', "fast = 5 must be below slow = 4"),
    ('[strategy.trend]\nfast = 0\n', "[strategy.trend] fast: Input should be greater"),
    ('[strategy.trend]\nk_stop = 0.0\n', "[strategy.trend] k_stop"),
    ('[strategy.trend]\nk_tp = -1.0\n', "[strategy.trend] k_tp"),
    ('[strategy.trend]\natr_period = 0\n', "[strategy.trend] atr_period"),
    ('[strategy.trend]\nmax_slippage_bps = 0.0\n', "[strategy.trend] max_slippage_bps"),
    ('[strategy.trend]\nslow = "21"\n', "[strategy.trend] slow"),
    ('[strategy.trend]\nfst = 3\n', "[strategy.trend] fst: unknown key"),
    ('[strategy]\nname = "trend"\n[strategy.trend]\nallow_short = true\n',
     "[strategy.trend] allow_short: allow_short = true but BTCUSDT is spot"),
])
def test_config_refuses(tmp_path, body, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, body)
    assert words in str(e.value) and "bot4.toml, line" in str(e.value)


def test_config_accepts_shorts_on_usdm_and_names_the_environment(tmp_path):
    cfg = _load(tmp_path, '[market]\nexchange = "usdm"\n[strategy]\nname = "trend"\n'
                          '[strategy.trend]\nallow_short = true\nfast = 3\nslow = 8\n')
    assert cfg.strategy.trend.allow_short and cfg.strategy.trend.slow == 8
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, '[strategy]\nname = "trend"\n',
              env={"BOT4__STRATEGY__TREND__FAST": "40"})
    assert "environment BOT4__STRATEGY__TREND__FAST" in str(e.value)
    assert config.Config().strategy.trend.model_dump() == {
        "fast": 9, "slow": 21, "atr_period": 14, "k_stop": 2.0, "k_tp": 3.0,
        "allow_short": False, "max_slippage_bps": 10.0}
