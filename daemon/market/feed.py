"""The market side of the daemon: one source (synthetic, replay or live Binance) feeding
decoder → sanity stage → order book, and handing every admitted event to one sink (the
engine, daemon/engine/engine.py), which does everything after the book.

Nothing that failed the sanity stage (daemon/market/sanity.py) reaches the book or the
sink; every rejection is counted by reason in `status()`. A book that is not trusted
(suspect, not yet continued by its own diffs) is not valid, and `mark()` is None then.
`mark()` is the confirmed reference price (see `SymbolGuard.reference`), never the raw mid
a bad diff could move.

Runs on the event loop and never blocks it for long: sources yield to the loop every
millisecond even at full speed, so e-stop handling is never starved. A bad message is
counted and skipped; an exception while handling an event goes to `on_error` (the
supervisor faults) instead of silently killing the feed.

It produces market events only: it never imports execution, the engine, strategies or
risk, and never sends an order.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from decimal import Decimal
from typing import Callable, Iterable, Iterator

from daemon.config import Config
from daemon.market.book import OrderBook
from daemon.market.capture import CaptureReader, CaptureRecorder, merge_records
from daemon.market.decode import Decoder
from daemon.market.instruments import captures_by_market, parse_id, prefix_of
from daemon.market.events import DepthDiff, Quote, Trade
from daemon.market.sanity import Sanity, book_guard_options
from daemon.market.synthetic import SyntheticMarket
from daemon.safety.watchdog import Heartbeat

log = logging.getLogger(__name__)

_EVENT_KINDS = ("quotes", "trades", "agg_trades", "depth", "snapshots")
_YIELD_NS = 1_000_000
_SYNTHETIC_SNAPSHOT_DELAY_S = 0.3  # give the loop back at least every 1 ms of feed work


def to_price(x: float) -> Decimal:
    """Exact decimal of a market-data float (repr() is the shortest round-tripping text)."""
    return Decimal(repr(x))


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class MarketFeed:
    def __init__(self, cfg: Config, *, replay: list[str] | None = None,
                 heartbeat: Heartbeat | None = None,
                 on_error: Callable[[str], None] | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        """`clock`: the engine's clock (marks and reference ages are judged on it). Without
        one the feed keeps its own event time (the newest admitted event; tools, tests)."""
        m = cfg.market
        self.cfg = cfg
        self.source = m.source
        self.symbols = list(m.symbols)
        self.replay = list(replay or [])
        self.heartbeat = heartbeat
        self._own_ns = 0
        self.clock = clock if clock is not None else self._own_clock
        self.on_error = on_error or (lambda reason: log.error("market error: %s", reason))
        # Instruments by market: plain symbols for [market] exchange, "usdm:BTCUSDT" for
        # another market's (daemon/market/instruments.py); futures books follow `pu`.
        self.market_of = {s: parse_id(s, m.exchange)[0] for s in self.symbols}
        guard = book_guard_options(cfg.sanity)
        self.books = {s: OrderBook(s, self.market_of[s] != "spot",
                                   on_needs_snapshot=self._needs_snapshot,
                                   on_suspect=self._suspect, **guard)
                      for s in self.symbols}
        self.sanity = Sanity(cfg, self.books)
        # symbol -> (book, guard): one dict lookup per event finds both.
        self._route = {s: (self.books[s], self.sanity.guards[s]) for s in self.symbols}
        # One decoder per market; events of another market carry its prefix in the symbol.
        self.decoders: dict[str, Decoder] = {}
        for market in dict.fromkeys(self.market_of.values()):
            ids = [s for s in self.symbols if self.market_of[s] == market]
            prefix = prefix_of(market, m.exchange)
            self.decoders[prefix] = Decoder(
                default_symbol=ids[0][len(prefix):] if len(ids) == 1 else None, prefix=prefix)
        self.decoder = self.decoders.get("") or next(iter(self.decoders.values()))
        # Every admitted event goes here (the engine); by default the feed only keeps books.
        self.sink: Callable[[object], None] = self.handle
        self.on_finished: Callable[[], None] = lambda: None
        self._snapshot_wanted: dict[str, float] = {}   # synthetic: symbol -> when to answer
        self.synthetic: SyntheticMarket | None = None
        self._reader: CaptureReader | None = None
        self._readers: list[CaptureReader] = []
        self._stalled_until = 0.0
        self._live = None
        self._recorders: dict[str, CaptureRecorder] = {}
        self.finished = False
        self.lines = 0
        self._started_wall = 0.0
        self._marks: dict[str, tuple[float, Decimal]] = {}   # symbol -> (reference, mark)

    # -- reading ---------------------------------------------------------------------------
    def _own_clock(self) -> int:
        return self._own_ns or time.time_ns()

    def mark(self, symbol: str) -> Decimal | None:
        """The confirmed reference price for risk checks: the mid the exchange last
        confirmed (bookTicker agreement, bridged snapshot) or the median of recent trades;
        None while the book is not trusted or no reference is recent enough."""
        guard = self.sanity.guards.get(symbol)
        if guard is None:
            return None
        ref = guard.reference(self.clock())
        if ref is None:
            return None
        # The reference float rarely moves between calls (risk asks several times per
        # event): keep the last conversion per symbol, keyed on the float itself, so a
        # book or guard change can never serve a stale mark. Decimal is immutable.
        last = self._marks.get(symbol)
        if last is not None and last[0] == ref:
            return last[1]
        mark = to_price(round(ref, 8))
        self._marks[symbol] = (ref, mark)
        return mark

    def book_validity(self) -> dict[str, bool]:
        return {s: b.valid for s, b in self.books.items()}

    def _book_reason(self, symbol: str, book: OrderBook) -> str | None:
        if book.valid:
            return None
        guard = self.sanity.guards[symbol]
        if not book.synced and guard.last_u is None:
            other = ", ".join(f"{s} ({n})" for s, n in self.sanity.unconfigured.items())
            return (f"no depth updates for {symbol} received"
                    + (" (a snapshot is waiting for them)" if guard.held is not None else "")
                    + (f"; events for unconfigured symbols: {other}" if other else ""))
        return book.invalid_reason

    def degraded(self) -> list[str]:
        out = [f"{s} book invalid: {self._book_reason(s, b)}" for s, b in self.books.items()
               if not b.valid]
        if self._live is not None and not self._live.connected:
            out.append("live feed disconnected")
        return out

    # -- the event path ----------------------------------------------------------------------
    def on_raw(self, recv_ns: int, raw: bytes, symbol: str | None = None,
               prefix: str = "") -> None:
        """A raw message from a live source of the market named by `prefix` ("" for [market]
        exchange's; may carry the exchange symbol of a REST snapshot, and may be
        recorded)."""
        decoder = self.decoders[prefix] if prefix else self.decoder
        if symbol is not None and not raw.startswith(b'{"stream"'):
            decoder.last_symbol = symbol  # a REST snapshot names no symbol itself
        ev = decoder.decode(recv_ns, raw)
        if self._recorders:
            rec = self._recorders.get(ev.symbol if ev is not None
                                      else prefix + symbol if symbol else "")
            if rec is not None:
                rec.write(recv_ns, raw)
        if ev is not None:
            self.sink(ev)

    def admit(self, ev: object) -> tuple[OrderBook, object] | None:
        """The sanity stage: (book, guard) of an event that may go on, None for one that
        was rejected (counted) or is for an unconfigured symbol. A rejected event moves
        nothing, not even time."""
        route = self._route.get(ev.symbol)
        if route is None:
            self.sanity.unconfigured_event(ev)
            return None
        guard = route[1]
        t = type(ev)
        if t is Quote:                # ~70% of messages: keep this path short
            ok = guard.quote(ev)
        elif t is Trade:
            ok = guard.trade(ev)
        elif t is DepthDiff:
            ok = guard.diff(ev)
        else:
            ok = guard.snapshot(ev)
        return route if ok else None

    @staticmethod
    def apply(ev: object, route: tuple[OrderBook, object]) -> OrderBook:
        """Bring the book up to date with an admitted event (trades leave it alone)."""
        book, guard = route
        t = type(ev)
        if t is Quote:
            book.on_quote(ev)
        elif t is DepthDiff:
            if guard.held is not None:
                # A snapshot that arrived before any diff of this symbol: it goes first
                # if this diff shows it belongs to the symbol.
                snap = guard.release_held(ev)
                if snap is not None:
                    book.on_snapshot(snap)
            book.on_diff(ev)
        elif t is not Trade:
            book.on_snapshot(ev)
        return book

    def handle(self, ev: object) -> None:
        """The default sink: sanity and book only (tools and tests without an engine)."""
        route = self.admit(ev)
        if route is not None:
            if ev.ts_ns > self._own_ns:
                self._own_ns = ev.ts_ns
            self.apply(ev, route)

    def feed(self, records: Iterable[tuple[int, bytes]]) -> int:
        """Replay records synchronously (benchmarks, tests): decode + sink each."""
        decode, sink = self.decoder.decode, self.sink
        n = 0
        for recv_ns, raw in records:
            n += 1
            ev = decode(recv_ns, raw)
            if ev is not None:
                sink(ev)
        self.lines += n
        return n

    def _suspect(self, book: OrderBook) -> None:
        # Live: a fresh REST snapshot can confirm (replace) a suspect book; the bookTicker
        # stream may confirm it first. Replay/synthetic: following events confirm it.
        if self._live is not None:
            self._live.request_snapshot(book.symbol)

    def _needs_snapshot(self, book: OrderBook) -> None:
        # The first request at start-up is routine; later ones follow a gap or crossing.
        level = logging.INFO if book.stats["syncs"] == 0 else logging.WARNING
        log.log(level, "%s book needs a snapshot: %s", book.symbol, book.invalid_reason)
        if self._live is not None:
            self._live.request_snapshot(book.symbol)
        elif self.source == "synthetic":
            # The synthetic "exchange" answers too, after a REST-like round trip.
            self._snapshot_wanted.setdefault(book.symbol,
                                             time.monotonic() + _SYNTHETIC_SNAPSHOT_DELAY_S)

    # -- sources ---------------------------------------------------------------------------------
    async def run(self) -> None:
        self._started_wall = time.monotonic()
        try:
            if self.source == "replay":
                await self._run_replay()
                return
            if self.source == "binance":
                await self._run_live()
            else:
                await self._run_synthetic()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("market source failed")
            self.on_error(f"market source {self.source} failed: {e!r}")
            raise

    def _beat(self) -> bool:
        """Beat the heartbeat unless a (simulated) stall is in progress."""
        if time.monotonic() < self._stalled_until:
            return False
        if self.heartbeat is not None:
            self.heartbeat.beat()
        return True

    def make_reader(self, speed: float = 0.0, paths: list[str] | None = None
                    ) -> CaptureReader:
        """The reader for the replay files, with the [sanity] receive-time checks; also
        the one `status()` reports on (tests and benchmarks pass it to `feed`)."""
        sc = self.cfg.sanity
        # Pacing never waits as long as the watchdog's feed deadline: an idle stretch of a
        # capture is not a stalled component.
        reader = CaptureReader(self.replay if paths is None else paths, speed=speed,
                               max_block_ms=1.0, max_time_jump_s=sc.max_time_jump_s,
                               max_time_back_s=sc.max_time_back_s,
                               max_pause_s=self.cfg.watchdog.feed_deadline_s / 4)
        self._readers.append(reader)
        self._reader = self._readers[0]
        return reader

    def replay_groups(self) -> list[tuple[str, list[str]]]:
        """The replay files by market, [(prefix, paths)], from their names (spot_, usdm_,
        coinm_; a name that says no market is [market] exchange's). A market with files
        but no configured instrument is a config error, not silently unused data."""
        groups = captures_by_market(self.replay, self.cfg.market.exchange)
        for prefix, paths in groups:
            if prefix not in self.decoders:
                raise ValueError(f"replay files {', '.join(Path(p).name for p in paths)} are "
                                 f"{prefix.rstrip(':')} market data, but [market] symbols "
                                 f"has no {prefix}SYMBOL instrument")
        return groups

    def merged_records(self) -> Iterator[tuple[int, bytes, Callable]]:
        """Every replay record of every market in receive-time order, each with the
        decode function of its market (several markets on one engine)."""
        groups = self.replay_groups()
        sources = [(prefix, self.make_reader(0.0, paths)) for prefix, paths in groups]
        decoders = {p: self.decoders[p].decode for p, _ in groups}
        for ns, raw, prefix in merge_records(sources):
            yield ns, raw, decoders[prefix]

    def bytes_read(self) -> tuple[int, int]:
        """(compressed bytes read, total) over every replay reader."""
        return (sum(r.bytes_read for r in self._readers),
                sum(r.bytes_total for r in self._readers))

    async def _run_replay(self) -> None:
        if len(self.replay_groups()) > 1:
            await self._run_replay_merged()
            return
        reader = self.make_reader(self.cfg.market.replay_speed)
        decode, sink = self.decoder.decode, self.sink
        n = 0
        async for recv_ns, raw in reader:
            n += 1
            if not n & 63:
                self.lines = n
                while not self._beat():
                    await asyncio.sleep(0.05)
            ev = decode(recv_ns, raw)
            if ev is not None:
                sink(ev)
        self._replay_over(n)
        await self._idle()

    async def _run_replay_merged(self) -> None:
        """Several markets at once: one stream in receive-time order. Paced here (each
        reader paces only itself): a record waits for its time at `replay_speed`."""
        speed = self.cfg.market.replay_speed
        sink = self.sink
        n = 0
        first_ns = 0
        t0 = time.monotonic()
        worked = time.monotonic_ns()
        for recv_ns, raw, decode in self.merged_records():
            n += 1
            if speed > 0:
                first_ns = first_ns or recv_ns
                due = t0 + (recv_ns - first_ns) / 1e9 / speed
                while (wait := due - time.monotonic()) > 0:   # an idle stretch: keep beating
                    self._beat()
                    await asyncio.sleep(min(wait, 0.2))
                    worked = time.monotonic_ns()
            if not n & 63:
                self.lines = n
                while not self._beat():
                    await asyncio.sleep(0.05)
                if time.monotonic_ns() - worked > _YIELD_NS:   # the loop gets its turn
                    await asyncio.sleep(0)
                    worked = time.monotonic_ns()
            ev = decode(recv_ns, raw)
            if ev is not None:
                sink(ev)
        self._replay_over(n)
        await self._idle()

    def _replay_over(self, n: int) -> None:
        self.lines = n
        self.finished = True
        log.info("replay finished: %d lines, readers %s, decoders %s", n,
                 [{k: v for k, v in r.stats.items() if v} for r in self._readers],
                 {p or "default": {k: v for k, v in d.stats.items() if v}
                  for p, d in self.decoders.items()})
        self.on_finished()

    async def _idle(self) -> None:
        # Replay over: market time stops. Keep the heartbeat alive: an idle market is not a
        # stalled component.
        while True:
            self._beat()
            await asyncio.sleep(0.2)

    async def _run_synthetic(self) -> None:
        sym = self.symbols[0]
        mid = 60_000.0 if sym.startswith("BTC") else 3_000.0
        market = self.synthetic = SyntheticMarket(
            sym, seed=self.cfg.market.synthetic_seed, mid=mid,
            tick=float(self.cfg.instruments[sym].tick_size))
        period = 1.0 / self.cfg.market.synthetic_rate_hz
        msgs = market.messages()
        for _ in range(2):   # first diff + snapshot
            recv_ns, raw = next(msgs)
            self.on_raw(recv_ns, raw)
        mono = time.monotonic_ns
        next_step = time.monotonic()
        while True:
            if not self._beat():
                await asyncio.sleep(0.05)
                continue
            due = self._snapshot_wanted.get(sym)
            if due is not None and (self.books[sym].valid or time.monotonic() >= due):
                del self._snapshot_wanted[sym]
                if not self.books[sym].valid:   # (the boot-time request is already served)
                    self.on_raw(time.time_ns(), market.snapshot(), sym)
            t0 = mono()
            while True:   # as many steps as are due, but never more than ~1 ms at once
                for raw in market.step():
                    self.on_raw(time.time_ns(), raw)
                next_step += period
                if next_step > time.monotonic() or mono() - t0 > _YIELD_NS:
                    break
            delay = next_step - time.monotonic()
            await asyncio.sleep(delay if delay > 0 else 0)

    async def _run_live(self) -> None:
        from daemon.market.live_markets import LiveMarkets
        m = self.cfg.market
        if m.record_dir:
            for s in self.symbols:
                # Named as the market's captures are ("usdm_btcusdt"), so a replay of the
                # recording finds each file's market again.
                market, bare = parse_id(s, m.exchange)
                self._recorders[s] = CaptureRecorder(
                    m.record_dir, f"{market}_{bare.lower()}",
                    rotate_bytes=int(m.record_rotate_mb * 1024 * 1024))
        self._live = LiveMarkets(
            self.cfg, lambda prefix, ns, raw, sym: self.on_raw(ns, raw, sym, prefix),
            heartbeat=self.heartbeat)
        flusher = asyncio.create_task(self._flush_recorders(), name="capture-flush")
        try:
            await self._live.run()
        finally:
            flusher.cancel()

    async def _flush_recorders(self) -> None:
        """Recorders flush on message time; a quiet market still gets its lines out."""
        while True:
            await asyncio.sleep(1.0)
            for rec in self._recorders.values():
                rec.flush()

    def progress(self) -> dict | None:
        """Where a replay is: event time, share of the files read, lines and speed."""
        if not self._readers:
            return None
        done, total = self.bytes_read()
        elapsed = time.monotonic() - self._started_wall if self._started_wall else 0.0
        now = self.clock()
        return {"event_time": _utc(now), "event_ns": now, "lines": self.lines,
                "percent": round(100.0 * done / total, 1) if total else None,
                "lines_per_s": round(self.lines / elapsed) if elapsed > 0 else None,
                "finished": self.finished}

    def stall(self, seconds: float) -> None:
        """Simulation hook: the feed stops (and stops beating) for a while."""
        self._stalled_until = time.monotonic() + seconds

    async def close(self) -> None:
        if self._live is not None:
            await self._live.stop()
        for rec in self._recorders.values():
            rec.close()

    def status(self) -> dict:
        books = {}
        for s, b in self.books.items():
            bb, ba = b.best_bid(), b.best_ask()
            st = b.stats
            books[s] = {"valid": b.valid, "reason": self._book_reason(s, b),
                        "synced": b.synced, "suspect": b.suspect_reason,
                        "bid": bb[0] if bb else None, "ask": ba[0] if ba else None,
                        "mark": (None if (m := self.mark(s)) is None else str(m)),
                        "last_update_id": b.last_update_id,
                        "quotes_agree": st["quotes_agree"],
                        "quotes_disagree": st["quotes_disagree"],
                        "gaps": st["gaps"], "resyncs": st["resyncs"],
                        "trust": {k: st[k] for k in ("suspect", "confirmed", "contradicted",
                                                     "suspect_timeouts", "snapshot_ahead",
                                                     "stale_snapshots", "crossed")
                                  if st[k]}}
        stats: dict[str, int] = {}
        for d in self.decoders.values():
            for k, v in d.stats.items():
                stats[k] = stats.get(k, 0) + v
        out = {"source": self.source, "events": sum(v for k, v in stats.items()
                                                   if k in _EVENT_KINDS), "books": books,
               "decoder": {k: v for k, v in stats.items() if v},
               "sanity": self.sanity.status(),
               "replay_finished": self.finished}
        if self._live is not None:
            out["live"] = self._live.status()
        if self._reader is not None:
            out["replay"] = self.progress()
            rs: dict[str, int] = {}
            for r in self._readers:
                for k, v in r.stats.items():
                    if v:
                        rs[k] = rs.get(k, 0) + v
            out["reader"] = rs
            problems = [p for r in self._readers for p in r.problems]
            if problems:
                out["reader"]["problems"] = problems
        return out
