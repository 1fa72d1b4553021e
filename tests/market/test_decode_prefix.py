"""Decoder(prefix=...): every event's symbol gets the prefix, nothing else changes.

Checked on every line of every shared capture and on malformed input (hypothesis): the
prefixed decoder gives the same events as the plain one apart from the symbol, the same
counters, and the same (unprefixed) ``last_symbol``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import DepthSnapshot, MarketEvent, Quote

NS = 1723161253937085768
CAPTURES = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz",
            "spot_ethusdt_20240808.gz", "spot_ethusdt_20240809.gz", "usdm_btcusdt_20240808.gz"]


def unprefixed(ev: MarketEvent | None, prefix: str) -> MarketEvent | None:
    """The event with the prefix taken off its symbol (asserting it was there)."""
    if ev is None:
        return None
    assert ev.symbol.startswith(prefix), ev
    cls = type(ev)
    fields = {name: getattr(ev, name) for name in cls.__dataclass_fields__}
    fields["symbol"] = ev.symbol[len(prefix):]
    return cls(**fields)


def same_but_prefix(plain: Decoder, pre: Decoder, ns: int, raw: bytes, prefix: str) -> None:
    a = plain.decode(ns, raw)
    b = pre.decode(ns, raw)
    assert unprefixed(b, prefix) == a and type(a) is type(b)
    assert pre.stats == plain.stats
    assert pre.last_symbol == plain.last_symbol


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_line_with_and_without_prefix(binance_dir: Path, name: str) -> None:
    plain, pre = Decoder(), Decoder(prefix="usdm:")
    n = 0
    for ns, raw in CaptureReader(binance_dir / name):
        same_but_prefix(plain, pre, ns, raw, "usdm:")
        n += 1
    assert n > 30_000 and pre.stats["quotes"] > 20_000
    # One symbol object per stream, as without a prefix.
    assert len({id(e[1]) for e in pre._streams.values()}) == len(pre._streams)


def test_default_prefix_changes_nothing() -> None:
    raw = orjson.dumps({"stream": "btcusdt@bookTicker", "data": {
        "u": 7, "s": "BTCUSDT", "b": "1.5", "B": "2", "a": "1.6", "A": "3"}})
    assert Decoder().decode(NS, raw) == Decoder(prefix="").decode(NS, raw) \
        == Quote("BTCUSDT", NS, 7, 1.5, 2.0, 1.6, 3.0)


def test_snapshot_symbol_gets_the_prefix_from_every_source() -> None:
    snap = orjson.dumps({"lastUpdateId": 5, "bids": [["1.0", "2.0"]], "asks": []})
    # default_symbol (given bare, in any case)
    dec = Decoder(default_symbol="btcusdt", prefix="usdm:")
    assert dec.default_symbol == "BTCUSDT"
    assert dec.decode(NS, snap) == DepthSnapshot("usdm:BTCUSDT", NS, 5, [(1.0, 2.0)], [])
    # the last stream message's symbol
    dec = Decoder(prefix="usdm:")
    dec.decode(NS, orjson.dumps({"stream": "ethusdt@trade", "data": {
        "T": 1, "t": 2, "p": "3.0", "q": "4.0", "m": True}}))
    assert dec.last_symbol == "ETHUSDT"
    assert dec.decode(NS, snap).symbol == "usdm:ETHUSDT"
    # last_symbol set by the live feed before a REST snapshot: the exchange's symbol
    dec.last_symbol = "SOLUSDT"
    assert dec.decode(NS, snap).symbol == "usdm:SOLUSDT"


def test_prefix_rejections_are_the_same(caplog: pytest.LogCaptureFixture) -> None:
    snap = orjson.dumps({"lastUpdateId": 5, "bids": [], "asks": []})
    for dec in (Decoder(), Decoder(prefix="x:")):
        with caplog.at_level(logging.WARNING, logger="daemon.market.decode"):
            assert dec.decode(NS, snap) is None
            assert dec.decode(NS, b"{") is None
        assert dec.stats["no_symbol"] == 1 and dec.stats["bad_json"] == 1


# -- malformed input --------------------------------------------------------------------------

SAMPLES = [
    b'{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000",'
    b'"B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}',
    b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT",'
    b'"b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,'
    b'"E":1723161256313}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,'
    b'"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,'
    b'"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"]],'
    b'"a":[["61837.64000000","1.54698000"]]}}',
    b'{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"]],"asks":[]}',
    b'{"stream":"btcusdt@aggTrade","data":{"a":1,"p":"1.0","q":"2.0","T":3,"m":true}}',
    b'{"result":null,"id":1}',
    b'{"code":-1121,"msg":"Invalid symbol."}',
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real message shape with a few byte-level edits (deletions, insertions,
    replacements), or arbitrary bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    raw = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["del", "ins", "rep"]))
        ch = draw(st.sampled_from(list(b'"{}[],:.0123456789-eE tfnulxXbBaAsS@\\')))
        if op == "del" and i < len(raw):
            del raw[i]
        elif op == "ins":
            raw.insert(i, ch)
        elif i < len(raw):
            raw[i] = ch
    return bytes(raw)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(mutated(), min_size=1, max_size=12),
       prefix=st.sampled_from(["usdm:", "p/", "€"]))
def test_malformed_input_same_but_prefix(lines: list[bytes], prefix: str) -> None:
    plain, pre = Decoder(), Decoder(prefix=prefix)
    for raw in lines:
        same_but_prefix(plain, pre, NS, raw, prefix)
