"""The malformed-config torture set (issue 7): every case a config (or an environment) that
`bot4d check-config` must refuse with exit 78 and one line naming the key.

Each case is built from the shipped etc/bot4/bot4.toml with one thing damaged, so the rest
of the file is a real, otherwise valid configuration. A case knows which key its message
must name and, where the damage sits on a known line, that line number. This module only
builds files and describes expectations: it runs nothing and never touches the shipped file.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.daemon_harness import CONFIG

SHIPPED = CONFIG.read_text()


@dataclass(frozen=True)
class Built:
    path: Path
    line: int | None = None          # the line the message must name, when known


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Built]   # writes the damaged config under the given directory
    names: tuple[str, ...]           # every one of these must appear in the message
    env: dict[str, str] = field(default_factory=dict)
    from_env: bool = False           # the message must blame the variable, not the file


def _find(text: str, section: str, key: str) -> int:
    """0-based index of the `key = ...` line inside `[section]` of `text`."""
    lines = text.splitlines()
    current = None
    for i, line in enumerate(lines):
        head = re.match(r"\s*\[([^\[\]]+)\]", line)
        if head:
            current = head.group(1).strip()
        elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return i
    raise KeyError(f"[{section}] {key} is not in the shipped config")


def _write(d: Path, data: str | bytes, name: str = "bot4.toml") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    if isinstance(data, str):
        p.write_text(data, encoding="utf-8")
    else:
        p.write_bytes(data)
    return p


def setv(section: str, key: str, value: str) -> Callable[[Path], Built]:
    """The shipped config with one value replaced (its comment kept)."""
    def build(d: Path) -> Built:
        lines = SHIPPED.splitlines()
        i = _find(SHIPPED, section, key)
        m = re.match(r"(\s*\S+\s*=\s*)(\"[^\"]*\"|\[[^\]]*\]|[^#\s]+)(.*)", lines[i])
        assert m, lines[i]
        lines[i] = f"{m.group(1)}{value}{m.group(3)}"
        return Built(_write(d, "\n".join(lines) + "\n"), i + 1)
    return build


def insert_after(section: str, key: str, text: str) -> Callable[[Path], Built]:
    """The shipped config with `text` (one line) inserted after `[section] key`."""
    def build(d: Path) -> Built:
        lines = SHIPPED.splitlines()
        i = _find(SHIPPED, section, key)
        lines.insert(i + 1, text)
        return Built(_write(d, "\n".join(lines) + "\n"), i + 2)
    return build


def risk_key(key: str, value: str) -> Callable[[Path], Built]:
    """[risk] `key` set to `value`: replaced where the shipped file has the key, else
    inserted (the shipped file need not list every risk key)."""
    try:
        _find(SHIPPED, "risk", key)
    except KeyError:
        return insert_after("risk", "price_band_bps", f"{key} = {value}")
    return setv("risk", key, value)


def _instrument_key(symbol: str, key: str, value: str) -> Callable[[Path], Built]:
    """Like risk_key, for an [instruments.SYMBOL] key."""
    section = f"instruments.{symbol}"
    try:
        _find(SHIPPED, section, key)
    except KeyError:
        return insert_after(section, "min_notional", f"{key} = {value}")
    return setv(section, key, value)


def append(text: str, line_of: str | None = None) -> Callable[[Path], Built]:
    """The shipped config with `text` appended; `line_of` is a line of `text` whose number
    the message must name."""
    def build(d: Path) -> Built:
        body = SHIPPED + text
        line = None
        if line_of is not None:
            line = body.splitlines().index(line_of) + 1
        return Built(_write(d, body), line)
    return build


def raw(data: str | bytes, line: int | None = None) -> Callable[[Path], Built]:
    def build(d: Path) -> Built:
        return Built(_write(d, data), line)
    return build


def _binary(d: Path) -> Built:
    rng = random.Random(4)
    return Built(_write(d, b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(4096))))


def _non_utf8(d: Path) -> Built:
    body = SHIPPED.encode()
    i = _find(SHIPPED, "daemon", "log_level")
    body = body.replace(b'log_level = "info"', b'log_level = "inf\xe9"', 1)
    return Built(_write(d, body), i + 1)


def _deep(d: Path) -> Built:
    lines = SHIPPED.splitlines()
    i = _find(SHIPPED, "market", "symbols")
    lines[i] = "symbols = " + "[" * 5000 + "]" * 5000
    return Built(_write(d, "\n".join(lines) + "\n"), i + 1)


def _directory(d: Path) -> Built:
    p = d / "bot4.toml"
    p.mkdir(parents=True)
    return Built(p)


def _fifo(d: Path) -> Built:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "bot4.toml"
    os.mkfifo(p)   # opening it for reading would block until a writer came
    return Built(p)


def _missing(d: Path) -> Built:
    d.mkdir(parents=True, exist_ok=True)
    return Built(d / "bot4.toml")


def _huge_int(d: Path) -> Built:
    return setv("market", "synthetic_seed", "1" * 5000)(d)


def _too_large(d: Path) -> Built:
    return Built(_write(d, SHIPPED + ("# " + "x" * 98 + "\n") * 11_000))


def _long_socket(d: Path) -> Built:
    return setv("daemon", "socket", '"/run/bot4/' + "s" * 120 + '.sock"')(d)


# (name, builder, what the message must name). Keys are written as the message writes
# them: "[section] key", "[instruments.SYMBOL] key".
CASES: list[Case] = [
    # -- the file as a whole ---------------------------------------------------------------
    Case("binary_garbage", _binary, ("not UTF-8",)),
    Case("non_utf8_byte", _non_utf8, ("[daemon] log_level", "not UTF-8")),
    Case("array_5000_deep", _deep, ("[market] symbols", "nested")),
    Case("directory", _directory, ("is a directory",)),
    Case("fifo", _fifo, ("not a regular file",)),
    Case("missing_file", _missing, ("file not found",)),
    Case("empty_file", raw(""), ("empty",)),
    Case("comments_only", raw("# all defaults, please\n\n   \n"), ("no settings",)),
    Case("empty_tables_only", raw("[daemon]\n[risk]\n"), ("no settings",)),
    Case("nul_byte", raw("[daemon]\nlog_level = \"info\"\x00\n", 2), ("[daemon] log_level",)),
    Case("too_large", _too_large, ("too large",)),
    Case("integer_5000_digits", _huge_int, ("[market] synthetic_seed",)),
    # -- TOML syntax -----------------------------------------------------------------------
    Case("duplicate_key", insert_after("risk", "max_position", 'max_position = "2"'),
         ("[risk] max_position", "duplicate key", "first set on line")),
    Case("duplicate_table", append("\n[risk]\nmax_open_orders = 3\n", "[risk]"),
         ("[risk]", "declared twice")),
    Case("missing_value", setv("daemon", "auto_start", ""), ("[daemon] auto_start",)),
    Case("unterminated_string", setv("daemon", "socket", '"/run/bot4/control.sock'),
         ("[daemon] socket",)),
    Case("unclosed_header", append("\n[risk\n", "[risk"), ("[risk",)),
    Case("no_equals_sign", insert_after("risk", "max_position", 'max_open_orders 3'),
         ("[risk] max_open_orders",)),
    # -- names and types -------------------------------------------------------------------
    Case("unknown_key_typo", insert_after("risk", "max_position", "max_postion = 1"),
         ("[risk] max_postion", "unknown key")),
    Case("unknown_section", append("\n[nonsense]\nx = 1\n", "[nonsense]"),
         ("nonsense", "unknown key")),
    Case("string_for_int", setv("gpio", "estop_pin", '"17"'), ("[gpio] estop_pin",)),
    Case("int_for_bool", setv("daemon", "auto_start", "1"), ("[daemon] auto_start",)),
    Case("bool_for_decimal", setv("instruments.BTCUSDT", "tick_size", "true"),
         ("[instruments.BTCUSDT] tick_size",)),
    Case("array_for_float", setv("watchdog", "loop_deadline_s", "[2.0]"),
         ("[watchdog] loop_deadline_s",)),
    Case("value_for_section", raw("daemon = 5\n", 1), ("daemon",)),
    Case("log_level_unknown", setv("daemon", "log_level", '"verbose"'), ("[daemon] log_level",)),
    Case("instrument_missing_lot", append('\n[instruments.SOLUSDT]\ntick_size = "0.01"\n',
                                          "[instruments.SOLUSDT]"),
         ("[instruments.SOLUSDT] lot_size", "missing")),
    # -- numbers that are not numbers ------------------------------------------------------
    Case("record_rotate_inf", setv("market", "record_rotate_mb", "inf"),
         ("[market] record_rotate_mb", "finite")),
    Case("replay_speed_inf", setv("market", "replay_speed", "inf"),
         ("[market] replay_speed", "finite")),
    Case("half_spread_nan", setv("strategy.quoter", "half_spread_bps", "nan"),
         ("[strategy.quoter] half_spread_bps", "finite")),
    Case("stop_timeout_minus_inf", setv("daemon", "stop_timeout_s", "-inf"),
         ("[daemon] stop_timeout_s",)),
    Case("book_invalid_nan", setv("breakers", "book_invalid_s", "nan"),
         ("[breakers] book_invalid_s", "finite")),
    Case("requote_interval_inf", setv("strategy.quoter", "requote_min_interval_ms", "inf"),
         ("[strategy.quoter] requote_min_interval_ms",)),
    Case("replay_speed_huge_float", setv("market", "replay_speed", "1e999"),
         ("[market] replay_speed",)),
    # -- decimals out of any plausible range ------------------------------------------------
    Case("tick_size_1e-30", setv("instruments.BTCUSDT", "tick_size", '"1e-30"'),
         ("[instruments.BTCUSDT] tick_size",)),
    Case("tick_size_13_places", setv("instruments.BTCUSDT", "tick_size", '"0.1000000000001"'),
         ("[instruments.BTCUSDT] tick_size", "decimal places")),
    Case("lot_size_1e7", setv("instruments.ETHUSDT", "lot_size", '"1e7"'),
         ("[instruments.ETHUSDT] lot_size",)),
    Case("max_position_1e999999", setv("risk", "max_position", '"1e999999"'),
         ("[risk] max_position",)),
    Case("min_notional_negative", setv("instruments.BTCUSDT", "min_notional", '"-5"'),
         ("[instruments.BTCUSDT] min_notional",)),
    Case("min_notional_1e999999", setv("instruments.ETHUSDT", "min_notional", '"1e999999"'),
         ("[instruments.ETHUSDT] min_notional",)),
    Case("probe_max_notional_zero", setv("breakers", "probe_max_notional", '"0"'),
         ("[breakers] probe_max_notional",)),
    Case("max_order_notional_nan", setv("risk", "max_order_notional", '"NaN"'),
         ("[risk] max_order_notional", "finite")),
    # -- integers -----------------------------------------------------------------------------
    Case("paper_seed_1e40", setv("paper", "seed", str(10 ** 40)), ("[paper] seed",)),
    Case("synthetic_seed_negative", setv("market", "synthetic_seed", "-7"),
         ("[market] synthetic_seed",)),
    Case("estop_pin_negative", setv("gpio", "estop_pin", "-1"), ("[gpio] estop_pin",)),
    # -- GPIO pins ------------------------------------------------------------------------------
    Case("estop_pin_is_led_red", setv("gpio", "estop_pin", "27"),
         ("[gpio] estop_pin", "led_red")),
    Case("led_blue_is_estop_pin", setv("gpio", "led_blue", "17"),
         ("[gpio] led_blue", "estop_pin")),
    Case("led_green_is_led_red", setv("gpio", "led_green", "27"),
         ("[gpio] led_green", "led_red")),
    # -- paths ----------------------------------------------------------------------------------
    Case("socket_empty", setv("daemon", "socket", '""'), ("[daemon] socket",)),
    Case("state_dir_empty", setv("daemon", "state_dir", '""'), ("[daemon] state_dir",)),
    Case("state_dir_relative", setv("daemon", "state_dir", '"state"'),
         ("[daemon] state_dir", "absolute")),
    Case("socket_too_long", _long_socket, ("[daemon] socket", "107")),
    Case("socket_nul", setv("daemon", "socket", '"/run/bot4/a\\u0000b"'), ("[daemon] socket",)),
    Case("record_dir_relative", setv("market", "record_dir", '"rec"'), ("[market] record_dir",)),
    Case("socket_group_spaces", setv("daemon", "socket_group", '"bot 4"'),
         ("[daemon] socket_group",)),
    Case("ws_base_http", setv("market", "ws_base", '"http://127.0.0.1:9/ws"'),
         ("[market] ws_base",)),
    Case("rest_base_not_url", setv("market", "rest_base", '"localhost"'),
         ("[market] rest_base",)),
    # -- intervals --------------------------------------------------------------------------------
    Case("check_interval_5000", setv("watchdog", "check_interval_ms", "5000"),
         ("[watchdog] check_interval_ms", "loop_deadline_s")),
    Case("check_interval_above_deadline_quarter", setv("watchdog", "check_interval_ms", "600"),
         ("[watchdog] check_interval_ms",)),
    Case("loop_deadline_tiny", setv("watchdog", "loop_deadline_s", "0.1"),
         ("[watchdog] loop_deadline_s",)),
    Case("loop_deadline_beyond_systemd", setv("watchdog", "loop_deadline_s", "30"),
         ("[watchdog] loop_deadline_s",)),
    Case("feed_deadline_vs_check", setv("watchdog", "feed_deadline_s", "0.2"),
         ("[watchdog] feed_deadline_s", "check_interval_ms")),
    Case("binance_stale_vs_feed_deadline", raw(SHIPPED),
         ("BOT4__MARKET__STALE_AFTER_S", "[market] stale_after_s", "feed_deadline_s"),
        env={"BOT4__MARKET__SOURCE": "binance", "BOT4__MARKET__STALE_AFTER_S": "12"},
        from_env=True),
    Case("synthetic_rate_slow", setv("market", "synthetic_rate_hz", "0.5"),
         ("[market] synthetic_rate_hz",)),
    # -- strategy, risk and instruments together -------------------------------------------------
    Case("order_notional_below_min_notional", setv("strategy", "order_notional", '"1"'),
         ("[strategy] order_notional", "BTCUSDT", "min_notional")),
    Case("order_notional_above_max_order_notional",
         setv("strategy", "order_notional", '"5000"'),
         ("[strategy] order_notional", "max_order_notional")),
    Case("per_symbol_size_below_min_notional",
         append('\n[strategy.order_notional_per_symbol]\nETHUSDT = "2"\n'),
         ("[strategy.order_notional_per_symbol] ETHUSDT", "min_notional"),
         env={"BOT4__MARKET__SYMBOLS": '["BTCUSDT", "ETHUSDT"]'}),
    Case("strategy_symbol_without_market_data", setv("strategy", "symbols", '["ETHUSDT"]'),
         ("[strategy] symbols", "ETHUSDT", "[market] symbols")),
    Case("quote_qty_moved", insert_after("strategy", "name", 'quote_qty = "0.0002"'),
         ("[strategy] quote_qty", "order_notional")),
    Case("half_spread_moved", insert_after("strategy", "name", "half_spread_bps = 5.0"),
         ("[strategy] half_spread_bps", "[strategy.quoter] half_spread_bps")),
    Case("max_order_notional_below_min", setv("risk", "max_order_notional", '"1"'),
         ("[risk] max_order_notional", "min_notional")),
    Case("half_spread_100pct", setv("strategy.quoter", "half_spread_bps", "10000"),
         ("[strategy.quoter] half_spread_bps",)),
    Case("symbols_lower_case", setv("market", "symbols", '["btcusdt"]'),
         ("[market] symbols", "upper case")),
    Case("symbols_duplicate", setv("market", "symbols", '["BTCUSDT", "BTCUSDT"]'),
         ("[market] symbols", "twice")),
    Case("symbols_empty", setv("market", "symbols", "[]"), ("[market] symbols",)),
    Case("symbol_without_instrument", setv("market", "symbols", '["DOGEUSDT"]'),
         ("[market] symbols", "DOGEUSDT")),
    Case("instrument_lower_case", append('\n[instruments.solusdt]\ntick_size = "0.01"\n'
                                         'lot_size = "0.01"\n', "[instruments.solusdt]"),
         ("instruments", "solusdt", "upper case")),
    # -- the risk engine (daemon/risk/): risk_key() sets or inserts ----------------
    Case("risk_action_unknown", risk_key("daily_loss_action", '"stop"'),
         ("[risk] daily_loss_action", "reducing")),
    Case("var_levels_one", risk_key("var_levels", "[0.95, 1.0]"),
         ("[risk] var_levels", "between 0.5 and 1")),
    Case("var_levels_twice", risk_key("var_levels", "[0.99, 0.99]"),
         ("[risk] var_levels", "twice")),
    Case("var_limit_level_not_a_level", risk_key("var_limit_level", "0.975"),
         ("[risk] var_limit_level", "var_levels")),
    Case("var_window_too_short", risk_key("var_window", "100"),
         ("[risk] var_window", "at least 500")),
    Case("var_window_zero", risk_key("var_window", "0"),
         ("[risk] var_window",)),
    Case("var_interval_zero", risk_key("var_sample_interval_s", "0"),
         ("[risk] var_sample_interval_s",)),
    Case("var_method_unknown", risk_key("var_method", '"montecarlo"'),
         ("[risk] var_method",)),
    Case("var_action_without_max_var", risk_key("var_action", '"halted"'),
         ("[risk] var_action", "max_var")),
    Case("max_var_negative", risk_key("max_var", '"-1"'),
         ("[risk] max_var",)),
    Case("stress_shock_below_minus_99pct", risk_key("stress_price_shocks", '["-1.5"]'),
         ("stress_price_shocks", "-0.99")),
    Case("stress_shock_zero", risk_key("stress_price_shocks", '["0", "-0.1"]'),
         ("[risk] stress_price_shocks", "no scenario")),
    Case("stress_spread_mult_below_one", risk_key("stress_spread_mult", '"0.5"'),
         ("[risk] stress_spread_mult",)),
    Case("stress_action_without_limit", risk_key("stress_action", '"reducing"'),
         ("[risk] stress_action", "max_stress_loss")),
    Case("kelly_fraction_above_one", risk_key("kelly_fraction", '"1.5"'),
         ("[risk] kelly_fraction",)),
    Case("kelly_fraction_zero", risk_key("kelly_fraction", '"0"'),
         ("[risk] kelly_fraction",)),
    Case("losing_streak_zero", risk_key("max_losing_streak", "0"),
         ("[risk] max_losing_streak",)),
    Case("open_orders_per_symbol_above_global",
         risk_key("max_open_orders_per_symbol", "11"),
         ("[risk] max_open_orders_per_symbol", "max_open_orders")),
    Case("daily_loss_above_capital", risk_key("daily_loss_limit", '"5000"'),
         ("[risk] daily_loss_limit", "capital")),
    Case("gross_exposure_zero", risk_key("max_gross_exposure", '"0"'),
         ("[risk] max_gross_exposure",)),
    Case("env_var_levels_low", raw(SHIPPED), ("BOT4__RISK__VAR_LEVELS", "[risk] var_levels"),
         env={"BOT4__RISK__VAR_LEVELS": "[0.5]"}, from_env=True),
    # -- environment overrides -------------------------------------------------------------------
    Case("env_tick_size_1e-30", raw(SHIPPED),
         ("BOT4__INSTRUMENTS__BTCUSDT__TICK_SIZE", "[instruments.BTCUSDT] tick_size"),
         env={"BOT4__INSTRUMENTS__BTCUSDT__TICK_SIZE": "1e-30"}, from_env=True),
    Case("env_new_instrument_incomplete", raw(SHIPPED),
         ("BOT4__INSTRUMENTS__SOLUSDT__TICK_SIZE", "[instruments.SOLUSDT] lot_size"),
         env={"BOT4__INSTRUMENTS__SOLUSDT__TICK_SIZE": "0.01"}, from_env=True),
    Case("env_check_interval_5000", raw(SHIPPED),
         ("BOT4__WATCHDOG__CHECK_INTERVAL_MS", "[watchdog] check_interval_ms"),
         env={"BOT4__WATCHDOG__CHECK_INTERVAL_MS": "5000"}, from_env=True),
    Case("env_replay_speed_inf", raw(SHIPPED),
         ("BOT4__MARKET__REPLAY_SPEED", "[market] replay_speed"),
         env={"BOT4__MARKET__REPLAY_SPEED": "inf"}, from_env=True),
    Case("env_estop_pin_is_led", raw(SHIPPED), ("BOT4__GPIO__ESTOP_PIN", "[gpio] estop_pin"),
         env={"BOT4__GPIO__ESTOP_PIN": "23"}, from_env=True),
    Case("env_symbols_deep", raw(SHIPPED), ("BOT4__MARKET__SYMBOLS", "[market] symbols", "nested"),
         env={"BOT4__MARKET__SYMBOLS": "[" * 5000 + "]" * 5000}, from_env=True),
    Case("env_unknown_key", raw(SHIPPED), ("BOT4__RISK__MAX_POSITON", "[risk] max_positon"),
         env={"BOT4__RISK__MAX_POSITON": "1"}, from_env=True),
    # -- circuit breakers ------------------------------------------------------------------------
    Case("breakers_max_loss_moved", insert_after("breakers", "cascade", 'max_loss = "50"'),
         ("[breakers] max_loss", "[risk] daily_loss_limit")),
    Case("env_breakers_max_loss_moved", raw(SHIPPED),
         ("BOT4__BREAKERS__MAX_LOSS", "[breakers] max_loss", "[risk] daily_loss_limit"),
         env={"BOT4__BREAKERS__MAX_LOSS": "50"}, from_env=True),
    Case("error_rate_floor_above_max", setv("breakers", "error_rate_floor", "0.3"),
         ("[breakers] error_rate_floor", "error_rate_max", "error_rate_ceiling")),
    Case("error_rate_ceiling_below_max", setv("breakers", "error_rate_ceiling", "0.2"),
         ("[breakers] error_rate_ceiling", "error_rate_floor")),
    Case("error_rate_ceiling_above_one", setv("breakers", "error_rate_ceiling", "1.5"),
         ("[breakers] error_rate_ceiling",)),
    Case("error_rate_max_one", setv("breakers", "error_rate_max", "1.0"),
         ("[breakers] error_rate_max",)),
    Case("error_confidence_one", setv("breakers", "error_confidence", "1.0"),
         ("[breakers] error_confidence",)),
    Case("cooldown_max_below_cooldown", setv("breakers", "cooldown_max_s", "10.0"),
         ("[breakers] cooldown_max_s", "cooldown_s")),
    Case("cooldown_growth_below_one", setv("breakers", "cooldown_growth", "0.5"),
         ("[breakers] cooldown_growth",)),
    Case("probe_orders_zero", setv("breakers", "probe_orders", "0"),
         ("[breakers] probe_orders",)),
    Case("probe_max_notional_below_min_notional", setv("breakers", "probe_max_notional", '"4"'),
         ("[breakers] probe_max_notional", "min_notional")),
    Case("max_reopens_zero", setv("breakers", "max_reopens", "0"), ("[breakers] max_reopens",)),
    Case("latency_warmup_above_window", setv("breakers", "latency_warmup", "60"),
         ("[breakers] latency_warmup", "latency_window")),
    Case("latency_factor_one", setv("breakers", "latency_factor", "1.0"),
         ("[breakers] latency_factor",)),
    Case("volume_warmup_above_window", setv("breakers", "volume_warmup", "100"),
         ("[breakers] volume_warmup", "volume_window")),
    Case("volume_z_max_inf", setv("breakers", "volume_z_max", "inf"),
         ("[breakers] volume_z_max", "finite")),
    Case("ofi_max_nan", setv("breakers", "ofi_max", "nan"), ("[breakers] ofi_max", "finite")),
    Case("vpin_max_one", setv("breakers", "vpin_max", "1.0"), ("[breakers] vpin_max",)),
    Case("vpin_max_negative", setv("breakers", "vpin_max", "-0.1"), ("[breakers] vpin_max",)),
    Case("spread_floor_zero", setv("breakers", "spread_floor_bps", "0.0"),
         ("[breakers] spread_floor_bps",)),
    Case("cascade_string", setv("breakers", "cascade", '"yes"'), ("[breakers] cascade",)),
    Case("env_cooldown_max_below_cooldown", raw(SHIPPED),
         ("BOT4__BREAKERS__COOLDOWN_S", "[breakers] cooldown_s"),
         env={"BOT4__BREAKERS__COOLDOWN_S": "1000"}, from_env=True),
]

# Breaker settings that must be accepted (boundaries and the bounds at their limits), as
# environment overrides on the shipped file.
GOOD_BREAKERS: list[dict[str, str]] = [
    {"BOT4__BREAKERS__CASCADE": "false"},
    {"BOT4__BREAKERS__VPIN_MAX": "0"},                # the toxic-flow rule off
    {"BOT4__BREAKERS__ERROR_RATE_FLOOR": "0.25", "BOT4__BREAKERS__ERROR_RATE_CEILING": "0.25"},
    {"BOT4__BREAKERS__ERROR_RATE_CEILING": "1.0", "BOT4__BREAKERS__ERROR_CONFIDENCE": "0.9999"},
    {"BOT4__BREAKERS__COOLDOWN_S": "600", "BOT4__BREAKERS__COOLDOWN_MAX_S": "600"},
    {"BOT4__BREAKERS__COOLDOWN_GROWTH": "1.0", "BOT4__BREAKERS__PROBE_WINDOW_S": "30"},
    {"BOT4__BREAKERS__PROBE_MAX_NOTIONAL": "5"},     # exactly the shipped min_notional
    {"BOT4__BREAKERS__LATENCY_WARMUP": "50", "BOT4__BREAKERS__LATENCY_WINDOW": "50"},
    {"BOT4__BREAKERS__VOLUME_WARMUP": "60", "BOT4__BREAKERS__VOLUME_WINDOW": "60"},
    {"BOT4__BREAKERS__MARKET_WARMUP_S": "0", "BOT4__BREAKERS__OFI_HOLD_S": "0",
     "BOT4__BREAKERS__SPREAD_HOLD_S": "0"},
    {"BOT4__BREAKERS__MAX_REOPENS": "1", "BOT4__BREAKERS__PROBE_ORDERS": "100"},
]

assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
