"""The built-in strategies by config name, and how each is built from its own table.

`[strategy] name = ...` picks one; `[strategy.<name>]` holds its parameters (validated
by daemon/config.py like every other setting). This module only builds strategies; it
never runs them.
"""
from __future__ import annotations

from typing import Callable

from daemon.config import StrategyCfg
from daemon.strategy.api import Strategy
from daemon.strategy.basis import Basis
from daemon.strategy.market_maker import MarketMaker
from daemon.strategy.mean_reversion import MeanReversion
from daemon.strategy.quoter import Quoter
from daemon.strategy.trend import Trend

# name -> (class, the parameter table of StrategyCfg it reads)
BUILTIN: dict[str, tuple[type[Strategy], Callable[[StrategyCfg], object]]] = {
    "quoter": (Quoter, lambda c: c.quoter),
    "basis": (Basis, lambda c: c.basis),
    "trend": (Trend, lambda c: c.trend),
    "mean_reversion": (MeanReversion, lambda c: c.mean_reversion),
    "market_maker": (MarketMaker, lambda c: c.market_maker),
}


def build(cfg: StrategyCfg, market_symbols: list[str]) -> Strategy:
    try:
        cls, params = BUILTIN[cfg.name]
    except KeyError:   # config validation allows only built-in names; this is a bug guard
        raise ValueError(f"unknown strategy {cfg.name!r} (built in: "
                         f"{', '.join(sorted(BUILTIN))})") from None
    return cls(params(cfg), cfg.traded(market_symbols))
