"""Regression (issue 9, item 2): in a replay the gateway stamped rejects with market time
while the reject-storm breaker pruned them with wall time, so the breaker never fired
(2,544 rejects, no halt). Here the real parts, one engine clock: OrderGateway on a real
SQLite journal, PaperVenue with a real book, BreakerBoard and risk engine inside
Protection, polled as the engine polls it. Venue rejects (post-only orders that would
take) are stamped with venue time, pre-trade rejects with the gateway's clock; both are
the engine's time, so the storm trips, in event time in a replay and in wall time live,
and its cooldown runs on the same clock.

What this guards: `RejectStorm.record` prunes with the time it is given (the reject's own
stamp), never a clock of its own; `Protection.poll` ticks the board with the engine clock.
With the old pruning (wall time against event-time stamps) every reject of a 2024 capture
is more than a minute old, the window stays empty and the event-mode runs fail."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import Instrument, OrderStatus, Side, TimeInForce
from daemon.execution.paper import PaperVenue
from daemon.market.book import OrderBook
from daemon.market.events import DepthSnapshot
from daemon.protection import Action
from daemon.safety.latch import KillLatch
from daemon.states import State
from tests.clock.conftest import S, Timeline
from tests.clock.rigs import SYM, VENUE, poll, protection, state

BTC = Instrument(SYM, Decimal("0.01"), Decimal("0.00001"), Decimal("5"))
ASK = Decimal("60000.01")


class Engine:
    """The parts of the trading core the rejects go through, on one clock."""

    def __init__(self, tmp_path, tl: Timeline, **breakers) -> None:
        self.tl = tl
        self.p = protection(tmp_path, tl, breakers={"cooldown_s": 10, **breakers})
        self.venue = PaperVenue(entry_latency_ns=1_000_000, md_latency_ns=0)
        self.gw = OrderGateway(latch=KillLatch(), state=lambda: State.TRADING,
                               breakers=self.p.board, risk=self.p.risk,
                               instruments={SYM: BTC}, journal=self.p.journal,
                               venue=self.venue,
                               session=f"r{self.p.journal.begin_run()}", clock=tl.clock,
                               mark=lambda s: Decimal("60000"))
        book = OrderBook(SYM, futures=False)
        book.on_snapshot(DepthSnapshot(SYM, tl.at(0), 100, [(59999.99, 1.0)],
                                       [(float(ASK), 1.0)]))
        self.venue.on_depth(book, tl.clock())
        self.actions: list[Action] = []

    def step(self, s: float) -> None:
        """A market event at `s`: the venue catches up to it, then the engine polls."""
        self.venue.advance(self.tl.at(s))
        self.actions += poll(self.p)

    def venue_reject(self, s: float) -> None:
        """A post-only buy at the ask: the venue refuses it after its entry latency."""
        self.step(s)
        o = self.gw.submit(SYM, Side.BUY, Decimal("0.001"), ASK, tif=TimeInForce.POST_ONLY)
        self.step(s + 0.002)
        assert o.status is OrderStatus.REJECTED and "post-only" in o.reason

    def pre_trade_reject(self, s: float) -> None:
        """An order under the minimum notional: refused by the gateway's own checks."""
        self.step(s)
        with pytest.raises(Rejected) as r:
            self.gw.submit(SYM, Side.BUY, Decimal("0.00001"), Decimal("59000"))
        assert r.value.stage == "instrument"


def test_rejects_in_engine_time_trip_the_storm_breaker(tmp_path, tl):
    e = Engine(tmp_path, tl, max_rejects_per_min=3)
    e.venue_reject(0)
    e.pre_trade_reject(15)
    e.venue_reject(30)
    assert state(e.p) == "closed"
    e.pre_trade_reject(45)               # the 4th reject within 60 s of engine time
    assert state(e.p) == "open"
    b = e.p.board.breakers[VENUE]
    assert b.reason == "4 rejects in the last minute (max 3)"
    assert b.since_ns == tl.ns(45), "the trip is stamped with the engine's time"
    e.step(45.001)                       # the engine's next poll carries it out
    assert e.actions == [Action("cancel_increasing", f"breaker {VENUE} open: {b.reason}")]
    (row,) = [d for _, _, d in e.p.journal.audit_rows("breaker")]
    assert (row["old"], row["new"]) == ("closed", "open") and row["fig_rejects"] == "4"
    with pytest.raises(Rejected) as r:   # the door is shut
        e.gw.submit(SYM, Side.BUY, Decimal("0.001"), Decimal("59000"))
    assert r.value.stage == "breaker"
    # Its cooldown runs on the same clock: not over after 9.999 s, over at 10 s.
    e.step(54.999)
    assert state(e.p) == "open"
    e.step(55)
    assert state(e.p) == "half_open"


def test_rejects_a_minute_apart_in_engine_time_never_trip(tmp_path, tl):
    e = Engine(tmp_path, tl, max_rejects_per_min=3)
    for k in range(8):                   # never more than 3 within any 60 s
        (e.venue_reject if k % 2 else e.pre_trade_reject)(k * 20.01)
    assert state(e.p) == "closed" and e.actions == []
    assert e.gw.stats["rejected"] == 4 and e.venue.stats["rejected"] == 4


def test_the_engine_clock_in_a_replay_is_far_from_the_wall(tl):
    """The premise of the event-mode runs: a reject stamped in 2024 is years older than
    the wall clock, so pruning it by the wall would drop it at once."""
    if tl.mode == "event":
        assert tl.wall() - tl.at(0) > 365 * 86_400 * S
