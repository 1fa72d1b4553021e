"""Configuration: TOML file, then `BOT4__SECTION__KEY` environment overrides, then flags.

Validation is strict and about meaning, not only type: an unknown key, a wrong type, a
non-finite or out-of-range number, an implausible decimal, a relative or empty path, two
devices on one GPIO pin, or intervals that contradict each other is a `ConfigError` whose
one-line message names the file (with the line when it can be found) or the environment
variable, and the key. Any failure to read or parse the file is a `ConfigError` too, never
another exception. The daemon exits 78 (EX_CONFIG) on it, and systemd's
RestartPreventExitStatus=78 keeps a bad file from restart-looping.

This module never touches hardware, the journal or the network, and it never fills in a
default for a file it could not read: a missing, empty or unreadable file is an error.
"""
from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Iterator, Literal
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      ValidationError)

EX_CONFIG = 78
ENV_PREFIX = "BOT4__"
MAX_FILE_BYTES = 1 << 20          # a config is a few kB; anything this big is the wrong file
SEED_MAX = 2 ** 32 - 1            # every RNG we seed takes this; bigger numbers are typos
SOCKET_PATH_MAX = 107             # AF_UNIX sun_path is 108 bytes including the final NUL
# Symbols are Binance's: upper case letters and digits, futures add "_" (BTCUSDT_240927).
SYMBOL_RE = re.compile(r"[A-Z0-9][A-Z0-9_]{1,31}")


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator (one line)."""


def _to_decimal(v: Any) -> Decimal:
    # TOML has no decimal type: accept "0.01" (exact) or a number, never a bool.
    if isinstance(v, bool) or not isinstance(v, (str, int, float, Decimal)):
        raise ValueError(f"expected a decimal number or a string like \"0.01\", got {v!r}")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {v!r}") from None
    if not d.is_finite():
        raise ValueError("must be a finite number")
    return d


def _dec_range(lo: str, hi: str, *, lo_open: bool = False, places: int | None = None
               ) -> AfterValidator:
    """A Decimal bound check. Finite is not enough: "1e999999" is finite and turns a limit
    off, and a tick of "1e-30" makes every price quantisation overflow Decimal's 28 digits."""
    low, high = Decimal(lo), Decimal(hi)

    def check(d: Decimal) -> Decimal:
        if (d <= low if lo_open else d < low) or d > high:
            raise ValueError(f"must be {'above' if lo_open else 'at least'} {lo} and at "
                             f"most {hi}")
        if places is not None and d.normalize().as_tuple().exponent < -places:
            raise ValueError(f"at most {places} decimal places")
        return d
    return AfterValidator(check)


Dec = Annotated[Decimal, BeforeValidator(_to_decimal)]
PosDec = Annotated[Decimal, BeforeValidator(_to_decimal), Field(gt=0)]
# Quantities in base currency and amounts in quote currency: positive, and below a
# billion (beyond that a limit is effectively off, which is what "1e999999" tried).
Qty = Annotated[Decimal, BeforeValidator(_to_decimal), _dec_range("0", "1e9", lo_open=True)]
Money = Annotated[Decimal, BeforeValidator(_to_decimal), _dec_range("0", "1e12", lo_open=True)]
# Exchange filters: Binance's smallest tick/step is 1e-8; 1e-12..1e6 with at most 12 decimal
# places keeps price/tick and qty/lot inside Decimal's 28 digits for any plausible price.
Step = Annotated[Decimal, BeforeValidator(_to_decimal), _dec_range("1e-12", "1e6", places=12)]
MinNotional = Annotated[Decimal, BeforeValidator(_to_decimal), _dec_range("0", "1e9")]
BcmPin = Annotated[int, Field(ge=0, le=27)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class _Section(BaseModel):
    # allow_inf_nan=False: TOML has inf and nan, and no setting of ours means either.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DaemonCfg(_Section):
    state_dir: str = "/var/lib/bot4"
    socket: str = "/run/bot4/control.sock"
    socket_group: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    auto_start: bool = False
    stop_timeout_s: float = Field(20.0, gt=0, le=300)


class GpioCfg(_Section):
    estop_pin: BcmPin = 17
    estop_bounce_ms: float = Field(0.0, ge=0, le=5)
    poll_interval_ms: float = Field(20.0, ge=1, le=1000)
    led: bool = True
    led_red: BcmPin = 27
    led_green: BcmPin = 22
    led_blue: BcmPin = 23


class SafetyCfg(_Section):
    cancel_on_stop: bool = True
    flatten_on_estop: bool = False


class WatchdogCfg(_Section):
    check_interval_ms: float = Field(100.0, ge=10, le=5000)
    loop_deadline_s: float = Field(2.0, gt=0, le=60)
    feed_deadline_s: float = Field(10.0, gt=0, le=600)
    strategy_deadline_s: float = Field(10.0, gt=0, le=600)


class MarketCfg(_Section):
    source: Literal["synthetic", "replay", "binance"] = "synthetic"
    exchange: Literal["spot", "usdm"] = "spot"
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1)
    replay_speed: float = Field(1.0, ge=0)
    synthetic_rate_hz: float = Field(50.0, gt=0, le=1_000_000)
    synthetic_seed: int = 7
    ws_base: str = ""        # "" = Binance's own endpoints for the exchange
    rest_base: str = ""
    stale_after_s: float = Field(10.0, gt=0, le=600)
    record_dir: str = ""
    record_rotate_mb: float = Field(64.0, gt=0)


class PaperCfg(_Section):
    maker_fee_bps: float = Field(1.0, ge=-10, le=100)
    taker_fee_bps: float = Field(1.0, ge=0, le=100)
    entry_latency_ms: float = Field(5.0, ge=0, le=10_000)
    md_latency_ms: float = Field(2.0, ge=0, le=10_000)
    latency_jitter_ms: float = Field(0.0, ge=0, le=10_000)
    seed: int = 1


class RiskCfg(_Section):
    max_order_notional: PosDec = Decimal("1000")
    max_position: PosDec = Decimal("0.05")
    max_open_orders: int = Field(10, ge=1, le=1000)
    max_orders_per_min: int = Field(600, ge=1, le=100_000)
    price_band_bps: float = Field(200.0, gt=0, le=10_000)


class BreakersCfg(_Section):
    max_rejects_per_min: int = Field(20, ge=1, le=10_000)
    max_loss: PosDec = Decimal("50")
    book_invalid_s: float = Field(5.0, gt=0, le=600)


class StrategyCfg(_Section):
    name: Literal["quoter"] = "quoter"
    quote_qty: PosDec = Decimal("0.0002")
    half_spread_bps: float = Field(5.0, gt=0, le=10_000)
    requote_bps: float = Field(2.0, ge=0, le=10_000)
    requote_min_interval_ms: float = Field(250.0, ge=0, le=3_600_000)


class SanityCfg(_Section):
    """Market-data sanity stage (daemon/market/sanity.py, the trust checks in book.py)."""
    max_price_ticks: float = Field(1e10, ge=1e3, le=1e15)      # price <= tick_size * this
    max_qty_lots: float = Field(1e12, ge=1e3, le=1e15)         # quantity <= lot_size * this
    book_jump_bps: float = Field(100.0, gt=0, le=5000)         # one-diff top move: suspect
    suspect_timeout_s: float = Field(5.0, gt=0, le=600)        # unconfirmed this long: resync
    bridge_timeout_s: float = Field(2.0, gt=0, le=60)          # snapshot ahead of the diffs
    trade_band_bps: float = Field(500.0, gt=0, le=10_000)      # trade vs confirmed mid
    max_update_id_jump: int = Field(100_000_000, ge=1000, le=10**15)
    max_clock_skew_s: float = Field(60.0, gt=0, le=86_400)     # exchange vs receive time
    max_time_jump_s: float = Field(60.0, gt=0, le=86_400)      # capture: forward jump held back
    max_time_back_s: float = Field(5.0, ge=0, le=86_400)       # capture: backward step allowed
    reference_max_age_s: float = Field(30.0, gt=0, le=3600)    # older reference: no mark
    reference_trades: int = Field(15, ge=1, le=1000)           # trades in the median fallback


class InstrumentCfg(_Section):
    tick_size: PosDec
    lot_size: PosDec
    min_notional: Dec = Decimal("5")


_DEFAULT_INSTRUMENTS = {
    "BTCUSDT": InstrumentCfg(tick_size="0.01", lot_size="0.00001", min_notional="5"),
    "ETHUSDT": InstrumentCfg(tick_size="0.01", lot_size="0.0001", min_notional="5"),
}


class Config(_Section):
    daemon: DaemonCfg = DaemonCfg()
    gpio: GpioCfg = GpioCfg()
    safety: SafetyCfg = SafetyCfg()
    watchdog: WatchdogCfg = WatchdogCfg()
    market: MarketCfg = MarketCfg()
    paper: PaperCfg = PaperCfg()
    risk: RiskCfg = RiskCfg()
    breakers: BreakersCfg = BreakersCfg()
    strategy: StrategyCfg = StrategyCfg()
    sanity: SanityCfg = SanityCfg()
    instruments: dict[str, InstrumentCfg] = Field(default_factory=lambda: dict(_DEFAULT_INSTRUMENTS))


def _env_value(text: str) -> Any:
    """An override's text read as a TOML value when it is one (42, true, "x", [..]),
    else as a bare string, so `BOT4__MARKET__SOURCE=replay` needs no quotes."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_env(data: dict, environ: dict[str, str]) -> dict[tuple, str]:
    """Merge overrides into `data`; return which key path came from which variable."""
    origin: dict[tuple, str] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"environment {name}: expected BOT4__SECTION__KEY")
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment {name}: {'.'.join(parts[:-1])} is not a section")
            node = child
        node[parts[-1]] = _env_value(text)
        origin[tuple(parts)] = name
    return origin


def _key_name(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2:
        return f"[{'.'.join(parts[:-1])}] {parts[-1]}"
    return parts[0] if parts else "(top level)"


def load(path: str | os.PathLike | None, environ: dict[str, str] | None = None) -> Config:
    """Read, merge and validate. Raises ConfigError naming the file/variable and key."""
    environ = dict(os.environ if environ is None else environ)
    data: dict = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{where}: file not found") from None
        except PermissionError:
            raise ConfigError(f"{where}: permission denied") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{where}: not valid TOML: {e}") from None
    origin = _apply_env(data, environ)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        src = next((origin[k] for k in origin if k == loc[:len(k)] or loc == k[:len(loc)]),
                   None)
        source = f"environment {src}" if src else where
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
        raise ConfigError(f"{source}: {_key_name(loc)}: {msg}{more}") from None
    for sym in cfg.market.symbols:
        if sym not in cfg.instruments:
            raise ConfigError(f"{where}: [market] symbols: {sym} has no [instruments.{sym}] "
                              f"table (tick_size, lot_size, min_notional)")
    return cfg


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy with some keys replaced (used for command-line flags), re-validated."""
    data = cfg.model_dump()
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"command line: {_key_name(tuple(map(str, err['loc'])))}: "
                          f"{err['msg']}") from None
