"""Config loading: strict validation, env overrides, check-config exit codes."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from daemon import config
from tests.daemon_harness import CONFIG, REPO


def _check(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config",
                           str(path)], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_shipped_config_is_valid_and_equals_defaults():
    cfg = config.load(CONFIG, environ={})
    assert cfg == config.load(None, environ={}), "etc/bot4/bot4.toml must document the defaults"
    assert _check(CONFIG).returncode == 0


@pytest.mark.parametrize("body, key, words", [
    ("[risk]\nmax_postion = 1\n", "[risk] max_postion", "unknown key"),
    ("[nonsense]\nx = 1\n", "nonsense", "unknown key"),
    ("[gpio]\nestop_pin = \"17\"\n", "[gpio] estop_pin", "valid integer"),
    ("[gpio]\nestop_pin = 40\n", "[gpio] estop_pin", "less than or equal to 27"),
    ("[gpio]\nestop_bounce_ms = 50\n", "[gpio] estop_bounce_ms", "less than or equal to 5"),
    ("[risk]\nmax_position = \"-1\"\n", "[risk] max_position", "greater than 0"),
    ("[risk]\nmax_position = \"abc\"\n", "[risk] max_position", "not a decimal"),
    ("[daemon]\nauto_start = 1\n", "[daemon] auto_start", "valid boolean"),
    ("[market]\nsource = \"kraken\"\n", "[market] source", "synthetic"),
    ("[market]\nsymbols = [\"DOGEUSDT\"]\n", "[market] symbols", "DOGEUSDT has no [instruments"),
])
def test_bad_config_exits_78_naming_file_and_key(tmp_path, body, key, words):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(config.ConfigError) as e:
        config.load(f, environ={})
    assert str(f) in str(e.value) and key in str(e.value) and words in str(e.value)
    r = _check(f)
    assert r.returncode == 78
    assert key in r.stderr and str(f) in r.stderr


def test_toml_syntax_error_names_line(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("[daemon]\nlog_level = \"info\"\nauto_start = \n")
    r = _check(f)
    assert r.returncode == 78
    assert "line 3" in r.stderr and str(f) in r.stderr


def test_missing_file_is_a_config_error(tmp_path):
    r = _check(tmp_path / "nope.toml")
    assert r.returncode == 78 and "file not found" in r.stderr


def test_env_overrides_apply_with_types():
    env = {"BOT4__RISK__MAX_POSITION": "\"0.5\"", "BOT4__DAEMON__AUTO_START": "true",
           "BOT4__MARKET__SOURCE": "replay", "BOT4__MARKET__SYMBOLS": "[\"ETHUSDT\"]",
           "BOT4__GPIO__ESTOP_PIN": "5", "UNRELATED": "x"}
    cfg = config.load(CONFIG, environ=env)
    assert cfg.risk.max_position == Decimal("0.5")
    assert cfg.daemon.auto_start is True
    assert cfg.market.source == "replay" and cfg.market.symbols == ["ETHUSDT"]
    assert cfg.gpio.estop_pin == 5


@pytest.mark.parametrize("env, words", [
    ({"BOT4__GPIO__ESTOP_PIN": "99"}, "environment BOT4__GPIO__ESTOP_PIN: [gpio] estop_pin"),
    ({"BOT4__RISK__MAX_POSITON": "1"}, "environment BOT4__RISK__MAX_POSITON: [risk] max_positon: unknown key"),
    ({"BOT4__RISK": "1"}, "environment BOT4__RISK: expected BOT4__SECTION__KEY"),
])
def test_bad_env_override_names_the_variable(env, words):
    with pytest.raises(config.ConfigError) as e:
        config.load(CONFIG, environ=env)
    assert words in str(e.value)


def test_bad_env_makes_run_exit_78(tmp_path):
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--sim", "--config",
                        str(CONFIG), "--state-dir", str(tmp_path)], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env={"BOT4__WATCHDOG__LOOP_DEADLINE_S": "-3",
                                                   "PATH": "/usr/bin:/bin"})
    assert r.returncode == 78
    assert "BOT4__WATCHDOG__LOOP_DEADLINE_S" in r.stderr and "loop_deadline_s" in r.stderr
