"""Instrument ids: one name per instrument when several markets run on one engine.

An instrument of the `[market] exchange` (the default market) is named by its plain
exchange symbol, so every single-market config keeps working: "BTCUSDT". An instrument of
another market carries that market as a prefix: "usdm:BTCUSDT", "coinm:BTCUSD_PERP". The
markets are "spot" (Binance spot), "usdm" (USD-M perpetuals, linear) and "coinm" (COIN-M
perpetuals, inverse). Writing the default market's prefix is refused (it would give one
instrument two names). Capture files carry their market in the file name prefix
(spot_btcusdt_20240808.gz, usdm_..., coinm_...).

Pure string functions: no I/O beyond looking at a path's name, no config, no state. This
module must never import execution, engine, strategy or risk (it is the market layer).
"""
from __future__ import annotations

import os
import re

MARKETS = ("spot", "usdm", "coinm")
SEP = ":"
# Binance symbols: upper case letters and digits, futures add "_" (BTCUSD_PERP).
_SYMBOL_RE = re.compile(r"[A-Z0-9][A-Z0-9_]{1,31}")
_CAPTURE_RE = re.compile(r"(spot|usdm|coinm)_", re.IGNORECASE)


def _check_market(market: str) -> None:
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}: one of {', '.join(MARKETS)}")


def parse_id(instrument_id: str, default_market: str) -> tuple[str, str]:
    """(market, symbol) of an instrument id. Raises ValueError naming the problem: an
    unknown market prefix, the default market written as a prefix, or a symbol that is
    not an exchange symbol."""
    _check_market(default_market)
    if not isinstance(instrument_id, str):
        raise ValueError(f"instrument id must be a string, got {instrument_id!r}")
    market, sep, symbol = instrument_id.rpartition(SEP)
    if not sep:
        market = default_market
    else:
        if market not in MARKETS:
            raise ValueError(f"{instrument_id!r}: unknown market prefix {market!r} "
                             f"(one of {', '.join(MARKETS)})")
        if market == default_market:
            raise ValueError(f"{instrument_id!r}: {market} is the [market] exchange, so the "
                             f"instrument is named {symbol} (without the prefix)")
    if not _SYMBOL_RE.fullmatch(symbol):
        hint = " (symbols are upper case)" if _SYMBOL_RE.fullmatch(symbol.upper()) else ""
        raise ValueError(f"{instrument_id!r}: {symbol!r} is not an exchange symbol like "
                         f"BTCUSDT{hint}")
    return market, symbol


def make_id(market: str, symbol: str, default_market: str) -> str:
    """The id of `symbol` on `market`: the bare symbol on the default market, else
    "<market>:<symbol>". The inverse of parse_id."""
    _check_market(market)
    _check_market(default_market)
    if not _SYMBOL_RE.fullmatch(symbol):
        raise ValueError(f"{symbol!r} is not an exchange symbol like BTCUSDT")
    return symbol if market == default_market else f"{market}{SEP}{symbol}"


def prefix_of(market: str, default_market: str) -> str:
    """What a decoder puts before the symbols of `market`'s events: "" on the default
    market, "usdm:" etc. otherwise (so make_id(m, s, d) == prefix_of(m, d) + s)."""
    _check_market(market)
    _check_market(default_market)
    return "" if market == default_market else f"{market}{SEP}"


def market_of_capture(path: str | os.PathLike[str]) -> str | None:
    """The market a capture file was recorded from, by its file name prefix
    (spot_btcusdt_20240808.gz -> "spot"), or None when the name does not say."""
    m = _CAPTURE_RE.match(os.path.basename(os.fspath(path)))
    return m.group(1).lower() if m else None


def captures_by_market(paths: list[str | os.PathLike[str]], default_market: str
                       ) -> list[tuple[str, list[str]]]:
    """Capture files grouped by market, for `capture.merge_records`: [(prefix, paths)],
    markets in the order they first appear, each market's files in the given order (one
    CaptureReader per market reads them one after the other). A file whose name does not
    say its market is the default market's, as every capture was before several markets."""
    _check_market(default_market)
    groups: dict[str, list[str]] = {}
    for p in paths:
        market = market_of_capture(p) or default_market
        groups.setdefault(market, []).append(os.fspath(p))
    return [(prefix_of(m, default_market), ps) for m, ps in groups.items()]
