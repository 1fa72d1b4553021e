"""Replays the shared captures into `DataQuality` (read with the capture reader, decoded,
books rebuilt as in tests/market), with optional fault injection on the decoded events.

Spot and USD-M captures of the same symbol can be merged by receive time (spot BTCUSDT
and USD-M BTCUSDT of 2024-08-08 overlap from 23:54 to 23:59 UTC); each keeps its own
decoder and book, and USD-M events are fed with venue "usdm". `poll` is called with the
event time of every event (it only works once per `poll_interval_s`), and once more at
the end. A fault is a callable `(venue, event) -> event | None` (None drops the event);
`book_view` may wrap a venue's book for the quality layer only (a price shift).
"""
from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import QualityCfg
from daemon.market.book import OrderBook
from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.quality.monitor import DataQuality, QualityAlert

REPO = Path(__file__).resolve().parents[2]

# name -> [(venue, files)], symbol
CAPTURES: dict[str, tuple[list[tuple[str, list[str]]], str]] = {
    "spot_btc_0808": ([("spot", ["spot_btcusdt_20240808.gz"])], "BTCUSDT"),
    "spot_btc_0809": ([("spot", ["spot_btcusdt_20240809.gz"])], "BTCUSDT"),
    "spot_eth_0808": ([("spot", ["spot_ethusdt_20240808.gz"])], "ETHUSDT"),
    "spot_eth_0809": ([("spot", ["spot_ethusdt_20240809.gz"])], "ETHUSDT"),
    "usdm_btc_0808": ([("usdm", ["usdm_btcusdt_20240808.gz"])], "BTCUSDT"),
    "spot+usdm_btc_0808": ([("spot", ["spot_btcusdt_20240808.gz"]),
                            ("usdm", ["usdm_btcusdt_20240808.gz"])], "BTCUSDT"),
}

Fault = Callable[[str, Any], Any]


def data_dir() -> Path:
    return Path(os.environ.get("BOT4_DATA_DIR") or REPO.parent / "shared" / "data") / "binance"


@dataclass
class Result:
    dq: DataQuality
    alerts: list[QualityAlert] = field(default_factory=list)
    fault_polls: Counter = field(default_factory=Counter)    # (key, layer) -> polls in fault
    events: int = 0
    first_ns: int = 0
    last_ns: int = 0

    def fired(self) -> set[str]:
        return {a.layer for a in self.alerts}


def _records(venue: str, paths: list[Path]) -> Iterator[tuple[int, int, str, bytes]]:
    order = 0 if venue == "spot" else 1
    for ns, raw in CaptureReader(paths):
        yield ns, order, venue, raw


def replay(name: str, cfg: QualityCfg | None = None, fault: Fault | None = None,
           book_view: Callable[[str, OrderBook, int], Any] | None = None,
           base: Path | None = None) -> Result:
    feeds, symbol = CAPTURES[name]
    base = base or data_dir()
    primary = feeds[0][0]
    dq = DataQuality(cfg or QualityCfg(), [symbol], venue=primary)
    res = Result(dq)
    decoders = {v: Decoder() for v, _ in feeds}
    books = {v: OrderBook(symbol, futures=(v == "usdm")) for v, _ in feeds}
    streams = [_records(v, [base / f for f in files]) for v, files in feeds]
    poll = dq.poll
    for ns, _order, venue, raw in heapq.merge(*streams):
        ev = decoders[venue].decode(ns, raw)
        if ev is None:
            continue
        if fault is not None:
            ev = fault(venue, ev)
            if ev is None:
                continue
        res.events += 1
        res.first_ns = res.first_ns or ns
        res.last_ns = ns
        book = books[venue]
        t = type(ev)
        if t is Quote:
            book.on_quote(ev)
            dq.on_quote(ev, venue)
        elif t is Trade:
            dq.on_trade(ev, venue)
        elif t is DepthDiff or t is DepthSnapshot:
            if t is DepthDiff:
                book.on_diff(ev)
            else:
                book.on_snapshot(ev)
            view = book if book_view is None else book_view(venue, book, ev.ts_ns)
            dq.on_book(symbol, view, ev.ts_ns, venue)
        new = poll(ev.ts_ns)
        if new or dq.polls:
            res.alerts.extend(new)
    res.alerts.extend(dq.poll(res.last_ns + 1) if res.last_ns + 1 >= dq._next_poll else [])
    return res
