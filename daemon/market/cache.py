"""Decoded-capture cache: repeated backtests pay gzip + JSON decoding once.

`load_or_build(paths)` returns the market events that ``CaptureReader(paths)`` +
``Decoder(prefix=...)`` produce (Nones dropped, in order), with the reader's and the
decoder's counters after a full pass. The first call decodes the captures and stores the
events as typed numpy columns in one ``.npz`` file; later calls with the same inputs read
that file and rebuild the events from the columns, which is several times faster than
inflating and parsing the JSON again.

Key: sha256 of every capture file's bytes (in order), the reader's keyword arguments, the
decoder's prefix and default symbol, `FORMAT_VERSION`, and the source text of the modules
that decide what the events are (capture, decode, events, this one): changing any of them
gives a new key, so a cache never outlives the code that made it. A capture's content is a
function of all that except one thing: `CaptureReader` treats receive times more than a
day after the wall clock as implausible, so a capture holding receive times in the future
would replay differently once that future has come; real recordings never do.

Files: ``<cache_dir>/<key>.npz`` (cache_dir: argument, else ``$BOT4_CACHE_DIR``, else
``~/.cache/bot4/captures``), written to a temporary file and renamed into place, so a
reader never sees half a file. Loading never unpickles (``allow_pickle=False``) and checks
the stored key, the format version and the shape of every column; a file that fails any
check, or cannot be read, is logged as a warning and rebuilt, never trusted. If the cache
folder cannot be written the events are still returned (``hit`` False) and a warning says
why.

Events whose fields do not fit the typed columns (an id that is not a 64-bit int, a
``buyer_is_maker`` that is not a bool: only a malformed capture has them) make the capture
uncacheable: it is logged, nothing is written, and iterating the result re-decodes the raw
files each time, so the events are still exactly the raw path's.

This module never changes an event (the tests compare every event of a real capture with
the raw path), never paces a replay (pass ``speed`` to the reader, not here: it is
refused) and never deletes cache files other than its own temporary files.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from array import array
from itertools import chain
from operator import call as _call
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import DepthDiff, DepthSnapshot, MarketEvent, Quote, Trade

__all__ = ["FORMAT_VERSION", "CachedEvents", "default_cache_dir", "load_or_build"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

# Event kinds in the `kind` column.
_QUOTE, _TRADE, _DIFF, _SNAP = 0, 1, 2, 3
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
# Events per rebuild step. A step turns its part of every column into Python lists (one
# tolist() per column) and builds each event only when the consumer takes it, so what a
# step keeps alive is numbers (floats and ints, which the garbage collector does not
# track), not a step's worth of events and level tuples. Iterating spot BTCUSDT
# 0808+09 (99,574 events): 512 -> 0.094 s, 8,192 -> 0.094 s, 32,768 -> 0.113 s (the lists
# leave the CPU cache); the chunk also bounds memory on long captures.
_CHUNK = 4096
# The modules whose code decides the events: their source is part of the key.
_CODE = ("capture.py", "decode.py", "events.py", "cache.py")
_HERE = Path(__file__).resolve().parent

# Column name -> (dtype, dimensions after the first, which count gives its length).
_COLUMNS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "kind": ("u1", (), "events"),
    "ts": ("i8", (), "events"),
    "sym": ("i4", (), "events"),
    "q_uid": ("i8", (), "quotes"),
    "q_px": ("f8", (4,), "quotes"),          # bid, bid_qty, ask, ask_qty
    "t_ids": ("i8", (2,), "trades"),         # exch_ms, trade_id
    "t_px": ("f8", (2,), "trades"),          # price, qty
    "t_maker": ("?", (), "trades"),
    "d_ids": ("i8", (3,), "diffs"),          # first_id, last_id, prev_last_id (0 if None)
    "d_haspu": ("?", (), "diffs"),
    "d_n": ("i8", (2,), "diffs"),            # bid levels, ask levels
    "s_id": ("i8", (), "snaps"),
    "s_n": ("i8", (2,), "snaps"),
    "lv": ("f8", (2,), "levels"),            # price, qty: each diff/snapshot's bids then asks
}


class Uncacheable(Exception):
    """An event whose fields the typed columns cannot hold exactly."""


def default_cache_dir() -> Path:
    env = os.environ.get("BOT4_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bot4" / "captures"


class CachedEvents:
    """The decoded events of a set of captures; iterate it (again and again) for them.

    ``decoder_stats``/``reader_stats``: the decoder's and the reader's ``stats`` after a
    full pass; ``reader_problems``: the reader's ``problems`` sentences; ``lines``: records
    the reader yielded; ``events``: how many events iteration gives; ``hit``: True when
    they came from a cache file made earlier; ``path``: that file (None when nothing could
    be written or the capture is uncacheable).
    """

    def __init__(self, *, columns: dict[str, np.ndarray] | None, symbols: list[str],
                 meta: dict[str, Any], hit: bool, path: Path | None,
                 raw: tuple[list[Path], dict[str, Any], str, str | None] | None = None
                 ) -> None:
        self._columns = columns
        self._symbols = symbols
        self._raw = raw
        self.decoder_stats: dict[str, int] = dict(meta["decoder_stats"])
        self.reader_stats: dict[str, int] = dict(meta["reader_stats"])
        self.reader_problems: list[str] = list(meta["reader_problems"])
        self.lines: int = meta["lines"]
        self.events: int = meta["counts"]["events"]
        self.hit = hit
        self.path = path

    def __len__(self) -> int:
        return self.events

    def __iter__(self) -> Iterator[MarketEvent]:
        if self._columns is None:
            assert self._raw is not None
            return _raw_events(*self._raw)
        return self._rebuild()

    def _rebuild(self) -> Iterator[MarketEvent]:
        # One chunk's iterator after another, chained in C: no Python frame per event.
        return chain.from_iterable(self._chunks())

    def _chunks(self) -> Iterator[Iterator[MarketEvent]]:
        """Per chunk of `_CHUNK` events: the columns turned into Python lists once
        (``tolist()`` per column, never per numpy scalar), and one lazy iterator per event
        kind (``map(Quote, ...)``, ...). The chunk's iterator picks the next event of the
        kind the ``kind`` column names, so events come out in capture order and each is
        built only when the consumer asks for it (what is alive at once is a chunk's
        numbers, which the garbage collector does not track, not its events)."""
        c = self._columns
        assert c is not None
        kind_all, ts_all, sym_all = c["kind"], c["ts"], c["sym"]
        # One str object per symbol, shared by every event (as the decoder does).
        symtab = np.empty(len(self._symbols), dtype=object)
        symtab[:] = self._symbols
        qi = ti = di = si = li = 0
        n = len(kind_all)
        chunk = _CHUNK
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            kind = kind_all[start:stop]
            ts = ts_all[start:stop]
            syms = symtab[sym_all[start:stop]]
            nexts: list[Any] = [_NOTHING] * 4

            mask = kind == _QUOTE
            k = int(np.count_nonzero(mask))
            if k:
                nexts[_QUOTE] = map(
                    Quote, syms[mask].tolist(), ts[mask].tolist(),
                    c["q_uid"][qi:qi + k].tolist(), *c["q_px"][qi:qi + k].T.tolist()
                ).__next__
                qi += k

            mask = kind == _TRADE
            k = int(np.count_nonzero(mask))
            if k:
                nexts[_TRADE] = map(
                    Trade, syms[mask].tolist(), ts[mask].tolist(),
                    *c["t_ids"][ti:ti + k].T.tolist(), *c["t_px"][ti:ti + k].T.tolist(),
                    c["t_maker"][ti:ti + k].tolist()).__next__
                ti += k

            mask = kind >= _DIFF   # diffs and snapshots, in event order
            if mask.any():
                nd = int(np.count_nonzero(kind == _DIFF))
                ns = int(np.count_nonzero(kind == _SNAP))
                d_n = c["d_n"][di:di + nd]
                s_n = c["s_n"][si:si + ns]
                nlv = int(d_n.sum() + s_n.sum())
                nexts[_DIFF] = nexts[_SNAP] = _book_events(
                    kind[mask].tolist(), syms[mask].tolist(), ts[mask].tolist(),
                    c["d_ids"][di:di + nd].tolist(), c["d_haspu"][di:di + nd].tolist(),
                    d_n.tolist(), c["s_id"][si:si + ns].tolist(), s_n.tolist(),
                    *c["lv"][li:li + nlv].T.tolist()).__next__
                di += nd
                si += ns
                li += nlv
            yield map(_call, map(nexts.__getitem__, kind.tolist()))


def _nothing() -> MarketEvent:
    raise AssertionError("the kind column names a kind with no events left in its chunk")


_NOTHING = _nothing


def _book_events(kinds: list[int], syms: list[str], ts: list[int], d_ids: list[list[int]],
                 d_haspu: list[bool], d_n: list[list[int]], s_id: list[int],
                 s_n: list[list[int]], prices: list[float], qtys: list[float]
                 ) -> Iterator[MarketEvent]:
    """A chunk's diffs and snapshots in event order; each one's bids then asks are the
    next (price, qty) pairs of the level columns."""
    pos = dj = sj = 0
    for x, kd in enumerate(kinds):
        if kd == _DIFF:
            nb, na = d_n[dj]
            mid = pos + nb
            hi = mid + na
            first, last, pu = d_ids[dj]
            yield DepthDiff(syms[x], ts[x], first, last, pu if d_haspu[dj] else None,
                            list(zip(prices[pos:mid], qtys[pos:mid])),
                            list(zip(prices[mid:hi], qtys[mid:hi])))
            dj += 1
        else:
            nb, na = s_n[sj]
            mid = pos + nb
            hi = mid + na
            yield DepthSnapshot(syms[x], ts[x], s_id[sj],
                                list(zip(prices[pos:mid], qtys[pos:mid])),
                                list(zip(prices[mid:hi], qtys[mid:hi])))
            sj += 1
        pos = hi


def _raw_events(paths: list[Path], reader_kwargs: dict[str, Any], prefix: str,
                default_symbol: str | None) -> Iterator[MarketEvent]:
    decode = Decoder(default_symbol, prefix=prefix).decode
    for ns, raw in CaptureReader(paths, **reader_kwargs):
        ev = decode(ns, raw)
        if ev is not None:
            yield ev


# -- building ------------------------------------------------------------------------------

class _Builder:
    """Collects events into typed columns (array.array: compact, C-speed appends)."""

    def __init__(self) -> None:
        self.kind = array("B")
        self.ts = array("q")
        self.sym = array("i")
        self.q_uid = array("q")
        self.q_px = array("d")
        self.t_ids = array("q")
        self.t_px = array("d")
        self.t_maker = array("B")
        self.d_ids = array("q")
        self.d_haspu = array("B")
        self.d_n = array("q")
        self.s_id = array("q")
        self.s_n = array("q")
        self.lv = array("d")
        self.symbols: dict[str, int] = {}

    def add(self, ev: MarketEvent) -> None:
        sym = ev.symbol
        i = self.symbols.get(sym)
        if i is None:
            if type(sym) is not str:
                raise Uncacheable(f"symbol {sym!r} is not a str")
            i = self.symbols[sym] = len(self.symbols)
        t = type(ev)
        if t is Quote:
            self.q_uid.append(_int(ev.update_id))
            self.q_px.extend(_floats((ev.bid, ev.bid_qty, ev.ask, ev.ask_qty)))
            k = _QUOTE
        elif t is Trade:
            if type(ev.buyer_is_maker) is not bool:
                raise Uncacheable(f"trade buyer_is_maker {ev.buyer_is_maker!r}")
            self.t_ids.extend((_int(ev.exch_ms), _int(ev.trade_id)))
            self.t_px.extend(_floats((ev.price, ev.qty)))
            self.t_maker.append(ev.buyer_is_maker)
            k = _TRADE
        elif t is DepthDiff:
            pu = ev.prev_last_id
            self.d_ids.extend((_int(ev.first_id), _int(ev.last_id),
                               0 if pu is None else _int(pu)))
            self.d_haspu.append(pu is not None)
            self._levels(ev.bids, ev.asks, self.d_n)
            k = _DIFF
        elif t is DepthSnapshot:
            self.s_id.append(_int(ev.last_update_id))
            self._levels(ev.bids, ev.asks, self.s_n)
            k = _SNAP
        else:
            raise Uncacheable(f"unknown event type {t.__name__}")
        self.kind.append(k)
        self.ts.append(_int(ev.ts_ns))
        self.sym.append(i)

    def _levels(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]],
                counts: array) -> None:
        # Levels must be (float, float) tuples to come back the same; checked with C
        # loops (map/set) since a diff has ~46 of them.
        if type(bids) is not list or type(asks) is not list \
                or not set(map(type, bids)) | set(map(type, asks)) <= _TUPLE:
            raise Uncacheable("levels are not a list of tuples")
        flat = [*chain.from_iterable(bids), *chain.from_iterable(asks)]
        if len(flat) != 2 * (len(bids) + len(asks)) or not set(map(type, flat)) <= _FLOAT:
            raise Uncacheable("a level is not a (float, float) pair")
        self.lv.extend(flat)
        counts.append(len(bids))
        counts.append(len(asks))

    def columns(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (dtype, dims, _) in _COLUMNS.items():
            buf = getattr(self, name)
            # array.array item sizes match the column dtypes ('B' bytes hold the bools
            # as 0/1); checked, since 'i' is only 4 bytes on the usual platforms.
            if buf.itemsize != np.dtype(dtype).itemsize:
                raise RuntimeError(f"array '{buf.typecode}' is {buf.itemsize} bytes, "
                                   f"column {name} needs {np.dtype(dtype).itemsize}")
            a = np.frombuffer(buf, dtype=dtype) if len(buf) else np.empty(0, dtype=dtype)
            # A view on the array's buffer (no copy): nothing appends to it any more.
            out[name] = a.reshape((-1, *dims))
        return out


def _int(x: object) -> int:
    if type(x) is not int or not _INT64_MIN <= x <= _INT64_MAX:
        raise Uncacheable(f"{x!r} is not a 64-bit int")
    return x


_FLOAT = {float}
_TUPLE = {tuple}


def _floats(xs: tuple[object, ...]) -> tuple[object, ...]:
    for x in xs:
        if type(x) is not float:
            raise Uncacheable(f"{x!r} is not a float")
    return xs


def _counts(cols: dict[str, np.ndarray]) -> dict[str, int]:
    kind = cols["kind"]
    return {"events": len(kind), "quotes": int(np.count_nonzero(kind == _QUOTE)),
            "trades": int(np.count_nonzero(kind == _TRADE)),
            "diffs": int(np.count_nonzero(kind == _DIFF)),
            "snaps": int(np.count_nonzero(kind == _SNAP)),
            "levels": int(cols["d_n"].sum() + cols["s_n"].sum())}


# -- the key and the file -------------------------------------------------------------------

def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _key(paths: list[Path], reader_kwargs: dict[str, Any], prefix: str,
         default_symbol: str | None) -> str:
    code = hashlib.sha256()
    for name in _CODE:
        code.update((_HERE / name).read_bytes())
    spec = {
        "format": FORMAT_VERSION,
        "files": [_file_sha256(p) for p in paths],
        "reader_kwargs": reader_kwargs,
        "prefix": prefix,
        "default_symbol": default_symbol,
        "code": code.hexdigest(),
    }
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _pack(cols: dict[str, np.ndarray], symbols: list[str], meta: dict[str, Any]
          ) -> dict[str, np.ndarray]:
    arrays = dict(cols)
    arrays["meta"] = np.frombuffer(orjson.dumps(meta), dtype=np.uint8)
    arrays["symbols"] = np.frombuffer(orjson.dumps(symbols), dtype=np.uint8)
    return arrays


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically: a temporary file in the same folder, fsynced, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _Corrupt(Exception):
    pass


def _read(path: Path, key: str) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    """Load and check a cache file; raises _Corrupt (or an I/O error) if it is not exactly
    what `key` promises."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            want = {*_COLUMNS, "meta", "symbols"}
            if names != want:
                raise _Corrupt(f"members {sorted(names)} != {sorted(want)}")
            meta = orjson.loads(z["meta"].tobytes())
            symbols = orjson.loads(z["symbols"].tobytes())
            cols = {name: z[name] for name in _COLUMNS}
    except _Corrupt:
        raise
    except (ValueError, OSError, EOFError, KeyError, orjson.JSONDecodeError) as e:
        # zipfile.BadZipFile is an Exception subclass outside these; caught by the caller.
        raise _Corrupt(f"{type(e).__name__}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION \
            or meta.get("key") != key:
        raise _Corrupt("format version or key does not match")
    if not isinstance(symbols, list) or not all(type(s) is str for s in symbols):
        raise _Corrupt("symbol table is not a list of str")
    counts = meta.get("counts")
    for field, typ in (("decoder_stats", dict), ("reader_stats", dict),
                       ("reader_problems", list), ("lines", int), ("counts", dict)):
        if not isinstance(meta.get(field), typ):
            raise _Corrupt(f"meta field {field} missing or of the wrong type")
    for name, (dtype, dims, count) in _COLUMNS.items():
        a = cols[name]
        if a.dtype != np.dtype(dtype) or a.shape != (counts.get(count), *dims):
            raise _Corrupt(f"column {name}: {a.dtype} {a.shape}, expected {dtype} "
                           f"({counts.get(count)}, {dims})")
    if _counts(cols) != counts:
        raise _Corrupt(f"column contents do not match the stored counts {counts}")
    sym = cols["sym"]
    if len(sym) and (int(sym.min()) < 0 or int(sym.max()) >= len(symbols)):
        raise _Corrupt("symbol index out of range")
    if (cols["d_n"] < 0).any() or (cols["s_n"] < 0).any():
        raise _Corrupt("negative level count")
    return cols, symbols, meta


# -- the entry point ---------------------------------------------------------------------------

def load_or_build(paths: list[Path], *, decoder_prefix: str = "",
                  cache_dir: Path | None = None, reader_kwargs: dict | None = None,
                  default_symbol: str | None = None) -> CachedEvents:
    """The events of ``CaptureReader(paths, **reader_kwargs)`` decoded by
    ``Decoder(default_symbol, prefix=decoder_prefix)``, from the cache when it holds them,
    else decoded now and stored. Raises what `CaptureReader` raises for bad arguments
    (missing files, ...) and ValueError for a nonzero ``speed``."""
    paths = [Path(p) for p in paths]
    kwargs = dict(reader_kwargs or {})
    if kwargs.get("speed", 0.0):
        raise ValueError("the capture cache replays as fast as possible: pace the consumer, "
                         f"not the cache (reader speed={kwargs['speed']!r})")
    # Built first: it checks the files and arguments exactly as a replay would.
    reader = CaptureReader(paths, **kwargs)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _key(paths, kwargs, decoder_prefix, default_symbol)
    path = folder / f"{key}.npz"
    names = ", ".join(p.name for p in paths)
    if path.exists():
        t0 = time.perf_counter()
        try:
            cols, symbols, meta = _read(path, key)
        except Exception as e:   # noqa: BLE001 - any unreadable cache file is rebuilt
            log.warning("capture cache %s for %s is unusable (%s); rebuilding it", path,
                        names, e)
        else:
            log.info("capture cache hit for %s: %d events (%.2f s)", names,
                     meta["counts"]["events"], time.perf_counter() - t0)
            return CachedEvents(columns=cols, symbols=symbols, meta=meta, hit=True,
                                path=path)

    t0 = time.perf_counter()
    decoder = Decoder(default_symbol, prefix=decoder_prefix)
    decode = decoder.decode
    builder: _Builder | None = _Builder()
    add = builder.add
    why = ""
    lines = events = 0
    for ns, raw in reader:
        lines += 1
        ev = decode(ns, raw)
        if ev is not None:
            events += 1
            if builder is not None:
                try:
                    add(ev)
                except (Uncacheable, OverflowError) as e:
                    why = str(e)
                    builder = None
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION, "key": key, "files": [str(p) for p in paths],
        "decoder_stats": dict(decoder.stats), "reader_stats": dict(reader.stats),
        "reader_problems": list(reader.problems), "lines": lines,
    }
    if builder is None:
        log.warning("capture %s cannot be cached (%s): it will be decoded on every pass",
                    names, why)
        meta["counts"] = {"events": events}
        return CachedEvents(columns=None, symbols=[], meta=meta, hit=False, path=None,
                            raw=(paths, kwargs, decoder_prefix, default_symbol))
    cols = builder.columns()
    symbols = list(builder.symbols)
    meta["counts"] = _counts(cols)
    built = time.perf_counter() - t0
    written: Path | None = path
    try:
        _write(path, _pack(cols, symbols, meta))
    except OSError as e:
        log.warning("capture cache for %s not written to %s (%s): the next run decodes "
                    "again", names, folder, e)
        written = None
    else:
        log.info("capture cache built for %s: %d events in %.2f s -> %s", names,
                 meta["counts"]["events"], built, path)
    return CachedEvents(columns=cols, symbols=symbols, meta=meta, hit=False, path=written)
