"""[breakers] settings in process: the good cases of tests/config_cases.py are accepted and
reach the board; the moved max_loss key names its new home. (The bad cases run through
real `bot4d check-config` subprocesses in tests/test_config_torture.py.)"""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon import config
from daemon.config import BreakersCfg, ConfigError
from daemon.safety.breakers import BreakerBoard
from tests.config_cases import CASES, GOOD_BREAKERS
from tests.daemon_harness import CONFIG

S = 1_000_000_000


@pytest.mark.parametrize("env", GOOD_BREAKERS, ids=lambda e: "+".join(sorted(e)))
def test_good_breaker_settings_are_accepted_and_reach_the_board(env):
    cfg = config.load(CONFIG, environ=env)
    for var, text in env.items():
        key = var.removeprefix("BOT4__BREAKERS__").lower()
        value = getattr(cfg.breakers, key)
        if isinstance(value, bool):
            assert value is (text == "true")
        else:
            assert Decimal(str(value)) == Decimal(text), (key, value, text)
    board = BreakerBoard(cfg.breakers, ["paper"])
    assert board.policy.cooldown_ns == round(cfg.breakers.cooldown_s * S)
    assert board.policy.probe_orders == cfg.breakers.probe_orders


def test_every_breaker_key_is_in_the_shipped_file_with_its_default():
    shipped = config.load(CONFIG, environ={}).breakers
    assert shipped == BreakersCfg()
    text = CONFIG.read_text()
    section = text[text.index("[breakers]"):text.index("[strategy]")]
    for key in BreakersCfg.model_fields:
        if key != "max_loss":
            assert f"\n{key} = " in section, f"{key} is not documented in etc/bot4/bot4.toml"
    assert "\nmax_loss" not in section


def test_max_loss_says_where_it_moved(tmp_path):
    p = tmp_path / "old.toml"
    p.write_text(CONFIG.read_text().replace("[breakers]", '[breakers]\nmax_loss = "50"', 1))
    with pytest.raises(ConfigError, match=r"line \d+: \[breakers\] max_loss: moved to "
                                          r"\[risk\] daily_loss_limit"):
        config.load(p, environ={})
    with pytest.raises(ConfigError, match="BOT4__BREAKERS__MAX_LOSS: .breakers. max_loss: "
                                          "moved to"):
        config.load(CONFIG, environ={"BOT4__BREAKERS__MAX_LOSS": "0"})
    assert "max_loss" not in BreakersCfg().model_dump()
    # A copy with flags re-validates the dump: the moved key must not come back in it.
    assert config.with_overrides(config.load(CONFIG, environ={}),
                                 breakers={"cooldown_s": 5.0}).breakers.cooldown_s == 5.0


def test_the_bad_cases_cover_every_cross_key_rule():
    names = {c.name for c in CASES}
    assert {"error_rate_floor_above_max", "error_rate_ceiling_below_max",
            "cooldown_max_below_cooldown", "latency_warmup_above_window",
            "volume_warmup_above_window", "probe_max_notional_below_min_notional",
            "breakers_max_loss_moved", "env_breakers_max_loss_moved"} <= names
