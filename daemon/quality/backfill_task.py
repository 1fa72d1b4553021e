"""The live daemon's REST backfill loop (issue 11 item 5: live only).

Once a second `BackfillTask.run` takes the missing-trade windows `DataQuality` recorded
(exchange trade ids that jumped), fetches each one with `fetch_missing_trades` over one
`aiohttp.ClientSession` it owns, one window at a time, and reports every outcome to
`DataQuality.on_backfill` (counts in the monitoring layer) and the trades to `on_trades`.
A failed fetch is retried after a doubling backoff, at most `max_attempts` times in all, then
given up (counted, logged, last error shown). A failed attempt hands nothing on: its pages
are asked for again by the retry, so no trade is handed on twice.

It must never fetch a window twice once fetched, never raise out of `run` (the supervisor
treats a task that ends as a fault) and never touch the market feed: the depth book's resync
is the feed's own business, and bookTicker has no history to fetch.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from daemon.market.events import Trade
from daemon.quality.backfill import BASES, fetch_missing_trades
from daemon.quality.monitor import DataQuality, MissingTrades

log = logging.getLogger(__name__)

_MAX_PENDING = 1000      # windows waiting (DataQuality keeps 100 per take): bounded memory
_MAX_SEEN = 10_000       # windows remembered to refuse a second fetch


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): doubling, capped."""
    return min(base_s * 2 ** max(attempt - 1, 0), max_s)


@dataclass
class _Job:
    window: MissingTrades
    attempts: int = 0
    due: float = 0.0          # loop time of the next attempt


def _key(w: MissingTrades) -> tuple[str, str, int, int]:
    return (w.venue, w.symbol, w.first_id, w.last_id)


class BackfillTask:
    def __init__(self, quality: DataQuality, rest_base: str, venue: str, *,
                 on_trades: Callable[[list[Trade]], None] | None = None,
                 interval_s: float = 1.0, max_attempts: int = 3, backoff_s: float = 2.0,
                 backoff_max_s: float = 60.0, limit: int = 1000,
                 timeout_s: float = 10.0) -> None:
        """`rest_base` as `[market] rest_base` ("" = Binance's own for `venue`); `venue` as
        `[market] exchange` ("spot" | "usdm")."""
        if venue not in BASES:
            raise ValueError(f"venue must be one of {sorted(BASES)}, got {venue!r}")
        if max_attempts < 1 or interval_s <= 0 or backoff_s < 0:
            raise ValueError("need max_attempts >= 1, interval_s > 0, backoff_s >= 0")
        self.quality = quality
        self.venue = venue
        self.base = rest_base.rstrip("/") or BASES[venue]
        self.on_trades = on_trades
        self.interval_s = interval_s
        self.max_attempts = max_attempts
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.limit, self.timeout_s = limit, timeout_s
        self._pending: list[_Job] = []
        self._seen: OrderedDict[tuple[str, str, int, int], None] = OrderedDict()
        self.counts: dict[str, int] = dict.fromkeys(
            ("windows", "fetched", "failed", "given_up", "trades", "requests", "repeated",
             "dropped", "other_venue"), 0)
        self.last_error: str | None = None
        self.running = False

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever (until cancelled): take new windows, fetch those that are due, sleep."""
        self.running = True
        try:
            async with aiohttp.ClientSession() as session:
                while True:
                    # Network and HTTP trouble comes back in the fetch's result (counted,
                    # retried); anything raised here is a bug and ends the task, which the
                    # daemon's one exception policy turns into a fault.
                    await self.step(session)
                    await asyncio.sleep(self.interval_s)
        finally:
            self.running = False

    async def step(self, session: aiohttp.ClientSession) -> None:
        """One pass: take the windows `quality` found since the last pass, then fetch every
        window that is due, one at a time."""
        self._take()
        now = asyncio.get_running_loop().time()
        for job in [j for j in self._pending if j.due <= now]:
            await self._fetch(session, job)

    def _take(self) -> None:
        for w in self.quality.missing_trades():
            k = _key(w)
            if k in self._seen:          # already fetched (or being fetched): never again
                self.counts["repeated"] += 1
                continue
            self._seen[k] = None
            if len(self._seen) > _MAX_SEEN:
                self._seen.popitem(last=False)
            self.counts["windows"] += 1
            if w.venue != self.venue:
                # The REST base is the configured exchange's: another venue's window would go
                # to the wrong host. Shown as given up, not fetched.
                self.counts["other_venue"] += 1
                self.quality.on_backfill(w, 0, f"no REST base for venue {w.venue!r} (the "
                                               f"feed's exchange is {self.venue!r})", True)
                continue
            if len(self._pending) >= _MAX_PENDING:
                self.counts["dropped"] += 1
                self.quality.on_backfill(w, 0, "backfill queue full", True)
                continue
            self._pending.append(_Job(w))

    async def _fetch(self, session: aiohttp.ClientSession, job: _Job) -> None:
        w = job.window
        job.attempts += 1
        res = await fetch_missing_trades(
            session, w.symbol, w.venue, min(w.start_ms, w.end_ms), max(w.start_ms, w.end_ms),
            base=self.base, limit=self.limit, timeout_s=self.timeout_s)
        self.counts["requests"] += res.requests
        if res.error is None:
            self._pending.remove(job)
            self.counts["fetched"] += 1
            self.counts["trades"] += len(res.trades)
            self.quality.on_backfill(w, len(res.trades))
            log.info("%s %s: backfilled trades %d..%d: %d aggregate trades", w.venue,
                     w.symbol, w.first_id, w.last_id, len(res.trades))
            if self.on_trades is not None and res.trades:
                self.on_trades(res.trades)   # a consumer's bug ends the task (fault)
            return
        self.counts["failed"] += 1
        self.last_error = res.error
        gave_up = job.attempts >= self.max_attempts
        self.quality.on_backfill(w, 0, res.error, gave_up)
        if gave_up:
            self._pending.remove(job)
            self.counts["given_up"] += 1
            log.warning("%s %s: gave up backfilling trades %d..%d after %d attempts: %s",
                        w.venue, w.symbol, w.first_id, w.last_id, job.attempts, res.error)
        else:
            job.due = asyncio.get_running_loop().time() + retry_delay(
                job.attempts, self.backoff_s, self.backoff_max_s)

    # -- reading ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counts since start, the windows waiting (with their attempts), the last error."""
        return {"running": self.running, "base": self.base, "venue": self.venue,
                **self.counts, "pending": len(self._pending),
                "retrying": [{"symbol": j.window.symbol, "first_id": j.window.first_id,
                              "last_id": j.window.last_id, "attempts": j.attempts}
                             for j in self._pending if j.attempts][:20],
                "last_error": self.last_error}
