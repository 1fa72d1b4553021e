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

import ast
import hashlib
import math
import os
import re
import stat
import tomllib
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Iterator, Literal
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      ValidationError, field_validator, model_validator)

from daemon.market.instruments import MARKETS, parse_id

EX_CONFIG = 78
ENV_PREFIX = "BOT4__"
MAX_FILE_BYTES = 1 << 20          # a config is a few kB; anything this big is the wrong file
SEED_MAX = 2 ** 32 - 1            # every RNG we seed takes this; bigger numbers are typos
SOCKET_PATH_MAX = 107             # AF_UNIX sun_path is 108 bytes including the final NUL
# Symbols are Binance's: upper case letters and digits, futures add "_" (BTCUSDT_240927).
SYMBOL_RE = re.compile(r"[A-Z0-9][A-Z0-9_]{1,31}")


def _oneline(s: str) -> str:
    """Control characters (a newline in a key, a NUL in a path) escaped: one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator (one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(_oneline(message))


def _to_decimal(v: Any) -> Decimal:
    # TOML has no decimal type: accept "0.01" (exact) or a number, never a bool.
    if isinstance(v, bool) or not isinstance(v, (str, int, float, Decimal)):
        raise ValueError("expected a decimal number or a string like \"0.01\"")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError("not a decimal number") from None
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
            raise ValueError(f"must be {'greater than' if lo_open else 'at least'} {lo} and at "
                             f"most {hi}")
        if places is not None and d.normalize().as_tuple().exponent < -places:
            raise ValueError(f"at most {places} decimal places")
        return d
    return AfterValidator(check)


def _check_symbol(s: str) -> None:
    if not SYMBOL_RE.fullmatch(s):
        hint = " (symbols are upper case)" if SYMBOL_RE.fullmatch(s.upper()) else ""
        raise ValueError(f"{s!r} is not an exchange symbol like BTCUSDT{hint}")


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

    @staticmethod
    def _absolute(v: str, what: str) -> str:
        # "" put the journal into whatever directory the daemon was started from; a relative
        # path does the same under another name (systemd starts us in /).
        if not v:
            raise ValueError(f"must not be empty (the {what})")
        if any(not c.isprintable() for c in v):
            raise ValueError("must not contain control characters")
        if not v.startswith("/"):
            raise ValueError(f"must be an absolute path (the {what})")
        return v

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, v: str) -> str:
        return cls._absolute(v, "journal's directory")

    @field_validator("socket")
    @classmethod
    def _socket(cls, v: str) -> str:
        cls._absolute(v, "control socket bot4ctl connects to")
        if len(os.fsencode(v)) > SOCKET_PATH_MAX:
            raise ValueError(f"a Unix socket path is at most {SOCKET_PATH_MAX} bytes, "
                             f"this one is {len(os.fsencode(v))}")
        return v

    @field_validator("socket_group")
    @classmethod
    def _group(cls, v: str) -> str:
        # Only the shape: whether the group exists is a property of the machine it runs on
        # (checked when the socket is created), not of the file.
        if v and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?", v):
            raise ValueError("not a group name")
        return v


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
    # Every deadline must be at least 4 x this (see _meaning), which with loop_deadline_s
    # <= 5 keeps the systemd watchdog ping (sent from this check) well inside WatchdogSec.
    check_interval_ms: float = Field(100.0, ge=10, le=5000)
    # The loop monitor thread looks every 0.1 s, and GC or fsync pauses reach tenths of a
    # second on a Pi; above 5 s systemd (WatchdogSec=10s) kills a blocked daemon before
    # this trips.
    loop_deadline_s: float = Field(2.0, ge=0.5, le=5)
    feed_deadline_s: float = Field(15.0, gt=0, le=600)
    # The strategy beats from its own 0.1 s timer.
    strategy_deadline_s: float = Field(10.0, ge=0.5, le=600)


def _check_url(v: str, field: str) -> str:
    if not v:
        return v
    schemes = ("ws", "wss") if field == "ws_base" else ("http", "https")
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        raise ValueError(f"not a URL: {e}") from None
    if u.scheme not in schemes or not u.hostname:
        raise ValueError(f"must be \"\" or a URL starting with "
                         f"{' or '.join(s + '://' for s in schemes)}")
    return v


class EndpointsCfg(_Section):
    """[market.endpoints.MARKET]: where a live run reaches a market other than [market]
    exchange ("" = Binance's own endpoints for that market)."""
    ws_base: str = ""
    rest_base: str = ""

    @field_validator("ws_base", "rest_base")
    @classmethod
    def _url(cls, v: str, info: Any) -> str:
        return _check_url(v, info.field_name)


class MarketCfg(_Section):
    source: Literal["synthetic", "replay", "binance"] = "synthetic"
    # The default market: its instruments are named by their plain symbol. Instruments of
    # another market carry it as a prefix: "usdm:BTCUSDT", "coinm:BTCUSD_PERP"
    # (daemon/market/instruments.py).
    exchange: Literal["spot", "usdm", "coinm"] = "spot"
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1)
    replay_speed: float = Field(1.0, ge=0, le=1_000_000)
    synthetic_rate_hz: float = Field(50.0, ge=1, le=1_000_000)
    synthetic_seed: Seed = 7
    ws_base: str = ""        # "" = Binance's own endpoints for the exchange
    rest_base: str = ""
    # Live instruments of another market (spot + USD-M on one engine) are reached at that
    # market's own Binance endpoints, or at [market.endpoints.usdm] ws_base / rest_base.
    endpoints: dict[Literal["spot", "usdm"], EndpointsCfg] = Field(default_factory=dict)
    stale_after_s: float = Field(10.0, ge=1, le=600)
    record_dir: str = ""
    record_rotate_mb: float = Field(64.0, ge=1, le=4096)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str], info: Any) -> list[str]:
        exchange = info.data.get("exchange")
        for s in v:
            if exchange is None:     # (exchange itself is invalid: reported on its own)
                _check_symbol(s.rpartition(":")[2])
            else:
                parse_id(s, exchange)
        dup = next((s for i, s in enumerate(v) if s in v[:i]), None)
        if dup is not None:
            raise ValueError(f"{dup} is listed twice")
        return v

    @field_validator("replay_speed")
    @classmethod
    def _speed(cls, v: float) -> float:
        # Below 1/100 of real time the reader sleeps so long between lines that the feed
        # watchdog halts: 0 (as fast as possible) is the way to say "no pacing".
        if 0 < v < 0.01:
            raise ValueError("must be 0 (as fast as possible) or at least 0.01")
        return v

    @field_validator("ws_base", "rest_base")
    @classmethod
    def _url(cls, v: str, info: Any) -> str:
        return _check_url(v, info.field_name)

    @field_validator("record_dir")
    @classmethod
    def _record_dir(cls, v: str) -> str:
        if v and (not v.startswith("/") or any(not c.isprintable() for c in v)):
            raise ValueError("must be \"\" (off) or an absolute path")
        return v


class PaperCfg(_Section):
    maker_fee_bps: float = Field(1.0, ge=-10, le=100)
    taker_fee_bps: float = Field(1.0, ge=0, le=100)
    entry_latency_ms: float = Field(5.0, ge=0, le=10_000)
    md_latency_ms: float = Field(2.0, ge=0, le=10_000)
    latency_jitter_ms: float = Field(0.0, ge=0, le=10_000)
    seed: Seed = 1
    # After a restart the paper venue's memory is gone: "restore" rebuilds its resting
    # orders from the journal (at the back of the queue, daemon/execution/paper.py),
    # "cancel" closes them as cancelled by restart. Never re-sent either way.
    on_restart: Literal["restore", "cancel"] = "restore"


# A limit that may be switched off with 0 (VaR, stress): 0 or an amount like Money.
MoneyOrOff = Annotated[Decimal, BeforeValidator(_to_decimal), _dec_range("0", "1e12")]
# A stress price shock as a fraction of the mark: -0.99 (price almost gone) .. +10 (x11).
Shock = Annotated[Decimal, BeforeValidator(_to_decimal), _dec_range("-0.99", "10")]
LimitAction = Literal["reducing", "halted"]
# A continuous VaR/stress trip: "off" keeps the limit pre-trade only.
TripAction = Literal["off", "reducing", "halted"]


class RiskCfg(_Section):
    """Risk engine (daemon/risk/). Amounts in quote currency, quantities in base currency."""
    # -- pre-trade, per order / per symbol / global
    max_order_notional: Money = Decimal("1000")
    max_order_qty: Qty = Decimal("1")
    max_position: Qty = Decimal("0.05")       # per symbol; [instruments.X] max_position overrides
    max_open_orders: int = Field(10, ge=1, le=1000)
    max_open_orders_per_symbol: int = Field(6, ge=1, le=1000)
    max_gross_exposure: Money = Decimal("10000")
    max_net_exposure: Money = Decimal("10000")
    max_orders_per_min: int = Field(600, ge=1, le=100_000)
    max_cancels_per_min: int = Field(600, ge=1, le=100_000)
    price_band_bps: float = Field(200.0, gt=0, le=10_000)
    # -- losses that act by themselves (latched until `bot4ctl reset`)
    capital: Money = Decimal("1000")          # what the bot trades with: Kelly sizing base
    daily_loss_limit: Money = Decimal("50")   # UTC day, realised + unrealised, fees included
    daily_loss_action: LimitAction = "halted"
    max_drawdown: Money = Decimal("100")      # from the equity peak
    max_drawdown_action: LimitAction = "halted"
    max_losing_streak: int = Field(25, ge=1, le=100_000)   # losing round trips in a row
    losing_streak_action: LimitAction = "reducing"
    # -- sizing
    kelly_fraction: Annotated[Decimal, BeforeValidator(_to_decimal),
                              _dec_range("0", "1", lo_open=True)] = Decimal("0.25")
    # -- VaR / CVaR over a rolling window of marks
    var_levels: list[float] = Field(default_factory=lambda: [0.95, 0.99], min_length=1,
                                    max_length=4)
    var_window: int = Field(1440, ge=30, le=100_000)          # samples (returns) kept
    var_sample_interval_s: float = Field(60.0, ge=1, le=86_400)
    max_var: MoneyOrOff = Decimal("0")                         # 0 = off
    var_method: Literal["historical", "gaussian", "cornish_fisher"] = "historical"
    var_limit_level: float = 0.99                              # one of var_levels
    var_action: TripAction = "off"
    # -- stress
    stress_price_shocks: list[Shock] = Field(
        default_factory=lambda: [Decimal("-0.10"), Decimal("-0.20"), Decimal("0.10")],
        max_length=16)
    stress_spread_mult: Annotated[Decimal, BeforeValidator(_to_decimal),
                                  _dec_range("1", "1000")] = Decimal("5")
    stress_default_spread_bps: float = Field(10.0, gt=0, le=10_000)
    stress_fill_all: bool = True
    max_stress_loss: MoneyOrOff = Decimal("0")                 # 0 = off
    stress_action: TripAction = "off"

    @field_validator("var_levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        for x in v:
            if not 0.5 < x < 1:
                raise ValueError(f"every level must lie strictly between 0.5 and 1 (got {x!r})")
        if len(set(v)) != len(v):
            raise ValueError("a level is listed twice")
        return v

    @field_validator("var_limit_level")
    @classmethod
    def _limit_level(cls, v: float) -> float:
        if not 0.5 < v < 1:
            raise ValueError("must lie strictly between 0.5 and 1")
        return v

    @field_validator("stress_price_shocks")
    @classmethod
    def _shocks(cls, v: list[Decimal]) -> list[Decimal]:
        if any(x == 0 for x in v):
            raise ValueError("a shock of 0 is no scenario")
        if len(set(v)) != len(v):
            raise ValueError("a shock is listed twice")
        return v


class BreakersCfg(_Section):
    """Circuit breakers (daemon/safety/breakers/): one per venue and one global."""
    # -- the state machine: open -> (cooldown) -> half-open probes -> closed
    cascade: bool = True                                          # a venue trip opens global
    cooldown_s: float = Field(30.0, ge=1, le=3600)                # open -> half-open
    cooldown_max_s: float = Field(600.0, ge=1, le=86_400)         # growth stops here
    cooldown_growth: float = Field(2.0, ge=1, le=10)              # x per failed probe round
    probe_orders: int = Field(3, ge=1, le=100)                    # half-open order budget
    probe_max_notional: Money = Decimal("50")                     # quote currency per probe
    probe_window_s: float = Field(0.0, ge=0, le=3600)             # > 0: close after this
    max_reopens: int = Field(3, ge=1, le=100)                     # then escalate (halt)
    # -- order outcomes, per venue
    max_rejects_per_min: int = Field(20, ge=1, le=10_000)
    error_window_s: float = Field(60.0, ge=1, le=3600)
    error_min_orders: int = Field(10, ge=1, le=10_000)
    error_rate_max: float = Field(0.25, gt=0, lt=1)               # the Beta posterior's rate
    error_rate_floor: float = Field(0.1, gt=0, lt=1)              # never trips below
    error_rate_ceiling: float = Field(0.6, gt=0, le=1)            # always trips at or above
    error_confidence: float = Field(0.95, ge=0.5, le=0.9999)
    max_consecutive_errors: int = Field(5, ge=1, le=1000)
    latency_factor: float = Field(5.0, ge=1.5, le=1000)           # x rolling median ack time
    latency_floor_ms: float = Field(500.0, ge=1, le=60_000)
    latency_window: int = Field(50, ge=5, le=10_000)              # acks in the median
    latency_warmup: int = Field(20, ge=3, le=10_000)
    latency_spikes: int = Field(2, ge=1, le=100)                  # in a row
    # -- market, per traded symbol
    book_invalid_s: float = Field(5.0, gt=0, le=600)
    market_warmup_s: float = Field(60.0, ge=0, le=3600)
    ofi_window_s: float = Field(10.0, ge=1, le=600)
    ofi_max: float = Field(100.0, gt=0, le=1e6)                   # |OFI| / median depth
    ofi_hold_s: float = Field(5.0, ge=0, le=600)
    # Toxic flow from the feature store: VPIN (daemon/features) above this opens the venue's
    # breaker (an automatic trip: it probes its way closed). 0 = off.
    vpin_max: float = Field(0.9, ge=0, lt=1)
    spread_window_s: float = Field(300.0, ge=10, le=86_400)
    spread_factor: float = Field(10.0, ge=1.5, le=10_000)         # x rolling median spread
    spread_floor_bps: float = Field(10.0, gt=0, le=10_000)
    spread_hold_s: float = Field(1.0, ge=0, le=600)
    volume_interval_s: float = Field(5.0, ge=0.1, le=3600)
    volume_window: int = Field(60, ge=10, le=10_000)              # intervals of history
    volume_warmup: int = Field(20, ge=5, le=10_000)
    volume_z_max: float = Field(80.0, ge=3, le=1e6)               # robust z-score
    # Moved: the risk engine acts on losses ([risk] daily_loss_limit). Accepting the old key
    # silently would leave an operator believing a loss limit is in force.
    max_loss: Any = Field(None, exclude=True, repr=False)

    @field_validator("max_loss")
    @classmethod
    def _moved(cls, v: Any) -> None:
        raise ValueError("moved to [risk] daily_loss_limit (the risk engine acts on losses "
                         "now); remove it from [breakers]")


class QuoterCfg(_Section):
    """[strategy.quoter]: the simple market maker (daemon/strategy/quoter.py)."""
    # 10000 bps = 100 %: the bid would sit at (or below) zero.
    half_spread_bps: float = Field(5.0, gt=0, lt=10_000)
    requote_bps: float = Field(2.0, ge=0, le=10_000)
    requote_min_interval_ms: float = Field(250.0, ge=0, le=3_600_000)


class TrendCfg(_Section):
    """[strategy.trend]: EMA crossover on [strategy] bars with an ATR stop and take-profit
    (daemon/strategy/trend.py). Periods count bars of [strategy] bar_interval_s."""
    fast: int = Field(9, ge=1, le=10_000)           # fast EMA period; rule: < slow
    slow: int = Field(21, ge=2, le=10_000)          # slow EMA period
    atr_period: int = Field(14, ge=1, le=10_000)    # ATR (Wilder) period
    k_stop: float = Field(2.0, gt=0, le=100)        # stop = entry -/+ k_stop x ATR at entry
    k_tp: float = Field(3.0, gt=0, le=100)          # target = entry +/- k_tp x ATR at entry
    # Shorts on a down-cross; rule: refused when a traded instrument is spot (no shorting).
    allow_short: bool = False
    # Entries and exits are IOC limits this far through the mark (marketable, bounded).
    max_slippage_bps: float = Field(10.0, gt=0, le=500)


class MeanReversionCfg(_Section):
    """[strategy.mean_reversion]: z-score of the bar close against its rolling mean and
    standard deviation, with an efficiency-ratio regime filter and a volatility band
    (daemon/strategy/mean_reversion.py). Periods count bars of [strategy] bar_interval_s."""
    window: int = Field(20, ge=3, le=10_000)        # bars in the rolling mean / std
    entry_z: float = Field(2.0, gt=0, le=20)        # enter beyond this |z|; rule: > exit_z
    exit_z: float = Field(0.5, ge=0, le=20)         # exit once back inside this |z|
    stop_sd: float = Field(3.0, gt=0, le=100)       # stop = entry -/+ stop_sd x std at entry
    er_window: int = Field(20, ge=2, le=10_000)     # bars in the Kaufman efficiency ratio
    er_max: float = Field(0.5, gt=0, le=1)          # ER above this: trending, stand aside
    # Rolling std of closes as bps of their mean: outside [min, max] stand aside.
    min_vol_bps: float = Field(0.5, ge=0, le=10_000)
    max_vol_bps: float = Field(100.0, gt=0, le=10_000)
    allow_short: bool = False                       # rule: refused on spot instruments
    max_slippage_bps: float = Field(10.0, gt=0, le=500)


class MarketMakerCfg(_Section):
    """[strategy.market_maker]: Avellaneda-Stoikov quotes around the microprice with
    toxicity, spread and inventory pulls (daemon/strategy/market_maker.py). The model runs
    in bps of the microprice: sigma in bps per sqrt(second), gamma and kappa per bps,
    inventory q in orders of [strategy] order_notional."""
    gamma: float = Field(0.05, gt=0, le=100)           # risk aversion (1/bps)
    kappa: float = Field(0.5, gt=0, le=1000)           # fills ~ exp(-kappa x distance in bps)
    horizon_s: float = Field(60.0, gt=0, le=86_400)    # T - t, rolling (continuous trading)
    max_inventory: float = Field(5.0, ge=1, le=10_000)  # |inventory| cap, in orders
    # Quote the ask from a flat position (go short); rule: refused on spot instruments.
    allow_short: bool = False
    min_spread_bps: float = Field(2.0, ge=0, lt=10_000)        # floor on the quoted spread
    max_book_spread_bps: float = Field(10.0, gt=0, le=10_000)  # wider book: pull
    vpin_max: float = Field(0.8, gt=0, le=1)           # VPIN (feature store) at/above: pull
    ofi_max: float = Field(15.0, gt=0, le=1e6)         # |OFI| in mean top-of-book sizes: pull
    ofi_window_s: float = Field(10.0, gt=0, le=3_600)  # own OFI window (store not ready)
    depth_halflife_s: float = Field(60.0, gt=0, le=86_400)   # mean top-of-book size EWMA
    cooldown_s: float = Field(5.0, ge=0, le=3_600)     # out this long after a spread/flow pull
    vol_sample_ms: float = Field(1000.0, gt=0, le=60_000)    # mid return sampling step
    vol_halflife_s: float = Field(60.0, gt=0, le=86_400)     # EWMA of squared returns
    vol_warmup_s: float = Field(30.0, gt=0, le=86_400)       # rule: >= 2 x vol_sample_ms
    requote_ticks: int = Field(50, ge=1, le=10**9)           # move that requotes at once
    requote_min_interval_ms: float = Field(500.0, ge=0, le=3_600_000)   # per side
    refresh_interval_s: float = Field(5.0, gt=0, le=86_400)  # smaller moves: after this

    # Field validators (not a model one) so the message names the key the rule is about.
    @field_validator("vol_warmup_s")
    @classmethod
    def _warmup(cls, v: float, info: Any) -> float:
        sample = info.data.get("vol_sample_ms")
        if sample is not None and v * 1000 < 2 * sample:
            raise ValueError(f"{v:g} s must cover at least two samples of vol_sample_ms = "
                             f"{sample:g}")
        return v

    @field_validator("refresh_interval_s")
    @classmethod
    def _refresh(cls, v: float, info: Any) -> float:
        gap = info.data.get("requote_min_interval_ms")
        if gap is not None and v * 1000 < gap:
            raise ValueError(f"{v:g} s must not be below requote_min_interval_ms = {gap:g} ms")
        return v


class BasisCfg(_Section):
    """[strategy.basis]: spot-perpetual basis (daemon/strategy/basis.py). The basis is
    (perp mid - spot mid) / spot mid in bps; its band is mean +/- k x std of samples taken
    every sample_ms of event time over the last window_s. Quantities are base currency."""
    spot_symbol: str = "BTCUSDT"          # rule: a spot instrument in [market] symbols
    perp_symbol: str = "usdm:BTCUSDT"     # rule: a USD-M instrument in [market] symbols
    window_s: float = Field(60.0, gt=0, le=86_400)       # rolling band, event time
    sample_ms: float = Field(100.0, gt=0, le=3_600_000)  # one basis sample per this much
    min_samples: int = Field(100, ge=2, le=1_000_000)    # rule: fits in window_s / sample_ms
    k: float = Field(2.0, gt=0, le=20)                   # enter beyond mean +/- k x std
    exit_k: float = Field(0.5, ge=0, le=20)              # rule: < k; exit inside +/- exit_k
    min_edge_bps: float = Field(1.0, ge=0, le=10_000)    # |basis - mean| to enter
    min_abs_basis_bps: float = Field(0.0, ge=0, le=10_000)   # |basis| to enter (0 = off)
    max_position: Qty = Decimal("0.002")   # per leg; rule: >= the coarser lot of the two
    allow_spot_short: bool = False         # below the band the trade sells spot
    leg_slippage_bps: float = Field(2.0, ge=0, le=500)   # IOC limit through the touch
    max_legging_ms: float = Field(1000.0, gt=0, le=600_000)   # then unwind
    cooldown_ms: float = Field(2000.0, ge=0, le=3_600_000)    # after a broken pair

    @field_validator("spot_symbol", "perp_symbol")
    @classmethod
    def _symbol(cls, v: str) -> str:
        _check_symbol(v.rpartition(":")[2])   # the market is checked against [market]
        return v

    @model_validator(mode="after")
    def _bands(self) -> BasisCfg:
        if self.exit_k >= self.k:
            raise ValueError(f"exit_k = {self.exit_k:g} must be below k = {self.k:g} (the "
                             f"exit band lies inside the entry band)")
        fits = self.window_s * 1000 / self.sample_ms
        if self.min_samples > fits:
            raise ValueError(f"min_samples = {self.min_samples} is more than window_s / "
                             f"sample_ms = {fits:g} samples: the band would never warm up")
        if self.spot_symbol == self.perp_symbol:
            raise ValueError(f"spot_symbol and perp_symbol are both {self.spot_symbol}")
        return self


STRATEGY_NAMES = ("quoter", "trend", "mean_reversion", "market_maker", "basis")


class StrategyCfg(_Section):
    """[strategy]: which strategy runs (`name`), on which instruments, at what size, and
    its own table [strategy.<name>]."""
    name: Literal["quoter", "trend", "mean_reversion", "market_maker", "basis"] = "quoter"
    # Instruments the strategy trades; empty = every [market] symbol.
    symbols: list[str] = Field(default_factory=list)
    # Order size in quote currency (USD for inverse contracts), per order; the engine turns
    # it into a quantity at the price, rounded up to the lot so it never falls below it.
    order_notional: Money = Decimal("12")
    # Per-instrument overrides of order_notional.
    order_notional_per_symbol: dict[str, Money] = Field(default_factory=dict)
    # Bars the strategy hears (built from trades, exchange receive time).
    bar_interval_s: float = Field(60.0, ge=1, le=86_400)
    quoter: QuoterCfg = QuoterCfg()
    trend: TrendCfg = TrendCfg()
    mean_reversion: MeanReversionCfg = MeanReversionCfg()
    market_maker: MarketMakerCfg = MarketMakerCfg()
    basis: BasisCfg = BasisCfg()

    # Keys of the pre-engine [strategy] table, kept only to say where they went (with the
    # key's line) instead of a bare "extra inputs are not permitted".
    quote_qty: Any = Field(None, exclude=True)
    half_spread_bps: Any = Field(None, exclude=True)
    requote_bps: Any = Field(None, exclude=True)
    requote_min_interval_ms: Any = Field(None, exclude=True)

    @field_validator("quote_qty")
    @classmethod
    def _qty_moved(cls, v: Any) -> Any:
        raise ValueError("replaced by order_notional (quote currency per order; the "
                         "quantity follows from the price and the lot size)")

    @field_validator("half_spread_bps", "requote_bps", "requote_min_interval_ms")
    @classmethod
    def _moved(cls, v: Any, info: Any) -> Any:
        raise ValueError(f"moved to the quoter's own table: [strategy.quoter] "
                         f"{info.field_name}")

    def notional(self, symbol: str) -> Decimal:
        return self.order_notional_per_symbol.get(symbol, self.order_notional)

    def traded(self, market_symbols: list[str]) -> list[str]:
        return list(self.symbols) if self.symbols else list(market_symbols)


class ExecutionCfg(_Section):
    """[execution]: parent orders run by daemon/engine/executor.py (`bot4ctl flatten`, a
    strategy's Execute intent): a TWAP or Almgren-Chriss schedule of child orders, each a
    marketable limit IOC at the touch +/- max_slippage_bps (never a market order); what the
    book does not give within that cap goes back to the schedule. The e-stop's
    flatten_on_estop never uses this: it is an immediate sweep."""
    algo: Literal["twap", "ac"] = "twap"
    duration_s: float = Field(60.0, gt=0, le=86_400)
    slices: int = Field(10, ge=1, le=10_000)
    # Cap on one child order, quote currency (USD for inverse), turned into a quantity at
    # the mark when a parent starts; unset = no cap.
    max_slice_notional: Money | None = None
    # Share of the volume traded in the last slice interval one child may take; 0 = off.
    max_participation: float = Field(0.0, ge=0, le=1)
    # Almgren-Chriss risk aversion lambda (1 / quote currency); 0 = minimum expected cost
    # (the straight TWAP line).
    risk_aversion: float = Field(1e-6, ge=0, le=1e3)
    max_slippage_bps: float = Field(50.0, gt=0, le=1000)
    # AC impact parameters (seconds as the time unit, prices in quote currency):
    # "estimate" measures them from the book and the last impact_window_s of trades when
    # the parent starts and falls back to the values below (or to TWAP when they are
    # unset) if the data is insufficient; "configured" uses the values below only.
    impact: Literal["estimate", "configured"] = "estimate"
    impact_window_s: float = Field(300.0, ge=10, le=86_400)
    sigma: float | None = Field(None, ge=0, le=1e12)     # price per sqrt(second)
    eta: float | None = Field(None, gt=0, le=1e12)       # price per (unit per second)
    gamma: float | None = Field(None, ge=0, le=1e12)     # price per unit
    epsilon: float | None = Field(None, ge=0, le=1e12)   # price per unit (half spread + fee)

    @model_validator(mode="after")
    def _impact(self) -> ExecutionCfg:
        if self.impact == "configured":
            unset = [k for k in ("sigma", "eta", "gamma", "epsilon") if getattr(self, k) is None]
            if unset:
                raise ValueError(f"impact = \"configured\" needs {', '.join(unset)} set "
                                 f"(or impact = \"estimate\" to measure them)")
        return self


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


class WebCfg(_Section):
    """The operator's status page and /metrics (daemon/operator/web.py). Off by default;
    bound to loopback unless `listen` says otherwise, and then only with a credential."""
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = Field(8484, ge=0, le=65535)   # 0: any free port (shown in status; tests)
    # The access token: a systemd credential's name (LoadCredential=NAME:/etc/bot4/...,
    # read from $CREDENTIALS_DIRECTORY/NAME) or an absolute file path. Required beyond
    # loopback; on loopback it is used when set.
    token_credential: str = ""
    token_file: str = ""
    # HTTPS with a certificate of the operator's (PEM files), or "" (plain HTTP: on
    # loopback, or behind a reverse proxy that terminates TLS).
    tls_cert: str = ""
    tls_key: str = ""
    chart_points: int = Field(3600, ge=10, le=100_000)   # 1 s samples kept for the chart

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        import ipaddress
        if v == "localhost":
            return v
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError("must be an IP address (127.0.0.1, ::1, 0.0.0.0, a LAN "
                             "address) or \"localhost\"") from None
        return v

    @field_validator("token_credential")
    @classmethod
    def _credential(cls, v: str) -> str:
        # systemd credential names: no "/" and printable (they are file names).
        if v and not re.fullmatch(r"[A-Za-z0-9_.@-]{1,255}", v):
            raise ValueError("not a systemd credential name (letters, digits, _ . @ -)")
        return v

    @field_validator("token_file", "tls_cert", "tls_key")
    @classmethod
    def _path(cls, v: str) -> str:
        if v and (not v.startswith("/") or any(not c.isprintable() for c in v)):
            raise ValueError("must be \"\" (none) or an absolute path")
        return v

    def loopback(self) -> bool:
        """True when only this machine can reach the server."""
        import ipaddress
        return self.listen == "localhost" or ipaddress.ip_address(self.listen).is_loopback


class AlertsCfg(_Section):
    """Alerts through apprise (daemon/operator/alerts.py), sent from a worker thread."""
    # apprise URLs (json://, ntfy://, tgram://, mailto://, ...). Secrets are better kept in
    # a systemd credential: `url_credential` names one with one URL per line.
    urls: list[str] = Field(default_factory=list, max_length=20)
    url_credential: str = ""
    # Which events alert: estop, estop_reset, halt, breaker, loss_limit, fault, feed,
    # restart (the last from `bot4d stop-post`).
    events: list[Literal["estop", "estop_reset", "halt", "breaker", "loss_limit", "fault",
                         "feed", "restart"]] = Field(default_factory=lambda: [
                             "estop", "estop_reset", "halt", "breaker", "loss_limit",
                             "fault", "feed", "restart"])
    dedupe_s: float = Field(300.0, ge=0, le=86_400)     # same alert again within: dropped
    max_per_minute: int = Field(20, ge=1, le=1000)      # beyond: dropped, counted
    retries: int = Field(5, ge=0, le=100)               # failed sends retried this often
    retry_backoff_s: float = Field(2.0, gt=0, le=600)   # doubling, at most 300 s
    timeout_s: float = Field(10.0, gt=0, le=120)        # per send (connect and read)
    queue_max: int = Field(100, ge=1, le=10_000)        # pending alerts beyond: dropped

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", u):
                raise ValueError(f"{u[:40]!r} is not an apprise URL (scheme://...)")
        return v

    @field_validator("url_credential")
    @classmethod
    def _credential(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_.@-]{1,255}", v):
            raise ValueError("not a systemd credential name (letters, digits, _ . @ -)")
        return v


class InstrumentCfg(_Section):
    """[instruments.<id>]: one instrument's filters and contract. Quantities (lot_size,
    max_position) are base currency for linear instruments and contracts for inverse ones;
    min_notional is quote currency (USD for inverse: contracts x contract_size)."""
    tick_size: Step
    lot_size: Step
    min_notional: MinNotional = Decimal("5")
    max_position: Qty | None = None   # overrides [risk] max_position for this symbol
    # "inverse" (COIN-M, coin-settled, quantity in contracts) only on the coinm market.
    kind: Literal["linear", "inverse"] = "linear"
    # USD per contract of an inverse instrument (BTCUSD_PERP 100, ETHUSD_PERP 10); 1 for linear.
    contract_size: Qty = Decimal("1")

    @model_validator(mode="after")
    def _contract(self) -> InstrumentCfg:
        if self.kind == "linear" and self.contract_size != 1:
            raise ValueError(f"contract_size = {self.contract_size} needs kind = \"inverse\" "
                             f"(a linear instrument trades base quantity: use lot_size)")
        return self


_DEFAULT_INSTRUMENTS = {
    "BTCUSDT": InstrumentCfg(tick_size="0.01", lot_size="0.00001", min_notional="5"),
    "ETHUSDT": InstrumentCfg(tick_size="0.01", lot_size="0.0001", min_notional="5"),
}
# Binance COIN-M perpetuals: quantity in contracts (min 1), no minimum notional.
_DEFAULT_INVERSE = {
    "BTCUSD_PERP": InstrumentCfg(tick_size="0.1", lot_size="1", min_notional="0",
                                 kind="inverse", contract_size="100"),
    "ETHUSD_PERP": InstrumentCfg(tick_size="0.01", lot_size="1", min_notional="0",
                                 kind="inverse", contract_size="10"),
}


def _live_markets(m: MarketCfg) -> None:
    """The markets of [market] symbols against the live source and [market.endpoints]:
    each endpoints table must serve a market that is traded and is not the exchange's own
    (that one is [market] ws_base/rest_base), and live COIN-M data is not wired."""
    markets = {parse_id(s, m.exchange)[0] for s in m.symbols}
    for market in m.endpoints:
        if market == m.exchange:
            raise _Problem([("market", "endpoints", market)],
                           f"{market} is [market] exchange: its endpoints are [market] "
                           f"ws_base and rest_base")
        if market not in markets:
            raise _Problem([("market", "endpoints", market)],
                           f"no instrument of the {market} market is in [market] symbols "
                           f"(they are named \"{market}:SYMBOL\")")
    if m.source == "binance" and "coinm" in markets:
        coinm = [s for s in m.symbols if parse_id(s, m.exchange)[0] == "coinm"]
        raise _Problem([("market", "symbols"), ("market", "source")],
                       f"{', '.join(coinm)}: live COIN-M market data is not supported (the "
                       f"live feed serves spot and USD-M); replay coinm captures instead")


def default_instruments(exchange: str) -> dict[str, InstrumentCfg]:
    """The instruments a config without [instruments] tables gets: the exchange's own,
    BTCUSDT and ETHUSDT on spot and USD-M (the spot filters), BTCUSD_PERP and ETHUSD_PERP
    on COIN-M. Another market's instruments need their own tables."""
    return dict(_DEFAULT_INVERSE if exchange == "coinm" else _DEFAULT_INSTRUMENTS)


class FeaturesCfg(_Section):
    """Streaming features and the online feature store (daemon/features/). Periods count
    bars unless named _s (seconds of event time) or _trades."""
    enabled: bool = True
    # Bars the bar features run on: built from trades at this interval (exchange time);
    # 0 = none built, the daemon feeds its own bars through FeatureEngine.on_bar.
    bar_interval_s: float = Field(60.0, ge=0, le=86_400)
    ema_period: int = Field(20, ge=1, le=10_000)
    sma_period: int = Field(20, ge=1, le=10_000)
    rsi_period: int = Field(14, ge=1, le=10_000)
    macd_fast: int = Field(12, ge=1, le=10_000)
    macd_slow: int = Field(26, ge=2, le=10_000)
    macd_signal: int = Field(9, ge=1, le=10_000)
    atr_period: int = Field(14, ge=1, le=10_000)
    bollinger_period: int = Field(20, ge=1, le=10_000)
    bollinger_k: float = Field(2.0, gt=0, le=10)
    vwap_bars: int = Field(20, ge=1, le=10_000)
    ewma_lambda: float = Field(0.94, gt=0, lt=1)        # RiskMetrics daily value
    ewma_warmup: int = Field(20, ge=1, le=10_000)
    realised_vol_bars: int = Field(30, ge=1, le=10_000)
    garch_window_bars: int = Field(500, ge=30, le=100_000)   # returns kept for the GARCH fit
    ofi_window_s: float = Field(10.0, gt=0, le=3600)
    ofi_levels: int = Field(5, ge=1, le=50)
    trade_imbalance_trades: int = Field(200, ge=1, le=100_000)
    burst_bucket_s: float = Field(1.0, gt=0, le=3600)
    burst_halflife_s: float = Field(300.0, gt=0, le=86_400)
    burst_z: float = Field(4.0, gt=0, le=100)
    burst_warmup_buckets: int = Field(60, ge=2, le=100_000)
    burst_min_trades: int = Field(10, ge=1, le=1_000_000)
    burst_max_gap_s: float = Field(60.0, gt=0, le=86_400)
    vpin_bucket_notional: float = Field(1_000_000.0, gt=0, le=1e12)   # quote currency
    vpin_buckets: int = Field(50, ge=1, le=10_000)
    vpin_sigma_bars: int = Field(50, ge=2, le=10_000)
    kyle_bars: int = Field(60, ge=2, le=10_000)
    roll_trades: int = Field(500, ge=2, le=100_000)
    cs_bars: int = Field(20, ge=1, le=10_000)
    amihud_bars: int = Field(60, ge=1, le=10_000)
    adverse_horizons_s: list[float] = Field(default_factory=lambda: [1.0, 5.0, 30.0],
                                            min_length=1, max_length=10)
    adverse_fills: int = Field(100, ge=1, le=100_000)
    history_rows: int = Field(0, ge=0, le=10_000_000)   # >0: keep rows for Parquet export


class AnalyticsCfg(_Section):
    """Heavy analytics in the daemon (daemon/analytics/runner.py): periodic PIN and GARCH
    fits in the heavy-analytics worker, and the Glosten-Milgrom spread floor offered to the
    quoter. Times are seconds of the runner's clock (event time in a replay, wall time
    live); PIN periods are seconds of exchange time."""
    enabled: bool = True
    pin_period_s: float = Field(10.0, ge=1, le=86_400)        # one PIN period (buy/sell counts)
    pin_periods: int = Field(60, ge=10, le=100_000)           # periods per PIN fit
    pin_every_s: float = Field(300.0, ge=1, le=86_400)        # PIN fit interval
    garch_every_s: float = Field(300.0, ge=1, le=86_400)      # GARCH fit interval
    deadline_s: float = Field(30.0, ge=1, le=3_600)           # per job: queue + start + run
    gm_horizon_s: float = Field(10.0, gt=0, le=86_400)        # Glosten-Milgrom information horizon


QualityAction = Literal["off", "reducing", "breaker"]


class QualityCfg(_Section):
    """Data-quality layers and drift (daemon/quality/). Times are seconds of event time;
    prices are compared in basis points (bps). An action is what a layer's fault asks of
    the daemon: "off" (counted and shown only), "reducing" or a "breaker" trip."""
    enabled: bool = True
    poll_interval_s: float = Field(5.0, ge=0.1, le=3600)        # heavy tests at most this often
    # (1) Benford first digits of trade sizes: a rolling window against the symbol's own
    # first full window (real trade sizes do not conform to Benford: round lots).
    benford_window: int = Field(2000, ge=100, le=1_000_000)     # trades
    benford_mad_margin: float = Field(0.04, gt=0, le=1)         # MAD rise over the reference
    benford_action: QualityAction = "reducing"
    # (2) Kalman local level on trade prices (bps of the first price).
    kalman_level_var: float = Field(1.0, gt=0, le=1e6)          # bps^2 per second
    kalman_obs_var: float = Field(0.25, gt=0, le=1e6)           # bps^2
    kalman_z: float = Field(12.0, ge=3, le=1e6)                 # |innovation| / sd: outlier
    kalman_adapt_n: int = Field(200, ge=2, le=1_000_000)        # innovations in the scale EWMA
    kalman_gap_s: float = Field(10.0, gt=0, le=86_400)          # no price this long: a gap
    kalman_action: QualityAction = "reducing"
    # (3) Sources: book mid, bookTicker mid, median of the last trades; spot vs USD-M.
    source_max_bps: float = Field(20.0, gt=0, le=10_000)        # beyond half the spread
    source_stale_s: float = Field(5.0, gt=0, le=3600)           # silent while others update
    source_hold_s: float = Field(2.0, ge=0, le=3600)            # disagreement must last
    source_trades: int = Field(5, ge=1, le=1000)                # trades in the median
    cross_venue_bps: float = Field(50.0, gt=0, le=10_000)       # basis off its own average
    cross_venue_halflife_s: float = Field(300.0, gt=0, le=86_400)
    sources_action: QualityAction = "reducing"
    # (4) Change points on 1 s samples (return, spread, event rate, basis): reported only.
    changepoint_sample_s: float = Field(1.0, gt=0, le=3600)
    cusum_k: float = Field(0.5, ge=0, le=100)                   # allowance, sigmas
    cusum_h: float = Field(5.0, gt=0, le=1000)                  # decision interval, sigmas
    cusum_warmup: int = Field(30, ge=2, le=100_000)             # samples for mean and sigma
    bocpd_expected_run: float = Field(250.0, ge=2, le=1e7)      # 1 / hazard, samples
    bocpd_max_run: int = Field(300, ge=10, le=100_000)          # run-length truncation
    bocpd_clip_sigmas: float = Field(3.0, ge=1, le=100)         # winsorise before updating
    # (5)+(6) Score over completeness, timeliness, validity, consistency, accuracy.
    score_min: float = Field(0.8, gt=0, le=1)                   # below: score_action
    score_breaker_below: float = Field(0.5, ge=0, le=1)         # below: a breaker trip
    score_action: QualityAction = "reducing"
    stale_s: float = Field(5.0, gt=0, le=3600)                  # no event this long: untimely
    late_ms: float = Field(1000.0, gt=0, le=600_000)            # latency above its floor
    # Drift (issue 11 item 4): reference window followed by the live window, 1 s samples.
    drift_reference: int = Field(600, ge=10, le=1_000_000)
    drift_live: int = Field(300, ge=10, le=1_000_000)
    drift_bins: int = Field(10, ge=2, le=1000)                  # reference quantile bins
    drift_psi_max: float = Field(0.25, gt=0, le=100)
    drift_kl_max: float = Field(0.5, gt=0, le=100)
    drift_wasserstein_max: float = Field(1.0, gt=0, le=1e6)     # reference sigmas
    drift_action: QualityAction = "off"
    # Backfill of missing trades over REST (live only).
    backfill_limit: int = Field(1000, ge=1, le=1000)            # Binance's aggTrades maximum


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
    web: WebCfg = WebCfg()               # operator's view (daemon/operator)
    alerts: AlertsCfg = AlertsCfg()
    features: FeaturesCfg = FeaturesCfg()    # streaming features (daemon/features)
    quality: QualityCfg = QualityCfg()       # data quality and drift (daemon/quality)
    analytics: AnalyticsCfg = AnalyticsCfg()   # heavy-analytics jobs (daemon/analytics/runner.py)
    execution: ExecutionCfg = ExecutionCfg()   # parent orders, flatten (daemon/engine/executor.py)
    # Keyed by instrument id ([instruments."usdm:BTCUSDT"] for another market's).
    instruments: dict[str, InstrumentCfg] = Field(
        default_factory=lambda: default_instruments("spot"))

    @model_validator(mode="before")
    @classmethod
    def _instrument_defaults(cls, data: Any) -> Any:
        # Without [instruments] tables, the defaults named for this file's exchange (a
        # plain BTCUSDT means a COIN-M instrument when exchange = "coinm").
        if isinstance(data, dict) and "instruments" not in data:
            market = data.get("market")
            ex = market.get("exchange", "spot") if isinstance(market, dict) else "spot"
            if ex in MARKETS:
                data = {**data, "instruments": default_instruments(ex)}
        return data


# -- environment overrides ------------------------------------------------------------------
# Tables keyed by exchange symbol: an override's path segment below them is the symbol,
# which is upper case (BOT4__INSTRUMENTS__BTCUSDT__TICK_SIZE -> [instruments.BTCUSDT]).
_SYMBOL_TABLES = {("instruments",)}


def _env_symbol(p: str) -> str:
    """An instrument id as it appears in a variable name: the symbol upper case, a market
    prefix lower case (USDM:BTCUSDT -> usdm:BTCUSDT)."""
    market, sep, symbol = p.rpartition(":")
    return f"{market.lower()}{sep}{symbol.upper()}"


def _env_value(name: str, loc: tuple[str, ...], text: str) -> Any:
    """An override's text read as a TOML value when it is one (42, true, "x", [..]),
    else as a bare string, so `BOT4__MARKET__SOURCE=replay` needs no quotes."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise ConfigError(f"environment {name}: {_key_name(loc)}: arrays or tables nested "
                          f"too deeply to parse") from None
    except ValueError:   # an integer of more than 4300 digits
        raise ConfigError(f"environment {name}: {_key_name(loc)}: number too long (more "
                          f"than 4300 digits)") from None
    # "1\nx = 2" parses as two keys: that is not one value, so it stays a string.
    return parsed["v"] if set(parsed) == {"v"} else text


def _apply_env(data: dict, environ: dict[str, str]
               ) -> tuple[dict[tuple, str], dict[tuple, str]]:
    """Merge overrides into `data`; return which key path came from which variable, and
    which tables an override created (a key missing there is the variable's fault too)."""
    origin: dict[tuple, str] = {}
    created: dict[tuple, str] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        raw = name[len(ENV_PREFIX):].split("__")
        if len(raw) < 2 or not all(raw):
            raise ConfigError(f"environment {name}: expected BOT4__SECTION__KEY")
        parts: list[str] = []
        for p in raw:
            parts.append(_env_symbol(p) if tuple(parts) in _SYMBOL_TABLES else p.lower())
        node = data
        for i, p in enumerate(parts[:-1]):
            if p not in node:
                node[p] = {}
                created.setdefault(tuple(parts[:i + 1]), name)
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"environment {name}: {_key_name(tuple(parts[:i + 1]))} "
                                  f"is a value, not a table")
        node[parts[-1]] = _env_value(name, tuple(parts), text)
        origin[tuple(parts)] = name
    return origin, created


def _key_name(loc: tuple) -> str:
    # An instrument id with a market prefix is a quoted TOML key: [instruments."usdm:X"].
    parts = [f'"{p}"' if ":" in str(p) else str(p) for p in loc]
    if len(parts) >= 2:
        return f"[{'.'.join(parts[:-1])}] {parts[-1]}"
    return parts[0] if parts else "(top level)"


# -- finding keys in the file's text ----------------------------------------------------------
# tomllib reports positions only for syntax errors. For everything else the line is found
# here, best effort: plain `[table]` headers and `key = value` lines (multi-line strings can
# fool it, and then the message names the key without a line).
_KEY_PART = r"(?:[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*')"
_KEY_PATH = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"\s*\[\s*({_KEY_PATH})\s*\]\s*(?:#.*)?$")
_ASSIGN_RE = re.compile(rf"\s*({_KEY_PATH})\s*=")
_LEADING_KEY_RE = re.compile(rf"\s*({_KEY_PATH})(?:\s|=|$)")
# Lines are split on "\n" only, as tomllib counts them (str.splitlines() would also split
# on \f or \u2028 inside a comment and shift every line number after it).


def _split_key(path: str) -> tuple[str, ...]:
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in re.findall(_KEY_PART, path))


def _scan(text: str) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line number, full key path) for every table header and `key =` line."""
    table: tuple[str, ...] = ()
    for n, line in enumerate(text.split("\n"), 1):
        head = _HEADER_RE.match(line)
        if head:
            table = _split_key(head.group(1))
            yield n, table
            continue
        m = _ASSIGN_RE.match(line)
        if m:
            yield n, table + _split_key(m.group(1))


def _find_line(text: str | None, loc: tuple) -> int | None:
    """The line that sets `loc`, else the line of the closest enclosing table or key."""
    if not text:
        return None
    loc = tuple(str(p) for p in loc)
    best: tuple[int, int] | None = None          # (prefix length, line)
    for n, path in _scan(text):
        if path == loc:
            return n
        if path and loc[:len(path)] == path and (best is None or len(path) > best[0]):
            best = (len(path), n)
    return best[1] if best else None


def _key_at(text: str, line: int) -> tuple[str, ...] | None:
    """The key path written on `line` (a header's table, or `key` with the table it is
    in), for naming the key in a syntax error."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    table: tuple[str, ...] = ()
    for n, path in _scan("\n".join(lines[:line - 1])):
        if _HEADER_RE.match(lines[n - 1]):
            table = path
    here = lines[line - 1]
    head = _HEADER_RE.match(here)
    if head:
        return _split_key(head.group(1))
    if here.lstrip().startswith("["):
        return None
    m = _LEADING_KEY_RE.match(here)
    return table + _split_key(m.group(1)) if m else None


def _line_text(text: str, line: int) -> str:
    lines = text.split("\n")
    s = lines[line - 1].strip() if 1 <= line <= len(lines) else ""
    return s if len(s) <= 60 else s[:57] + "..."


def _deep_line(text: str, limit: int = 100) -> int | None:
    """The first line where arrays/inline tables are nested deeper than `limit`."""
    depth = 0
    for n, line in enumerate(text.split("\n"), 1):
        quote, i = "", 0
        while i < len(line):
            c = line[i]
            if quote:
                if c == "\\" and quote == '"':
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c == "#":
                break
            elif c in "[{":
                depth += 1
                if depth > limit:
                    return n
            elif c in "]}":
                depth = max(0, depth - 1)
            i += 1
    return None


# -- reading the file ----------------------------------------------------------------------------
def _where_line(where: str, line: int | None) -> str:
    return f"{where}, line {line}" if line else where


def _at_line(where: str, text: str, line: int | None, problem: str, quote: bool = True
             ) -> ConfigError:
    """A problem on a line: name the key written there, else quote the line."""
    key = _key_at(text, line) if line else None
    if key:
        return ConfigError(f"{_where_line(where, line)}: {_key_name(key)}: {problem}")
    quoted = ""
    if quote and line and _line_text(text, line):
        quoted = f": {_line_text(text, line)!r}"
    return ConfigError(f"{_where_line(where, line)}: {problem}{quoted}")


def _toml_error(where: str, text: str, e: tomllib.TOMLDecodeError) -> ConfigError:
    m = re.match(r"(.*?)\s*\(at line (\d+), column (\d+)\)$", str(e), re.S)
    if not m:
        return ConfigError(f"{where}: not valid TOML: {e}")
    msg, line = m.group(1), int(m.group(2))
    if msg.startswith("Cannot overwrite a value"):
        key = _key_at(text, line)
        first = None
        if key:
            first = next((n for n, path in _scan(text) if path == key and n < line), None)
        again = f"first set on line {first}" if first else "set twice"
        return _at_line(where, text, line, f"duplicate key ({again})")
    declared = re.match(r"Cannot declare \((.*)\) twice", msg)
    if declared:
        key = _key_at(text, line)
        if key is None:
            try:
                key = tuple(ast.literal_eval(f"({declared.group(1)})"))
            except (ValueError, SyntaxError):
                key = None
        first = next((n for n, path in _scan(text) if path == key and n < line), None)
        name = f"[{'.'.join(key)}]" if key else declared.group(1)
        again = f" (first on line {first})" if first else ""
        return ConfigError(f"{where}, line {line}: {name}: table declared twice{again}")
    if msg == "Illegal character '\\n'":
        msg = "string not closed on this line"
    return _at_line(where, text, line, f"not valid TOML: {msg[:1].lower()}{msg[1:]}")


def _read(path: str | os.PathLike) -> tuple[str, dict]:
    """The file's text and its parsed TOML, or a ConfigError saying why not."""
    where = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except PermissionError:
        raise ConfigError(f"{where}: permission denied") from None
    except (OSError, ValueError) as e:   # ENAMETOOLONG, ELOOP, a NUL in the path, ...
        raise ConfigError(f"{where}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where}: is a directory, not a config file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO would block the daemon until a writer came; a device could never end.
        raise ConfigError(f"{where}: not a regular file (a FIFO, socket or device)")
    if st.st_size > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: too large for a config file ({st.st_size} bytes, at most "
                          f"{MAX_FILE_BYTES}): the wrong file?")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise ConfigError(f"{where}: permission denied") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: too large for a config file (more than {MAX_FILE_BYTES} "
                          f"bytes): the wrong file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        lossy = raw.decode("utf-8", "replace")
        raise _at_line(where, lossy, line,
                       f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col}); save "
                       f"the file as UTF-8", quote=False) from None
    text = text.removeprefix("\ufeff")   # a BOM from a Windows editor is harmless
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _toml_error(where, text, e) from None
    except RecursionError:
        raise _at_line(where, text, _deep_line(text),
                       "arrays or tables nested too deeply to parse") from None
    except ValueError as e:   # an integer of more than 4300 digits (int() refuses it)
        line = next((n for n, s in enumerate(text.split("\n"), 1)
                     if re.search(r"\d{4300}", s)), None)
        raise _at_line(where, text, line, "number too long (more than 4300 digits)"
                       ) from None
    except Exception as e:  # noqa: BLE001 - whatever else the parser trips on is still a bad file
        raise ConfigError(f"{where}: not valid TOML ({type(e).__name__}: {e})") from None
    if not _has_setting(data):
        if not text.strip():
            raise ConfigError(f"{where}: the file is empty; refusing to run on built-in "
                              f"defaults (a truncated or wrong file?): start from "
                              f"etc/bot4/bot4.toml")
        raise ConfigError(f"{where}: no settings in the file (only comments or empty "
                          f"tables); refusing to run on built-in defaults: start from "
                          f"etc/bot4/bot4.toml")
    return text, data


def _has_setting(data: dict) -> bool:
    return any(not isinstance(v, dict) or _has_setting(v) for v in data.values())


# -- validation ----------------------------------------------------------------------------------
class _Problem(Exception):
    """A meaning check failed: `candidates` are the keys involved, most specific first;
    the message names the one the operator most likely set (see `_blame`)."""

    def __init__(self, candidates: list[tuple[str, ...]], msg: str) -> None:
        super().__init__(msg)
        self.candidates, self.msg = candidates, msg


def _value(cfg: Config, loc: tuple[str, ...]) -> Any:
    node: Any = cfg
    for p in loc:
        node = node.get(p) if isinstance(node, dict) else getattr(node, p, None)
    return node


def _default(loc: tuple[str, ...]) -> Any:
    if loc[0] == "instruments":
        sym = loc[1].rpartition(":")[2] if len(loc) > 2 else ""
        inst = _DEFAULT_INSTRUMENTS.get(sym) or _DEFAULT_INVERSE.get(sym)
        return getattr(inst, loc[2]) if inst is not None else None
    field = Config.model_fields.get(loc[0])
    node = field.default if field is not None else None
    for p in loc[1:]:   # nested tables too: [strategy.trend] fast is 3 deep
        node = node.get(p) if isinstance(node, dict) else getattr(node, p, None)
    return node


def _source(loc: tuple, origin: dict[tuple, str]) -> str | None:
    """The variable that set `loc`, or the table it is in, or a table under it."""
    loc = tuple(str(p) for p in loc)
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return next((v for k, v in origin.items() if k[:len(loc)] == loc), None)


def _blame(cfg: Config, candidates: list[tuple[str, ...]], origin: dict[tuple, str]
           ) -> tuple[str, ...]:
    """Of the keys in a contradiction, the one set from the environment, else the one that
    differs from its default (the one just edited), else the first."""
    def score(loc: tuple[str, ...]) -> int:
        if any(loc[:n] in origin for n in range(len(loc), 0, -1)):
            return 2
        return 1 if _value(cfg, loc) != _default(loc) else 0
    return max(candidates, key=score)   # max keeps the first of equal scores


def _meaning(cfg: Config) -> None:
    """Checks across keys; raises _Problem. Single-key ranges live on the fields."""
    exchange = cfg.market.exchange
    for sym, inst in cfg.instruments.items():
        try:
            market, _ = parse_id(sym, exchange)
        except ValueError as e:
            raise _Problem([("instruments", sym)], str(e)) from None
        # COIN-M contracts settle in coin (inverse); spot and USD-M in quote (linear).
        if market == "coinm" and inst.kind != "inverse":
            raise _Problem([("instruments", sym, "kind")],
                           f"{sym} is a COIN-M instrument: it needs kind = \"inverse\" and its "
                           f"contract_size (USD per contract, e.g. 100 for BTCUSD_PERP)")
        if market != "coinm" and inst.kind == "inverse":
            raise _Problem([("instruments", sym, "kind")],
                           f"{sym} is a {market} instrument: kind = \"inverse\" is only for "
                           f"COIN-M (coinm) instruments")
    for sym in cfg.market.symbols:
        if sym not in cfg.instruments:
            key = f'"{sym}"' if ":" in sym else sym   # TOML needs the quotes around a ":"
            raise _Problem([("market", "symbols")], f"{sym} has no [instruments.{key}] table "
                           f"(tick_size, lot_size, min_notional)")

    # GPIO: every device in use on its own pin (LED pins only count when an LED is wired).
    g = cfg.gpio
    pins = [("estop_pin", g.estop_pin)]
    if g.led:
        pins += [("led_red", g.led_red), ("led_green", g.led_green), ("led_blue", g.led_blue)]
    for i, (a, pa) in enumerate(pins):
        for b, pb in pins[i + 1:]:
            if pa == pb:
                raise _Problem([("gpio", a), ("gpio", b)],
                               f"GPIO{pa} is used by both {a} and {b}; every device needs "
                               f"its own pin")

    # Watchdog: every heartbeat is looked at by one periodic check, which also beats the
    # event loop's own heartbeat. Fewer than 4 checks per deadline means a false "loop
    # stalled" halt (check_interval_ms = 5000 with a 2 s deadline) or stalls seen late.
    w = cfg.watchdog
    for name in ("loop_deadline_s", "feed_deadline_s", "strategy_deadline_s"):
        deadline = getattr(w, name)
        if w.check_interval_ms * 4 > deadline * 1000:
            raise _Problem([("watchdog", "check_interval_ms"), ("watchdog", name)],
                           f"check_interval_ms = {w.check_interval_ms:g} is more than a "
                           f"quarter of {name} = {deadline:g} (at most "
                           f"{deadline * 250:g} ms): the watchdog must check at least 4 "
                           f"times per deadline")
    m = cfg.market
    if m.source == "binance" and w.feed_deadline_s < 1.5 * m.stale_after_s:
        raise _Problem([("watchdog", "feed_deadline_s"), ("market", "stale_after_s")],
                       f"with source = \"binance\", feed_deadline_s = {w.feed_deadline_s:g} "
                       f"must be at least 1.5 x stale_after_s = {m.stale_after_s:g}: a silent "
                       f"connection is dropped after stale_after_s and needs time to "
                       f"reconnect before the watchdog halts trading")
    _live_markets(m)
    if m.source == "synthetic" and 4 / m.synthetic_rate_hz > w.feed_deadline_s:
        raise _Problem([("market", "synthetic_rate_hz"), ("watchdog", "feed_deadline_s")],
                       f"synthetic_rate_hz = {m.synthetic_rate_hz:g} steps less than 4 times "
                       f"per feed_deadline_s = {w.feed_deadline_s:g}: the feed would look "
                       f"stalled")

    # Strategy against risk and the instruments it trades: a config on which every single
    # order is refused is a config error, not a quiet day.
    s, r = cfg.strategy, cfg.risk
    _risk_meaning(r)
    if s.name == "basis":
        _basis_meaning(cfg)
    for sym in s.symbols:
        if sym not in m.symbols:
            raise _Problem([("strategy", "symbols"), ("market", "symbols")],
                           f"strategy symbol {sym} is not in [market] symbols "
                           f"({', '.join(m.symbols)}): there is no market data for it")
    for sym in s.order_notional_per_symbol:
        if sym not in m.symbols:
            raise _Problem([("strategy", "order_notional_per_symbol", sym)],
                           f"{sym} is not in [market] symbols ({', '.join(m.symbols)})")
    traded = set(s.traded(m.symbols))
    # Directional bar strategies (daemon/strategy/trend.py, mean_reversion.py).
    tr, mr = s.trend, s.mean_reversion
    if tr.fast >= tr.slow:
        raise _Problem([("strategy", "trend", "fast"), ("strategy", "trend", "slow")],
                       f"fast = {tr.fast} must be below slow = {tr.slow} (the fast EMA is "
                       f"the one that crosses the slow one)")
    if mr.exit_z >= mr.entry_z:
        raise _Problem([("strategy", "mean_reversion", "exit_z"),
                        ("strategy", "mean_reversion", "entry_z")],
                       f"exit_z = {mr.exit_z:g} must be below entry_z = {mr.entry_z:g} (the "
                       f"exit lies closer to the mean than the entry)")
    if mr.min_vol_bps >= mr.max_vol_bps:
        raise _Problem([("strategy", "mean_reversion", "min_vol_bps"),
                        ("strategy", "mean_reversion", "max_vol_bps")],
                       f"min_vol_bps = {mr.min_vol_bps:g} must be below max_vol_bps = "
                       f"{mr.max_vol_bps:g}: no volatility could pass")
    # A directional strategy that may short needs instruments that can be sold short:
    # spot cannot (trend / mean_reversion are long-only there).
    table = getattr(s, s.name, None)
    if getattr(table, "allow_short", False):
        spot = [x for x in sorted(traded) if parse_id(x, exchange)[0] == "spot"]
        if spot:
            raise _Problem([("strategy", s.name, "allow_short")],
                           f"allow_short = true but {', '.join(spot)} is spot, which cannot "
                           f"be sold short: trade USD-M/COIN-M instruments or keep it false")
    for sym in m.symbols:
        inst = cfg.instruments[sym]
        if r.max_order_notional < inst.min_notional:
            raise _Problem([("risk", "max_order_notional"),
                            ("instruments", sym, "min_notional")],
                           f"max_order_notional = {r.max_order_notional} is below {sym} "
                           f"min_notional = {inst.min_notional}: no order could pass both")
    for sym in m.symbols:
        inst = cfg.instruments[sym]
        size = s.notional(sym)
        where = (("strategy", "order_notional_per_symbol", sym)
                 if sym in s.order_notional_per_symbol else ("strategy", "order_notional"))
        if sym in traded and size < inst.min_notional:
            raise _Problem([where, ("instruments", sym, "min_notional")],
                           f"order size {size} for {sym} is below its min_notional = "
                           f"{inst.min_notional}: every order would be refused")
        if sym in traded and size > r.max_order_notional:
            raise _Problem([where, ("risk", "max_order_notional")],
                           f"order size {size} for {sym} is above max_order_notional = "
                           f"{r.max_order_notional}: risk would refuse every order")

    # Operator's view: beyond loopback, the page (and its halt button) needs a credential;
    # TLS needs both halves.
    web = cfg.web
    if web.enabled and not web.loopback() and not (web.token_credential or web.token_file):
        raise _Problem([("web", "listen"), ("web", "token_credential")],
                       f"listen = \"{web.listen}\" is beyond loopback: set token_credential "
                       f"(a systemd credential) or token_file, or listen on 127.0.0.1")
    if bool(web.tls_cert) != bool(web.tls_key):
        raise _Problem([("web", "tls_cert"), ("web", "tls_key")],
                       "tls_cert and tls_key go together (both PEM files, or both \"\")")

    # Breakers: bounds that must agree with each other, and probes that can pass at all.
    b = cfg.breakers
    if not b.error_rate_floor <= b.error_rate_max <= b.error_rate_ceiling:
        raise _Problem([("breakers", "error_rate_max"), ("breakers", "error_rate_floor"),
                        ("breakers", "error_rate_ceiling")],
                       f"the adaptive error-rate threshold needs error_rate_floor <= "
                       f"error_rate_max <= error_rate_ceiling, got {b.error_rate_floor:g} / "
                       f"{b.error_rate_max:g} / {b.error_rate_ceiling:g}")
    if b.cooldown_s > b.cooldown_max_s:
        raise _Problem([("breakers", "cooldown_max_s"), ("breakers", "cooldown_s")],
                       f"cooldown_max_s = {b.cooldown_max_s:g} is below cooldown_s = "
                       f"{b.cooldown_s:g}: the cooldown could never start")
    for warm, window in (("latency_warmup", "latency_window"),
                         ("volume_warmup", "volume_window")):
        if getattr(b, warm) > getattr(b, window):
            raise _Problem([("breakers", warm), ("breakers", window)],
                           f"{warm} = {getattr(b, warm)} is more than {window} = "
                           f"{getattr(b, window)}: the detector would never warm up")
    for sym in m.symbols:
        inst = cfg.instruments[sym]
        if b.probe_max_notional < inst.min_notional:
            raise _Problem([("breakers", "probe_max_notional"),
                            ("instruments", sym, "min_notional")],
                           f"probe_max_notional = {b.probe_max_notional} is below {sym} "
                           f"min_notional = {inst.min_notional}: no probe order could be "
                           f"sent and a half-open breaker would never close")

    # Features: the MACD's fast EMA must be faster; horizons distinct and positive.
    f = cfg.features
    if f.macd_fast >= f.macd_slow:
        raise _Problem([("features", "macd_fast"), ("features", "macd_slow")],
                       f"macd_fast = {f.macd_fast} must be below macd_slow = {f.macd_slow}")
    if any(not h > 0 for h in f.adverse_horizons_s) \
            or len(set(f.adverse_horizons_s)) != len(f.adverse_horizons_s):
        raise _Problem([("features", "adverse_horizons_s")],
                       f"adverse_horizons_s = {f.adverse_horizons_s} must be distinct "
                       f"positive seconds")
    if f.burst_max_gap_s < f.burst_bucket_s:
        raise _Problem([("features", "burst_max_gap_s"), ("features", "burst_bucket_s")],
                       f"burst_max_gap_s = {f.burst_max_gap_s:g} is below burst_bucket_s = "
                       f"{f.burst_bucket_s:g}: every bucket would look like a feed gap")

    # Quality: the breaker threshold sits below the reducing one; the live window fits.
    q = cfg.quality
    if q.score_breaker_below >= q.score_min:
        raise _Problem([("quality", "score_breaker_below"), ("quality", "score_min")],
                       f"score_breaker_below = {q.score_breaker_below:g} must be below "
                       f"score_min = {q.score_min:g}: the breaker is the worse outcome")
    if q.drift_live > q.drift_reference:
        raise _Problem([("quality", "drift_live"), ("quality", "drift_reference")],
                       f"drift_live = {q.drift_live} is more than drift_reference = "
                       f"{q.drift_reference}: the reference would be noisier than the window "
                       f"it judges")
    if q.drift_bins * 5 > q.drift_live:
        raise _Problem([("quality", "drift_bins"), ("quality", "drift_live")],
                       f"drift_bins = {q.drift_bins} needs drift_live >= 5 per bin "
                       f"({q.drift_bins * 5}), got {q.drift_live}")

    # Belt and braces for sections added later without _Section's settings.
    for loc, v in _leaves(cfg):
        if isinstance(v, float) and not math.isfinite(v):
            raise _Problem([loc], f"must be a finite number (got {v!r})")


def _risk_meaning(r: RiskCfg) -> None:
    """[risk] keys against each other (daemon/risk/)."""
    if r.max_open_orders_per_symbol > r.max_open_orders:
        raise _Problem([("risk", "max_open_orders_per_symbol"), ("risk", "max_open_orders")],
                       f"max_open_orders_per_symbol = {r.max_open_orders_per_symbol} is above "
                       f"max_open_orders = {r.max_open_orders}: it could never apply")
    for name in ("daily_loss_limit", "max_drawdown"):
        if getattr(r, name) > r.capital:
            raise _Problem([("risk", name), ("risk", "capital")],
                           f"{name} = {getattr(r, name)} is above capital = {r.capital}: "
                           f"the money would be gone before the limit acts")
    if r.var_limit_level not in r.var_levels:
        raise _Problem([("risk", "var_limit_level"), ("risk", "var_levels")],
                       f"var_limit_level = {r.var_limit_level:g} is not one of var_levels = "
                       f"{[float(x) for x in r.var_levels]}")
    # At least 5 losses beyond the highest level in a full window, or the historical
    # tail (and its CVaR) rests on one or two samples.
    top = max(r.var_levels)
    need = math.ceil(5 / (1 - top) - 1e-9)
    if r.var_window < need:
        raise _Problem([("risk", "var_window"), ("risk", "var_levels")],
                       f"var_window = {r.var_window} keeps fewer than 5 samples beyond the "
                       f"{top:g} level: at least {need}")
    if r.var_action != "off" and r.max_var == 0:
        raise _Problem([("risk", "var_action"), ("risk", "max_var")],
                       f"var_action = \"{r.var_action}\" needs max_var > 0 (0 = off)")
    if r.stress_action != "off" and r.max_stress_loss == 0:
        raise _Problem([("risk", "stress_action"), ("risk", "max_stress_loss")],
                       f"stress_action = \"{r.stress_action}\" needs max_stress_loss > 0 "
                       f"(0 = off)")


def _basis_meaning(cfg: Config) -> None:
    """[strategy.basis] against [market] and [instruments]: a spot and a USD-M instrument
    of the configured markets, traded by the strategy, with lots that allow equal
    quantities on both legs."""
    b, m, s = cfg.strategy.basis, cfg.market, cfg.strategy
    for key, want in (("spot_symbol", "spot"), ("perp_symbol", "usdm")):
        sym = getattr(b, key)
        if sym not in m.symbols:
            raise _Problem([("strategy", "basis", key)],
                           f"{sym} is not in [market] symbols ({', '.join(m.symbols)}): "
                           f"there is no market data for it")
        market = parse_id(sym, m.exchange)[0]
        if market != want:
            raise _Problem([("strategy", "basis", key)],
                           f"{sym} is a {market} instrument; {key} must be a {want} one "
                           f"(the two legs trade different markets)")
        if s.symbols and sym not in s.symbols:
            raise _Problem([("strategy", "symbols"), ("strategy", "basis", key)],
                           f"{sym} ({key}) is not in [strategy] symbols: the strategy "
                           f"would not hear its book")
    lots = sorted((cfg.instruments[b.spot_symbol].lot_size,
                   cfg.instruments[b.perp_symbol].lot_size))
    fine, coarse = lots
    if coarse % fine != 0:
        raise _Problem([("instruments", b.perp_symbol, "lot_size"),
                        ("instruments", b.spot_symbol, "lot_size")],
                       f"lot sizes {lots[0]} and {lots[1]} of {b.spot_symbol} and "
                       f"{b.perp_symbol}: the coarser must be a multiple of the finer, or "
                       f"the two legs cannot trade equal quantities")
    if b.max_position < coarse:
        raise _Problem([("strategy", "basis", "max_position")],
                       f"max_position = {b.max_position} is below one lot ({coarse}) of "
                       f"the coarser leg: no pair could be entered")


def _leaves(node: Any, loc: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _leaves(getattr(node, name), loc + (name,))
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, loc + (str(k),))
    else:
        yield loc, node


def _pydantic_msg(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "finite_number":
        msg = "must be a finite number"
    elif err["type"] in ("model_type", "dict_type"):
        msg = "must be a table"
    if "input" in err and not isinstance(err["input"], dict):
        got = repr(err["input"])
        msg += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
    return msg


def _validate(data: dict, origin: dict[tuple, str], where: str, text: str | None,
              created: dict[tuple, str] | None = None) -> Config:
    def prefix(loc: tuple) -> str:
        src = _source(loc, {**(created or {}), **origin})
        if src:
            return f"environment {src}"
        return _where_line(where, _find_line(text, loc))

    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        errs = e.errors()
        loc = tuple(str(p) for p in errs[0]["loc"])
        more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
        raise ConfigError(f"{prefix(loc)}: {_key_name(loc)}: {_pydantic_msg(errs[0])}{more}"
                          ) from None
    try:
        _meaning(cfg)
    except _Problem as p:
        loc = _blame(cfg, p.candidates, origin)
        raise ConfigError(f"{prefix(loc)}: {_key_name(loc)}: {p.msg}") from None
    return cfg


def load(path: str | os.PathLike | None, environ: dict[str, str] | None = None) -> Config:
    """Read, merge and validate. Raises ConfigError (and nothing else) naming the file and
    line, or the environment variable, and the key."""
    environ = dict(os.environ if environ is None else environ)
    data: dict = {}
    text = None
    where = "defaults"
    if path is not None:
        where = str(path)
        text, data = _read(path)
    origin, created = _apply_env(data, environ)
    return _validate(data, origin, where, text, created)


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy with some keys replaced (used for command-line flags), re-validated."""
    data = cfg.model_dump()
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    return _validate(data, {}, "command line", None)


def fingerprint(cfg: Config, path: str | os.PathLike | None) -> dict[str, str]:
    """What the journal's audit trail keeps of a loaded config: the sha256 of the file as
    read (None when there was no file) and of the effective settings (file + environment
    overrides + flags), so two runs can be told apart even when only the environment
    changed."""
    file_hash = None
    if path is not None:
        try:
            with open(path, "rb") as f:
                file_hash = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:   # read moments ago; gone now is worth a note, not a stop
            file_hash = f"unreadable: {e}"
    effective = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()
    return {"path": None if path is None else str(path), "file_sha256": file_hash,
            "effective_sha256": effective}
