"""REST backfill of trades missing from a live feed (issue 11: live only).

When `DataQuality` sees exchange trade ids jump it records a `MissingTrades` window (the
exchange times of the trades on both sides of the hole). `fetch_missing_trades` asks
Binance's public aggregate-trades endpoint for that window (`/api/v3/aggTrades` spot,
`/fapi/v1/aggTrades` USD-M; `startTime`/`endTime` for the first page, then `fromId` =
last aggregate id + 1 while pages come back full), and turns every row into a `Trade`
through the same `Decoder` as the live stream (each row is wrapped as an `@aggTrade`
stream message). Binance refuses a startTime/endTime window over one hour, so longer
windows are asked for hour by hour.

What comes back are aggregate trades (one row per taker order and price), numbered by
aggregate id, not the stream's trade ids: they fill bars and volume, not the id sequence.
Their `ts_ns` is the exchange time (they were never received live). The window includes
its two edge milliseconds, so a trade already received at those instants can come back
once more. What cannot be backfilled: depth (only a fresh snapshot, the existing resync,
rebuilds the book; the diffs in between are gone) and bookTicker (no history at all).

Network only here, and only when called (live mode); never raises for network or HTTP
trouble: the result carries the error text.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import orjson

from daemon.market.decode import Decoder
from daemon.market.events import Trade

log = logging.getLogger(__name__)

PATHS = {"spot": "/api/v3/aggTrades", "usdm": "/fapi/v1/aggTrades"}
BASES = {"spot": "https://api.binance.com", "usdm": "https://fapi.binance.com"}
MAX_WINDOW_MS = 3_600_000
MAX_PAGES = 100          # 100 000 rows: a hole bigger than that is not a backfill any more


@dataclass
class BackfillResult:
    trades: list[Trade] = field(default_factory=list)
    requests: int = 0
    error: str | None = None


def agg_trades_url(base: str, venue: str, symbol: str, *, start_ms: int | None = None,
                   end_ms: int | None = None, from_id: int | None = None,
                   limit: int = 1000) -> str:
    """The request for one page: by time window, or from an aggregate id."""
    q: dict[str, object] = {"symbol": symbol.upper(), "limit": limit}
    if from_id is not None:
        q["fromId"] = from_id
    else:
        q["startTime"] = start_ms
        q["endTime"] = end_ms
    return f"{base.rstrip('/')}{PATHS[venue]}?{urlencode(q)}"


def decode_rows(decoder: Decoder, symbol: str, rows: list[dict]) -> list[Trade]:
    """Rows of the aggTrades answer -> Trades, through the stream decoder."""
    stream = f"{symbol.lower()}@aggTrade"
    out = []
    for row in rows:
        try:
            ns = int(row["T"]) * 1_000_000
        except (KeyError, TypeError, ValueError):
            ns = 0
        ev = decoder.decode(ns, orjson.dumps({"stream": stream, "data": row}))
        if isinstance(ev, Trade):
            out.append(ev)
    return out


async def fetch_missing_trades(session: aiohttp.ClientSession, symbol: str, venue: str,
                               start_ms: int, end_ms: int, *, base: str | None = None,
                               limit: int = 1000, timeout_s: float = 10.0,
                               decoder: Decoder | None = None) -> BackfillResult:
    """Every aggregate trade of `symbol` with exchange time in [start_ms, end_ms]."""
    base = base or BASES[venue]
    decoder = decoder or Decoder()
    res = BackfillResult()
    tmo = aiohttp.ClientTimeout(total=timeout_s)
    lo = start_ms
    try:
        while lo <= end_ms:
            hi = min(end_ms, lo + MAX_WINDOW_MS - 1)
            url = agg_trades_url(base, venue, symbol, start_ms=lo, end_ms=hi, limit=limit)
            for _ in range(MAX_PAGES):
                res.requests += 1
                async with session.get(url, timeout=tmo) as r:
                    body = await r.read()
                    if r.status != 200:
                        res.error = f"HTTP {r.status} from {url}: {body[:200]!r}"
                        return res
                rows = orjson.loads(body)
                if not isinstance(rows, list):
                    res.error = f"not a list from {url}: {body[:200]!r}"
                    return res
                keep = [x for x in rows if isinstance(x, dict) and lo <= x.get("T", -1) <= hi]
                res.trades.extend(decode_rows(decoder, symbol, keep))
                # A short page is the last; so is one that reached past the window.
                if len(rows) < limit or not keep or keep[-1] is not rows[-1]:
                    break
                url = agg_trades_url(base, venue, symbol, from_id=int(rows[-1]["a"]) + 1,
                                     limit=limit)
            else:
                res.error = f"more than {MAX_PAGES} pages of {limit}: stopped"
                return res
            lo = hi + 1
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError, ValueError,
            KeyError, TypeError) as e:
        res.error = f"{type(e).__name__}: {e}"
    if res.error:
        log.warning("%s %s trade backfill failed: %s", venue, symbol, res.error)
    return res
