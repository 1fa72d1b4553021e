"""Decoder: every Binance message shape we use, and never raising on junk."""
from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade

NS = 1723161253937085768


def wrap(stream: str, data: dict) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


SPOT_DEPTH = wrap("btcusdt@depth@100ms", {
    "e": "depthUpdate", "E": 1723161255208, "s": "BTCUSDT", "U": 50093239189, "u": 50093239202,
    "b": [["61737.63000000", "0.00000000"], ["61730.17000000", "1.50000000"]],
    "a": [["61837.64000000", "1.54698000"]]})
FUT_DEPTH = wrap("btcusdt@depth@0ms", {
    "e": "depthUpdate", "E": 1723161256299, "T": 1723161256298, "s": "BTCUSDT",
    "U": 5123107832006, "u": 5123107837557, "pu": 5123107831937,
    "b": [["58710.20", "0.014"]], "a": []})
SPOT_TICKER = wrap("ethusdt@bookTicker", {
    "u": 35346513501, "s": "ETHUSDT", "b": "2683.80000000", "B": "3.02920000",
    "a": "2683.81000000", "A": "31.43950000"})
FUT_TICKER = wrap("btcusdt@bookTicker", {
    "e": "bookTicker", "u": 5123107839020, "s": "BTCUSDT", "b": "61800.20", "B": "2.507",
    "a": "61800.30", "A": "2.510", "T": 1723161256313, "E": 1723161256313})
SPOT_TRADE = wrap("btcusdt@trade", {
    "e": "trade", "E": 1723161255210, "s": "BTCUSDT", "t": 3735640187, "p": "61837.63000000",
    "q": "0.00081000", "T": 1723161255209, "m": True, "M": True})
FUT_TRADE = wrap("btcusdt@trade", {
    "e": "trade", "E": 1723161256322, "T": 1723161256322, "s": "BTCUSDT", "t": 5266583935,
    "p": "61800.30", "q": "0.006", "X": "MARKET", "m": False})
AGG_TRADE = wrap("btcusdt@aggTrade", {
    "e": "aggTrade", "E": 1723161256322, "s": "BTCUSDT", "a": 2244201, "p": "61800.30",
    "q": "0.100", "f": 100, "l": 105, "T": 1723161256321, "m": True})
SNAPSHOT = orjson.dumps({"lastUpdateId": 50093239218,
                         "bids": [["61837.63000000", "3.78826000"]],
                         "asks": [["61837.64000000", "1.00000000"]]})


def test_spot_depth_diff() -> None:
    ev = Decoder().decode(NS, SPOT_DEPTH)
    assert ev == DepthDiff("BTCUSDT", NS, 50093239189, 50093239202, None,
                           [(61737.63, 0.0), (61730.17, 1.5)], [(61837.64, 1.54698)])


def test_futures_depth_diff_carries_pu() -> None:
    ev = Decoder().decode(NS, FUT_DEPTH)
    assert isinstance(ev, DepthDiff)
    assert (ev.first_id, ev.last_id, ev.prev_last_id) == (5123107832006, 5123107837557,
                                                          5123107831937)
    assert ev.bids == [(58710.2, 0.014)] and ev.asks == []


def test_spot_and_futures_book_ticker() -> None:
    dec = Decoder()
    assert dec.decode(NS, SPOT_TICKER) == Quote("ETHUSDT", NS, 35346513501, 2683.8, 3.0292,
                                                2683.81, 31.4395)
    assert dec.decode(NS, FUT_TICKER) == Quote("BTCUSDT", NS, 5123107839020, 61800.2, 2.507,
                                               61800.3, 2.51)


def test_trades() -> None:
    dec = Decoder()
    t = dec.decode(NS, SPOT_TRADE)
    assert t == Trade("BTCUSDT", NS, 1723161255209, 3735640187, 61837.63, 0.00081, True)
    assert isinstance(t, Trade) and not t.aggressor_buy
    f = dec.decode(NS, FUT_TRADE)
    assert f == Trade("BTCUSDT", NS, 1723161256322, 5266583935, 61800.3, 0.006, False)
    a = dec.decode(NS, AGG_TRADE)
    assert a == Trade("BTCUSDT", NS, 1723161256321, 2244201, 61800.3, 0.1, True)
    assert dec.stats["trades"] == 2 and dec.stats["agg_trades"] == 1


def test_non_market_futures_trade_is_skipped() -> None:
    dec = Decoder()
    raw = FUT_TRADE.replace(b'"MARKET"', b'"INSURANCE_FUND"')
    assert dec.decode(NS, raw) is None
    assert dec.stats["non_market_trade"] == 1 and dec.stats["trades"] == 0


def test_snapshot_symbol_from_default_or_last_stream() -> None:
    dec = Decoder(default_symbol="ethusdt")
    snap = dec.decode(NS, SNAPSHOT)
    assert snap == DepthSnapshot("ETHUSDT", NS, 50093239218, [(61837.63, 3.78826)],
                                 [(61837.64, 1.0)])
    dec2 = Decoder()
    assert dec2.decode(NS, SNAPSHOT) is None
    assert dec2.stats["no_symbol"] == 1
    dec2.decode(NS, SPOT_TRADE)
    s2 = dec2.decode(NS, SNAPSHOT)
    assert isinstance(s2, DepthSnapshot) and s2.symbol == "BTCUSDT"
    futures_snap = orjson.dumps({"lastUpdateId": 7, "E": 1, "T": 2, "bids": [], "asks": []})
    assert dec2.decode(NS, futures_snap) == DepthSnapshot("BTCUSDT", NS, 7, [], [])


@pytest.mark.parametrize(("raw", "kind"), [
    (b'{"stream":"btcusdt@trade","data":{"e":"trade"', "bad_json"),
    (b"", "bad_json"),
    (b"[1,2,3]", "not_object"),
    (b"42", "not_object"),
    (wrap("btcusdt@kline_1m", {"e": "kline"}), "unknown_stream"),
    (wrap("btcusdt@depth5@100ms", {"lastUpdateId": 1, "bids": [], "asks": []}),
     "unknown_stream"),
    (b'{"stream":"btcusdt@trade"}', "missing_field"),
    (wrap("btcusdt@trade", {"e": "trade", "p": "1"}), "missing_field"),
    (wrap("btcusdt@bookTicker", {"u": 1, "b": "x", "B": "1", "a": "1", "A": "1"}),
     "missing_field"),
    (wrap("btcusdt@depth@100ms", {"U": 1, "u": 2, "b": [["1"]], "a": []}), "missing_field"),
    (b'{"stream":"btcusdt@trade","data":[1]}', "missing_field"),
    (b'{"stream":5,"data":{}}', "missing_field"),
    (b'{"stream":["x"],"data":{}}', "missing_field"),
    (b'{"lastUpdateId":1,"bids":[["1"]],"asks":[]}', "missing_field"),
    (b'{"result":null,"id":1}', "control"),
    (b'{"code":-1121,"msg":"Invalid symbol."}', "error_message"),
    (b'{"hello":"world"}', "unknown_message"),
])
def test_junk_is_counted_not_raised(raw: bytes, kind: str) -> None:
    dec = Decoder(default_symbol="BTCUSDT")
    assert dec.decode(NS, raw) is None
    assert {k: v for k, v in dec.stats.items() if v} == {kind: 1}


def test_rejections_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    dec = Decoder()
    for _ in range(1000):
        dec.decode(NS, b"{broken")
        dec.decode(NS, wrap("btcusdt@kline_1m", {}))
    assert dec.stats["bad_json"] == 1000 and dec.stats["unknown_stream"] == 1000
    assert len(caplog.records) == 2
    assert "bad_json (total 1)" in caplog.text


@pytest.mark.parametrize(("files", "counts"), [
    (["spot_btcusdt_20240808.gz"], (3451, 9757, 28040, 1)),
    (["spot_btcusdt_20240809.gz"], (3044, 10147, 45134, 0)),
    (["spot_ethusdt_20240808.gz"], (3434, 6106, 24077, 1)),
    (["spot_ethusdt_20240809.gz"], (3036, 8409, 34681, 0)),
    (["usdm_btcusdt_20240808.gz"], (6551, 21313, 66089, 1)),
])
def test_shared_captures_decode_completely(binance_dir: Path, files: list[str],
                                           counts: tuple[int, int, int, int]) -> None:
    dec = Decoder()
    by_type: dict[type, int] = {}
    last: dict[type, int] = {}
    for ns, raw in CaptureReader([binance_dir / f for f in files]):
        ev = dec.decode(ns, raw)
        assert ev is not None, raw[:200]
        by_type[type(ev)] = by_type.get(type(ev), 0) + 1
        assert ev.ts_ns == ns
        if isinstance(ev, (DepthDiff, Quote)):
            uid = ev.last_id if isinstance(ev, DepthDiff) else ev.update_id
            assert uid >= last.get(type(ev), 0)   # ids only move forward within a stream
            last[type(ev)] = uid
    depth, trades, quotes, snaps = counts
    assert by_type.get(DepthDiff, 0) == depth
    assert by_type.get(Trade, 0) == trades
    assert by_type.get(Quote, 0) == quotes
    assert by_type.get(DepthSnapshot, 0) == snaps
    assert dec.stats["depth"] == depth and dec.stats["quotes"] == quotes
