"""Issue 10, mean reversion (daemon/strategy/mean_reversion.py): z-score of the bar close
against its rolling mean/std, an efficiency-ratio regime filter and a volatility band, on
a real core fed by hand (tests/strategies/bar_market.py over tests/engine_rig.py), its
z-score / std against TA-Lib (SMA, STDDEV) and its efficiency ratio against numpy on the
very bars the engine built, a backtest on the shared captures through `bot4d backtest`,
and its config rules."""
from __future__ import annotations

import math
import random
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import talib

from daemon import config
from daemon.config import ConfigError
from daemon.strategy.mean_reversion import EfficiencyRatio
from tests.strategies.backtest_check import run_backtest_on_captures
from tests.strategies.bar_market import BarMarket

SMALL = {"window": 5, "er_window": 4, "entry_z": 1.5, "exit_z": 0.3, "stop_sd": 2.0,
         "er_max": 0.6, "min_vol_bps": 0.5, "max_vol_bps": 50.0}
# Choppy around 60000, then a drop: z = -30 / sqrt(250) = -1.90, ER = 30 / 70 = 0.43,
# vol = 15.8 / 59990 = 2.6 bps.
CHOP_DROP = [60000, 60010, 59990, 60005, 59995, 60000, 59960]
# The same size of drop at the end of a straight fall: z = -1.75 but ER = 1 (a trend).
FALL = [60000, 59990, 59980, 59970, 59960, 59930]


def _ref(heard, window: int, er_n: int):
    """TA-Lib z (SMA, STDDEV with nbdev 1 = population std) and numpy's efficiency ratio."""
    c = np.array([b.close for b, _, _ in heard], dtype=float)
    mean, sd = talib.SMA(c, window), talib.STDDEV(c, window, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (c - mean) / sd
    er = np.full(len(c), np.nan)
    for k in range(er_n, len(c)):
        path = np.abs(np.diff(c[k - er_n:k + 1])).sum()
        er[k] = abs(c[k] - c[k - er_n]) / path if path > 0 else 0.0
    return z, sd, er


def _state(m: BarMarket) -> dict:
    return m.strategy.status()["symbols_state"]["BTCUSDT"]


def test_warms_up_enters_below_the_band_and_exits_at_the_mean(tmp_path):
    m = BarMarket(tmp_path, "mean_reversion", SMALL)
    m.closes(CHOP_DROP[:4])
    assert [st["standing_aside"] for _, st, _ in m.heard] == [
        f"BTCUSDT: warming up ({k}/5 bars)" for k in (1, 2, 3, 4)]
    m.closes(CHOP_DROP[4:6])
    assert m.aside is None and m.orders() == []
    m.closes(CHOP_DROP[6:])
    z, sd, er = _ref(m.heard, 5, 4)
    assert z[-1] == pytest.approx(-30 / math.sqrt(250)) and z[-1] < -1.5
    assert er[-1] == pytest.approx(30 / 70) and er[-1] < 0.6
    (o,) = m.orders()
    assert (o["side"], o["tif"], o["qty"]) == ("buy", "ioc", "0.00020")
    assert o["created_ns"] == m.heard[-1][2]
    st = _state(m)
    assert st["z"] == pytest.approx(z[-1], rel=1e-9)
    m.bars([(59960, 59962, 59958, 59975)])   # half way back: z = -0.78, still open
    entry = float(m.fills_told[0][1].price)
    assert entry == 59960.5 and m.position() == Decimal("0.00020")
    st = _state(m)
    assert st["phase"] == "open" and st["stop"] == pytest.approx(entry - 2 * sd[-1])
    m.closes([59995])                         # back to the mean: z within 0.3
    m.settle()
    z, _, _ = _ref(m.heard, 5, 4)
    assert abs(z[-1]) < 0.3 or z[-1] > 0
    sides = [r["side"] for r in m.orders()]
    assert sides == ["buy", "sell"] and m.position() == 0
    assert m.orders()[1]["created_ns"] == m.heard[-1][2]   # on the bar close, not a trade
    assert m.strategy.stats["mean_exits"] == 1 and m.strategy.stats["stops"] == 0
    assert _state(m)["exit_why"].startswith("back to the mean: z = ")


def test_the_stop_closes_it_and_it_waits_for_the_mean_before_trading_again(tmp_path):
    m = BarMarket(tmp_path, "mean_reversion", SMALL)
    m.closes(CHOP_DROP)
    m.bars([(59960, 59962, 59957, 59958)])
    stop = _state(m)["stop"]
    m.bars([(59958, 59959, stop - 3, stop - 2)])
    orders = m.orders()
    assert [o["side"] for o in orders] == ["buy", "sell"] and m.position() == 0
    first = next(t for t, p in m.trades if t > orders[0]["created_ns"] and p <= stop)
    assert orders[1]["created_ns"] == first           # on the trade through the stop
    assert m.strategy.stats["stops"] == 1 and _state(m)["exit_why"].startswith("stop ")
    assert "stopped out; waiting for the price to come back to the mean" in m.aside
    # Further down: it does not buy the falling price again while |z| >= exit_z.
    n = len(m.heard)
    m.closes([stop - 20, stop - 40, stop - 45])
    z, _, _ = _ref(m.heard, 5, 4)
    assert all(abs(z[k]) >= 0.3 for k in range(n, len(m.heard)))
    assert len(m.orders()) == 2 and "stopped out; waiting for the price to come back" in m.aside
    assert _state(m)["after_stop"]
    # Back at the mean (z = -1 / sqrt(14) = -0.27): the wait is over.
    m.closes([stop - 50, stop - 40, stop - 45])
    z, _, _ = _ref(m.heard, 5, 4)
    assert abs(z[-1]) < 0.3 and not _state(m)["after_stop"]
    assert "stopped out" not in (m.aside or "")


def test_a_trending_regime_stands_aside_where_a_choppy_one_enters(tmp_path):
    m = BarMarket(tmp_path, "mean_reversion", SMALL)
    m.closes(FALL)
    z, _, er = _ref(m.heard, 5, 4)
    assert z[-1] < -1.5 and er[-1] == 1.0
    assert m.aside == "BTCUSDT: trending regime (efficiency ratio 1 > er_max 0.6)"
    assert m.orders() == []
    # The same filter with er_max = 1 (off): the same bars make it buy.
    m2 = BarMarket(tmp_path / "off", "mean_reversion", {**SMALL, "er_max": 1.0})
    m2.closes(FALL)
    assert [o["side"] for o in m2.orders()] == ["buy"]


@pytest.mark.parametrize("band, words", [
    ({"min_vol_bps": 5.0}, "volatility too low (2.64 bps < min_vol_bps 5)"),
    ({"max_vol_bps": 2.0}, "volatility too high (2.64 bps > max_vol_bps 2)"),
])
def test_volatility_outside_the_band_stands_aside(tmp_path, band, words):
    m = BarMarket(tmp_path, "mean_reversion", {**SMALL, **band})
    m.closes(CHOP_DROP)
    assert m.aside == f"BTCUSDT: {words}"
    assert m.orders() == []


def test_above_the_band_long_only_stands_aside(tmp_path):
    m = BarMarket(tmp_path, "mean_reversion", SMALL)
    m.closes([60000, 59990, 60010, 59995, 60005, 60000, 60040])   # the mirror: z = +1.90
    assert m.aside.startswith("BTCUSDT: above the band (z = 1.9") and "long-only" in m.aside
    assert m.orders() == []


def test_the_position_limit_refuses_the_entry_and_it_says_so(tmp_path):
    m = BarMarket(tmp_path, "mean_reversion", SMALL,
                  overrides={"risk": {"max_position": "0.0001"}})
    m.closes(CHOP_DROP)
    assert m.orders() == [] and m.rig.engine.refused_by_stage == {"risk": 1}
    assert m.aside.startswith("BTCUSDT: position limit: ") and "max_position" in m.aside


def test_z_std_and_efficiency_ratio_equal_the_references_on_the_engines_bars(tmp_path):
    params = {**SMALL, "window": 10, "er_window": 8, "entry_z": 1.8, "er_max": 0.5}
    m = BarMarket(tmp_path, "mean_reversion", params)
    rnd = random.Random(5)
    p, closes = 60000.0, []
    for _ in range(80):
        p = round(p + rnd.gauss(0, 10) + (60000 - p) * 0.2, 2)   # mean-reverting walk
        closes.append(p)
    m.closes(closes)
    assert [b.close for b, _, _ in m.heard] == closes
    z, sd, er = _ref(m.heard, 10, 8)
    states = [st["symbols_state"]["BTCUSDT"] for _, st, _ in m.heard]
    warm = 10   # max(window, er_window + 1)
    for k, st in enumerate(states):
        if k + 1 < warm:
            assert st["z"] is None
            continue
        assert st["z"] == pytest.approx(z[k], rel=1e-9, abs=1e-9)
        assert st["sd"] == pytest.approx(sd[k], rel=1e-9)
        assert st["efficiency_ratio"] == pytest.approx(er[k], rel=1e-12)
    # Every entry was a bar the references say qualifies: z below -entry_z, ER <= er_max.
    bar_at = {t: k for k, (_, _, t) in enumerate(m.heard)}
    entries = [o for o in m.orders() if o["side"] == "buy"]
    assert entries, "the walk was chosen to revert: it must trade"
    for o in entries:
        k = bar_at[o["created_ns"]]
        assert z[k] < -1.8 and er[k] <= 0.5


def test_efficiency_ratio_edges():
    e = EfficiencyRatio(3)
    assert [e.update(x) for x in (1.0, 2.0, 3.0)] == [None, None, None]
    assert e.update(4.0) == 1.0                       # a straight line
    assert e.update(3.0) == pytest.approx(1 / 3)      # 2 -> 3 -> 4 -> 3: net 1, path 3
    flat = EfficiencyRatio(2)
    for x in (5.0, 5.0, 5.0):
        flat.update(x)
    assert flat.value == 0.0                          # no movement: not a trend
    assert flat.update(float("nan")) == 0.0 and flat.dropped == 1


# -- backtest on the shared captures ---------------------------------------------------------
def test_backtest_on_the_shared_captures(tmp_path):
    res = run_backtest_on_captures(tmp_path, "mean_reversion")
    assert res["orders"] >= 2 and res["fills"] >= 2
    assert res["max_abs_position"] <= Decimal("0.00020")


# -- config ------------------------------------------------------------------------------------
def _load(tmp_path: Path, body: str, env: dict | None = None) -> config.Config:
    p = tmp_path / "bot4.toml"
    p.write_text(body)
    return config.load(p, environ=env or {})


@pytest.mark.parametrize("body, words", [
    ('[strategy.mean_reversion]\nexit_z = 2.0\n',
     "[strategy.mean_reversion] exit_z: exit_z = 2 must be below entry_z = 2"),
    ('[strategy.mean_reversion]\nentry_z = 0.4\n',
     "[strategy.mean_reversion] entry_z: exit_z = 0.5 must be below entry_z = 0.4"),
    ('[strategy.mean_reversion]\nmin_vol_bps = 100.0\n',
     "[strategy.mean_reversion] min_vol_bps: min_vol_bps = 100 must be below max_vol_bps"),
    ('[strategy.mean_reversion]\nwindow = 2\n', "[strategy.mean_reversion] window"),
    ('[strategy.mean_reversion]\ner_max = 1.5\n', "[strategy.mean_reversion] er_max"),
    ('[strategy.mean_reversion]\nentry_z = 0.0\n', "[strategy.mean_reversion] entry_z"),
    ('[strategy.mean_reversion]\nstop_sd = -1.0\n', "[strategy.mean_reversion] stop_sd"),
    ('[strategy.mean_reversion]\nexit_z = nan\n', "[strategy.mean_reversion] exit_z"),
    ('[strategy]\nname = "mean_reversion"\n[strategy.mean_reversion]\nallow_short = true\n',
     "[strategy.mean_reversion] allow_short: allow_short = true but BTCUSDT is spot"),
])
def test_config_refuses(tmp_path, body, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, body)
    assert words in str(e.value) and "bot4.toml, line" in str(e.value)


def test_config_defaults_and_shorts_on_usdm(tmp_path):
    cfg = _load(tmp_path, '[market]\nexchange = "usdm"\n[strategy]\nname = "mean_reversion"\n'
                          '[strategy.mean_reversion]\nallow_short = true\n')
    assert cfg.strategy.mean_reversion.allow_short
    assert config.Config().strategy.mean_reversion.model_dump() == {
        "window": 20, "entry_z": 2.0, "exit_z": 0.5, "stop_sd": 3.0, "er_window": 20,
        "er_max": 0.5, "min_vol_bps": 0.5, "max_vol_bps": 100.0, "allow_short": False,
        "max_slippage_bps": 10.0}
