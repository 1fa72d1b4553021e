"""Live Binance market-data feed: one combined-stream WebSocket plus REST depth snapshots.

`BinanceLiveFeed` connects to Binance spot or USD-M futures, subscribes to the trade,
diff-depth and bookTicker streams of its symbols, and hands every text frame to an
`on_message(recv_ns, raw, symbol)` callback exactly as it arrived: `raw` is the frame's
payload bytes, `recv_ns` is `time.time_ns()` at receipt. Writing `f"{recv_ns} ".encode() +
raw + b"\\n"` therefore reproduces the capture format bit for bit, and replay and live run
the same decoding code. REST depth snapshots go through the same callback (their body bytes,
unchanged, with the symbol given, because the snapshot JSON does not name its symbol).

It keeps the stream alive on its own: reconnects with exponential backoff and jitter, treats
a connection that delivers nothing for `stale_after_s` as dead (half-open TCP, a stuck
server), fetches a snapshot after every (re)connect once the first diff has been buffered,
and fetches another on `request_snapshot()` when the order book found a gap.

The optional watchdog `Heartbeat` means "this feed's code is alive and making progress",
not "the exchange is sending": it is beaten on every message, every connect attempt, every
receive timeout and through every backoff wait, and stops only when the feed itself is
wedged (no step finished within the longest bounded wait it can be in). A silent exchange or
a network outage is a data condition the caller sees through `connected` (the daemon goes
to `reducing`), never a reason for systemd to kill a healthy process.

What it must never do:
- parse, reorder, drop or re-serialise text frames (decoding and counting malformed JSON is
  the decoder's job; only non-text frames are dropped, and counted);
- raise into its caller or stop because the network failed or the REST endpoint
  misbehaved: these are logged, counted and retried;
- swallow an exception from the callback: that is a bug in the daemon (decode, book,
  strategy, gateway, journal). The daemon has one policy for it in every mode: the feed
  stops and `run()` raises it to its caller, as a replay would, and the daemon faults;
- hammer the exchange: reconnects and snapshot retries back off, snapshot fetches per symbol
  are coalesced and rate-limited, and HTTP 418/429 `Retry-After` is honoured;
- touch trading state: it only delivers bytes. All methods must be called on the event loop
  that runs `run()`; the callback runs on that loop and must be quick and non-blocking.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Generator, Literal, Sequence

import aiohttp
import orjson

from daemon.ratelog import RateLimitedLog
from daemon.safety.watchdog import Heartbeat

log = logging.getLogger(__name__)

Market = Literal["spot", "futures"]
# "usdm" is how the captures and the config name USD-M futures.
_MARKET_ALIASES = {"spot": "spot", "futures": "futures", "usdm": "futures"}
OnMessage = Callable[[int, bytes, str | None], None]

# Per-market endpoints. Paths are fixed by Binance; the bases are injectable so tests (and a
# testnet) can point the feed elsewhere.
_DEFAULTS: dict[str, dict[str, str]] = {
    "spot": {
        "ws_base": "wss://stream.binance.com:9443",
        "rest_base": "https://api.binance.com",
        "depth_path": "/api/v3/depth",
        "depth_stream": "@depth@100ms",
    },
    "futures": {
        "ws_base": "wss://fstream.binance.com",
        "rest_base": "https://fapi.binance.com",
        "depth_path": "/fapi/v1/depth",
        "depth_stream": "@depth@100ms",
    },
}
# Binance accepts only these `limit` values on the depth endpoints (spot also accepts any value
# up to 5000, but the request weight jumps above 1000; futures accepts only this list).
_SNAPSHOT_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
# Futures allows at most 200 streams per connection (spot 1024): stay under the smaller one.
_MAX_STREAMS = 200

# aiohttp >= 3.12 can hand over a text frame's payload bytes without decoding it; older
# versions give str, which we encode back (UTF-8 decode+encode of valid UTF-8 is the identity,
# and aiohttp drops the connection on invalid UTF-8 in that mode).
_WS_DECODE_TEXT_KW: dict[str, Any] = (
    {"decode_text": False}
    if "decode_text" in inspect.signature(aiohttp.ClientSession.ws_connect).parameters
    else {}
)


def _ws_close_timeout_kw(close_timeout_s: float) -> dict[str, Any]:
    # aiohttp >= 3.10 takes a ClientWSTimeout; older versions a float close timeout.
    wst = getattr(aiohttp, "ClientWSTimeout", None)
    return {"timeout": wst(ws_close=close_timeout_s) if wst is not None else close_timeout_s}


@dataclass(slots=True)
class FeedStats:
    """Counters of one feed since construction. Read them, never write them."""

    messages: int = 0            # text frames delivered to on_message
    bytes: int = 0               # payload bytes of those frames
    connects: int = 0            # successful WebSocket handshakes
    reconnects: int = 0          # reconnections scheduled after a connection ended or failed
    connect_failures: int = 0    # handshakes that failed (refused, timeout, HTTP error)
    disconnects: int = 0         # established connections that ended (any reason)
    stale_events: int = 0        # connections abandoned because nothing arrived in time
    dropped_frames: int = 0      # non-text frames (binary) dropped
    callback_errors: int = 0     # exceptions raised by on_message
    snapshot_requests: int = 0   # request_snapshot() calls, including the feed's own
    snapshot_coalesced: int = 0  # requests folded into a fetch already pending
    snapshots: int = 0           # snapshots fetched and delivered
    snapshot_failures: int = 0   # failed snapshot attempts (each is retried)
    connected: bool = False
    last_message_mono: float | None = None  # time.monotonic() of the last stream message

    @property
    def last_message_age_s(self) -> float | None:
        """Seconds since the last stream message, None before the first one."""
        if self.last_message_mono is None:
            return None
        return time.monotonic() - self.last_message_mono


class _Done:
    """Awaitable returned by `stop()`: completes when `run()` has closed everything.

    A plain object rather than a coroutine, so calling `stop()` without awaiting it (from
    sync code, a signal handler) is just as valid and leaves no never-awaited warning.
    """

    __slots__ = ("_event",)

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def __await__(self) -> Generator[Any, None, None]:
        yield from self._event.wait().__await__()


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, factor: float,
                  jitter: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (0-based): exponential, capped, with jitter.

    The jitter subtracts up to `jitter` (a fraction) of the delay, so many clients that lost
    the connection at the same moment (an exchange restart) do not come back in lockstep,
    while the cap still bounds the wait.
    """
    base = min(max_s, initial_s * factor ** min(attempt, 64))
    return base * (1.0 - jitter * rng.random())


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from an HTTP Retry-After header (Binance sends integer seconds)."""
    if not value:
        return None
    try:
        s = float(value)
    except ValueError:
        return None
    return s if math.isfinite(s) and s >= 0 else None


class BinanceLiveFeed:
    """Combined-stream WebSocket + REST snapshots for one market and a set of symbols.

    Usage (on the event loop)::

        feed = BinanceLiveFeed(["BTCUSDT"], on_message, heartbeat=watchdog.register("feed", 10))
        task = asyncio.create_task(feed.run())
        ...
        feed.request_snapshot("BTCUSDT")   # when the book reports a gap
        ...
        await feed.stop()                  # returns once the session is closed
    """

    def __init__(
        self,
        symbols: Sequence[str],
        on_message: OnMessage,
        *,
        market: Market | Literal["usdm"] = "spot",
        ws_base: str | None = None,
        rest_base: str | None = None,
        depth_stream: str | None = None,
        channels: Sequence[str] = ("trade", "depth", "bookTicker"),
        snapshot_limit: int = 1000,
        heartbeat: Heartbeat | None = None,
        stale_after_s: float = 15.0,
        ws_heartbeat_s: float = 20.0,
        connect_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        backoff_factor: float = 2.0,
        backoff_jitter: float = 0.5,
        healthy_after_s: float = 60.0,
        first_diff_timeout_s: float = 5.0,
        snapshot_min_interval_s: float = 2.0,
        snapshot_timeout_s: float = 10.0,
        snapshot_backoff_initial_s: float = 0.5,
        snapshot_backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        if market not in _MARKET_ALIASES:
            raise ValueError(f"market must be 'spot' or 'futures' ('usdm'), got {market!r}")
        market = _MARKET_ALIASES[market]  # type: ignore[assignment]
        syms = [s.strip().upper() for s in symbols]
        if not syms or any(not s.isalnum() for s in syms):
            raise ValueError(
                f"symbols must be non-empty alphanumeric names, got {list(symbols)!r}")
        if len(set(syms)) != len(syms):
            raise ValueError(f"duplicate symbols: {syms!r}")
        unknown = set(channels) - {"trade", "aggTrade", "depth", "bookTicker"}
        if unknown or not channels:
            raise ValueError(
                f"channels must be among trade/aggTrade/depth/bookTicker, got {channels!r}")
        if snapshot_limit not in _SNAPSHOT_LIMITS:
            raise ValueError(
                f"snapshot_limit must be one of {_SNAPSHOT_LIMITS}, got {snapshot_limit}")
        d = _DEFAULTS[market]
        depth_stream = d["depth_stream"] if depth_stream is None else depth_stream
        if not depth_stream.startswith("@depth"):
            raise ValueError(f"depth_stream must look like '@depth@100ms', got {depth_stream!r}")
        for name, v in (("stale_after_s", stale_after_s), ("ws_heartbeat_s", ws_heartbeat_s),
                        ("connect_timeout_s", connect_timeout_s),
                        ("close_timeout_s", close_timeout_s),
                        ("backoff_initial_s", backoff_initial_s),
                        ("backoff_max_s", backoff_max_s),
                        ("first_diff_timeout_s", first_diff_timeout_s),
                        ("snapshot_timeout_s", snapshot_timeout_s),
                        ("snapshot_backoff_initial_s", snapshot_backoff_initial_s),
                        ("snapshot_backoff_max_s", snapshot_backoff_max_s)):
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not 1 <= backoff_factor <= 10 or not 0 <= backoff_jitter <= 1:
            raise ValueError("backoff_factor must be within [1, 10] and backoff_jitter within "
                             "[0, 1]")
        if healthy_after_s < 0 or snapshot_min_interval_s < 0:
            raise ValueError("healthy_after_s and snapshot_min_interval_s must be >= 0")

        self.market: Market = market
        self.symbols: tuple[str, ...] = tuple(syms)
        self._on_message = on_message
        self._heartbeat = heartbeat
        self._snapshot_limit = snapshot_limit
        self._ws_base = (d["ws_base"] if ws_base is None else ws_base).rstrip("/")
        self._rest_base = (d["rest_base"] if rest_base is None else rest_base).rstrip("/")
        self._depth_path = d["depth_path"]

        streams: list[str] = []
        for s in syms:
            low = s.lower()
            for ch in channels:
                streams.append(low + (depth_stream if ch == "depth" else "@" + ch))
        if len(streams) > _MAX_STREAMS:
            raise ValueError(f"{len(streams)} streams exceed {_MAX_STREAMS} per connection")
        self.streams: tuple[str, ...] = tuple(streams)
        # The depth stream name of each symbol, to spot its first diff after a connect.
        self._depth_names: dict[str, str] = (
            {s.lower() + depth_stream: s for s in syms} if "depth" in channels else {})

        self._stale_after_s = stale_after_s
        self._ws_heartbeat_s = ws_heartbeat_s
        self._connect_timeout_s = connect_timeout_s
        self._close_timeout_s = close_timeout_s
        self._backoff = dict(initial_s=backoff_initial_s, max_s=backoff_max_s,
                             factor=backoff_factor, jitter=backoff_jitter)
        self._snap_backoff = dict(initial_s=snapshot_backoff_initial_s,
                                  max_s=snapshot_backoff_max_s, factor=backoff_factor,
                                  jitter=backoff_jitter)
        self._healthy_after_s = healthy_after_s
        self._first_diff_timeout_s = first_diff_timeout_s
        self._snapshot_min_interval_s = snapshot_min_interval_s
        self._snapshot_timeout_s = snapshot_timeout_s
        self._rng = rng if rng is not None else random.Random()

        self.stats = FeedStats()
        self._fatal: BaseException | None = None   # the callback's exception, raised by run()
        self._progress_mono = time.monotonic()
        # The longest a healthy feed can sit in one bounded wait (receive, connect, close,
        # backoff) before it must have made progress again; beyond it the feed is wedged.
        self._wedged_after_s = (stale_after_s + connect_timeout_s + close_timeout_s
                                + backoff_max_s * (1 + backoff_jitter) + 5.0)
        self._stop = asyncio.Event()
        self._done = asyncio.Event()   # set once run() has cleaned up (or will never run)
        self._stopped = False
        self._running = False
        self._session: aiohttp.ClientSession | None = None
        self._backoff_attempt = 0
        self._next_connect_mono: float | None = None
        self._connected_mono: float | None = None
        self._awaiting_first_diff: set[str] = set()
        self._first_diff_timers: list[asyncio.TimerHandle] = []
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._last_snapshot_start: dict[str, float] = {}
        self._rest_blocked_until = 0.0
        self._drop_log = RateLimitedLog(log, log_interval_s)

    # ---------------------------------------------------------------- public API

    @property
    def ws_url(self) -> str:
        """The combined-stream URL this feed connects to."""
        return f"{self._ws_base}/stream?streams={'/'.join(self.streams)}"

    def snapshot_url(self, symbol: str) -> str:
        """The REST depth-snapshot URL for `symbol`."""
        sym = self._known(symbol)
        return f"{self._rest_base}{self._depth_path}?symbol={sym}&limit={self._snapshot_limit}"

    @property
    def connected(self) -> bool:
        return self.stats.connected

    def request_snapshot(self, symbol: str) -> bool:
        """Ask for a fresh REST depth snapshot of `symbol`; it arrives through on_message.

        Returns True if a fetch was started, False if the request was folded into a fetch
        already pending for that symbol, or if the feed is not connected (every new
        connection fetches its own snapshot, so one taken now would be useless). Safe to call
        from inside on_message. Raises ValueError for a symbol this feed does not carry.
        """
        sym = self._known(symbol)
        self.stats.snapshot_requests += 1
        if not self.stats.connected or self._stopped:
            log.debug("snapshot request for %s ignored: not connected", sym)
            return False
        task = self._snapshot_tasks.get(sym)
        if task is not None and not task.done():
            self.stats.snapshot_coalesced += 1
            return False
        self._snapshot_tasks[sym] = asyncio.get_running_loop().create_task(
            self._snapshot_worker(sym), name=f"binance-snapshot-{sym}")
        return True

    async def run(self) -> None:
        """Connect and keep delivering until `stop()` is called (or the task is cancelled).

        Never raises for network or exchange trouble. A feed runs once: after it stopped,
        build a new one.
        """
        if self._running:
            raise RuntimeError("BinanceLiveFeed.run() is already running")
        if self._stopped:
            self._done.set()
            return
        self._running = True
        if self._heartbeat is not None:
            # Supervision of this feed starts now: the first connect gets the full deadline
            # rather than whatever time passed since the heartbeat was registered.
            self._heartbeat.beat()
        self._session = aiohttp.ClientSession()
        self._progress()
        main = asyncio.create_task(self._connect_loop(), name="binance-feed")
        stopper = asyncio.create_task(self._stop.wait(), name="binance-feed-stop")
        alive = asyncio.create_task(self._alive(), name="binance-feed-alive")
        try:
            await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (main, stopper, alive):
                t.cancel()
            await asyncio.gather(main, stopper, alive, return_exceptions=True)
            await self._cancel_snapshots()
            self._cancel_first_diff_timers()
            self.stats.connected = False
            await self._session.close()
            self._session = None
            self._running = False
            self._stopped = True
            self._done.set()
            if main.done() and not main.cancelled() and main.exception() is not None:
                # _connect_loop catches everything; reaching this is a bug worth a traceback.
                log.error("binance feed loop died", exc_info=main.exception())
            log.info("binance %s feed stopped: %s", self.market, self._stats_line())
        if self._fatal is not None:
            raise self._fatal

    def _progress(self) -> None:
        self._progress_mono = time.monotonic()
        if self._heartbeat is not None:
            self._heartbeat.beat()

    async def _alive(self) -> None:
        """Beat the heartbeat through long waits (backoff, a silent connection) as long as
        the feed keeps finishing its bounded steps."""
        period = min(0.5, self._stale_after_s / 4)
        while True:
            await asyncio.sleep(period)
            if time.monotonic() - self._progress_mono < self._wedged_after_s \
                    and self._heartbeat is not None:
                self._heartbeat.beat()

    def stop(self) -> Awaitable[None]:
        """Ask `run()` to close the connection and the HTTP session and return.

        Takes effect at once; `await feed.stop()` additionally waits until run() has closed
        everything (immediately if it is not running). The heartbeat is no longer beaten:
        whoever stops the feed on purpose also stops supervising it.
        """
        self._stopped = True
        self._stop.set()
        if not self._running:
            self._done.set()
        return _Done(self._done)

    def status(self) -> dict[str, Any]:
        """A JSON-able summary for `bot4ctl status` and the logs."""
        now = time.monotonic()
        st = asdict(self.stats)
        st.pop("last_message_mono")
        age = self.stats.last_message_age_s
        st["last_message_age_s"] = None if age is None else round(age, 3)
        st.update(
            market=self.market,
            url=self.ws_url,
            symbols=list(self.symbols),
            running=self._running,
            backoff_attempt=self._backoff_attempt,
            reconnect_in_s=(None if self._next_connect_mono is None
                            else round(max(0.0, self._next_connect_mono - now), 3)),
            connected_for_s=(None if self._connected_mono is None
                             else round(now - self._connected_mono, 3)),
            snapshots_pending=sorted(s for s, t in self._snapshot_tasks.items() if not t.done()),
            awaiting_first_diff=sorted(self._awaiting_first_diff),
            rest_blocked_for_s=round(max(0.0, self._rest_blocked_until - now), 3),
        )
        return st

    # ---------------------------------------------------------------- connection

    def _known(self, symbol: str) -> str:
        sym = symbol.strip().upper()
        if sym not in self.symbols:
            raise ValueError(f"symbol {symbol!r} is not carried by this feed {self.symbols}")
        return sym

    async def _connect_loop(self) -> None:
        while not self._stopped:
            self._progress()
            healthy = False
            try:
                healthy = await self._one_connection()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug in our own handling must not end the feed: log it and reconnect.
                log.exception("binance %s feed: unexpected error; reconnecting", self.market)
            if self._stopped:
                return
            if healthy:
                # A connection that carried data for a healthy period restarts the backoff:
                # Binance's 24 h disconnect should cost one short delay, not the max.
                self._backoff_attempt = 0
            delay = backoff_delay(self._backoff_attempt, rng=self._rng, **self._backoff)
            self._backoff_attempt += 1
            self.stats.reconnects += 1
            self._next_connect_mono = time.monotonic() + delay
            log.info("binance %s feed: reconnecting in %.2fs (attempt %d)",
                     self.market, delay, self._backoff_attempt)
            self._progress()
            await asyncio.sleep(delay)
            self._next_connect_mono = None

    async def _one_connection(self) -> bool:
        """Connect, receive until the connection ends; True if it was healthy for long enough."""
        assert self._session is not None
        url = self.ws_url
        try:
            # The handshake gets its own deadline: a black-holed SYN or a server that never
            # answers the upgrade must not hang the feed.
            async with asyncio.timeout(self._connect_timeout_s):
                ws = await self._session.ws_connect(
                    url,
                    autoping=True,                  # answers Binance's pings
                    heartbeat=self._ws_heartbeat_s,  # our pings: detects half-open TCP
                    **_ws_close_timeout_kw(self._close_timeout_s),
                    **_WS_DECODE_TEXT_KW,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.stats.connect_failures += 1
            log.warning("binance %s feed: connect to %s failed: %s: %s",
                        self.market, url, type(e).__name__, e)
            return False
        connected_at = time.monotonic()
        self._on_connected()
        reason = "closed"
        try:
            reason = await self._receive_loop(ws)
        finally:
            if self._stopped:
                reason = "stopped"
            last = self.stats.last_message_mono
            healthy = last is not None and last - connected_at >= self._healthy_after_s
            self._on_disconnected()
            try:
                # Bounded: on a dead link even sending the close frame can stall.
                async with asyncio.timeout(self._close_timeout_s):
                    await ws.close()
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            log.log(logging.INFO if self._stopped else logging.WARNING,
                    "binance %s feed: connection ended (%s) after %.1fs; %s",
                    self.market, reason, time.monotonic() - connected_at, self._stats_line())
        return healthy

    def _on_connected(self) -> None:
        self.stats.connects += 1
        self.stats.connected = True
        self._connected_mono = time.monotonic()
        log.info("binance %s feed: connected to %s", self.market, self.ws_url)
        # Per Binance's sync procedure the snapshot is fetched only once diffs are being
        # buffered, so the snapshot's lastUpdateId falls inside the buffered range.
        self._awaiting_first_diff = set(self._depth_names.values())
        loop = asyncio.get_running_loop()
        # A quiet symbol may send no diff for a while; fetch anyway after a timeout. If diffs
        # were missed in between, the book sees a gap and asks again.
        self._first_diff_timers = [
            loop.call_later(self._first_diff_timeout_s, self._first_diff_timeout, sym)
            for sym in self._awaiting_first_diff]

    def _on_disconnected(self) -> None:
        self.stats.connected = False
        self.stats.disconnects += 1
        self._connected_mono = None
        self._awaiting_first_diff.clear()
        self._cancel_first_diff_timers()
        # Snapshots belong to the connection: after a reconnect a fresh one is needed, and
        # an in-flight one would only match diffs the new connection never delivers.
        for t in self._snapshot_tasks.values():
            t.cancel()
        self._snapshot_tasks.clear()

    def _cancel_first_diff_timers(self) -> None:
        for h in self._first_diff_timers:
            h.cancel()
        self._first_diff_timers = []

    def _first_diff_timeout(self, sym: str) -> None:
        if sym in self._awaiting_first_diff:
            self._awaiting_first_diff.discard(sym)
            log.info("binance %s feed: no %s diff within %.1fs of connect; fetching snapshot",
                     self.market, sym, self._first_diff_timeout_s)
            self.request_snapshot(sym)

    async def _receive_loop(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Deliver frames until the connection ends; returns why it ended."""
        text = aiohttp.WSMsgType.TEXT
        binary = aiohttp.WSMsgType.BINARY
        stats = self.stats
        progress = self._progress
        while True:
            try:
                msg = await ws.receive(timeout=self._stale_after_s)
            except TimeoutError:
                progress()
                stats.stale_events += 1
                log.warning("binance %s feed: no message for %.1fs; treating connection as "
                            "dead", self.market, self._stale_after_s)
                return "stale"
            recv_ns = time.time_ns()
            if msg.type is text:
                data = msg.data
                raw: bytes = data if isinstance(data, bytes) else data.encode()
                stats.messages += 1
                stats.bytes += len(raw)
                stats.last_message_mono = time.monotonic()
                progress()
                if self._awaiting_first_diff:
                    self._check_first_diff(raw)
                self._deliver(recv_ns, raw, None)
            elif msg.type is binary:
                stats.dropped_frames += 1
                ok, n = self._drop_log.should_log()
                if ok:
                    log.warning("binance %s feed: dropped non-text frame (%d bytes)%s",
                                self.market, len(msg.data),
                                f"; {n} more since last report" if n else "")
            else:
                # CLOSE / CLOSING / CLOSED / ERROR: the connection is over.
                extra = f": {msg.data!r}" if msg.type is aiohttp.WSMsgType.ERROR else ""
                return f"{msg.type.name.lower()} code={ws.close_code}{extra}"

    def _check_first_diff(self, raw: bytes) -> None:
        # Only parsed for the few frames between a connect and each symbol's first diff.
        try:
            stream = orjson.loads(raw).get("stream")
        except (orjson.JSONDecodeError, AttributeError):
            return  # malformed frames are the decoder's business
        sym = self._depth_names.get(stream) if isinstance(stream, str) else None
        if sym is not None and sym in self._awaiting_first_diff:
            self._awaiting_first_diff.discard(sym)
            self.request_snapshot(sym)

    def _deliver(self, recv_ns: int, raw: bytes, symbol: str | None) -> None:
        if self._fatal is not None:
            return   # stopping: nothing more goes to a consumer that has failed
        try:
            self._on_message(recv_ns, raw, symbol)
        except Exception as e:
            self.stats.callback_errors += 1
            self._fatal = e
            log.error("binance %s feed: on_message raised; stopping the feed and handing the "
                      "exception to the daemon", self.market, exc_info=True)
            self._stopped = True
            self._stop.set()

    # ---------------------------------------------------------------- snapshots

    async def _snapshot_worker(self, sym: str) -> None:
        attempt = 0
        while True:
            now = time.monotonic()
            wait = max(self._last_snapshot_start.get(sym, -math.inf)
                       + self._snapshot_min_interval_s - now,
                       self._rest_blocked_until - now, 0.0)
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_snapshot_start[sym] = time.monotonic()
            body, err, retry_after = await self._fetch_snapshot(sym)
            if body is not None:
                recv_ns = time.time_ns()
                # Leave the pending slot before delivering, so a request made from inside the
                # callback (the book finds this snapshot too old) starts a new fetch instead
                # of being folded into this finished one.
                if self._snapshot_tasks.get(sym) is asyncio.current_task():
                    del self._snapshot_tasks[sym]
                self.stats.snapshots += 1
                self._deliver(recv_ns, body, sym)
                return
            self.stats.snapshot_failures += 1
            delay = backoff_delay(attempt, rng=self._rng, **self._snap_backoff)
            attempt += 1
            if retry_after is not None:
                # Binance bans IPs that keep going after a 429; the pause covers all symbols.
                self._rest_blocked_until = max(self._rest_blocked_until,
                                               time.monotonic() + retry_after)
                delay = max(delay, retry_after)
            log.warning("binance %s feed: snapshot %s failed: %s; retry %d in %.2fs",
                        self.market, sym, err, attempt, delay)
            await asyncio.sleep(delay)

    async def _fetch_snapshot(self, sym: str) -> tuple[bytes | None, str, float | None]:
        """(body, "", None) on success, else (None, reason, Retry-After seconds or None)."""
        assert self._session is not None
        url = f"{self._rest_base}{self._depth_path}"
        try:
            async with self._session.get(
                    url, params={"symbol": sym, "limit": str(self._snapshot_limit)},
                    timeout=aiohttp.ClientTimeout(total=self._snapshot_timeout_s)) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = _retry_after_s(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return None, f"{type(e).__name__}: {e}", None
        if status != 200:
            throttled = status in (418, 429)
            return (None, f"HTTP {status} body={body[:200]!r}",
                    (retry_after if retry_after is not None else 1.0) if throttled else None)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, f"HTTP {status} non-JSON body={body[:200]!r}", None
        if not isinstance(obj, dict) or "lastUpdateId" not in obj:
            return None, f"HTTP {status} JSON without lastUpdateId body={body[:200]!r}", None
        return body, "", None

    async def _cancel_snapshots(self) -> None:
        tasks = list(self._snapshot_tasks.values())
        self._snapshot_tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _stats_line(self) -> str:
        s = self.stats
        return (f"messages={s.messages} reconnects={s.reconnects} stale={s.stale_events} "
                f"snapshots={s.snapshots} snapshot_failures={s.snapshot_failures} "
                f"callback_errors={s.callback_errors} dropped={s.dropped_frames}")
