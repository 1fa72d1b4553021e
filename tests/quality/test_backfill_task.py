"""`BackfillTask` (the daemon's REST backfill loop) and `DataQuality.on_backfill`, against a
real aiohttp server on 127.0.0.1 answering like Binance's aggTrades endpoint (the fake of
test_backfill.py) and a port nobody listens on. A real `DataQuality` fed trades whose ids
jump finds the windows. No internet, no timing assertions: the loop is waited on with a
deadline, and backoff is shown by a window that is not due yet not being asked for."""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from daemon.config import QualityCfg
from daemon.market.events import Trade
from daemon.quality.backfill_task import BackfillTask, retry_delay
from daemon.quality.monitor import DataQuality, MissingTrades
from tests.quality.test_backfill import ROWS, T0_MS, FakeBinance

SYM = "BTCUSDT"


@contextlib.asynccontextmanager
async def serve(fake: FakeBinance) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(fake.path, fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def closed_port() -> str:
    with socket.socket() as s:        # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def until(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """A condition, waited on with a generous deadline (a failure, not a measurement)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Feed:
    """Trades into a real DataQuality; `skip(n)` makes the next trade id jump by n + 1."""

    def __init__(self, dq: DataQuality, venue: str | None = None) -> None:
        self.dq, self.venue, self.tid, self.ms = dq, venue, 1, T0_MS

    def trades(self, n: int, dt_ms: int = 15) -> None:
        for _ in range(n):
            self.dq.on_trade(Trade(SYM, self.ms * 10**6 + 5 * 10**6, self.ms, self.tid,
                                   60_000.0, 0.01, False), self.venue)
            self.tid += 1
            self.ms += dt_ms

    def skip(self, n: int) -> None:
        self.tid += n


def requests_for(fake: FakeBinance, w: MissingTrades) -> int:
    return sum(1 for q in fake.requests if q.get("startTime") == str(w.start_ms)
               and q.get("endTime") == str(w.end_ms))


def expected_ids(w: MissingTrades) -> list[int]:
    return [r["a"] for r in ROWS if w.start_ms <= r["T"] <= w.end_ms]


def backfill_status(dq: DataQuality, key: str = SYM) -> dict:
    st = dq.status()
    json.dumps(st, allow_nan=False)
    return st["symbols"][key]["layers"]["monitoring"]["backfill"]


async def running(task: BackfillTask, body: Callable[[asyncio.Task], Awaitable[None]]) -> None:
    t = asyncio.create_task(task.run(), name="backfill")
    try:
        await until(lambda: task.running, "the task to start")
        await body(t)
        assert not t.done(), "run() ended"
    finally:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    assert not task.running


def test_retry_delay_doubles_and_caps():
    assert [retry_delay(a, 2.0, 60.0) for a in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(1, 0.0, 60.0) == 0.0


def test_rest_base_defaults_to_binance_and_venue_is_checked():
    dq = DataQuality(QualityCfg(), [SYM])
    assert BackfillTask(dq, "", "spot").base == "https://api.binance.com"
    assert BackfillTask(dq, "", "usdm").base == "https://fapi.binance.com"
    assert BackfillTask(dq, "http://127.0.0.1:9/", "spot").base == "http://127.0.0.1:9"
    with pytest.raises(ValueError):
        BackfillTask(dq, "", "futures")
    with pytest.raises(ValueError):
        BackfillTask(dq, "", "spot", max_attempts=0)


def test_on_backfill_counts_in_the_monitoring_layer():
    dq = DataQuality(QualityCfg(), [SYM])
    feed = Feed(dq)
    feed.trades(5)
    feed.skip(3)
    feed.trades(2)
    (w,) = dq.missing_trades()
    assert backfill_status(dq) == {"windows": 1, "fetched": 0, "failed": 0, "given_up": 0,
                                   "trades": 0, "last_error": None}
    dq.on_backfill(w, 0, "HTTP 500 from x")
    dq.on_backfill(w, 0, "HTTP 500 from y", gave_up=True)
    dq.on_backfill(w, 70)
    dq.on_backfill(MissingTrades("ETHUSDT", "spot", 1, 2, 0, 1), 9)   # not configured: ignored
    assert backfill_status(dq) == {"windows": 1, "fetched": 1, "failed": 2, "given_up": 1,
                                   "trades": 70, "last_error": "HTTP 500 from y"}
    assert dq.status()["symbols"][SYM]["layers"]["monitoring"]["trades"] == 7


def test_gap_fetched_exactly_once_shown_backfilled_and_handed_on():
    dq = DataQuality(QualityCfg(), [SYM])
    feed = Feed(dq)
    got: list[list[Trade]] = []
    fake = FakeBinance()

    async def main() -> None:
        async with serve(fake) as base:
            task = BackfillTask(dq, base, "spot", on_trades=got.append, interval_s=0.01)

            async def body(_t: asyncio.Task) -> None:
                feed.trades(10)
                feed.skip(40)                    # trade ids 11..50 never arrive
                feed.trades(10)
                await until(lambda: backfill_status(dq)["fetched"] == 1, "the first window")
                # More passes go by; a second gap is only fetched by a later pass, so when
                # it is in, the first window has been offered to many passes already.
                feed.skip(5)
                feed.trades(3)
                await until(lambda: backfill_status(dq)["fetched"] == 2, "the second window")
                assert task.status()["pending"] == 0

            await running(task, body)
            return task

    task = asyncio.run(main())
    w1 = MissingTrades(SYM, "spot", 11, 50, T0_MS + 9 * 15, T0_MS + 10 * 15)
    w2 = MissingTrades(SYM, "spot", 61, 65, T0_MS + 19 * 15, T0_MS + 20 * 15)
    assert requests_for(fake, w1) == 1 and requests_for(fake, w2) == 1
    assert len(fake.requests) == 2
    ids1, ids2 = expected_ids(w1), expected_ids(w2)
    assert ids1 and ids2
    assert [[t.trade_id for t in batch] for batch in got] == [ids1, ids2]
    assert all(t.symbol == SYM and t.ts_ns == t.exch_ms * 10**6 for b in got for t in b)
    bf = backfill_status(dq)
    assert bf == {"windows": 2, "fetched": 2, "failed": 0, "given_up": 0,
                  "trades": len(ids1) + len(ids2), "last_error": None}
    mon = dq.status()["symbols"][SYM]["layers"]["monitoring"]
    # Aggregate trades fill bars, not the id sequence: they never enter the layers.
    assert mon["trades"] == 23 and mon["missing_trades"] == 45
    st = task.status()
    assert (st["windows"], st["fetched"], st["failed"], st["trades"], st["requests"]) == \
        (2, 2, 0, len(ids1) + len(ids2), 2)


def test_the_same_window_offered_again_is_never_fetched_again():
    dq = DataQuality(QualityCfg(), [SYM])
    fake = FakeBinance()
    w = MissingTrades(SYM, "spot", 11, 50, T0_MS + 100, T0_MS + 300)

    async def main() -> BackfillTask:
        async with serve(fake) as base, aiohttp.ClientSession() as session:
            task = BackfillTask(dq, base, "spot")
            dq.backfill.append(w)
            await task.step(session)
            dq.backfill.append(w)                # the same hole reported again
            await task.step(session)
            await task.step(session)
            return task

    task = asyncio.run(main())
    assert requests_for(fake, w) == 1 and len(fake.requests) == 1
    assert (task.counts["windows"], task.counts["repeated"], task.counts["fetched"]) == (1, 1, 1)


def test_http_500_retried_with_backoff_then_given_up_and_the_task_goes_on():
    dq = DataQuality(QualityCfg(), [SYM])
    feed = Feed(dq)
    fake = FakeBinance(fail=500)
    got: list[list[Trade]] = []

    async def main() -> BackfillTask:
        async with serve(fake) as base:
            task = BackfillTask(dq, base, "spot", on_trades=got.append, interval_s=0.01,
                                max_attempts=3, backoff_s=0.01, backoff_max_s=0.05)

            async def body(_t: asyncio.Task) -> None:
                feed.trades(5)
                feed.skip(10)
                feed.trades(5)
                await until(lambda: task.counts["given_up"] == 1, "giving up")
                fake.fail = None                 # the exchange answers again
                feed.skip(2)
                feed.trades(2)
                await until(lambda: task.counts["fetched"] == 1, "the next window")

            await running(task, body)
            return task

    task = asyncio.run(main())
    w1 = MissingTrades(SYM, "spot", 6, 15, T0_MS + 4 * 15, T0_MS + 5 * 15)
    assert requests_for(fake, w1) == 3          # max_attempts, and never again after
    bf = backfill_status(dq)
    assert (bf["windows"], bf["fetched"], bf["failed"], bf["given_up"]) == (2, 1, 3, 1)
    assert bf["last_error"].startswith("HTTP 500")
    assert len(got) == 1 and bf["trades"] == len(got[0]) > 0
    st = task.status()
    assert (st["failed"], st["given_up"], st["fetched"], st["pending"]) == (3, 1, 1, 0)


def test_a_failed_window_is_not_asked_for_again_before_its_backoff():
    dq = DataQuality(QualityCfg(), [SYM])
    fake = FakeBinance(fail=500)
    w = MissingTrades(SYM, "spot", 11, 50, T0_MS + 100, T0_MS + 300)

    async def main() -> BackfillTask:
        async with serve(fake) as base, aiohttp.ClientSession() as session:
            # A backoff no test run can outlast: the second pass must find it not due.
            task = BackfillTask(dq, base, "spot", max_attempts=5, backoff_s=3600.0)
            dq.backfill.append(w)
            await task.step(session)
            await task.step(session)
            return task

    task = asyncio.run(main())
    assert len(fake.requests) == 1
    st = task.status()
    assert st["pending"] == 1 and st["retrying"] == [
        {"symbol": SYM, "first_id": 11, "last_id": 50, "attempts": 1}]
    assert (st["failed"], st["given_up"]) == (1, 0)
    assert backfill_status(dq)["given_up"] == 0


def test_closed_port_counted_given_up_and_running():
    dq = DataQuality(QualityCfg(), [SYM])
    feed = Feed(dq)

    async def main() -> BackfillTask:
        task = BackfillTask(dq, closed_port(), "spot", interval_s=0.01, max_attempts=2,
                            backoff_s=0.0)

        async def body(_t: asyncio.Task) -> None:
            feed.trades(3)
            feed.skip(4)
            feed.trades(3)
            await until(lambda: task.counts["given_up"] == 1, "giving up")

        await running(task, body)
        return task

    task = asyncio.run(main())
    bf = backfill_status(dq)
    assert (bf["windows"], bf["fetched"], bf["failed"], bf["given_up"]) == (1, 0, 2, 1)
    assert "Connect" in bf["last_error"] and "Connect" in task.status()["last_error"]


def test_other_venue_window_given_up_without_a_request():
    dq = DataQuality(QualityCfg(), [SYM])
    spot, fut = Feed(dq), Feed(dq, "usdm")
    fake = FakeBinance()

    async def main() -> BackfillTask:
        async with serve(fake) as base:
            task = BackfillTask(dq, base, "spot", interval_s=0.01)

            async def body(_t: asyncio.Task) -> None:
                fut.trades(3)
                fut.skip(4)
                fut.trades(3)
                spot.trades(3)
                spot.skip(4)
                spot.trades(3)
                await until(lambda: task.counts["fetched"] == 1, "the spot window")

            await running(task, body)
            return task

    task = asyncio.run(main())
    assert len(fake.requests) == 1 and task.counts["other_venue"] == 1
    fb = backfill_status(dq, "usdm:BTCUSDT")
    assert (fb["windows"], fb["fetched"], fb["given_up"]) == (1, 0, 1)
    assert "no REST base for venue 'usdm'" in fb["last_error"]
    assert backfill_status(dq)["fetched"] == 1


def test_a_consumer_bug_ends_the_task_it_is_not_swallowed():
    """One exception policy: network trouble is counted and retried; a bug in what the
    task calls ends it, and the daemon's task-done handler turns that into a fault."""
    dq = DataQuality(QualityCfg(), [SYM])
    spot = Feed(dq)
    fake = FakeBinance()

    def broken(_trades: list[Trade]) -> None:
        raise RuntimeError("consumer bug")

    async def main() -> None:
        async with serve(fake) as base:
            task = BackfillTask(dq, base, "spot", on_trades=broken, interval_s=0.01)
            spot.trades(3)
            spot.skip(4)
            spot.trades(3)
            with pytest.raises(RuntimeError, match="consumer bug"):
                await asyncio.wait_for(task.run(), 30)
            assert not task.running and len(fake.requests) == 1

    asyncio.run(main())

