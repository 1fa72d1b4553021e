"""Config loading: strict validation, env overrides, check-config exit codes."""
from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

import pytest

from daemon import config
from tests.daemon_harness import CONFIG, REPO
from tests.two_markets import two_markets


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


# -- issue 7: environment overrides reach every key, errors name the variable ----------------
def test_env_override_reaches_an_existing_instrument_table():
    cfg = config.load(CONFIG, environ={"BOT4__INSTRUMENTS__BTCUSDT__TICK_SIZE": "0.1"})
    assert cfg.instruments["BTCUSDT"].tick_size == Decimal("0.1")
    assert cfg.instruments["BTCUSDT"].lot_size == Decimal("0.00001"), "rest of the table kept"
    assert set(cfg.instruments) == {"BTCUSDT", "ETHUSDT"}, "no lower-case twin table"


def test_env_override_can_add_a_whole_instrument_table():
    cfg = config.load(CONFIG, environ={
        "BOT4__INSTRUMENTS__SOLUSDT": '{tick_size = "0.01", lot_size = "0.001"}',
        "BOT4__MARKET__SYMBOLS": '["SOLUSDT"]'})
    assert cfg.instruments["SOLUSDT"].lot_size == Decimal("0.001")
    assert cfg.market.symbols == ["SOLUSDT"]


def test_env_instrument_override_through_check_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT4__")}
    ok = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--config",
                         str(CONFIG)], cwd=REPO, capture_output=True, text=True, timeout=60,
                        env={**env, "BOT4__INSTRUMENTS__BTCUSDT__TICK_SIZE": "0.1"})
    assert ok.returncode == 0, ok.stderr


def test_env_value_with_a_newline_is_one_string_not_two_keys():
    with pytest.raises(config.ConfigError) as e:
        config.load(CONFIG, environ={"BOT4__DAEMON__SOCKET_GROUP": "adm\nauto_start = true"})
    assert "environment BOT4__DAEMON__SOCKET_GROUP: [daemon] socket_group" in str(e.value)
    assert "\n" not in str(e.value)


# -- issue 7: meaning, not only type --------------------------------------------------------------
def test_command_line_replay_speed_must_be_finite():
    cfg = config.load(CONFIG, environ={})
    with pytest.raises(config.ConfigError) as e:
        config.with_overrides(cfg, market={"replay_speed": float("inf")})
    assert "command line: [market] replay_speed: must be a finite number" in str(e.value)


def test_run_with_infinite_replay_speed_exits_78(tmp_path):
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--sim", "--config",
                        str(CONFIG), "--state-dir", str(tmp_path), "--replay-speed", "inf"],
                       cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 78 and "replay_speed" in r.stderr, r.stderr


def test_led_pins_are_free_when_no_led_is_wired():
    cfg = config.load(CONFIG, environ={"BOT4__GPIO__LED": "false", "BOT4__GPIO__ESTOP_PIN": "27"})
    assert cfg.gpio.estop_pin == 27
    with pytest.raises(config.ConfigError, match="GPIO27 is used by both estop_pin and led_red"):
        config.load(CONFIG, environ={"BOT4__GPIO__ESTOP_PIN": "27"})


def test_live_source_accepts_the_shipped_intervals():
    cfg = config.load(CONFIG, environ={"BOT4__MARKET__SOURCE": "binance"})
    assert cfg.watchdog.feed_deadline_s >= 1.5 * cfg.market.stale_after_s


def test_utf8_bom_is_accepted(tmp_path):
    f = tmp_path / "bom.toml"
    f.write_bytes(b"\xef\xbb\xbf" + CONFIG.read_bytes())
    assert config.load(f, environ={}) == config.load(CONFIG, environ={})


def test_an_empty_file_is_refused_not_silently_defaulted(tmp_path):
    f = tmp_path / "empty.toml"
    f.write_text("")
    with pytest.raises(config.ConfigError, match="the file is empty"):
        config.load(f, environ={})


def test_load_raises_only_config_errors_on_garbage(tmp_path):
    """Whatever bytes the file holds, load() raises ConfigError or returns a Config."""
    import random
    rng = random.Random(7)
    base = CONFIG.read_bytes()
    f = tmp_path / "fuzz.toml"
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        f.write_bytes(bytes(data))
        try:
            config.load(f, environ={})
        except config.ConfigError as e:
            assert "\n" not in str(e) and str(f) in str(e)


def test_a_contradiction_names_the_key_the_environment_set(tmp_path):
    """No [gpio] table in the file: the override creates it, and of the two colliding pins
    the message must name the one the variable set, not the default it collided with."""
    f = tmp_path / "nogpio.toml"
    f.write_text("[daemon]\nlog_level = \"info\"\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(f, environ={"BOT4__GPIO__LED_BLUE": "17"})
    assert str(e.value).startswith("environment BOT4__GPIO__LED_BLUE: [gpio] led_blue: GPIO17")


def test_line_numbers_count_newlines_as_toml_does(tmp_path):
    """A U+2028 in a comment is not a line break for TOML: the line named must not shift."""
    f = tmp_path / "sep.toml"
    f.write_text('# note\u2028more note\n[risk]\nmax_position = "1e999999"\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(f, environ={})
    assert f"{f}, line 3: [risk] max_position" in str(e.value)


_TWO_MARKETS = two_markets('source = "binance"\n')
_COINM = """
[instruments."coinm:BTCUSD_PERP"]
tick_size = "0.1"
lot_size = "1"
min_notional = "0"
kind = "inverse"
contract_size = "100"
"""


def test_a_second_live_market_gets_its_own_endpoints(tmp_path):
    f = tmp_path / "two.toml"
    f.write_text(_TWO_MARKETS + '[market.endpoints.usdm]\nws_base = "ws://127.0.0.1:9"\n'
                 'rest_base = "http://127.0.0.1:9"\n')
    cfg = config.load(f, environ={})
    assert cfg.market.endpoints["usdm"].ws_base == "ws://127.0.0.1:9"
    assert config.load(tmp_path / "two.toml", environ={}).market.endpoints["usdm"].rest_base \
        == "http://127.0.0.1:9"


@pytest.mark.parametrize("extra, key, words", [
    ('[market.endpoints.usdm]\nws_base = "http://127.0.0.1:9"\n',
     "[market.endpoints.usdm] ws_base", "ws://"),
    ('[market.endpoints.usdm]\nrest_base = "ws://127.0.0.1:9"\n',
     "[market.endpoints.usdm] rest_base", "http://"),
    ('[market.endpoints.spot]\nws_base = "ws://127.0.0.1:9"\n',
     "[market.endpoints] spot", "its endpoints are [market] ws_base and rest_base"),
    ('[market.endpoints.coinm]\nws_base = "ws://127.0.0.1:9"\n',
     "[market.endpoints.coinm]", "'spot' or 'usdm'"),
    ('[market.endpoints.usdm]\nwsbase = "ws://127.0.0.1:9"\n',
     "[market.endpoints.usdm] wsbase", "unknown key"),
])
def test_bad_market_endpoints_are_config_errors(tmp_path, extra, key, words):
    f = tmp_path / "bad.toml"
    f.write_text(_TWO_MARKETS + extra)
    with pytest.raises(config.ConfigError) as e:
        config.load(f, environ={})
    assert key in str(e.value) and words in str(e.value), str(e.value)


def test_endpoints_of_a_market_nothing_trades_are_refused(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[market.endpoints.usdm]\nws_base = "ws://127.0.0.1:9"\n')
    with pytest.raises(config.ConfigError, match=r"\[market.endpoints\] usdm: no instrument "
                                                 r"of the usdm market"):
        config.load(f, environ={})


def test_live_coinm_is_refused_at_check_config_not_at_run_time(tmp_path):
    """A live run with a COIN-M instrument used to pass check-config and then fail inside
    the feed (BinanceLiveFeed knows spot and USD-M only)."""
    body = _TWO_MARKETS.replace('"usdm:BTCUSDT"]', '"coinm:BTCUSD_PERP"]', 1) + _COINM
    f = tmp_path / "coinm.toml"
    f.write_text(body)
    r = _check(f)
    assert r.returncode == 78
    assert "[market] symbols" in r.stderr and "coinm:BTCUSD_PERP" in r.stderr \
        and "live COIN-M market data is not supported" in r.stderr, r.stderr
    f.write_text(body.replace('source = "binance"', 'source = "replay"'))
    assert config.load(f, environ={}).market.source == "replay"   # a replay of it is fine
