"""[risk] and [instruments.X] max_position: good configurations load with the values
written; the defaults are usable with the default instruments (the bad ones are in
tests/config_cases.py, run through `bot4d check-config`)."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from daemon import config
from daemon.risk.engine import RiskEngine
from tests.daemon_harness import CONFIG

_SET = """max_order_qty = "0.5"
max_open_orders_per_symbol = 10
max_gross_exposure = "20000"
max_net_exposure = "10000"
max_cancels_per_min = 120
capital = "5000"
daily_loss_limit = "250"
daily_loss_action = "reducing"
max_drawdown = "500"
max_drawdown_action = "halted"
max_losing_streak = 8
losing_streak_action = "halted"
kelly_fraction = "0.5"
var_levels = [0.9, 0.95, 0.99, 0.995]
var_window = 1000
var_sample_interval_s = 30
max_var = "40"
var_method = "cornish_fisher"
var_limit_level = 0.995
var_action = "reducing"
stress_price_shocks = ["-0.3", "0.25", "-0.05"]
stress_spread_mult = "10"
stress_default_spread_bps = 5.0
stress_fill_all = false
max_stress_loss = "300"
stress_action = "halted"
"""
_KEYS = {line.split("=")[0].strip() for line in _SET.splitlines()}


def _without_keys_in_risk(text: str, keys: set[str]) -> str:
    """The shipped file with these [risk] keys (and their comment continuation lines)
    taken out, so the test's own values are the only ones."""
    out, in_risk, dropping = [], False, False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            in_risk = line.startswith("[risk]")
            dropping = False
        elif in_risk and "=" in line and line.split("=")[0].strip() in keys:
            dropping = True
            continue
        elif dropping and line.startswith(" ") and line.strip().startswith("#"):
            continue
        else:
            dropping = False
        out.append(line)
    return "".join(out)


GOOD = _without_keys_in_risk(CONFIG.read_text(), _KEYS).replace(
    "[breakers]", _SET + "\n[breakers]", 1).replace(
    'min_notional = "5"\n\n[instruments.ETHUSDT]',
    'min_notional = "5"\nmax_position = "0.2"\n\n[instruments.ETHUSDT]', 1)


def test_a_full_risk_section_loads_as_written(tmp_path):
    f = tmp_path / "bot4.toml"
    f.write_text(GOOD)
    cfg = config.load(f, environ={})
    r = cfg.risk
    assert (r.max_order_qty, r.max_open_orders_per_symbol, r.max_gross_exposure,
            r.max_net_exposure, r.max_cancels_per_min) == \
        (D("0.5"), 10, D("20000"), D("10000"), 120)
    assert (r.capital, r.daily_loss_limit, r.daily_loss_action, r.max_drawdown,
            r.max_drawdown_action, r.max_losing_streak, r.losing_streak_action) == \
        (D("5000"), D("250"), "reducing", D("500"), "halted", 8, "halted")
    assert r.kelly_fraction == D("0.5")
    assert (r.var_levels, r.var_window, r.var_sample_interval_s, r.max_var, r.var_method,
            r.var_limit_level, r.var_action) == \
        ([0.9, 0.95, 0.99, 0.995], 1000, 30.0, D("40"), "cornish_fisher", 0.995, "reducing")
    assert r.stress_price_shocks == [D("-0.3"), D("0.25"), D("-0.05")]
    assert (r.stress_spread_mult, r.stress_default_spread_bps, r.stress_fill_all,
            r.max_stress_loss, r.stress_action) == (D("10"), 5.0, False, D("300"), "halted")
    assert cfg.instruments["BTCUSDT"].max_position == D("0.2")
    assert cfg.instruments["ETHUSDT"].max_position is None
    e = RiskEngine(r, cfg.instruments)
    assert e.max_position("BTCUSDT") == D("0.2") and e.max_position("ETHUSDT") == D("0.05")
    assert [s.name for s in e.scenarios] == ["price -30%", "price +25%", "price -5%",
                                             "spread x10"]


def test_defaults_suit_the_default_instruments():
    r = config.load(CONFIG, environ={}).risk
    assert r.max_var == 0 and r.max_stress_loss == 0          # off until configured
    assert r.var_action == "off" and r.stress_action == "off"
    assert r.daily_loss_limit <= r.max_drawdown <= r.capital
    assert r.max_open_orders_per_symbol <= r.max_open_orders
    # Both default symbols at their position limit, at prices well above today's (BTC
    # 150000, ETH 6000), stay inside the exposure limits: max_position binds first.
    assert r.max_gross_exposure >= r.max_position * (150_000 + 6_000)
    assert r.max_net_exposure >= r.max_position * (150_000 + 6_000)
    assert r.var_window >= 5 / (1 - max(r.var_levels))


def test_instrument_max_position_from_the_environment():
    cfg = config.load(CONFIG, environ={"BOT4__INSTRUMENTS__ETHUSDT__MAX_POSITION": "1.5"})
    assert cfg.instruments["ETHUSDT"].max_position == D("1.5")


@pytest.mark.parametrize("env", [
    {"BOT4__RISK__VAR_LEVELS": "[0.5001, 0.99]"},
    {"BOT4__RISK__VAR_LEVELS": "[0.99]", "BOT4__RISK__VAR_LIMIT_LEVEL": "0.99"},
    {"BOT4__RISK__MAX_OPEN_ORDERS_PER_SYMBOL": "10"},
    {"BOT4__RISK__DAILY_LOSS_LIMIT": "1000", "BOT4__RISK__MAX_DRAWDOWN": "1000"},
    {"BOT4__RISK__VAR_WINDOW": "500"},
    {"BOT4__RISK__STRESS_PRICE_SHOCKS": "[]"},
    {"BOT4__RISK__STRESS_PRICE_SHOCKS": '["-0.99", "10"]'},
    {"BOT4__RISK__KELLY_FRACTION": "1"},
    {"BOT4__RISK__MAX_ORDER_QTY": "0.0002"},
])
def test_edges_that_are_allowed(env):
    config.load(CONFIG, environ=env)


@pytest.mark.parametrize("env, words", [
    ({"BOT4__RISK__VAR_LEVELS": "[0.5]"}, "between 0.5 and 1"),
    ({"BOT4__RISK__VAR_LEVELS": "[]"}, "var_levels"),
    ({"BOT4__RISK__VAR_LEVELS": "[0.9, 0.95, 0.97, 0.98, 0.99]"}, "var_levels"),
    ({"BOT4__RISK__VAR_LIMIT_LEVEL": "1.0"}, "between 0.5 and 1"),
    ({"BOT4__RISK__VAR_LIMIT_LEVEL": "0.5"}, "between 0.5 and 1"),
    ({"BOT4__RISK__VAR_WINDOW": "499"}, "at least 500"),
    ({"BOT4__RISK__MAX_DRAWDOWN": "1000.01"}, "capital"),
    ({"BOT4__RISK__STRESS_PRICE_SHOCKS": '["10.01"]'}, "at most 10"),
    ({"BOT4__RISK__STRESS_PRICE_SHOCKS": '["-0.1", "-0.10"]'}, "twice"),
    ({"BOT4__RISK__STRESS_ACTION": "halted"}, "max_stress_loss"),
    ({"BOT4__RISK__STRESS_DEFAULT_SPREAD_BPS": "0"}, "stress_default_spread_bps"),
    ({"BOT4__RISK__MAX_CANCELS_PER_MIN": "0"}, "max_cancels_per_min"),
    ({"BOT4__RISK__MAX_STRESS_LOSS": "1e13"}, "max_stress_loss"),
])
def test_bad_values_name_the_key(env, words):
    with pytest.raises(config.ConfigError) as e:
        config.load(CONFIG, environ=env)
    assert words in str(e.value)
    assert next(iter(env)) in str(e.value)
