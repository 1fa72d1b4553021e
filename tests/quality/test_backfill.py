"""REST backfill of missing trades against a real HTTP server on 127.0.0.1 (aiohttp),
answering like Binance's aggTrades endpoint (limit, startTime/endTime, fromId), with the
rows going through the stream decoder. No internet."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from daemon.market.decode import Decoder
from daemon.quality.backfill import agg_trades_url, fetch_missing_trades

T0_MS = 1_723_161_400_000
ROWS = [{"a": 1000 + i, "p": f"{60000 + i % 7}.12", "q": f"0.{i % 9 + 1:03d}",
         "f": 5000 + 2 * i, "l": 5001 + 2 * i, "T": T0_MS + 10 * i, "m": i % 2 == 0,
         "M": True} for i in range(2500)]


class FakeBinance:
    def __init__(self, path: str = "/api/v3/aggTrades", fail: int | None = None) -> None:
        self.path, self.fail = path, fail
        self.requests: list[dict] = []

    async def handle(self, req: web.Request) -> web.Response:
        q = dict(req.query)
        self.requests.append(q)
        if self.fail:
            return web.json_response({"code": -1003, "msg": "Too many requests"},
                                     status=self.fail)
        if q.get("symbol") != "BTCUSDT":
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(q.get("limit", 500))
        if "fromId" in q:
            rows = [r for r in ROWS if r["a"] >= int(q["fromId"])]
        else:
            lo, hi = int(q["startTime"]), int(q["endTime"])
            if hi - lo > 3_600_000:
                return web.json_response({"code": -1127, "msg": "More than 1 hour"},
                                         status=400)
            rows = [r for r in ROWS if lo <= r["T"] <= hi]
        return web.json_response(rows[:limit])


async def _serve(fake: FakeBinance, coro_factory):
    app = web.Application()
    app.router.add_get(fake.path, fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            return await coro_factory(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def test_request_urls():
    assert agg_trades_url("https://api.binance.com/", "spot", "btcusdt", start_ms=1,
                          end_ms=2, limit=1000) == (
        "https://api.binance.com/api/v3/aggTrades?symbol=BTCUSDT&limit=1000&startTime=1"
        "&endTime=2")
    assert agg_trades_url("https://fapi.binance.com", "usdm", "BTCUSDT", from_id=7,
                          limit=5) == (
        "https://fapi.binance.com/fapi/v1/aggTrades?symbol=BTCUSDT&limit=5&fromId=7")


def test_window_paged_by_from_id_and_decoded():
    fake = FakeBinance()
    start, end = T0_MS + 1000, T0_MS + 22_000           # rows 100..2200
    dec = Decoder()
    res = asyncio.run(_serve(fake, lambda s, base: fetch_missing_trades(
        s, "BTCUSDT", "spot", start, end, base=base, limit=1000, decoder=dec)))
    assert res.error is None
    assert [t.trade_id for t in res.trades] == list(range(1100, 3201))
    assert res.requests == 3
    assert fake.requests[0] == {"symbol": "BTCUSDT", "limit": "1000",
                                "startTime": str(start), "endTime": str(end)}
    assert fake.requests[1] == {"symbol": "BTCUSDT", "limit": "1000", "fromId": "2100"}
    t = res.trades[0]
    assert (t.symbol, t.price, t.qty, t.buyer_is_maker, t.exch_ms) == (
        "BTCUSDT", 60002.12, 0.002, True, T0_MS + 1000)
    assert t.ts_ns == t.exch_ms * 1_000_000
    assert dec.stats["agg_trades"] == 2101


def test_futures_path_and_windows_over_an_hour():
    fake = FakeBinance("/fapi/v1/aggTrades")
    start, end = T0_MS - 2 * 3_600_000, T0_MS + 5_000   # 2 h before the rows start
    res = asyncio.run(_serve(fake, lambda s, base: fetch_missing_trades(
        s, "BTCUSDT", "usdm", start, end, base=base, limit=1000)))
    assert res.error is None and len(res.trades) == 501
    windows = [(int(q["startTime"]), int(q["endTime"])) for q in fake.requests
               if "startTime" in q]
    assert len(windows) == 3 and all(hi - lo < 3_600_000 for lo, hi in windows)


@pytest.mark.parametrize("status", [429, 418, 500])
def test_http_errors_are_reported_not_raised(status):
    fake = FakeBinance(fail=status)
    res = asyncio.run(_serve(fake, lambda s, base: fetch_missing_trades(
        s, "BTCUSDT", "spot", T0_MS, T0_MS + 1000, base=base)))
    assert res.trades == [] and res.error.startswith(f"HTTP {status}")


def test_connection_refused_is_reported_not_raised():
    async def run():
        # A port that was just free: nothing listens there.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        async with aiohttp.ClientSession() as session:
            return await fetch_missing_trades(session, "BTCUSDT", "spot", T0_MS,
                                              T0_MS + 1000, base=f"http://127.0.0.1:{port}")
    res = asyncio.run(run())
    assert res.trades == [] and res.error and "Connect" in res.error
