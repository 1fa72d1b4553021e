"""The market breakers on the shared real Binance captures (../shared/data/binance).

With the default thresholds every capture replays without a trip (and with tighter ones the
same data does trip, so the detectors are live and the defaults have a margin). Injected
into a capture after its warm-up, a spread blow-out, a volume spike and one-sided flow each
trip their own reason. The captures go through the real reader, decoder and order book
the way tests/market/ does; the board gets each valid top after a depth update (as the
runtime's subscribers do), every trade, the book's validity, and a tick every 100 ms of
market time.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.config import BreakersCfg
from daemon.market.book import OrderBook
from daemon.market.capture import CaptureReader
from daemon.market.decode import Decoder
from daemon.market.events import DepthDiff, DepthSnapshot, Quote, Trade
from daemon.safety.breakers import BreakerBoard, BreakerChange
from tests.market.conftest import data_dir, binance_dir  # noqa: F401 - fixtures

S = 1_000_000_000
V = "paper"
DATASETS = {
    "spot_btc": (["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"], "BTCUSDT", False),
    "spot_eth": (["spot_ethusdt_20240808.gz", "spot_ethusdt_20240809.gz"], "ETHUSDT", False),
    "usdm_btc": (["usdm_btcusdt_20240808.gz"], "BTCUSDT", True),
}
Injector = Callable[[OrderBook, BreakerBoard, int], Iterator[tuple[int, bytes]]]


class Replay:
    """One capture through the decoder and book, feeding one board per config."""

    def __init__(self, binance_dir: Path, name: str, *cfgs: BreakersCfg) -> None:
        self.files, self.symbol, futures = DATASETS[name]
        self.paths = [binance_dir / f for f in self.files]
        self.logs: list[list[BreakerChange]] = [[] for _ in cfgs]
        self.boards = [BreakerBoard(c, [V], log.append) for c, log in zip(cfgs, self.logs)]
        self.board, self.changes = self.boards[0], self.logs[0]
        self.dec = Decoder()
        self.book = OrderBook(self.symbol, futures=futures)
        self.next_tick = 0
        self.tops = self.trades = 0
        self.first_ns: int | None = None

    def handle(self, ns: int, raw: bytes) -> None:
        ev = self.dec.decode(ns, raw)
        t = type(ev)
        if t is Quote:
            self.book.on_quote(ev)
        elif t is DepthDiff or t is DepthSnapshot:
            (self.book.on_diff if t is DepthDiff else self.book.on_snapshot)(ev)
            valid = self.book.valid
            if valid:
                (bp, bq), (ap, aq) = self.book.best_bid(), self.book.best_ask()
                self.tops += 1
            for b in self.boards:
                b.book_state(self.symbol, V, valid, ns)
                if valid:
                    b.on_book(self.symbol, V, bp, bq, ap, aq, ns)
        elif t is Trade:
            for b in self.boards:
                b.on_trade(self.symbol, V, ev.price, ev.qty, ns)
            self.trades += 1
        if ns >= self.next_tick:
            for b in self.boards:
                b.tick(ns)
            self.next_tick = ns + S // 10

    def run(self, inject_after_s: float | None = None, inject: Injector | None = None) -> None:
        for ns, raw in CaptureReader(self.paths):
            if self.first_ns is None:
                self.first_ns = ns
            if inject is not None and ns - self.first_ns >= inject_after_s * S \
                    and self.book.valid:
                # The capture ends here: what follows is the injected market.
                for ins, iraw in inject(self.book, self.board, ns):
                    self.handle(ins, iraw)
                return
            self.handle(ns, raw)

    @property
    def market(self):
        return self.board.symbols[(V, self.symbol)]


@pytest.mark.parametrize("name", list(DATASETS))
def test_default_thresholds_stay_quiet_on_every_shared_capture(binance_dir, name):
    r = Replay(binance_dir, name, BreakersCfg())
    r.run()
    assert r.changes == [], [c.reason for c in r.changes]
    # Not a vacuous pass: every detector saw warm data.
    m = r.market
    assert r.tops > 3000 and r.trades > 5000
    assert len(m.watch.volumes) == BreakersCfg().volume_window
    assert len(m.watch.spread_median) > 100 and len(m.watch.depth_median) > 10
    assert r.board.market_ignored() == {}


@pytest.mark.parametrize("name", list(DATASETS))
def test_tighter_thresholds_do_trip_on_the_same_captures(binance_dir, name):
    """The defaults are quiet, not deaf: each capture reaches a quarter of the default OFI
    threshold and an eighth of the default volume z, and its spread is more than 1.5 x its
    median on two updates in a row."""
    tight = {"toxic flow": BreakersCfg(ofi_max=25.0),
             "volume anomaly": BreakersCfg(volume_z_max=10.0),
             "spread blow-out": BreakersCfg(spread_factor=1.5, spread_floor_bps=0.001,
                                            spread_hold_s=0.0)}
    r = Replay(binance_dir, name, *tight.values())
    r.run()
    for words, log in zip(tight, r.logs):
        assert log and words in log[0].reason, (words, [c.reason for c in log])


# -- injections ------------------------------------------------------------------------------
def _diff(book: OrderBook, ns: int, bids: list[tuple[float, float]],
          asks: list[tuple[float, float]]) -> bytes:
    """A depth update continuing the book's update ids (spot and futures rules both)."""
    u = book.last_update_id + 1
    data = {"e": "depthUpdate", "E": ns // 1_000_000, "s": book.symbol, "U": u, "u": u,
            "b": [[f"{p:.2f}", f"{q:.8f}"] for p, q in bids],
            "a": [[f"{p:.2f}", f"{q:.8f}"] for p, q in asks]}
    if book.futures:
        data["pu"] = book.last_update_id
    stream = f"{book.symbol.lower()}@depth@{'0ms' if book.futures else '100ms'}"
    return json.dumps({"stream": stream, "data": data}).encode()


def _trade(symbol: str, ns: int, price: float, qty: float, tid: int) -> bytes:
    data = {"e": "trade", "E": ns // 1_000_000, "s": symbol, "t": tid, "p": f"{price:.2f}",
            "q": f"{qty:.8f}", "T": ns // 1_000_000, "m": False}
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).encode()


def spread_blowout(book: OrderBook, board: BreakerBoard, ns: int):
    """Every ask within 30 bps of the mid is pulled, and stays pulled for 3 s (a far bid
    level flickers so that there are updates to see)."""
    mid = book.mid()
    gone = [(p, 0.0) for p, _ in book.levels(False, 10_000) if p < mid * 1.003]
    far = book.levels(True, 50)[-1][0]
    yield ns, _diff(book, ns, [], gone)
    for k in range(1, 31):
        t = ns + k * S // 10
        yield t, _diff(book, t, [(far, 1.0 + k % 2)], [])


def volume_spike(book: OrderBook, board: BreakerBoard, ns: int):
    """One trade of 200 robust standard deviations above the median interval volume, then
    the next interval closes."""
    hist = sorted(board.symbols[(V, book.symbol)].watch.volumes)
    med = hist[len(hist) // 2]
    mad = sorted(abs(v - med) for v in hist)[len(hist) // 2]
    qty = med + 200 * 1.4826 * mad
    price = book.mid()
    yield ns, _trade(book.symbol, ns, price, qty, 10**12)
    t = ns + int(BreakersCfg().volume_interval_s * S)
    yield t, _trade(book.symbol, t, price, 0.001, 10**12 + 1)


def one_sided_flow(book: OrderBook, board: BreakerBoard, ns: int):
    """Buyers lift the best ask ten times a second and their bid follows at the taken price:
    the top moves up one tick per update, the spread stays one tick, sizes typical."""
    q = board.symbols[(V, book.symbol)].watch.depth_median.median()
    for k in range(1, 301):
        t = ns + k * S // 10
        a = book.best_ask()[0]
        nxt = round(a + 0.01, 2)
        asks = [(a, 0.0)] + ([] if book.qty_at(False, nxt) else [(nxt, q)])
        yield t, _diff(book, t, [(a, q)], asks)


@pytest.mark.parametrize("inject,words", [(spread_blowout, "spread blow-out"),
                                          (volume_spike, "volume anomaly"),
                                          (one_sided_flow, "toxic flow: one-sided buying")])
@pytest.mark.parametrize("name", ["spot_btc", "usdm_btc"])
def test_an_injected_anomaly_trips_its_own_reason(binance_dir, name, inject, words):
    r = Replay(binance_dir, name, BreakersCfg())
    r.run(inject_after_s=200, inject=inject)
    assert r.changes, f"{words}: no trip"
    first = r.changes[0]
    assert (first.name, first.old, first.new) == (V, "closed", "open")
    assert words in first.reason, first.reason
    assert first.figures["symbol"] == r.symbol
    assert r.changes[1].name == "global" and r.changes[1].reason.startswith("cascade from")
