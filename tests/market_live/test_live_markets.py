"""Live market data of two markets on one engine (issue 9: spot and perpetual of one asset):
two local fake Binance exchanges on 127.0.0.1, one serving the spot capture and one the
USD-M capture, reached through [market] ws_base/rest_base and [market.endpoints.usdm].

Before this, a live config with "usdm:BTCUSDT" passed check-config and the feed then handed
the prefixed id to the spot connection, which refused it as a symbol."""
from __future__ import annotations

import asyncio

from daemon import config
from daemon.market.capture import CaptureReader, list_captures
from daemon.market.feed import MarketFeed
from daemon.market.instruments import captures_by_market
from daemon.market.live_markets import LiveMarkets
from daemon.safety.watchdog import Heartbeat, Watchdog
from tests.two_markets import two_markets
from tests.market_live.test_binance_live import FakeBinance, capture, needs_data, serve, until

TWO = two_markets('source = "binance"\nws_base = "{spot_ws}"\nrest_base = "{spot_rest}"\n'
                  '{record}\n',
                  '[market.endpoints.usdm]\nws_base = "{usdm_ws}"\nrest_base = "{usdm_rest}"\n')


def _cfg(tmp_path, spot: tuple[str, str], usdm: tuple[str, str], record: str = ""):
    f = tmp_path / "two.toml"
    f.write_text(TWO.format(spot_ws=spot[0], spot_rest=spot[1], usdm_ws=usdm[0],
                            usdm_rest=usdm[1],
                            record=f'record_dir = "{record}"' if record else ""))
    return config.load(f, environ={})


def _fakes() -> tuple[FakeBinance, FakeBinance]:
    frames, snap = capture("spot_btcusdt_20240808.gz", 3000)
    ufr, usnap = capture("usdm_btcusdt_20240808.gz", 3000)
    return (FakeBinance(frames=frames, snapshots={"BTCUSDT": snap}),
            FakeBinance(frames=ufr, snapshots={"BTCUSDT": usnap}))


@needs_data
def test_spot_and_usdm_live_on_one_feed_each_from_its_own_exchange(tmp_path):
    spot, usdm = _fakes()
    rec = tmp_path / "rec"

    async def main() -> None:
        async with serve(spot) as s_bases, serve(usdm) as u_bases:
            cfg = _cfg(tmp_path, s_bases, u_bases, str(rec))
            feed = MarketFeed(cfg, heartbeat=Watchdog().register("market", 5.0))
            task = asyncio.create_task(feed.run())
            await until(lambda: spot.exhausted.is_set() and usdm.exhausted.is_set(), 30,
                        "all frames of both markets sent")
            await until(lambda: feed.books["BTCUSDT"].valid
                        and feed.books["usdm:BTCUSDT"].valid, 10, "both books valid")
            # Each market's frames went through its own decoder, prefix and all.
            assert feed.decoders[""].stats["depth"] > 0
            assert feed.decoders["usdm:"].stats["depth"] > 0
            assert feed.books["usdm:BTCUSDT"].futures and not feed.books["BTCUSDT"].futures
            assert feed.degraded() == []
            st = feed.status()["live"]
            assert st["connected"] and set(st["markets"]) == {"spot", "usdm"}
            # Each exchange was asked for its own market's snapshot, at its own REST path.
            assert {c.path for c in spot.rest_calls} == {"/api/v3/depth"}
            assert {c.path for c in usdm.rest_calls} == {"/fapi/v1/depth"}
            n = len(usdm.rest_calls)
            assert feed._live.request_snapshot("usdm:BTCUSDT")
            await until(lambda: len(usdm.rest_calls) > n, 10, "the USD-M snapshot request")
            assert usdm.rest_calls[-1].query["symbol"] == "BTCUSDT"
            await feed.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    # What was recorded live is named by market, and replays as two markets again.
    files = list_captures(rec, "spot_btcusdt") + list_captures(rec, "usdm_btcusdt")
    groups = captures_by_market([str(f) for f in files], "spot")
    assert sorted(p for p, _ in groups) == ["", "usdm:"]
    usdm_recorded = [raw for _, raw in CaptureReader(list_captures(rec, "usdm_btcusdt"))]
    assert [r for r in usdm_recorded if r.startswith(b'{"stream"')] == usdm.sent_raw


@needs_data
def test_an_exception_after_one_markets_socket_stops_both_and_reaches_the_daemon(tmp_path):
    spot, usdm = _fakes()
    errors: list[str] = []

    async def main() -> None:
        async with serve(spot) as s_bases, serve(usdm) as u_bases:
            cfg = _cfg(tmp_path, s_bases, u_bases)
            feed = MarketFeed(cfg, heartbeat=Watchdog().register("market", 5.0),
                              on_error=errors.append)
            seen: list[str] = []

            def sink(ev):   # the engine after the book: fails on the 20th USD-M event
                feed.handle(ev)
                if ev.symbol == "usdm:BTCUSDT":
                    seen.append(ev.symbol)
                    if len(seen) == 20:
                        raise RuntimeError("strategy failed on the perpetual")
            feed.sink = sink
            task = asyncio.create_task(feed.run())
            done, _ = await asyncio.wait({task}, timeout=30)
            assert done, "the feed went on after the event path raised"
            assert isinstance(task.exception(), RuntimeError)
            assert not any(f.connected for f in feed._live.feeds.values())
            await feed.close()

    asyncio.run(main())
    assert len(errors) == 1 and "strategy failed on the perpetual" in errors[0]


def test_the_market_heartbeat_is_as_old_as_the_slowest_market(tmp_path):
    cfg = _cfg(tmp_path, ("ws://127.0.0.1:9", "http://127.0.0.1:9"),
               ("ws://127.0.0.1:9", "http://127.0.0.1:9"))
    hb = Heartbeat("market", 5.0)
    live = LiveMarkets(cfg, lambda *a: None, heartbeat=hb)
    spot_part, usdm_part = (live.feeds[m]._heartbeat for m in ("spot", "usdm"))
    assert spot_part is not hb and usdm_part is not hb
    usdm_part.last = 100.0          # the USD-M connection last made progress long ago
    spot_part.beat()                # the spot one is busy
    assert hb.last == 100.0         # the watchdog still sees the stalled market
    usdm_part.beat()
    assert hb.last == min(spot_part.last, usdm_part.last) > 100.0


def test_one_market_is_one_connection_as_before(tmp_path):
    cfg = _one(tmp_path)
    hb = Heartbeat("market", 5.0)
    live = LiveMarkets(cfg, lambda *a: None, heartbeat=hb)
    (feed,) = live.feeds.values()
    assert feed._heartbeat is hb and live.status() == feed.status()


def _one(tmp_path):
    f = tmp_path / "one.toml"
    f.write_text('[market]\nsource = "binance"\nsymbols = ["BTCUSDT"]\n'
                 '[instruments.BTCUSDT]\ntick_size = "0.01"\nlot_size = "0.00001"\n'
                 'min_notional = "5"\n')
    return config.load(f, environ={})
