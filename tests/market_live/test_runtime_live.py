"""The daemon's market runtime in live mode against a local fake Binance (WebSocket + REST
on 127.0.0.1): the book syncs, and what is recorded live replays bit for bit."""
from __future__ import annotations

import asyncio
import gzip

from daemon import config
from daemon.market.capture import CaptureReader, list_captures
from daemon.market.feed import MarketFeed as MarketRuntime
from daemon.safety.watchdog import Watchdog
from tests.daemon_harness import CONFIG
from tests.market_live.test_binance_live import (FakeBinance, capture, needs_data, serve,
                                                 until)


@needs_data
def test_live_runtime_syncs_book_and_records_replayable_capture(tmp_path):
    frames, snapshot = capture("spot_btcusdt_20240808.gz", 3000)
    fake = FakeBinance(frames=frames, snapshots={"BTCUSDT": snapshot})

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            cfg = config.load(CONFIG, environ={
                "BOT4__MARKET__SOURCE": "binance", "BOT4__MARKET__WS_BASE": ws_base,
                "BOT4__MARKET__REST_BASE": rest_base,
                "BOT4__MARKET__RECORD_DIR": str(tmp_path / "rec")})
            hb = Watchdog().register("market", 5.0)
            rt = MarketRuntime(cfg, heartbeat=hb)
            task = asyncio.create_task(rt.run())
            await until(lambda: fake.exhausted.is_set(), 30, "all frames sent")
            await until(lambda: rt.books["BTCUSDT"].valid, 10, "book valid")
            await until(lambda: rt.decoder.stats["quotes"] + rt.decoder.stats["trades"]
                        + rt.decoder.stats["depth"] >= len(fake.sent_raw) - 5, 10,
                        "frames decoded")
            assert rt.degraded() == []
            st = rt.status()
            assert st["live"]["connected"] and st["books"]["BTCUSDT"]["quotes_disagree"] == 0
            await rt.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    files = list_captures(tmp_path / "rec", "spot_btcusdt")
    assert files, "nothing recorded"
    recorded = [raw for _, raw in CaptureReader(files)]
    # Every frame the exchange sent and every snapshot body, byte for byte, in order.
    sent = [r for r in fake.sent_raw]
    snaps = [c.body for c in fake.ok_calls]
    assert [r for r in recorded if r.startswith(b'{"stream"')] == sent
    assert [r for r in recorded if r.startswith(b'{"last')] == snaps
    # And the file itself is exactly what the reader yields, in the shared capture format.
    text = b"".join(gzip.decompress(f.read_bytes()) for f in files)
    assert text == b"".join(b"%d %s\n" % rec for rec in CaptureReader(files))


@needs_data
def test_live_exception_in_the_event_path_reaches_the_daemon(tmp_path):
    """Issue 6, defect 8: in live mode an exception anywhere after the socket (decode, book,
    strategy, gateway, journal) was swallowed and counted. Now it goes to the daemon's one
    exception policy (`on_error` = the supervisor's fault), as it does in replay."""
    frames, snapshot = capture("spot_btcusdt_20240808.gz", 3000)
    fake = FakeBinance(frames=frames, snapshots={"BTCUSDT": snapshot})
    errors: list[str] = []

    async def main() -> None:
        async with serve(fake) as (ws_base, rest_base):
            cfg = config.load(CONFIG, environ={
                "BOT4__MARKET__SOURCE": "binance", "BOT4__MARKET__WS_BASE": ws_base,
                "BOT4__MARKET__REST_BASE": rest_base})
            rt = MarketRuntime(cfg, heartbeat=Watchdog().register("market", 5.0),
                               on_error=errors.append)
            seen = []

            def sink(ev):   # what the engine does after the book: here it fails
                rt.handle(ev)
                seen.append(ev.ts_ns)
                if len(seen) == 20:
                    raise RuntimeError("journal failed under the strategy")
            rt.sink = sink
            task = asyncio.create_task(rt.run())
            done, _ = await asyncio.wait({task}, timeout=30)
            assert done, "the feed went on after the event path raised"
            assert isinstance(task.exception(), RuntimeError)
            assert len(seen) == 20
            await rt.close()

    asyncio.run(main())
    assert len(errors) == 1 and "journal failed under the strategy" in errors[0]
