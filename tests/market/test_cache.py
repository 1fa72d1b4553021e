"""The decoded-capture cache gives exactly the raw path's events and counters, from a real
capture and from generated ones; its key follows every input; a damaged, foreign or
pickled cache file is rebuilt, never trusted; it writes atomically and copes with a
cache folder it cannot write and with captures it cannot hold."""
from __future__ import annotations

import gzip
import logging
import math
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.market import cache
from daemon.market.cache import CachedEvents, load_or_build
from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import MarketEvent

NS0 = 1723161254087891268
SPOT = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]


def canon(x: Any) -> Any:
    """A value to compare exactly: floats by their bits (so -0.0 != 0.0 and NaN == NaN),
    every value tagged with its type (so True != 1 != 1.0)."""
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(canon(v) for v in x))
    if hasattr(type(x), "__dataclass_fields__"):
        return (type(x).__name__, tuple(canon(getattr(x, f)) for f in
                                        type(x).__dataclass_fields__))
    return (type(x).__name__, x)


def raw_pass(paths: list[Path], prefix: str = "", reader_kwargs: dict | None = None,
             default_symbol: str | None = None
             ) -> tuple[list[MarketEvent], Decoder, CaptureReader, int]:
    dec = Decoder(default_symbol, prefix=prefix)
    reader = CaptureReader(paths, **(reader_kwargs or {}))
    events, lines = [], 0
    for ns, raw in reader:
        lines += 1
        ev = dec.decode(ns, raw)
        if ev is not None:
            events.append(ev)
    return events, dec, reader, lines


def assert_same(got: CachedEvents, paths: list[Path], prefix: str = "",
                reader_kwargs: dict | None = None, default_symbol: str | None = None) -> None:
    events, dec, reader, lines = raw_pass(paths, prefix, reader_kwargs, default_symbol)
    for _ in range(2):                         # iterable again and again
        mine = list(got)
        assert len(mine) == len(events) == len(got) == got.events
        for a, b in zip(mine, events):
            assert canon(a) == canon(b)
    assert got.decoder_stats == dec.stats
    assert got.reader_stats == reader.stats
    assert got.reader_problems == list(reader.problems)
    assert got.lines == lines


def write_capture(path: Path, lines: list[bytes], *, cut: int = 0) -> Path:
    data = b"".join(b"%d %s\n" % (NS0 + i * 1_000_000, raw) for i, raw in enumerate(lines))
    blob = gzip.compress(data)
    path.write_bytes(blob[:len(blob) - cut] if cut else blob)
    return path


def msg(stream: str, data: dict) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


# -- real captures ----------------------------------------------------------------------------

def test_real_capture_every_event_equal_built_and_cached(binance_dir: Path,
                                                         tmp_path: Path) -> None:
    paths = [binance_dir / f for f in SPOT]
    built = load_or_build(paths, cache_dir=tmp_path)
    assert not built.hit and built.path is not None and built.path.parent == tmp_path
    assert_same(built, paths)
    hit = load_or_build(paths, cache_dir=tmp_path)
    assert hit.hit and hit.path == built.path
    assert_same(hit, paths)
    assert hit.lines == 99_574 and hit.decoder_stats["quotes"] == 73_174
    # Atomic write: the cache file and nothing else (no temporary file left behind).
    assert [p.name for p in tmp_path.iterdir()] == [built.path.name]


def test_futures_capture_with_prefix(binance_dir: Path, tmp_path: Path) -> None:
    paths = [binance_dir / "usdm_btcusdt_20240808.gz"]
    built = load_or_build(paths, decoder_prefix="usdm:", cache_dir=tmp_path)
    hit = load_or_build(paths, decoder_prefix="usdm:", cache_dir=tmp_path)
    assert hit.hit
    assert_same(hit, paths, prefix="usdm:")
    assert built.path == hit.path
    first = next(iter(hit))
    assert first.symbol == "usdm:BTCUSDT"
    # pu survives (futures diffs carry it; spot diffs have None)
    assert any(getattr(e, "prev_last_id", None) is not None for e in hit)


# -- the key --------------------------------------------------------------------------------

def test_key_follows_every_input(binance_dir: Path, tmp_path: Path) -> None:
    src = binance_dir / "spot_ethusdt_20240808.gz"
    cap = tmp_path / "cap.gz"
    shutil.copyfile(src, cap)
    store = tmp_path / "cache"
    variants: list[dict[str, Any]] = [
        {}, {"decoder_prefix": "x:"}, {"reader_kwargs": {"max_time_jump_s": 1.0}},
        {"default_symbol": "ETHUSDT"},
    ]
    files = set()
    for kw in variants:
        got = load_or_build([cap], cache_dir=store, **kw)
        assert not got.hit
        files.add(got.path)
        again = load_or_build([cap], cache_dir=store, **kw)
        assert again.hit and again.path == got.path
    assert len(files) == len(variants)
    # Two files in a given order are another input than one of them alone or reversed.
    other = tmp_path / "other.gz"
    write_capture(other, [msg("ethusdt@trade", {"T": 1, "t": 2, "p": "3.0", "q": "4.0",
                                                "m": True})])
    a = load_or_build([cap, other], cache_dir=store)
    b = load_or_build([other, cap], cache_dir=store)
    assert not a.hit and not b.hit and a.path != b.path
    assert_same(b, [other, cap])
    # Same name, other bytes: a new key (the name does not matter, the content does).
    blob = bytearray(gzip.decompress(cap.read_bytes()))
    i = blob.index(b'"b":"') + 5
    blob[i] = ord("1") if blob[i] != ord("1") else ord("2")
    cap.write_bytes(gzip.compress(bytes(blob)))
    changed = load_or_build([cap], cache_dir=store)
    assert not changed.hit and changed.path not in files
    assert_same(changed, [cap])


def test_default_folder_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("BOT4_CACHE_DIR", str(tmp_path / "env"))
    cap = write_capture(tmp_path / "c.gz", [msg("btcusdt@trade", {
        "T": 1, "t": 2, "p": "3.0", "q": "4.0", "m": False})])
    got = load_or_build([cap])
    assert got.path is not None and got.path.parent == tmp_path / "env"
    assert load_or_build([cap]).hit
    monkeypatch.delenv("BOT4_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "bot4" / "captures"


# -- damaged or foreign cache files -------------------------------------------------------------

def _small_capture(tmp_path: Path) -> Path:
    lines = [
        msg("btcusdt@bookTicker", {"u": 10, "s": "BTCUSDT", "b": "1.5", "B": "2.0",
                                   "a": "1.6", "A": "3.0"}),
        orjson.dumps({"lastUpdateId": 9, "bids": [["1.5", "2.0"]], "asks": [["1.6", "3.0"]]}),
        msg("btcusdt@depth@100ms", {"U": 10, "u": 11, "b": [["1.5", "0.0"]],
                                    "a": [["1.7", "1.0"]]}),
        msg("btcusdt@trade", {"T": 5, "t": 6, "p": "1.6", "q": "0.1", "m": True}),
    ] * 50
    return write_capture(tmp_path / "small.gz", lines)


def _flip(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def _replace_member(path: Path, name: str, arr: np.ndarray, allow_pickle: bool = False) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[name] = arr
    with open(path, "wb") as f:
        np.savez(f, **arrays)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 3]),
    "flipped byte": _flip,
    "empty": lambda p: p.write_bytes(b""),
    "not a zip": lambda p: p.write_bytes(b"hello, I am not an npz file" * 10),
    "pickled member": lambda p: _replace_member(
        p, "symbols", np.array([{"evil": 1}], dtype=object)),
    "wrong key": lambda p: _replace_member(p, "meta", np.frombuffer(orjson.dumps(
        {**orjson.loads(np.load(p)["meta"].tobytes()), "key": "0" * 64}), dtype=np.uint8)),
    "short column": lambda p: _replace_member(p, "ts", np.zeros(3, dtype=np.int64)),
    "wrong dtype": lambda p: _replace_member(
        p, "q_px", np.load(p)["q_px"].astype(np.float32)),
    "symbol index out of range": lambda p: _replace_member(
        p, "sym", np.full_like(np.load(p)["sym"], 7)),
    "kinds changed": lambda p: _replace_member(p, "kind", np.zeros_like(np.load(p)["kind"])),
    "member missing": lambda p: _drop_member(p, "lv"),
}


def _drop_member(path: Path, name: str) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != name}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_file_is_rebuilt_not_trusted(tmp_path: Path, damage: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cap = _small_capture(tmp_path)
    store = tmp_path / "cache"
    first = load_or_build([cap], cache_dir=store)
    assert first.path is not None
    DAMAGE[damage](first.path)
    with caplog.at_level(logging.WARNING, logger="daemon.market.cache"):
        again = load_or_build([cap], cache_dir=store)
    assert not again.hit
    assert any("unusable" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records), caplog.text
    assert_same(again, [cap])
    assert load_or_build([cap], cache_dir=store).hit      # the rebuilt file is good


def test_a_pickled_file_is_never_unpickled(tmp_path: Path) -> None:
    """Belt and braces for the case above: loading a member that needs pickle fails in
    numpy itself (allow_pickle=False), before any object is created."""
    cap = _small_capture(tmp_path)
    got = load_or_build([cap], cache_dir=tmp_path)
    assert got.path is not None
    _replace_member(got.path, "kind", np.array([object()], dtype=object))
    with np.load(got.path, allow_pickle=False) as z, pytest.raises(ValueError):
        z["kind"]
    assert zipfile.is_zipfile(got.path)


def test_unwritable_cache_folder_still_gives_the_events(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    cap = _small_capture(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="daemon.market.cache"):
        got = load_or_build([cap], cache_dir=blocker / "sub")
    assert not got.hit and got.path is None
    assert "not written" in caplog.text
    assert_same(got, [cap])


def test_uncacheable_capture_is_decoded_each_pass(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """An event the typed columns cannot hold exactly (here: buyer_is_maker 1, not a bool;
    an update id beyond int64): nothing is written, the events are still the raw ones."""
    for odd in (msg("btcusdt@trade", {"T": 5, "t": 6, "p": "1.6", "q": "0.1", "m": 1}),
                msg("btcusdt@bookTicker", {"u": 2 ** 63, "b": "1", "B": "1", "a": "2",
                                           "A": "1"})):
        cap = write_capture(tmp_path / "odd.gz", [
            msg("btcusdt@trade", {"T": 5, "t": 6, "p": "1.6", "q": "0.1", "m": True}), odd])
        store = tmp_path / "cache"
        with caplog.at_level(logging.WARNING, logger="daemon.market.cache"):
            got = load_or_build([cap], cache_dir=store)
        assert "cannot be cached" in caplog.text
        assert not got.hit and got.path is None and not store.exists()
        assert_same(got, [cap])
        caplog.clear()


def test_damaged_capture_counts_carry_over(tmp_path: Path) -> None:
    good = [msg("btcusdt@trade", {"T": i, "t": i, "p": "1.5", "q": "2.5", "m": False})
            for i in range(400)]
    lines = good[:100] + [b"{not json", b""] + good[100:]
    cap = write_capture(tmp_path / "damaged.gz", lines, cut=40)     # truncated gzip
    bad = tmp_path / "bad-line.gz"
    bad.write_bytes(gzip.compress(b"notanumber {}\n%d {}\n" % NS0))
    paths = [cap, bad]
    built = load_or_build(paths, cache_dir=tmp_path / "c")
    hit = load_or_build(paths, cache_dir=tmp_path / "c")
    assert hit.hit
    assert_same(hit, paths)
    assert hit.reader_stats["truncated_gzip"] == 1 and hit.reader_problems
    assert hit.decoder_stats["bad_json"] == 1 and built.decoder_stats == hit.decoder_stats


def test_pacing_is_refused(tmp_path: Path) -> None:
    cap = _small_capture(tmp_path)
    with pytest.raises(ValueError, match="pace the consumer"):
        load_or_build([cap], cache_dir=tmp_path, reader_kwargs={"speed": 1.0})
    with pytest.raises(FileNotFoundError):
        load_or_build([tmp_path / "missing.gz"], cache_dir=tmp_path)


# -- generated captures -----------------------------------------------------------------------

INT = st.one_of(st.integers(0, 10**13), st.integers(-(2**63), 2**63 - 1),
                st.sampled_from([0, -1, 2**63 - 1, -(2**63)]))
NUMTXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(min_value=0, max_value=10**7, places=8).map(str),
    st.sampled_from(["0.00000000", "-0.0", "nan", "inf", "-inf", "1e-320", "1e308",
                     "61837.63000000", "1_000.5", " 2.5", "abc", ""]),
)
LEVEL = st.lists(st.tuples(NUMTXT, NUMTXT).map(list), max_size=5)
SYMS = st.sampled_from(["btcusdt", "ethusdt", "solusdt"])


@st.composite
def message(draw: st.DrawFn) -> bytes:
    sym = draw(SYMS)
    kind = draw(st.sampled_from(["quote", "quote", "trade", "agg", "depth", "snap", "junk"]))
    if kind == "quote":
        return msg(f"{sym}@bookTicker", {"u": draw(INT), "s": sym.upper(), "b": draw(NUMTXT),
                                        "B": draw(NUMTXT), "a": draw(NUMTXT),
                                        "A": draw(NUMTXT)})
    if kind == "trade":
        data: dict[str, Any] = {"T": draw(INT), "t": draw(INT), "p": draw(NUMTXT),
                                "q": draw(NUMTXT), "m": draw(st.booleans())}
        if draw(st.booleans()):
            data["X"] = draw(st.sampled_from(["MARKET", "MARKET", "INSURANCE_FUND"]))
        return msg(f"{sym}@trade", data)
    if kind == "agg":
        return msg(f"{sym}@aggTrade", {"T": draw(INT), "a": draw(INT), "p": draw(NUMTXT),
                                      "q": draw(NUMTXT), "m": draw(st.booleans())})
    if kind == "depth":
        data = {"U": draw(INT), "u": draw(INT), "b": draw(LEVEL), "a": draw(LEVEL)}
        if draw(st.booleans()):
            data["pu"] = draw(INT)
        return msg(f"{sym}@depth@{draw(st.sampled_from(['100ms', '0ms']))}", data)
    if kind == "snap":
        return orjson.dumps({"lastUpdateId": draw(INT), "bids": draw(LEVEL),
                             "asks": draw(LEVEL)})
    return draw(st.sampled_from([b"{", b"[]", b'{"result":null,"id":1}', b'"x"',
                                 msg("btcusdt@depth20", {})]))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=st.lists(message(), min_size=0, max_size=40),
       split=st.integers(0, 40), chunk=st.sampled_from([1, 2, 3, 7, 512]),
       prefix=st.sampled_from(["", "usdm:"]), default=st.sampled_from([None, "xrpusdt"]))
def test_generated_captures(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes],
                            split: int, chunk: int, prefix: str, default: str | None) -> None:
    """Random messages (every kind, odd numbers, junk), split over two files, through the
    cache with small rebuild chunks so every chunk boundary case is met: the events equal
    the raw path's, built and then cached."""
    d = tmp_path_factory.mktemp("gen")
    paths = [write_capture(d / "a.gz", lines[:split]), write_capture(d / "b.gz", lines[split:])]
    saved = cache._CHUNK
    cache._CHUNK = chunk
    try:
        built = load_or_build(paths, cache_dir=d / "c", decoder_prefix=prefix,
                              default_symbol=default)
        assert_same(built, paths, prefix=prefix, default_symbol=default)
        if built.path is not None:
            hit = load_or_build(paths, cache_dir=d / "c", decoder_prefix=prefix,
                                default_symbol=default)
            assert hit.hit
            assert_same(hit, paths, prefix=prefix, default_symbol=default)
    finally:
        cache._CHUNK = saved


def test_canon_is_strict() -> None:
    """The comparison the tests rely on tells apart what == does not."""
    assert canon(-0.0) != canon(0.0) and canon(True) != canon(1) != canon(1.0)
    assert canon(math.nan) == canon(math.nan)
    assert canon([(1.0, 2.0)]) != canon([[1.0, 2.0]])
