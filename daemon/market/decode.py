"""Turns raw Binance messages (bytes from the socket or a capture line) into typed events.

Handles the combined-stream wrapper ``{"stream": ..., "data": ...}`` for diff depth
(spot ``@depth``/``@depth@100ms``, futures ``@depth@0ms`` with ``pu``), ``@trade``,
``@aggTrade`` and ``@bookTicker`` (spot has no "e" field, futures has "e":"bookTicker"),
plus REST depth snapshots (a line without "stream"; its symbol is the decoder's
``default_symbol`` or, failing that, the symbol of the last stream message seen).

``prefix`` (default "") is put in front of every event's symbol, so instruments of a second
market can share one engine: ``Decoder(prefix="usdm:")`` gives "usdm:BTCUSDT".
``default_symbol`` and ``last_symbol`` stay the exchange's own symbols (no prefix), so a
caller that names the symbol of the next REST snapshot keeps setting ``last_symbol`` to it.

Speed: decoding is the replay's largest cost after gzip (orjson itself is about a quarter
of it; the rest is turning decimal strings into floats and building the events). A
bookTicker fast path that recognises the line with one regular expression and parses only
its five numbers was measured (issue 9) at 3-5% faster on bookTicker lines and no faster
over whole captures (the expression costs about what orjson does, and the float
conversions are the same), so it is not here: repeated backtests skip decoding altogether
through `daemon.market.cache`.

This module never touches the order book, the network or a file, and `Decoder.decode`
never raises: bad JSON, unknown streams and missing fields are counted in
``decoder.stats``, logged (rate-limited) and answered with None.
"""
from __future__ import annotations

import logging

import orjson

from daemon.market.events import DepthDiff, DepthSnapshot, MarketEvent, Quote, Trade
from daemon.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

# Stream kinds, as small ints so dispatch is a couple of integer compares.
_QUOTE, _TRADE, _DEPTH, _AGG, _UNKNOWN = 0, 1, 2, 3, 4
_KINDS = {"bookTicker": _QUOTE, "trade": _TRADE, "depth": _DEPTH, "aggTrade": _AGG}


def _levels(raw_levels: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in raw_levels]


class Decoder:
    """Stateless apart from counters, the stream-name cache and the last symbol seen.

    ``stats`` counts decoded events (quotes, trades, agg_trades, depth, snapshots) and every
    kind of rejection: bad_json, not_object, unknown_stream, missing_field, no_symbol,
    control (subscribe acks), error_message, unknown_message, non_market_trade.
    """

    def __init__(self, default_symbol: str | None = None, prefix: str = "") -> None:
        self.default_symbol = default_symbol.upper() if default_symbol else None
        self.prefix = prefix
        self.last_symbol: str | None = None   # the exchange's symbol, without the prefix
        self.stats: dict[str, int] = dict.fromkeys(
            ("quotes", "trades", "agg_trades", "depth", "snapshots", "bad_json", "not_object",
             "unknown_stream", "missing_field", "no_symbol", "control", "error_message",
             "unknown_message", "non_market_trade"), 0)
        # stream name -> (kind, prefix + SYMBOL, SYMBOL); caching means one dict lookup per
        # message instead of string parsing, and every event of a stream shares one symbol
        # str object.
        self._streams: dict[str, tuple[int, str, str]] = {}
        self._warn = RateLimitedLog(log)

    def decode(self, recv_ns: int, raw: bytes) -> MarketEvent | None:
        """One message -> its event, or None (counted) if it is not a usable market event."""
        try:
            obj = _loads(raw)
        except _JSONDecodeError as e:
            return self._reject("bad_json", f"{e}: {raw[:120]!r}")
        try:
            stream = obj.get("stream")
        except AttributeError:
            return self._reject("not_object", repr(raw[:120]))
        try:
            if stream is None:
                return self._non_stream(recv_ns, obj, raw)
            entry = self._streams.get(stream)
            if entry is None:
                entry = self._learn(stream)
            kind, symbol, self.last_symbol = entry
            d = obj["data"]
            if kind == _QUOTE:
                ev: MarketEvent = Quote(symbol, recv_ns, d["u"], float(d["b"]), float(d["B"]),
                                        float(d["a"]), float(d["A"]))
                # Counted after construction: a message that fails half-way is a rejection.
                self.stats["quotes"] += 1
                return ev
            if kind == _TRADE:
                # Futures tag each print: only "MARKET" trades are order-book executions;
                # insurance-fund/ADL prints would mislead bars and fill models.
                x = d.get("X")
                if x is not None and x != "MARKET":
                    self.stats["non_market_trade"] += 1
                    return None
                ev = Trade(symbol, recv_ns, d["T"], d["t"], float(d["p"]), float(d["q"]), d["m"])
                self.stats["trades"] += 1
                return ev
            if kind == _DEPTH:
                ev = DepthDiff(symbol, recv_ns, d["U"], d["u"], d.get("pu"),
                               [(float(p), float(q)) for p, q in d["b"]],
                               [(float(p), float(q)) for p, q in d["a"]])
                self.stats["depth"] += 1
                return ev
            if kind == _AGG:
                ev = Trade(symbol, recv_ns, d["T"], d["a"], float(d["p"]), float(d["q"]), d["m"])
                self.stats["agg_trades"] += 1
                return ev
            return self._reject("unknown_stream", stream)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            return self._reject("missing_field", f"{type(e).__name__} {e}: {raw[:120]!r}")

    def _learn(self, stream: str) -> tuple[int, str, str]:
        # "btcusdt@depth@100ms" -> ("depth", "BTCUSDT"). "depth5"/"depth20" (partial book)
        # have a different payload and are not diffs, so they stay unknown.
        sym, _, rest = stream.partition("@")
        kind = _KINDS.get(rest.partition("@")[0], _UNKNOWN) if sym else _UNKNOWN
        bare = sym.upper()
        entry = (kind, self.prefix + bare, bare)
        self._streams[stream] = entry
        return entry

    def _non_stream(self, recv_ns: int, obj: dict, raw: bytes) -> MarketEvent | None:
        if "lastUpdateId" in obj:
            symbol = self.default_symbol or self.last_symbol
            if symbol is None:
                return self._reject("no_symbol", "REST snapshot before any stream message "
                                    "and no default_symbol")
            snap = DepthSnapshot(self.prefix + symbol, recv_ns, obj["lastUpdateId"],
                                 _levels(obj["bids"]), _levels(obj["asks"]))
            self.stats["snapshots"] += 1
            return snap
        if "result" in obj and "id" in obj:
            # Subscribe/unsubscribe acknowledgement sharing the socket: expected, not a fault.
            self.stats["control"] += 1
            return None
        if "code" in obj and "msg" in obj:
            return self._reject("error_message", repr(raw[:200]), logging.ERROR)
        return self._reject("unknown_message", repr(raw[:120]))

    def _reject(self, kind: str, detail: str, level: int = logging.WARNING) -> None:
        self.stats[kind] += 1
        self._warn(kind, self.stats[kind], detail, level)
        return None
