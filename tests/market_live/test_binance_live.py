"""BinanceLiveFeed against a fake Binance on 127.0.0.1 that replays real captured frames.

The fake serves the combined stream at `/stream` and depth snapshots at `/api/v3/depth` and
`/fapi/v1/depth` from one aiohttp server on a random port. It replays lines of the shared
captures (`../shared/data/binance`, or `$BOT4_DATA_DIR`), keeps the exchange's "true" book
per symbol (every diff it passes, sent or skipped, is applied), and serves snapshots of that
truth, so a resync after a server-side gap really bridges the gap. Nothing here reaches the
internet; every timeout and backoff is shortened so each test takes a few seconds at most.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import WSMsgType, web

from daemon.market.binance_live import BinanceLiveFeed, backoff_delay
from daemon.safety.watchdog import Watchdog

pytestmark = pytest.mark.timeout(30)

REPO_ROOT = Path(__file__).resolve().parents[2]
SPOT_STREAMS = "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker"


# Same convention as tests/market: $BOT4_DATA_DIR (or ../shared/data) holds binance/*.gz.
_BINANCE_DIR = Path(os.environ.get("BOT4_DATA_DIR") or REPO_ROOT.parent / "shared" / "data") \
    / "binance"
DATA_DIR = _BINANCE_DIR if (_BINANCE_DIR / "spot_btcusdt_20240808.gz").is_file() else None
needs_data = pytest.mark.skipif(
    DATA_DIR is None,
    reason=f"Binance captures not found in {_BINANCE_DIR} (set BOT4_DATA_DIR to the folder "
           "that holds binance/*.gz)")


@functools.lru_cache(maxsize=None)
def capture(name: str, n_lines: int) -> tuple[tuple[bytes, ...], bytes | None]:
    """(stream frames, snapshot body) from the first `n_lines` lines of a capture."""
    assert DATA_DIR is not None
    frames: list[bytes] = []
    snapshot: bytes | None = None
    with gzip.open(DATA_DIR / name, "rb") as f:
        for i, line in enumerate(f):
            if i >= n_lines:
                break
            _, raw = line.rstrip(b"\n").split(b" ", 1)
            if b'"stream"' in raw[:12]:
                frames.append(raw)
            else:
                snapshot = raw
    return tuple(frames), snapshot


# ------------------------------------------------------------------------ fake exchange


class TrueBook:
    """The exchange-side book of one symbol: recorded snapshot + every diff that happened."""

    def __init__(self, snapshot: bytes) -> None:
        snap = orjson.loads(snapshot)
        self.recorded = snapshot
        self.last_id: int = snap["lastUpdateId"]
        self.bids = {p: q for p, q in snap["bids"]}
        self.asks = {p: q for p, q in snap["asks"]}
        self.advanced = False

    def apply(self, data: dict[str, Any]) -> None:
        if data["u"] <= self.last_id:
            return  # older than the snapshot: already contained in it
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels:
                if float(q) == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.last_id = data["u"]
        self.advanced = True

    def snapshot(self, limit: int) -> bytes:
        if not self.advanced:
            return self.recorded  # byte-identical to what Binance sent
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return orjson.dumps({"lastUpdateId": self.last_id,
                             "bids": [list(kv) for kv in bids],
                             "asks": [list(kv) for kv in asks]})


@dataclass
class RestCall:
    path: str
    query: dict[str, str]
    t: float
    depth_sent_on_conn: int  # depth frames already sent on the current connection
    conn: int                # index of the WebSocket connection current at the time
    status: int = 200
    body: bytes = b""


@dataclass
class FakeBinance:
    """Streams `frames` (shared cursor: the live stream goes on between connections).

    Per-connection behaviour comes from `plans[i]` for the i-th connection:
    `drop_after` (abrupt TCP close after N frames), `silent_after` (stop sending after N
    frames but keep reading, so pings are answered), `mute_after` (stop sending and reading:
    a dead peer that answers no pings), `lose` (frames that happen while disconnected),
    `pause_first_ms` (wait before the first frame), `cut_after` (abrupt TCP close after N
    frames, without waiting for the connection's snapshot to be served).
    """

    frames: tuple[bytes, ...]
    snapshots: dict[str, bytes]
    plans: list[dict[str, int]] = field(default_factory=list)
    skip: set[int] = field(default_factory=set)        # frame indices never sent (a gap)
    binary_before: set[int] = field(default_factory=set)
    inject_before: dict[int, bytes] = field(default_factory=dict)  # extra text frames
    rest_plan: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    rest_delay_s: list[float] = field(default_factory=list)  # per REST call, in order
    static_snapshot: bool = False
    batch: int = 20
    batch_sleep_s: float = 0.002

    def __post_init__(self) -> None:
        self.cursor = 0
        self.sent: list[int] = []                      # indices of frames sent, in order
        self.sent_raw: list[bytes] = []                # every text payload sent, in order
        self.ws_requests: list[dict[str, Any]] = []
        self.ws_closed = 0
        self.conn_ended_at: list[float] = []
        self.rest_calls: list[RestCall] = []
        self.truth = {s: TrueBook(b) for s, b in self.snapshots.items()}
        self.depth_sent_on_conn = 0
        self._parsed = [orjson.loads(f)["data"] for f in self.frames]
        self.exhausted = asyncio.Event()

    def _advance(self, i: int) -> None:
        data = self._parsed[i]
        if data.get("e") == "depthUpdate" and data["s"] in self.truth:
            self.truth[data["s"]].apply(data)

    async def ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        n = len(self.ws_requests)
        plan = self.plans[n] if n < len(self.plans) else {}
        self.ws_requests.append({"streams": request.query.get("streams"),
                                 "t": time.monotonic()})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # aiohttp answers pings only inside receive(): keep reading so the client's heartbeat
        # gets its pongs (and its close frame is seen), except when playing a dead peer.
        reader = asyncio.create_task(self._drain(ws))
        self.depth_sent_on_conn = 0
        sent = 0
        try:
            # Hold the first frame back: a feed that fetched its snapshot right at connect
            # (instead of after the first diff) would be caught by depth_sent_on_conn == 0.
            await asyncio.sleep(plan.get("pause_first_ms", 0) / 1000)
            for _ in range(plan.get("lose", 0)):
                self._advance(self.cursor)
                self.cursor += 1
            while self.cursor < len(self.frames) and not reader.done():
                if sent == plan.get("cut_after"):
                    assert request.transport is not None
                    request.transport.close()
                    return ws
                if sent == plan.get("drop_after"):
                    # Let this connection's snapshot reach the client first, so every
                    # connection in the test has a snapshot to account for.
                    await self._snapshot_served_on_conn(n)
                    assert request.transport is not None
                    request.transport.close()
                    return ws
                if sent == plan.get("silent_after"):
                    await reader  # until the client gives up on us
                    return ws
                if sent == plan.get("mute_after"):
                    reader.cancel()
                    while request.transport is not None and not request.transport.is_closing():
                        await asyncio.sleep(0.02)
                    return ws
                i = self.cursor
                self.cursor += 1
                self._advance(i)
                if i in self.skip:
                    continue
                if i in self.binary_before:
                    await ws.send_bytes(b"\x00\xffnot text")
                if i in self.inject_before:
                    await self._send_text(ws, self.inject_before[i])
                await self._send_text(ws, self.frames[i])
                self.sent.append(i)
                if self._parsed[i].get("e") == "depthUpdate":
                    self.depth_sent_on_conn += 1
                sent += 1
                if sent % self.batch == 0:
                    await asyncio.sleep(self.batch_sleep_s)
            self.exhausted.set()
            await reader  # stay connected and idle, like a quiet market
            return ws
        finally:
            reader.cancel()
            self.ws_closed += 1
            self.conn_ended_at.append(time.monotonic())

    async def _send_text(self, ws: web.WebSocketResponse, payload: bytes) -> None:
        # send_frame puts these exact bytes on the wire (send_str would need valid UTF-8).
        await ws.send_frame(payload, WSMsgType.TEXT)
        self.sent_raw.append(payload)

    async def _snapshot_served_on_conn(self, conn: int) -> None:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            served = [c for c in self.rest_calls if c.conn == conn and c.status == 200]
            if served and time.monotonic() - served[0].t > 0.05:
                return
            await asyncio.sleep(0.005)

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for _ in ws:
            pass

    async def depth_handler(self, request: web.Request) -> web.Response:
        call = RestCall(request.path, dict(request.query), time.monotonic(),
                        self.depth_sent_on_conn, len(self.ws_requests) - 1)
        self.rest_calls.append(call)
        if len(self.rest_calls) <= len(self.rest_delay_s):
            await asyncio.sleep(self.rest_delay_s[len(self.rest_calls) - 1])
        if self.rest_plan:
            call.status, call.body, headers = self.rest_plan.pop(0)
            return web.Response(status=call.status, body=call.body, headers=headers)
        sym = request.query["symbol"]
        book = self.truth[sym]
        call.body = book.recorded if self.static_snapshot else book.snapshot(
            int(request.query.get("limit", "1000")))
        return web.Response(body=call.body, content_type="application/json")

    @property
    def ok_calls(self) -> list[RestCall]:
        return [c for c in self.rest_calls if c.status == 200 and c.body.startswith(b'{"last')]


@contextlib.asynccontextmanager
async def serve(fake: FakeBinance) -> AsyncIterator[tuple[str, str]]:
    """Run the fake on 127.0.0.1:<random port>; yields (ws_base, rest_base)."""
    app = web.Application()
    app.router.add_get("/stream", fake.ws_handler)
    app.router.add_get("/api/v3/depth", fake.depth_handler)
    app.router.add_get("/fapi/v1/depth", fake.depth_handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------ helpers


@dataclass
class Received:
    recv_ns: int
    raw: bytes
    symbol: str | None


class Collector:
    def __init__(self, hook: Callable[[Received], None] | None = None) -> None:
        self.items: list[Received] = []
        self.hook = hook

    def __call__(self, recv_ns: int, raw: bytes, symbol: str | None) -> None:
        r = Received(recv_ns, raw, symbol)
        self.items.append(r)
        if self.hook is not None:
            self.hook(r)

    @property
    def stream(self) -> list[bytes]:
        return [r.raw for r in self.items if r.symbol is None]

    @property
    def snapshots(self) -> list[Received]:
        return [r for r in self.items if r.symbol is not None]


def fast_feed(on_message: Callable[[int, bytes, str | None], None], ws_base: str,
              rest_base: str, **kw: Any) -> BinanceLiveFeed:
    """A feed with every timeout and backoff shortened for tests."""
    opts: dict[str, Any] = dict(
        ws_base=ws_base, rest_base=rest_base, stale_after_s=3.0, ws_heartbeat_s=5.0,
        connect_timeout_s=2.0, close_timeout_s=0.2, backoff_initial_s=0.05,
        backoff_max_s=0.4, healthy_after_s=100.0, first_diff_timeout_s=2.0,
        snapshot_min_interval_s=0.05, snapshot_timeout_s=2.0,
        snapshot_backoff_initial_s=0.05, snapshot_backoff_max_s=0.2,
        rng=random.Random(1234))
    opts.update(kw)
    symbols = opts.pop("symbols", ["BTCUSDT"])
    return BinanceLiveFeed(symbols, on_message, **opts)


async def until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


async def stop_feed(feed: BinanceLiveFeed, task: asyncio.Task[None]) -> None:
    # Awaiting stop() returns once run() has closed the connection and the session.
    await asyncio.wait_for(feed.stop(), 30.0)
    assert task.done() and task.exception() is None
    assert feed.status()["running"] is False and feed.connected is False


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 25))  # type: ignore[arg-type]


def depth_ids(raw: bytes) -> tuple[int, int] | None:
    data = orjson.loads(raw)["data"]
    return (data["U"], data["u"]) if data.get("e") == "depthUpdate" else None


# ------------------------------------------------------------------------ unit tests


def test_urls_and_stream_names_spot_and_futures() -> None:
    spot = BinanceLiveFeed(["btcusdt"], lambda *a: None)
    assert spot.ws_url == ("wss://stream.binance.com:9443/stream?streams="
                           "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker")
    assert spot.snapshot_url("BTCUSDT") == (
        "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000")
    fut = BinanceLiveFeed(["BTCUSDT", "ETHUSDT"], lambda *a: None, market="futures")
    assert BinanceLiveFeed(["BTCUSDT"], lambda *a: None, market="usdm").ws_url == (
        "wss://fstream.binance.com/stream?streams="
        "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker")
    assert fut.ws_url == ("wss://fstream.binance.com/stream?streams="
                          "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker/"
                          "ethusdt@trade/ethusdt@depth@100ms/ethusdt@bookTicker")
    assert fut.snapshot_url("ethusdt") == (
        "https://fapi.binance.com/fapi/v1/depth?symbol=ETHUSDT&limit=1000")
    fut0 = BinanceLiveFeed(["BTCUSDT"], lambda *a: None, market="futures",
                           depth_stream="@depth@0ms", snapshot_limit=500,
                           ws_base="ws://127.0.0.1:1/", rest_base="http://127.0.0.1:1/")
    assert fut0.ws_url == ("ws://127.0.0.1:1/stream?streams="
                           "btcusdt@trade/btcusdt@depth@0ms/btcusdt@bookTicker")
    assert fut0.snapshot_url("BTCUSDT") == (
        "http://127.0.0.1:1/fapi/v1/depth?symbol=BTCUSDT&limit=500")


@pytest.mark.parametrize("kwargs", [
    dict(market="margin"), dict(snapshot_limit=750), dict(depth_stream="@trade"),
    dict(channels=("kline",)), dict(stale_after_s=0), dict(backoff_jitter=1.5),
    dict(backoff_factor=0.5), dict(connect_timeout_s=float("nan")),
])
def test_rejects_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BinanceLiveFeed(["BTCUSDT"], lambda *a: None, **kwargs)


@pytest.mark.parametrize("symbols", [[], ["BTC-USDT"], ["BTCUSDT", "btcusdt"]])
def test_rejects_bad_symbols(symbols: list[str]) -> None:
    with pytest.raises(ValueError):
        BinanceLiveFeed(symbols, lambda *a: None)


def test_request_snapshot_unknown_symbol_and_while_disconnected() -> None:
    feed = BinanceLiveFeed(["BTCUSDT"], lambda *a: None)
    with pytest.raises(ValueError):
        feed.request_snapshot("ETHUSDT")
    # Not connected: the next connection fetches its own snapshot, nothing is started now.
    assert feed.request_snapshot("btcusdt") is False
    assert feed.stats.snapshot_requests == 1 and feed.status()["snapshots_pending"] == []


def test_backoff_grows_caps_and_jitters_deterministically() -> None:
    kw = dict(initial_s=0.5, max_s=30.0, factor=2.0)
    plain = [backoff_delay(a, jitter=0.0, rng=random.Random(1), **kw) for a in range(10)]
    assert plain == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    a = [backoff_delay(n, jitter=0.5, rng=random.Random(7), **kw) for n in range(10)]
    b = [backoff_delay(n, jitter=0.5, rng=random.Random(7), **kw) for n in range(10)]
    assert a == b, "a seeded rng must give the same delays"
    assert all(p * 0.5 <= d <= p for d, p in zip(a, plain))
    assert a != plain, "jitter must change the delays"
    assert backoff_delay(10_000, jitter=0.0, rng=random.Random(1), **kw) == 30.0


# ------------------------------------------------------------------------ against the fake


@needs_data
def test_messages_byte_identical_in_order_snapshot_after_first_diff() -> None:
    frames, snap = capture("spot_btcusdt_20240808.gz", 3000)
    assert snap is not None
    # Besides the real frames: JSON a re-serialiser would rewrite (spaces, "1.50", key
    # order), non-JSON text and non-UTF-8 text. All are text frames: delivered unchanged.
    odd = {50: b'{ "stream" : "btcusdt@trade", "data": {"p": 1.50, "e": "trade"} }',
           700: b"not json at all",
           1200: b'{"data":"\xff\xfe","stream":"btcusdt@trade"}'}
    fake = FakeBinance(frames, {"BTCUSDT": snap}, static_snapshot=True,
                       binary_before={100, 1500}, inject_before=odd,
                       plans=[{"pause_first_ms": 200}])
    wd = Watchdog()
    hb = wd.register("binance-feed", 1.0)
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base, heartbeat=hb)
            t_start = time.time_ns()
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.stream) == len(frames) + 3 and got.snapshots, 10,
                        "all frames and the snapshot")
            t_end = time.time_ns()
            st = feed.status()
            assert st["connected"] is True and st["messages"] == len(frames) + 3
            assert st["last_message_age_s"] is not None
            await stop_feed(feed, task)
        # Every text frame arrives unchanged and in order; binary frames are dropped.
        assert got.stream == fake.sent_raw
        assert [r for r in got.stream if r.startswith(b'{"stream":"btcusdt@')] == list(frames)
        assert [r for r in got.stream if r in odd.values()] == list(odd.values())
        assert feed.stats.dropped_frames == 2 and feed.stats.callback_errors == 0
        assert feed.stats.bytes == sum(len(f) for f in fake.sent_raw)
        stream_ns = [r.recv_ns for r in got.items]
        assert stream_ns == sorted(stream_ns)
        assert t_start <= stream_ns[0] and stream_ns[-1] <= t_end
        # One snapshot, the REST body unchanged, with its symbol, fetched only after the
        # first diff of the connection had been sent (so the buffer overlaps it).
        assert len(got.snapshots) == 1 and fake.ws_requests[0]["streams"] == SPOT_STREAMS
        assert got.snapshots[0].raw == snap and got.snapshots[0].symbol == "BTCUSDT"
        (call,) = fake.rest_calls
        assert call.path == "/api/v3/depth"
        assert call.query == {"symbol": "BTCUSDT", "limit": "1000"}
        assert call.depth_sent_on_conn >= 1
        first_depth = next(i for i, r in enumerate(got.items)
                           if r.symbol is None and depth_ids(r.raw) is not None)
        assert got.items.index(got.snapshots[0]) > first_depth
        assert t_start <= got.snapshots[0].recv_ns <= t_end
        assert feed.stats.reconnects == 0 and feed.stats.stale_events == 0
        assert fake.ws_closed == 1, "stop() closes the connection"

    run(main())


@needs_data
@pytest.mark.parametrize("healthy_after_s,expected_attempt", [(0.0, 1), (100.0, 2)])
def test_reconnects_after_drops_resubscribes_and_continues(
        healthy_after_s: float, expected_attempt: int) -> None:
    frames, snap = capture("spot_btcusdt_20240808.gz", 2500)
    assert snap is not None
    fake = FakeBinance(frames, {"BTCUSDT": snap},
                       plans=[{"drop_after": 500}, {"drop_after": 400, "lose": 30},
                              {"lose": 30}])
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base, backoff_initial_s=0.2,
                             backoff_jitter=0.5, healthy_after_s=healthy_after_s,
                             rng=random.Random(99))
            task = asyncio.create_task(feed.run())
            await until(lambda: fake.exhausted.is_set() and len(got.stream) == len(fake.sent)
                        and len(got.snapshots) == 3, 10, "three connections' data")
            assert feed.connected
            await stop_feed(feed, task)
        # Same subscription every time, everything the server sent arrives in order.
        assert [r["streams"] for r in fake.ws_requests] == [SPOT_STREAMS] * 3
        assert got.stream == [frames[i] for i in fake.sent]
        assert len(fake.sent) == len(frames) - 60
        st = feed.stats
        assert (st.connects, st.reconnects, st.stale_events, st.connect_failures) == (3, 2, 0, 0)
        # A healthy connection resets the backoff; otherwise it keeps growing.
        assert feed.status()["backoff_attempt"] == expected_attempt
        # Each reconnect waited the (seeded, jittered) backoff delay.
        rng = random.Random(99)
        attempts = [0, 0] if healthy_after_s == 0.0 else [0, 1]
        delays = [backoff_delay(a, initial_s=0.2, max_s=0.4, factor=2.0, jitter=0.5, rng=rng)
                  for a in attempts]
        for k, d in enumerate(delays):
            waited = fake.ws_requests[k + 1]["t"] - fake.conn_ended_at[k]
            assert waited >= d - 0.02, (k, waited, d)
        # Every connection fetched its own snapshot after its first diff.
        assert len(fake.ok_calls) == 3 and all(c.depth_sent_on_conn >= 1 for c in fake.ok_calls)
        assert [r.raw for r in got.snapshots] == [c.body for c in fake.ok_calls]

    run(main())


@needs_data
def test_gap_then_request_snapshot_fetches_bridging_snapshot_coalesced() -> None:
    frames, snap = capture("spot_btcusdt_20240808.gz", 3000)
    assert snap is not None
    depth_idx = [i for i, f in enumerate(frames) if b"@depth" in f[:40]]
    gap = set(depth_idx[150:153])  # the server skips three diffs in a row
    fake = FakeBinance(frames, {"BTCUSDT": snap}, skip=gap)
    results: list[bool] = []
    gap_seen: list[int] = []  # U of the first diff after the gap
    state: dict[str, Any] = {"prev_u": None, "have_snapshot": False, "pending": False}
    feed_box: list[BinanceLiveFeed] = []

    def hook(r: Received) -> None:
        # A stand-in for the book: check continuity, ask for a resync on a gap (three times,
        # as a book re-checking on every diff would), only once the first sync happened.
        if r.symbol is not None:
            state["have_snapshot"] = True
            if state["pending"]:
                state["pending"] = False
                results.extend(feed_box[0].request_snapshot("BTCUSDT") for _ in range(3))
            return
        ids = depth_ids(r.raw)
        if ids is None:
            return
        if state["prev_u"] is not None and ids[0] != state["prev_u"] + 1 and not gap_seen:
            gap_seen.append(ids[0])
            if state["have_snapshot"]:
                results.extend(feed_box[0].request_snapshot("BTCUSDT") for _ in range(3))
            else:
                state["pending"] = True
        state["prev_u"] = ids[1]

    got = Collector(hook)

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base)
            feed_box.append(feed)
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.snapshots) == 2 and fake.exhausted.is_set()
                        and len(got.stream) == len(fake.sent), 10, "the resync snapshot")
            await asyncio.sleep(0.1)  # no third fetch may follow
            await stop_feed(feed, task)
        assert gap_seen, "the server-side gap must be visible in the stream"
        assert results == [True, False, False]
        st = feed.stats
        assert (st.snapshot_requests, st.snapshot_coalesced, st.snapshots) == (4, 2, 2)
        assert len(fake.rest_calls) == 2
        second = orjson.loads(got.snapshots[1].raw)
        # The new snapshot covers the gap: the first diff after it can be applied on top.
        assert second["lastUpdateId"] + 1 >= gap_seen[0]
        assert got.snapshots[1].raw == fake.rest_calls[1].body

    run(main())


@needs_data
def test_silent_server_detected_as_stale_feed_stays_alive_then_reconnects() -> None:
    """A silent exchange is a data problem (the connection is dropped and retried), not a
    hung feed: the watchdog heartbeat keeps beating, so systemd never kills a healthy
    daemon for a network outage (issue 6, defect 9)."""
    frames, snap = capture("spot_btcusdt_20240808.gz", 1500)
    assert snap is not None
    fake = FakeBinance(frames, {"BTCUSDT": snap}, plans=[{"silent_after": 400}, {}])
    wd = Watchdog()
    hb = wd.register("binance-feed", 1.5)
    got = Collector()
    stale_after = 2.0   # the silence outlasts the heartbeat's deadline

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base, heartbeat=hb, stale_after_s=stale_after,
                             ws_heartbeat_s=5.0)
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.stream) >= 400, 10, "the first 400 frames")
            silent_from = time.monotonic()
            max_age = 0.0
            flagged = False
            while feed.stats.stale_events == 0:
                max_age = max(max_age, hb.age())
                flagged = flagged or any(n == "binance-feed" for n, _ in wd.stalled())
                assert len(got.stream) == 400
                assert time.monotonic() - silent_from < 60, "stale never detected"
                await asyncio.sleep(0.01)
            detected_after = time.monotonic() - silent_from
            assert detected_after >= stale_after - 0.05
            assert not flagged and max_age <= hb.deadline_s, (
                "a silent exchange must not look like a hung feed to the watchdog")
            await until(lambda: fake.exhausted.is_set() and len(got.stream) == len(fake.sent),
                        10, "the frames of the second connection")
            assert hb.age() < hb.deadline_s and wd.stalled() == []
            await stop_feed(feed, task)
        st = feed.stats
        assert (st.stale_events, st.reconnects, st.connects) == (1, 1, 2)
        assert got.stream == [frames[i] for i in fake.sent] and len(fake.sent) == len(frames)
        assert len(got.snapshots) == 2

    run(main())


@needs_data
def test_dead_peer_without_pongs_detected_by_ws_heartbeat() -> None:
    frames, snap = capture("spot_btcusdt_20240808.gz", 800)
    assert snap is not None
    # The peer stops sending and stops answering pings: half-open TCP as aiohttp sees it.
    fake = FakeBinance(frames, {"BTCUSDT": snap}, plans=[{"mute_after": 200}, {}])
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            # Staleness only after 60 s: a reconnect within the 30 s below can only come
            # from the ping/pong heartbeat.
            feed = fast_feed(got, ws_base, rest_base, ws_heartbeat_s=0.2, stale_after_s=60.0)
            task = asyncio.create_task(feed.run())
            await until(lambda: feed.stats.connects == 2, 30, "a reconnect after missing pongs")
            await until(lambda: fake.exhausted.is_set() and len(got.stream) == len(fake.sent),
                        10, "the rest of the frames")
            await stop_feed(feed, task)
        assert feed.stats.stale_events == 0 and feed.stats.reconnects == 1
        assert got.stream == [frames[i] for i in fake.sent]

    run(main())


@needs_data
def test_rest_errors_are_logged_and_retried_stream_keeps_going(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="daemon.market.binance_live")
    frames, snap = capture("spot_btcusdt_20240808.gz", 2000)
    assert snap is not None
    fake = FakeBinance(frames, {"BTCUSDT": snap}, rest_plan=[
        (500, b"internal error", {}),
        (200, b"<html>maintenance</html>", {}),
        (200, b'{"code":-1121,"msg":"Invalid symbol."}', {}),
        (429, b'{"code":-1003,"msg":"Too many requests"}', {"Retry-After": "0.4"}),
    ], batch_sleep_s=0.004)
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base)
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.snapshots) == 1, 10, "a snapshot after the errors")
            await until(lambda: fake.exhausted.is_set() and len(got.stream) == len(fake.sent),
                        10, "all frames")
            await stop_feed(feed, task)
        assert [c.status for c in fake.rest_calls] == [500, 200, 200, 429, 200]
        assert feed.stats.snapshot_failures == 4 and feed.stats.snapshots == 1
        # Retry-After on 429 is honoured before the next request.
        assert fake.rest_calls[4].t - fake.rest_calls[3].t >= 0.4 - 0.01
        assert got.snapshots[0].raw == fake.rest_calls[4].body
        assert got.snapshots[0].symbol == "BTCUSDT"
        # The stream was never interrupted by the REST trouble.
        assert got.stream == list(frames) and feed.stats.reconnects == 0
        text = caplog.text
        assert "HTTP 500" in text and "non-JSON" in text and "without lastUpdateId" in text
        assert "HTTP 429" in text

    run(main())


@needs_data
def test_callback_exception_stops_the_feed_and_reaches_the_caller(
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 6, defect 8: an exception from decode -> strategy -> gateway -> journal was
    caught here, counted and forgotten while the daemon kept trading. One policy in every
    mode: the feed stops and run() raises it to the daemon, which faults."""
    caplog.set_level(logging.WARNING, logger="daemon.market.binance_live")
    frames, snap = capture("spot_btcusdt_20240808.gz", 1500)
    assert snap is not None
    fake = FakeBinance(frames, {"BTCUSDT": snap})
    calls: list[bytes] = []

    def boom(recv_ns: int, raw: bytes, symbol: str | None) -> None:
        calls.append(raw)
        if len(calls) == 50:
            raise RuntimeError("journal failed under the strategy")

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(boom, ws_base, rest_base)
            with pytest.raises(RuntimeError, match="journal failed under the strategy"):
                await asyncio.wait_for(feed.run(), 10)
            assert feed.connected is False
        assert len(calls) == 50, "frames were delivered after the consumer failed"
        assert feed.stats.callback_errors == 1 and feed.stats.reconnects == 0
        logged = [r for r in caplog.records if "on_message raised" in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None

    run(main())


@needs_data
def test_futures_market_paths_stream_names_and_pu_frames() -> None:
    frames, snap = capture("usdm_btcusdt_20240808.gz", 1200)
    assert snap is not None
    fake = FakeBinance(frames, {"BTCUSDT": snap}, static_snapshot=True,
                       plans=[{"pause_first_ms": 100}])
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base, market="futures",
                             depth_stream="@depth@0ms")
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.stream) == len(frames) and got.snapshots, 10,
                        "all futures frames and the snapshot")
            await stop_feed(feed, task)
        assert fake.ws_requests[0]["streams"] == (
            "btcusdt@trade/btcusdt@depth@0ms/btcusdt@bookTicker")
        (call,) = fake.rest_calls
        assert call.path == "/fapi/v1/depth" and call.query == {"symbol": "BTCUSDT",
                                                                 "limit": "1000"}
        # The snapshot waited for the first @depth@0ms diff, not for the 2 s fallback.
        assert call.depth_sent_on_conn >= 1
        assert got.stream == list(frames) and got.snapshots[0].raw == snap
        assert any(b'"pu":' in f for f in got.stream)

    run(main())


@needs_data
def test_two_symbols_each_get_a_snapshot_after_their_own_first_diff() -> None:
    btc, btc_snap = capture("spot_btcusdt_20240808.gz", 1200)
    eth, eth_snap = capture("spot_ethusdt_20240808.gz", 1200)
    assert btc_snap is not None and eth_snap is not None
    frames = tuple(f for pair in zip(btc, eth) for f in pair)
    fake = FakeBinance(frames, {"BTCUSDT": btc_snap, "ETHUSDT": eth_snap}, static_snapshot=True)
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base, symbols=["BTCUSDT", "ethusdt"])
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.stream) == len(frames) and len(got.snapshots) == 2,
                        10, "both snapshots")
            await stop_feed(feed, task)
        assert fake.ws_requests[0]["streams"] == (
            SPOT_STREAMS + "/ethusdt@trade/ethusdt@depth@100ms/ethusdt@bookTicker")
        assert sorted(c.query["symbol"] for c in fake.rest_calls) == ["BTCUSDT", "ETHUSDT"]
        by_sym = {r.symbol: r.raw for r in got.snapshots}
        assert by_sym == {"BTCUSDT": btc_snap, "ETHUSDT": eth_snap}
        assert got.stream == list(frames)

    run(main())


def test_unreachable_exchange_backs_off_and_stops_promptly() -> None:
    # A port that was just free: connections are refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wd = Watchdog()
    hb = wd.register("binance-feed", 1.0)
    got = Collector()

    async def main() -> None:
        feed = fast_feed(got, f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}",
                         heartbeat=hb, backoff_initial_s=0.02, backoff_max_s=0.16,
                         backoff_jitter=0.0)
        task = asyncio.create_task(feed.run())
        await until(lambda: feed.stats.connect_failures >= 5, 5, "five refused connects")
        st = feed.status()
        assert st["connected"] is False and st["connects"] == 0 and st["messages"] == 0
        assert st["backoff_attempt"] >= 5 and st["reconnects"] >= 5
        assert st["last_message_age_s"] is None
        # The delays double up to the cap: 0.02+0.04+0.08+0.16 s before the 5th attempt.
        # An unreachable exchange is an outage, not a hung feed (issue 6, defect 9): the
        # feed keeps beating while it retries, so the watchdog never asks for a restart.
        assert wd.stalled() == []
        # stop() during a backoff sleep returns at once.
        await until(lambda: feed.status()["reconnect_in_s"] is not None, 2, "a backoff sleep")
        await stop_feed(feed, task)
        assert got.items == []

    t0 = time.monotonic()
    run(main())
    assert time.monotonic() - t0 >= 0.02 + 0.04 + 0.08 + 0.16 - 0.02


def test_stop_before_run_returns_immediately_and_sync_stop_works() -> None:
    async def main() -> None:
        feed = BinanceLiveFeed(["BTCUSDT"], lambda *a: None,
                               ws_base="ws://127.0.0.1:9", rest_base="http://127.0.0.1:9")
        feed.stop()  # not awaited: must still take effect (and warn about nothing)
        await asyncio.wait_for(feed.run(), 1.0)
        await asyncio.wait_for(feed.stop(), 1.0)
        assert feed.stats.connect_failures == 0 and feed.status()["running"] is False

    run(main())


@needs_data
def test_snapshot_in_flight_when_connection_drops_is_discarded() -> None:
    frames, snap = capture("spot_btcusdt_20240808.gz", 1500)
    assert snap is not None
    # The first snapshot answer is slow and the connection dies meanwhile: that snapshot
    # belongs to a stream that no longer exists and must not reach the book.
    fake = FakeBinance(frames, {"BTCUSDT": snap}, plans=[{"cut_after": 100}, {}],
                       rest_delay_s=[0.4])
    got = Collector()

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base)
            task = asyncio.create_task(feed.run())
            await until(lambda: fake.exhausted.is_set() and len(got.stream) == len(fake.sent)
                        and got.snapshots, 10, "the second connection's snapshot")
            await asyncio.sleep(0.5)  # past the slow answer
            await stop_feed(feed, task)
        assert [c.conn for c in fake.rest_calls] == [0, 1]
        assert len(got.snapshots) == 1 and feed.stats.snapshots == 1
        assert got.snapshots[0].raw == fake.rest_calls[1].body
        # Delivered after the second connection's first frame, never before it.
        first_of_conn1 = next(i for i, r in enumerate(got.items)
                              if r.symbol is None and r.raw == frames[fake.sent[100]])
        assert got.items.index(got.snapshots[0]) > first_of_conn1

    run(main())


@needs_data
def test_request_from_inside_snapshot_callback_starts_a_new_fetch() -> None:
    frames, snap = capture("spot_btcusdt_20240808.gz", 1500)
    assert snap is not None
    fake = FakeBinance(frames, {"BTCUSDT": snap})
    results: list[bool] = []
    feed_box: list[BinanceLiveFeed] = []

    def hook(r: Received) -> None:
        # A book that finds the first snapshot too old asks again right away.
        if r.symbol is not None and not results:
            results.append(feed_box[0].request_snapshot(r.symbol))

    got = Collector(hook)

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(got, ws_base, rest_base)
            feed_box.append(feed)
            task = asyncio.create_task(feed.run())
            await until(lambda: len(got.snapshots) == 2, 10, "the second snapshot")
            await stop_feed(feed, task)
        assert results == [True] and len(fake.rest_calls) == 2
        # Rate limit: the second fetch started no sooner than the minimum interval.
        assert fake.rest_calls[1].t - fake.rest_calls[0].t >= 0.05 - 0.005

    run(main())


@needs_data
@pytest.mark.parametrize("scenario", ["gap", "reconnect"])
def test_end_to_end_decoder_and_book_sync_lose_sync_and_resync(scenario: str) -> None:
    decode = pytest.importorskip("daemon.market.decode")
    book_mod = pytest.importorskip("daemon.market.book")
    frames, snap = capture("spot_btcusdt_20240808.gz", 3000)
    assert snap is not None
    depth_idx = [i for i, f in enumerate(frames) if b"@depth" in f[:40]]
    if scenario == "gap":
        fake = FakeBinance(frames, {"BTCUSDT": snap}, skip=set(depth_idx[150:153]))
    else:
        # The connection dies; 60 frames (some diffs among them) pass while we are away.
        fake = FakeBinance(frames, {"BTCUSDT": snap},
                           plans=[{"drop_after": 1500}, {"lose": 60}])
    assert any(i in depth_idx for i in range(1500, 1560)) or scenario == "gap"

    decoder = decode.Decoder(default_symbol="BTCUSDT")
    feed_box: list[BinanceLiveFeed] = []
    book = book_mod.OrderBook(
        "BTCUSDT", False, on_needs_snapshot=lambda b: feed_box[0].request_snapshot(b.symbol))
    validity: list[bool] = []

    def on_message(recv_ns: int, raw: bytes, symbol: str | None) -> None:
        if symbol is not None:
            decoder.last_symbol = symbol  # the snapshot JSON names no symbol
        ev = decoder.decode(recv_ns, raw)
        assert ev is not None, raw[:100]
        book.on_event(ev)
        if not validity or validity[-1] != book.valid:
            validity.append(book.valid)

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            feed = fast_feed(on_message, ws_base, rest_base)
            feed_box.append(feed)
            task = asyncio.create_task(feed.run())
            await until(lambda: fake.exhausted.is_set() and feed.stats.messages
                        == len(fake.sent) and book.valid and book.stats["resyncs"] == 1, 10,
                        "the book to resync after the break")
            await stop_feed(feed, task)
        assert feed.stats.callback_errors == 0
        # valid -> invalid (gap seen) -> valid (resynced from the new snapshot).
        assert validity == [False, True, False, True]
        assert book.stats["syncs"] == 1 and book.stats["gaps"] == 1
        assert feed.stats.snapshots == 2 and len(fake.rest_calls) == 2
        # After the resync the book is the exchange's book.
        truth = fake.truth["BTCUSDT"]
        assert book.last_update_id == truth.last_id
        for is_bid, side, sign in ((True, truth.bids, -1), (False, truth.asks, 1)):
            want = sorted(((float(p), float(q)) for p, q in side.items()),
                          key=lambda pq: sign * pq[0])[:20]
            assert book.levels(is_bid, 20) == want
        # The independent bookTicker check agrees with the rebuilt top of book.
        assert book.stats["quotes_agree"] > 10 and book.stats["quotes_disagree"] == 0, book.stats

    run(main())
