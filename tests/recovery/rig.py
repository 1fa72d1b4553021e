"""A daemon's worth of real objects on a real SQLite journal, for crash-recovery tests.

`Proc` is one process: its own Journal connection, run number, gateway and (through
`World`) the paper venue and the order book, fed the way the pipeline feeds them. A
`kill()` drops a Proc without closing anything, so the journal file is left exactly as its
last commit left it, as after SIGKILL. The next Proc on the same file is the restarted
daemon. The paper venue's memory dies with the process (`World.restart_paper`), unless
the test keeps it alive to stand in for a live exchange (`World(survives=True)`): the same
PaperVenue object then keeps matching while nobody listens (reports lost in transit) and is
asked what it knows at the next boot, which is the path a live venue takes.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from daemon.config import BreakersCfg, RiskCfg
from daemon.execution.gateway import OrderGateway
from daemon.execution.orders import (Fill, Instrument, Order, OrderStatus, OrderType, Side,
                                     TimeInForce)
from daemon.execution.paper import PaperVenue
from daemon.execution.reconcile import ReconcileResult, reconcile
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot, Trade
from daemon.risk.engine import RiskEngine
from daemon.safety.breakers import BreakerBoard
from daemon.safety.latch import KillLatch
from daemon.states import State
from daemon.store.journal import Journal
from tests import torture_lib as tl

D = Decimal
SYM = "BTCUSDT"
INST = Instrument(SYM, D("0.01"), D("0.001"), D("0.5"))
BIDS = [(100.0, 5.0), (99.9, 2.0)]
ASKS = [(101.0, 0.5), (101.5, 1.0)]
LATENCY = 1_000
STEP = 10_000


class Dropped:
    """The listener of a venue whose client died: every report is lost in transit."""

    def __init__(self) -> None:
        self.lost: list[object] = []

    def on_order_status(self, client_id: str, status: OrderStatus, reason: str | None,
                        ts_ns: int) -> None:
        self.lost.append((client_id, status))

    def on_fill(self, fill: Fill) -> None:
        self.lost.append(fill)


class World:
    """The market and the venue. Time only moves forward, across restarts too."""

    def __init__(self, *, survives: bool = False) -> None:
        self.t = STEP
        self.uid = 100
        self.tid = 0
        self.survives = survives
        self.venue = self._new_venue()
        self.book = OrderBook(SYM, False)
        self.snapshot(BIDS, ASKS)

    def _new_venue(self) -> PaperVenue:
        v = PaperVenue(entry_latency_ns=LATENCY, md_latency_ns=0, maker_fee_bps=1.0,
                       taker_fee_bps=5.0, lot_sizes={SYM: INST.lot_size})
        if self.survives:
            v.survives_restart = True   # this object outlives the process: a live venue
        return v

    def restart_paper(self) -> None:
        """The process died: the paper venue and the book died with it."""
        assert not self.survives
        self.venue = self._new_venue()
        self.book = OrderBook(SYM, False)

    def tick(self) -> int:
        self.t += STEP
        self.venue.advance(self.t)
        return self.t

    def snapshot(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]]
                 ) -> None:
        t = self.tick()
        self.uid += 10
        self.book.on_snapshot(DepthSnapshot(SYM, t, self.uid, list(bids), list(asks)))
        self.venue.on_depth(self.book, t)

    def depth(self, bids: list[tuple[float, float]] = (),
              asks: list[tuple[float, float]] = ()) -> None:
        t = self.tick()
        self.uid += 1
        self.book.on_diff(DepthDiff(SYM, t, self.uid, self.uid, None, list(bids), list(asks)))
        assert self.book.valid, self.book.invalid_reason
        self.venue.on_depth(self.book, t)

    def trade(self, price: float, qty: float, *, sell: bool) -> None:
        t = self.tick()
        self.tid += 1
        self.venue.on_trade(Trade(SYM, t, t // 1_000_000, self.tid, price, qty, sell))


class Proc:
    """One run of the daemon on the journal at `path`."""

    def __init__(self, path: Path, world: World) -> None:
        self.path = path
        self.world = world
        self.journal = Journal(path)
        self.run = self.journal.begin_run()
        self.latch = KillLatch()
        self.gw = OrderGateway(latch=self.latch, state=lambda: State.TRADING,
                               breakers=BreakerBoard(BreakersCfg(), ["paper"]),
                               risk=RiskEngine(RiskCfg(), {}),
                               instruments={SYM: INST}, journal=self.journal,
                               venue=world.venue, session=f"r{self.run}",
                               clock=lambda: world.t, mark=lambda s: D("100.5"))
        self.result: ReconcileResult | None = None

    def reconcile(self, on_restart: str = "restore") -> ReconcileResult:
        self.result = reconcile(self.journal, self.world.venue, self.gw, run=self.run,
                                on_restart=on_restart)
        return self.result

    def order(self, side: Side, price: str, qty: str = "0.01", *,
              tif: TimeInForce = TimeInForce.GTC, type: OrderType = OrderType.LIMIT) -> Order:
        return self.gw.submit(SYM, side, D(qty), None if type is OrderType.MARKET else D(price),
                              tif=tif, type=type)

    def kill(self) -> dict[str, str]:
        """SIGKILL: nothing is closed or flushed beyond the last commit. Returns what the
        journal has open at that instant (client id -> status)."""
        if self.world.survives:
            self.world.venue.bind(Dropped(), session=f"r{self.run}")
        snap = tl.read_journal(self.path)
        self.gw = None   # type: ignore[assignment]
        self.journal = None   # type: ignore[assignment]
        return snap.open_orders()


def journal_problems(path: Path) -> list[tuple[str, str]]:
    """The torture harness's journal invariants: unique ids, fills = filled qty,
    positions = sums and replay of fills, integrity."""
    return tl.check_journal(tl.read_journal(path))
