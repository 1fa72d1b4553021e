"""Market-data capture files: one format for live recording and for replay.

A capture is gzip text, one line per WebSocket/REST message, exactly as in the shared
recordings: ``<receive time, ns since epoch> <raw JSON as the exchange sent it>\\n``.
`CaptureRecorder` writes it while the live feed runs; `CaptureReader` streams it back (as
fast as possible, in real time, or at N x real time) for replay, tests and benchmarks.

This module only moves bytes: it never parses the JSON (that is `daemon.market.decode`),
never decides anything about the order book, and the reader never raises to its consumer
because of bad content: malformed lines, implausible receive times and damaged gzip data
are counted in ``reader.stats`` (file-level problems also in ``reader.problems``, one
sentence each), logged (rate-limited) and skipped. It never sleeps on a receive time it
has not accepted, and never sleeps longer than ``max_pause_s`` at once. Missing input files are a
configuration error and are reported when the reader is built. The recorder never alters
a message's bytes (a recording replays exactly as received) and never overwrites a file.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import os
import re
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from daemon.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

_GZIP_WBITS = 31  # zlib: expect/produce a gzip header and trailer (CRC32 + size)

Record = tuple[int, bytes]
"""(receive time in ns, raw message bytes without the trailing newline)."""

_GZIP_MAGIC = b"\x1f\x8b"
_CONFIRM = 2            # records after an off-window one that must agree before a new time base
_FUTURE_SLACK_NS = 86_400 * 10**9   # a receive time after now + 1 day cannot be a recording
_MAX_PROBLEMS = 20


def _inflate(d: zlib._Decompress, data: bytes, outs: list[bytes]) -> zlib._Decompress:
    """Decompress `data`, following gzip member boundaries; returns the decompressor to use
    for the next chunk. Raises zlib.error on damaged data.

    A file may hold several gzip members back to back (e.g. `cat a.gz b.gz`, or bgzip
    output); gzip readers must treat that as one stream.
    """
    if d.eof:  # the previous chunk ended exactly at a member boundary
        d = zlib.decompressobj(_GZIP_WBITS)
    outs.append(d.decompress(data))
    while d.eof and d.unused_data:
        rest = d.unused_data
        d = zlib.decompressobj(_GZIP_WBITS)
        outs.append(d.decompress(rest))
    return d


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:   # reported when the reader gets to it
        return 0


class CaptureReader:
    """Streams ``(recv_ns, raw)`` records from one or more capture files, in the given order.

    Files are decompressed chunk by chunk (never loaded whole) and split on newlines.
    ``speed`` paces the output by the receive times: 0 = as fast as possible, 1.0 = real
    time, N = N x real time. Iterate with ``for`` (pacing sleeps the thread) or with
    ``async for`` (pacing uses asyncio.sleep, and the loop gets control back at least every
    ``max_block_ms`` even at full speed so e-stop handling is never starved).

    Damage: a truncated file yields every complete line before the cut; an inflate error
    yields what precedes it (re-inflated in 4 KiB pieces) and skips the rest of that file.
    gzip's CRC is only checked at the end of a member, so damage that inflate happens to
    accept comes out as garbled lines before the CRC error is seen; the decoder rejects
    those as bad JSON. Either way the reader carries on with the next file.

    Receive times: within a file, a record must lie between ``max_time_back_s`` before
    and ``max_time_jump_s`` after the previous accepted record. One that does not is held
    back: if the next ``_CONFIRM`` records continue from it, the stream really jumped (an
    outage in a live recording) and they are all yielded from the new time base
    (``ts_rebase``); otherwise their receive times are implausible (``ts_jump``). A receive
    time more than a day after the wall clock (1e22 ns, ...) is implausible at once
    (``ts_absurd``). An implausible time is skipped, not the message: it is yielded with
    its neighbour's accepted time (lines are in receive order), so the decoder and the
    sanity stage still judge its content, and market time and pacing never jump. Each
    file starts afresh: files need not be given in time order. When pacing, a wait longer
    than ``max_pause_s`` is compressed to none (``gaps_compressed``) so an idle stretch
    never looks like a stalled feed.

    ``stats`` counts: files, lines (records yielded), empty_line, no_space, empty_payload,
    bad_ns, partial_line (incomplete last line of a damaged file), empty_file,
    truncated_gzip, corrupt_gzip (including files that are not gzip at all), read_error,
    ts_jump, ts_rebase, ts_absurd, gaps_compressed.
    """

    SYNC_CHUNK = 256 * 1024   # compressed bytes per read: ~2.5 MB of text, a few ms of work
    ASYNC_CHUNK = 64 * 1024   # ~1 ms of decompression: bounds how long one step holds the loop
    _SALVAGE_PIECE = 4096     # after damage, re-inflate in small pieces to keep what precedes it

    def __init__(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                 speed: float = 0.0, *, max_block_ms: float = 2.0,
                 max_time_jump_s: float = 60.0, max_time_back_s: float = 5.0,
                 max_pause_s: float = 5.0) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths: list[Path] = [Path(p) for p in paths]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"capture file(s) not found: {', '.join(missing)}")
        if not speed >= 0 or speed == float("inf"):
            raise ValueError(f"speed must be finite and >= 0, got {speed}")
        for name, v in (("max_time_jump_s", max_time_jump_s),
                        ("max_time_back_s", max_time_back_s), ("max_pause_s", max_pause_s)):
            if not 0 <= v < float("inf"):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        self.speed = float(speed)
        self.max_block_ns = int(max_block_ms * 1e6)
        self.max_jump_ns = int(max_time_jump_s * 1e9)
        self.max_back_ns = int(max_time_back_s * 1e9)
        self.max_pause_ns = int(max_pause_s * 1e9)
        self.stats: dict[str, int] = dict.fromkeys(
            ("files", "lines", "empty_line", "no_space", "empty_payload", "bad_ns",
             "partial_line", "empty_file", "truncated_gzip", "corrupt_gzip", "read_error",
             "ts_jump", "ts_rebase", "ts_absurd", "gaps_compressed"), 0)
        self.problems: deque[str] = deque(maxlen=_MAX_PROBLEMS)
        # Progress of a replay (status): compressed bytes read of the files' total size.
        self.bytes_read = 0
        self.bytes_total = sum(_size(p) for p in self.paths)
        self._held: list[list] = []   # [ns | None, raw] records awaiting a time verdict
        self._future_ns = time.time_ns() + _FUTURE_SLACK_NS
        self._warn = RateLimitedLog(log)

    # -- iteration -------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        if self.speed == 0.0:
            return self._records(self.SYNC_CHUNK)
        return self._paced(self.speed)

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._apaced()

    def _paced(self, speed: float) -> Iterator[Record]:
        first_ns = -1
        wall0 = 0
        cap = self.max_pause_ns
        for rec in self._records(self.SYNC_CHUNK):
            if first_ns < 0:
                first_ns = rec[0]
                wall0 = time.monotonic_ns()
            else:
                delay = wall0 + (rec[0] - first_ns) / speed - time.monotonic_ns()
                if delay > cap or delay < -cap:
                    # A jump between files, an accepted outage, or far behind: start the
                    # schedule again from here instead of sleeping it off or racing.
                    self._compressed(delay)
                    first_ns = rec[0]
                    wall0 = time.monotonic_ns()
                elif delay > 0:
                    time.sleep(delay / 1e9)
            yield rec

    def _compressed(self, delay_ns: float) -> None:
        self.stats["gaps_compressed"] += 1
        self._warn("gaps_compressed", self.stats["gaps_compressed"],
                   f"pacing off by {delay_ns / 1e9:+.1f} s; restarting the schedule here")

    async def _apaced(self) -> AsyncIterator[Record]:
        speed = self.speed
        max_block = self.max_block_ns
        mono = time.monotonic_ns
        first_ns = -1
        wall0 = 0
        n = 0
        last_yield = mono()
        cap = self.max_pause_ns
        for rec in self._records(self.ASYNC_CHUNK):
            if speed > 0.0:
                if first_ns < 0:
                    first_ns = rec[0]
                    wall0 = mono()
                else:
                    delay = wall0 + (rec[0] - first_ns) / speed - mono()
                    if delay > cap or delay < -cap:
                        self._compressed(delay)
                        first_ns = rec[0]
                        wall0 = mono()
                    elif delay > 0:
                        await asyncio.sleep(delay / 1e9)
                        last_yield = mono()
            n += 1
            # Reading the clock costs ~50 ns; every 16 records is enough to notice 2 ms.
            # The consumer's own work between records counts too, since it runs inside
            # the same task between our yields.
            if not n & 15:
                now = mono()
                if now - last_yield >= max_block:
                    await asyncio.sleep(0)
                    last_yield = mono()
            yield rec

    def _records(self, chunk_bytes: int) -> Iterator[Record]:
        """The unpaced hot loop: decompress, split, parse the ns field, yield."""
        stats = self.stats
        back, fwd = self.max_back_ns, self.max_jump_ns
        n = 0
        try:
            for path in self.paths:
                stats["files"] += 1
                tail = b""
                clean_end = False
                d = zlib.decompressobj(_GZIP_WBITS)
                started = False
                # Receive-time window of the fast path: [lo, hi] around the last accepted
                # record; empty (lo > hi) until the file has a time base or while records
                # are held back, so those go through `_offside`.
                base: int | None = None
                lo, hi = 1, 0
                self._held = []
                try:
                    fh = open(path, "rb", buffering=0)
                except OSError as e:
                    stats["read_error"] += 1
                    self._warn("read_error", stats["read_error"], f"{path}: {e}", logging.ERROR)
                    continue
                with fh:
                    while True:
                        try:
                            comp = fh.read(chunk_bytes)
                            self.bytes_read += len(comp)
                        except OSError as e:
                            stats["read_error"] += 1
                            self._warn("read_error", stats["read_error"], f"{path}: {e}",
                                       logging.ERROR)
                            break
                        if not comp:
                            clean_end = d.eof
                            if not started:
                                stats["empty_file"] += 1
                                self._problem("empty_file", f"{path}: empty file")
                            elif not clean_end:
                                stats["truncated_gzip"] += 1
                                self._problem("truncated_gzip",
                                              f"{path}: truncated gzip (the stream ends "
                                              "early); kept the complete lines before the cut")
                            break
                        if not started and not comp.startswith(_GZIP_MAGIC[:len(comp)]):
                            stats["corrupt_gzip"] += 1
                            self._problem("corrupt_gzip", f"{path}: not a gzip file (starts "
                                          f"with {comp[:16]!r}); skipped")
                            break
                        started = True
                        backup = d.copy()  # cheap (~inflate window); lets us salvage on damage
                        outs: list[bytes] = []
                        damaged = False
                        try:
                            d = _inflate(d, comp, outs)
                        except zlib.error as e:
                            damaged = True
                            outs = []
                            d = backup
                            try:
                                piece = self._SALVAGE_PIECE
                                for i in range(0, len(comp), piece):
                                    d = _inflate(d, comp[i:i + piece], outs)
                            except zlib.error:
                                pass
                            stats["corrupt_gzip"] += 1
                            self._problem("corrupt_gzip",
                                          f"{path}: corrupt gzip data ({e}) in the "
                                          f"{fh.tell() - len(comp)}..{fh.tell()} compressed "
                                          "byte range; skipped the rest of this file")
                        data = b"".join(outs) if len(outs) != 1 else outs[0]
                        if tail:
                            data = tail + data
                        lines = data.split(b"\n")
                        tail = lines.pop()
                        for line in lines:
                            ns_b, _, raw = line.partition(b" ")
                            if raw and ns_b.isdigit():
                                ns = int(ns_b)
                                if lo <= ns <= hi:
                                    lo = ns - back
                                    hi = ns + fwd
                                    n += 1
                                    yield ns, raw
                                    continue
                                if lo <= hi:   # the fast path kept only the window
                                    base = lo + back
                                out, base = self._offside(ns, raw, base, path)
                                if self._held or base is None:
                                    lo, hi = 1, 0
                                else:
                                    lo, hi = base - back, base + fwd
                                for rec in out:
                                    n += 1
                                    yield rec
                            else:
                                self._bad_line(line, path)
                        if damaged:
                            break
                if tail:
                    if clean_end:
                        # A complete stream whose last line lacks the newline: the line is whole.
                        ns_b, _, raw = tail.partition(b" ")
                        if raw and ns_b.isdigit():
                            ns = int(ns_b)
                            if lo <= ns <= hi:
                                out = [(ns, raw)]
                                base = ns
                            else:
                                if lo <= hi:
                                    base = lo + back
                                out, base = self._offside(ns, raw, base, path)
                            for rec in out:
                                n += 1
                                yield rec
                        else:
                            self._bad_line(tail, path)
                    else:
                        stats["partial_line"] += 1
                        self._warn("partial_line", stats["partial_line"],
                                   f"{path}: dropped incomplete last line ({len(tail)} bytes)")
                held, self._held = self._held, []
                if held and lo <= hi:
                    base = lo + back
                if held:
                    if base is None and any(h[0] is not None for h in held):
                        # Nothing in this file contradicts them (a file of one or two
                        # records, or the only plausible run after a bad start).
                        out = self._fill(held)
                    elif base is None:
                        out = []    # only absurd times and no real one to give them
                    else:
                        out = self._restamp(held, base, path)
                    for rec in out:
                        n += 1
                        yield rec
                stats["lines"] += n
                n = 0
        finally:
            # Also runs when the consumer stops early (generator closed).
            stats["lines"] += n

    def _offside(self, ns: int, raw: bytes, base: int | None, path: Path
                 ) -> tuple[list[Record], int | None]:
        """A record outside the fast path's window: (records to yield now, new time base).

        Held records are ``[ns, raw]`` with ns None for a receive time that was absurd.
        An outlier's message is kept, stamped with a neighbour's accepted time (a
        capture's lines are in receive order, so that is when it arrived); only its
        receive time is skipped, so a bad time never moves market time or pacing."""
        stats = self.stats
        held = self._held
        if ns > self._future_ns:
            stats["ts_absurd"] += 1
            self._warn("ts_absurd", stats["ts_absurd"],
                       f"{path}: receive time {ns} ns is after the wall clock; the line gets "
                       "its neighbour's time")
            if held:
                held.append([None, raw])
                return [], base
            if base is not None:
                return [(base, raw)], base
            self._held = [[None, raw]]
            return [], base
        back, fwd = self.max_back_ns, self.max_jump_ns
        if base is not None and -back <= ns - base <= fwd:
            out = self._restamp(held, base, path) if held else []
            self._held = []
            out.append((ns, raw))
            return out, ns
        last = next((h[0] for h in reversed(held) if h[0] is not None), None)
        if last is not None and -back <= ns - last <= fwd:
            held.append([ns, raw])
            if sum(1 for h in held if h[0] is not None) <= _CONFIRM:
                return [], base
            if base is not None:
                stats["ts_rebase"] += 1
                self._warn("ts_rebase", stats["ts_rebase"],
                           f"{path}: receive times jumped by {(last - base) / 1e9:+.1f} s "
                           f"and the following lines continue there; accepted")
            self._held = []
            return self._fill(held), ns
        # Inconsistent with the accepted time and with what is held: what is held was noise.
        out = self._restamp(held, base if base is not None else ns, path) if held else []
        self._held = [[ns, raw]]
        return out, base

    def _restamp(self, held: list[list], stamp: int, path: Path) -> list[Record]:
        n = sum(1 for h in held if h[0] is not None)
        if n:
            self.stats["ts_jump"] += n
            self._warn("ts_jump", self.stats["ts_jump"],
                       f"{path}: {n} line(s) with an implausible receive time "
                       f"({next(h[0] for h in held if h[0] is not None)} ns next to {stamp} ns);"
                       " their messages get the neighbouring time")
        return [(stamp, raw) for _, raw in held]

    @staticmethod
    def _fill(held: list[list]) -> list[Record]:
        """Held records accepted with their own times; absurd ones take the previous
        (or, at the start, the next) real time."""
        known = [h[0] for h in held if h[0] is not None]
        prev = known[0]
        out = []
        for ns, raw in held:
            if ns is None:
                ns = prev
            prev = ns
            out.append((ns, raw))
        return out

    def _problem(self, kind: str, text: str) -> None:
        self.problems.append(text)
        self._warn(kind, self.stats[kind], text)

    def _bad_line(self, line: bytes, path: Path) -> None:
        if not line:
            kind = "empty_line"
        elif b" " not in line:
            kind = "no_space"
        elif not line.partition(b" ")[2]:
            kind = "empty_payload"
        else:
            kind = "bad_ns"
        self.stats[kind] += 1
        self._warn(kind, self.stats[kind], f"{path}: {line[:80]!r}")


_NAME_RE = re.compile(r"^(?P<stem>.+)_(?P<ts>\d{8}T\d{6})_(?P<seq>\d+)\.gz$")


def list_captures(directory: str | os.PathLike[str], stem: str) -> list[Path]:
    """The recorder's files for `stem` in `directory`, oldest first (by start time, then seq)."""
    found: list[tuple[str, int, Path]] = []
    for p in Path(directory).glob(f"{_glob_escape(stem)}_*.gz"):
        m = _NAME_RE.match(p.name)
        if m and m["stem"] == stem:
            found.append((m["ts"], int(m["seq"]), p))
    found.sort()
    return [p for _, _, p in found]


def _glob_escape(text: str) -> str:
    """Escape glob metacharacters so a stem like 'a[1]' matches literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)


class CaptureRecorder:
    """Writes ``<recv_ns> <raw>\\n`` lines for ONE symbol into rotating gzip files.

    Files are named ``<stem>_<UTC yyyymmddThhmmss of the first line's recv_ns>_<seq>.gz``
    (seq counts the files this recorder opened, zero-padded, and continues after any file
    already there for the same second; an existing file is never overwritten). The stem
    should name the market and symbol (e.g. ``spot_btcusdt``): REST snapshot lines carry no
    symbol, so the file is what says which symbol they belong to; never mix symbols in one
    recorder.

    Rotation: a new file starts before a line that would take the current file's
    uncompressed size past ``rotate_bytes``, or when the line's recv_ns is
    ``rotate_seconds`` or more after the file's first line (message time, so replays and
    tests rotate deterministically and a silent feed creates no empty files). Either can be
    None to disable it. Every rotated/closed file is a complete gzip stream.

    Flush policy: lines are buffered and compressed in blocks of ~64 KiB of text. When
    ``flush_seconds`` of message time have passed since the last flush (checked on each
    write), or when `flush()` is called, the compressor does a Z_SYNC_FLUSH and the bytes
    go to the OS: a reader (or a crash) then sees every line up to that point, and a reader
    opening the file mid-write counts it as ``truncated_gzip`` but gets those lines. The
    file is fsync'ed only when it is closed (rotation, `close()`): capture is replay and
    research data, not the journal, and fsync per second would wear the SD card; a power
    cut can lose what the OS had not written back yet (that fsync can take tens of ms on an
    SD card, on the caller's thread: pass ``fsync=False`` where that matters more). All
    writes are synchronous file I/O on the caller's thread; at live message rates that is a
    few KiB of compressed output per flush, about once a second. A live feed that may go quiet should
    call `flush()` from a timer. OSError (disk full...) propagates to the caller, which
    decides whether to stop recording.
    """

    _BLOCK = 64 * 1024

    def __init__(self, directory: str | os.PathLike[str], stem: str, *,
                 rotate_bytes: int | None = 256 * 1024 * 1024,
                 rotate_seconds: float | None = 3600.0,
                 flush_seconds: float = 1.0, level: int = 6, fsync: bool = True) -> None:
        if not stem or "/" in stem or os.sep in stem:
            raise ValueError(f"bad capture stem {stem!r}")
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise ValueError("rotate_bytes must be positive or None")
        if rotate_seconds is not None and rotate_seconds <= 0:
            raise ValueError("rotate_seconds must be positive or None")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stem = stem
        self.rotate_bytes = rotate_bytes
        self.rotate_ns = None if rotate_seconds is None else int(rotate_seconds * 1e9)
        self.flush_ns = int(flush_seconds * 1e9)
        self.level = level
        self.fsync = fsync
        self.files: list[Path] = []        # every file this recorder created, in order
        self.stats: dict[str, int] = {"lines": 0, "files": 0, "flushes": 0,
                                      "rejected_newline": 0}
        self._seq = 0
        self._fh = None
        self._comp: zlib._Compress | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._file_bytes = 0               # uncompressed bytes in the current file
        self._file_start_ns = 0
        self._last_flush_ns = 0
        self._last_ns = 0
        self._closed = False
        self._warn = RateLimitedLog(log)

    @property
    def path(self) -> Path | None:
        """The file being written, or None between files."""
        return self.files[-1] if self._fh is not None else None

    def write(self, recv_ns: int, raw: bytes) -> None:
        """Append one message. `raw` must be the exchange's bytes, without a newline."""
        if self._closed:
            raise ValueError("write to a closed CaptureRecorder")
        if b"\n" in raw:
            # A newline would split the message into two corrupt lines for every reader.
            self.stats["rejected_newline"] += 1
            self._warn("rejected_newline", self.stats["rejected_newline"], repr(raw[:80]))
            return
        line = b"%d %b\n" % (recv_ns, raw)
        size = len(line)
        if self._fh is not None:
            rb = self.rotate_bytes
            if ((rb is not None and self._file_bytes + size > rb and self._file_bytes)
                    or (self.rotate_ns is not None
                        and recv_ns - self._file_start_ns >= self.rotate_ns)):
                self._close_file()
        if self._fh is None:
            self._open_file(recv_ns)
        self._pending.append(line)
        self._pending_bytes += size
        self._file_bytes += size
        self.stats["lines"] += 1
        if self._pending_bytes >= self._BLOCK:
            self._compress_pending(zlib.Z_NO_FLUSH)
        self._last_ns = recv_ns
        if recv_ns - self._last_flush_ns >= self.flush_ns:
            self.flush()

    def flush(self) -> None:
        """Make everything written so far readable from the file (see the flush policy)."""
        if self._fh is None:
            return
        self._compress_pending(zlib.Z_SYNC_FLUSH)
        self._fh.flush()
        # Message time, not the wall clock: replays of old captures must flush the same way.
        self._last_flush_ns = self._last_ns
        self.stats["flushes"] += 1

    def close(self) -> None:
        """Finish the current file (complete gzip, fsync'ed). Idempotent."""
        if self._closed:
            return
        self._close_file()
        self._closed = True

    def __enter__(self) -> CaptureRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------

    def _open_file(self, recv_ns: int) -> None:
        ts = time.strftime("%Y%m%dT%H%M%S", time.gmtime(recv_ns // 1_000_000_000))
        # After a restart within the same second, continue after the files already there so
        # name order (what list_captures sorts by) stays write order.
        for p in self.directory.glob(f"{_glob_escape(self.stem)}_{ts}_*.gz"):
            m = _NAME_RE.match(p.name)
            if m and m["stem"] == self.stem:
                self._seq = max(self._seq, int(m["seq"]) + 1)
        while True:
            path = self.directory / f"{self.stem}_{ts}_{self._seq:04d}.gz"
            self._seq += 1
            try:
                self._fh = open(path, "xb")  # "x": never clobber an earlier capture
                break
            except FileExistsError:
                continue
        self._comp = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
        self.files.append(path)
        self.stats["files"] += 1
        self._file_bytes = 0
        self._file_start_ns = recv_ns
        self._last_flush_ns = recv_ns

    def _compress_pending(self, mode: int) -> None:
        assert self._fh is not None and self._comp is not None
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            out = self._comp.compress(data)
            if out:
                self._fh.write(out)
        if mode != zlib.Z_NO_FLUSH:
            self._fh.write(self._comp.flush(mode))

    def _close_file(self) -> None:
        if self._fh is None:
            return
        fh = self._fh
        try:
            self._compress_pending(zlib.Z_FINISH)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        finally:
            fh.close()
            self._fh = None
            self._comp = None


def merge_records(sources: list[tuple[str, Iterable[Record]]]
                  ) -> Iterator[tuple[int, bytes, str]]:
    """Several captures (of different markets) as one stream in receive-time order:
    ``(recv_ns, raw, prefix)`` with the prefix of the source each record came from (the
    instrument-id prefix its decoder uses, "" for the default market).

    Each source must already be in receive-time order (a CaptureReader is). Stable: on
    equal receive times, records keep the order of `sources` (and their order within a
    source). Lazy: holds one record per source; never reorders or drops a record."""
    def tagged(i: int, prefix: str, records: Iterable[Record]
               ) -> Iterator[tuple[int, int, bytes, str]]:
        for ns, raw in records:
            yield ns, i, raw, prefix

    # Keyed on (recv_ns, source index): never compares the bytes, and ties go to the
    # earlier source; heapq.merge keeps each source's own order.
    streams = [tagged(i, prefix, recs) for i, (prefix, recs) in enumerate(sources)]
    for ns, _i, raw, prefix in heapq.merge(*streams, key=lambda r: (r[0], r[1])):
        yield ns, raw, prefix
