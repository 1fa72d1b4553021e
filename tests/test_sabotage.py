"""Tests that catch one-line sabotages of the safety and money code (issue 6).

Each test below pins one limit or one stop step at its boundary (exactly at the limit and
one step past it), with real objects: a real Journal on a SQLite file, the real gateway,
risk limits and breakers, the real PaperVenue, and the real Supervisor booted in-process
with mock GPIO. Each was proven by applying its sabotage to a scratch copy of the tree and
watching it fail:

  reject-storm threshold x1000           test_reject_storm_trips_one_past_the_limit
  max_open_orders `>=` -> `>`            test_max_open_orders_is_a_hard_cap
  max_orders_per_min check off           test_max_orders_per_min_caps_the_rate
  reducing keeps increasing orders       test_cancel_increasing_*, test_entering_reducing_*
  quoter keeps quotes on a bad book      test_quoter_pulls_its_quotes_when_the_book_goes_invalid
  reset with unconfirmed cancels         test_reset_waits_for_every_cancel_confirmation
  latch no longer escalates to estop     test_latch_escalates_halt_to_estop_only,
                                         test_estop_press_while_halted_latches_estop
  lot rounding ROUND_DOWN -> HALF_EVEN   test_lot_rounding_never_rounds_up

The helpers here (`Rig`, `boot`, `until`, `stop`) are shared by tests/test_mutants_*.py.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from decimal import Decimal

import pytest

from daemon import config
from daemon.config import BreakersCfg, RiskCfg
from daemon.control.server import CommandError
from daemon.execution.gateway import OrderGateway, Rejected
from daemon.execution.orders import (Fill, Instrument, Liquidity, OrderStatus, OrderType,
                                     Side, TimeInForce)
from daemon.execution.paper import PaperVenue
from daemon.market.book import OrderBook
from daemon.market.events import DepthDiff, DepthSnapshot
from daemon.risk.engine import RiskEngine
from daemon.safety.breakers import BreakerBoard
from daemon.safety.latch import KillLatch, LatchKind
from daemon.states import State
from daemon.store.journal import Journal
from daemon.supervisor import RunOptions, Supervisor
from tests.daemon_harness import CONFIG

SYM = "BTCUSDT"
BTC = Instrument(SYM, Decimal("0.01"), Decimal("0.00001"), Decimal("5"))
MARK = Decimal("60000")
S = 1_000_000_000   # one second in ns


class Rig:
    """A trading gateway on real parts: journal file, paper venue with a real book, limits
    and breakers from their config types. `now` is the gateway clock (ns)."""

    def __init__(self, tmp_path, *, risk: dict | None = None, breakers: dict | None = None,
                 instrument: Instrument = BTC, name: str = "j.sqlite3") -> None:
        self.now = 1_000
        self.state = State.TRADING
        self.mark_price: Decimal | None = MARK
        self.latch = KillLatch()
        self.journal = Journal(tmp_path / name)
        self.venue = PaperVenue(entry_latency_ns=0, md_latency_ns=0)
        self.breakers = BreakerBoard(BreakersCfg(**(breakers or {})), ["paper"])
        self.risk = RiskEngine(RiskCfg(**(risk or {})), {})
        self.gw = OrderGateway(latch=self.latch, state=lambda: self.state,
                               breakers=self.breakers, risk=self.risk,
                               instruments={SYM: instrument}, journal=self.journal,
                               venue=self.venue, session=str(self.journal.begin_run()),
                               clock=lambda: self.now, mark=lambda s: self.mark_price)
        self.book = OrderBook(SYM, futures=False)
        self.book.on_snapshot(DepthSnapshot(SYM, 0, 100, [(59999.99, 1.0), (59990.0, 2.0)],
                                            [(60000.01, 1.0), (60010.0, 2.0)]))
        self.venue.on_depth(self.book, 1)

    def buy(self, qty: str = "0.001", price: str = "59000", **kw):
        return self.gw.submit(SYM, Side.BUY, Decimal(qty), Decimal(price), **kw)

    def sell(self, qty: str = "0.001", price: str = "61000", **kw):
        return self.gw.submit(SYM, Side.SELL, Decimal(qty), Decimal(price), **kw)

    def settle(self) -> None:
        """Let the venue act on everything sent so far (acks, cancels)."""
        self.venue.advance(self.venue.now_ns + 10)

    def check(self) -> str | None:
        """The venue breaker's reason while it is open, else None."""
        self.breakers.tick(self.now)
        b = self.breakers.breakers[self.venue.name]
        return b.reason if b.state.value == "open" else None

    def reject_one(self) -> None:
        """One order refused by the instrument filter (a reject the storm breaker counts)."""
        with pytest.raises(Rejected) as r:
            self.buy(qty="0.000001")
        assert r.value.stage == "instrument"


def fill(side: Side, qty: str, price: str, fee: str = "0", n: int = 1) -> Fill:
    return Fill(f"f{n}", f"c{n}", SYM, side, Decimal(price), Decimal(qty), Decimal(fee),
                Liquidity.TAKER, n)


# -- breakers ------------------------------------------------------------------------------
def test_reject_storm_trips_one_past_the_limit(tmp_path):
    r = Rig(tmp_path, breakers={"max_rejects_per_min": 3})
    for _ in range(3):
        r.reject_one()
    assert r.check() is None, "exactly max_rejects_per_min rejects is allowed"
    assert r.buy().status is OrderStatus.PENDING_NEW
    r.reject_one()
    assert r.check() == "4 rejects in the last minute (max 3)"
    with pytest.raises(Rejected) as e:
        r.buy()
    assert e.value.stage == "breaker"


def test_reject_storm_forgets_rejects_older_than_a_minute(tmp_path):
    r = Rig(tmp_path, breakers={"max_rejects_per_min": 3})
    for _ in range(3):
        r.reject_one()
    r.now += 60 * S + 1   # the three rejects are now just over a minute old
    r.reject_one()
    assert r.check() is None
    r2 = Rig(tmp_path, breakers={"max_rejects_per_min": 3}, name="j2.sqlite3")
    for _ in range(3):
        r2.reject_one()
    r2.now += 60 * S      # exactly a minute: still inside the window
    r2.reject_one()
    assert r2.check() == "4 rejects in the last minute (max 3)"


# -- risk limits ---------------------------------------------------------------------------
def test_max_open_orders_is_a_hard_cap(tmp_path):
    r = Rig(tmp_path, risk={"max_open_orders": 3})
    orders = [r.buy(price=p) for p in ("59000", "58900", "58800")]   # exactly at the cap
    assert len(r.gw.open) == 3
    with pytest.raises(Rejected) as e:
        r.buy(price="58700")
    assert e.value.stage == "risk" and "3 open orders, max_open_orders is 3" in e.value.reason
    # One order closed (cancel confirmed by the venue): room for exactly one more.
    r.gw.cancel(orders[0].client_id)
    r.settle()
    assert len(r.gw.open) == 2
    r.buy(price="58700")
    with pytest.raises(Rejected, match="max_open_orders"):
        r.buy(price="58600")
    assert len(r.gw.open) == 3


def test_max_orders_per_min_caps_the_rate(tmp_path):
    r = Rig(tmp_path, risk={"max_orders_per_min": 3, "max_open_orders": 100})
    first = r.now
    for _ in range(3):   # exactly at the rate limit
        r.buy()
        r.now += S
    with pytest.raises(Rejected) as e:
        r.buy()
    assert e.value.stage == "risk" and "max_orders_per_min is 3" in e.value.reason
    r.now = first + 60 * S   # the first order is exactly a minute old: still counted
    with pytest.raises(Rejected, match="max_orders_per_min"):
        r.buy()
    r.now = first + 60 * S + 1   # now it has left the window: one more fits
    r.buy()
    with pytest.raises(Rejected, match="max_orders_per_min"):
        r.buy()


# -- lot rounding --------------------------------------------------------------------------
@pytest.mark.parametrize("asked, sent", [
    ("0.000015", "0.00001"),    # exactly half a lot: half-even would round to 0.00002
    ("0.000025", "0.00002"),
    ("0.00123500", "0.00123"),  # half-even: 0.00124
    ("0.0012399", "0.00123"),   # nearest: 0.00124
    ("0.00123", "0.00123"),     # already on the lot
])
def test_lot_rounding_never_rounds_up(tmp_path, asked, sent):
    r = Rig(tmp_path, instrument=Instrument(SYM, Decimal("0.01"), Decimal("0.00001"),
                                            Decimal("0.5")))
    o = r.buy(qty=asked, price="59000")
    assert o.qty == Decimal(sent)
    assert r.journal.open_orders()[0].qty == Decimal(sent)   # what was journalled and sent


# -- reducing ------------------------------------------------------------------------------
def test_cancel_increasing_keeps_only_reducing_orders(tmp_path):
    r = Rig(tmp_path)
    buy, sell = r.buy(), r.sell()
    r.gw.position(SYM).apply(fill(Side.BUY, "0.002", "60000"))   # long: buys increase
    assert r.gw.cancel_increasing("reducing") == [buy.client_id]
    assert buy.status is OrderStatus.PENDING_CANCEL and buy.reason == "reducing"
    assert sell.status is OrderStatus.PENDING_NEW
    r.settle()
    assert list(r.gw.open) == [sell.client_id]
    assert r.journal.order_history(buy.client_id)[-2:] == ["pending_cancel", "cancelled"]


def test_cancel_increasing_when_short_and_when_flat(tmp_path):
    r = Rig(tmp_path)
    buy, sell = r.buy(), r.sell()
    r.gw.position(SYM).apply(fill(Side.SELL, "0.002", "60000"))   # short: sells increase
    assert r.gw.cancel_increasing("reducing") == [sell.client_id]
    r2 = Rig(tmp_path, name="flat.sqlite3")
    b2, s2 = r2.buy(), r2.sell()
    assert sorted(r2.gw.cancel_increasing("reducing")) == sorted([b2.client_id, s2.client_id])
    r2.settle()
    assert not r2.gw.open


# -- quoter --------------------------------------------------------------------------------
def _gap(book: OrderBook) -> None:
    """A diff that does not follow the last one: the book goes invalid (a lost message)."""
    last = book.last_update_id
    book.on_diff(DepthDiff(SYM, 0, last + 5, last + 6, None, [(59999.0, 1.0)], []))
    assert not book.valid


def test_engine_pulls_the_strategys_quotes_when_the_book_goes_invalid(tmp_path):
    from tests.engine_rig import EngineRig
    r = EngineRig(tmp_path)
    r.start([(59999.99, 1.0)], [(60000.01, 1.0)])
    quotes = list(r.gw.open.values())
    assert sorted(o.side for o in quotes) == [Side.BUY, Side.SELL]
    r.settle()
    r.diff([(59999.0, 1.0)], [], gap=True)   # a lost message: the book goes invalid
    assert not r.core.feed.books[SYM].valid
    for o in quotes:
        assert o.status is OrderStatus.PENDING_CANCEL and o.reason.startswith("pulled: book")
    assert "book" in r.engine.strategy.standing_aside
    r.settle()
    assert not r.gw.open
    r.diff([(59998.0, 1.0)], [])   # still invalid: nothing new is quoted
    assert not r.gw.open


# -- the supervisor, booted in-process -----------------------------------------------------
async def until(pred, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def boot(tmp_path, env: dict | None = None) -> tuple[Supervisor, asyncio.Task]:
    cfg = config.load(CONFIG, environ={"BOT4__MARKET__SYNTHETIC_RATE_HZ": "200", **(env or {})})
    sup = Supervisor(cfg, RunOptions(sim=True, state_dir=str(tmp_path / "state"),
                                     socket=str(tmp_path / "c.sock")))
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.state is not State.BOOTING or task.done(), what="boot")
    if task.done():
        task.result()   # raises the boot error
    return sup, task


async def stop(sup: Supervisor, task: asyncio.Task) -> None:
    sup.request_stop("test over")
    assert await asyncio.wait_for(task, 30) == 0


async def start_trading(sup: Supervisor, quotes: int = 2) -> None:
    await sup.handle_command({"cmd": "start"})
    await until(lambda: len(sup.gateway.open) >= quotes, what="quotes")


def test_reset_waits_for_every_cancel_confirmation(tmp_path):
    async def main():
        sup, task = await boot(tmp_path)
        await start_trading(sup)
        await sup.handle_command({"cmd": "halt", "reason": "test"})
        # The cancels are journalled and sent; the venue has not confirmed them yet (that
        # needs the loop, which has not run since the halt).
        unconfirmed = list(sup.gateway.open)
        assert unconfirmed and all(sup.journal.order_status(c) is OrderStatus.PENDING_CANCEL
                                   for c in unconfirmed)
        try:
            await sup.handle_command({"cmd": "reset"})
        except CommandError:
            assert sup.state is State.HALTED and sup.latch.tripped
        else:
            assert not sup.gateway.open, "reset succeeded while cancels were unconfirmed"
        await until(lambda: not sup.gateway.open, what="cancels confirmed")
        for c in unconfirmed:
            assert sup.journal.order_status(c) is OrderStatus.CANCELLED
        if sup.state is State.HALTED:
            await sup.handle_command({"cmd": "reset"})
        assert sup.state is State.READY and not sup.latch.tripped
        await stop(sup, task)
    asyncio.run(main())


def test_latch_escalates_halt_to_estop_only():
    latch = KillLatch()
    assert latch.trip(LatchKind.HALT, "operator")
    assert not latch.trip(LatchKind.HALT, "again"), "a second halt changes nothing"
    assert (latch.kind, latch.reason) == (LatchKind.HALT, "operator")
    assert latch.trip(LatchKind.ESTOP, "pressed"), "halt -> estop is an escalation"
    assert (latch.kind, latch.reason) == (LatchKind.ESTOP, "pressed")
    assert not latch.trip(LatchKind.HALT, "later halt"), "estop never degrades to halt"
    assert not latch.trip(LatchKind.ESTOP, "pressed twice")
    assert (latch.kind, latch.reason, latch.tripped) == (LatchKind.ESTOP, "pressed", True)


def test_estop_press_while_halted_latches_estop(tmp_path):
    async def main():
        sup, task = await boot(tmp_path)
        await start_trading(sup)
        await sup.handle_command({"cmd": "halt", "reason": "test"})
        assert sup.status()["latch"]["kind"] == "halt"
        sup.panel.estop.sim_set(circuit_closed=False, wait=True)
        await until(lambda: sup.state is State.ESTOP, what="estop")
        st = sup.status()
        assert st["latch"]["kind"] == "estop" and st["latch"]["tripped"]
        assert sup.journal.latch().source == "estop"
        # Released and reset, it is the e-stop that was cleared.
        sup.panel.estop.sim_set(circuit_closed=True, wait=True)
        await until(lambda: not sup.gateway.open, what="cancels confirmed")
        await sup.handle_command({"cmd": "reset"})
        assert sup.state is State.READY
        (*_, (_, _, detail)) = sup.journal.audit_rows("latch_reset")
        assert detail["was"] == "estop"
        await stop(sup, task)
    asyncio.run(main())


def test_entering_reducing_cancels_exposure_increasing_orders(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bot4d")

    async def main():
        sup, task = await boot(tmp_path)
        await start_trading(sup)
        gw = sup.gateway
        # A real long position: a market buy filled by the paper venue.
        gw.submit(SYM, Side.BUY, Decimal("0.001"), type=OrderType.MARKET, tif=TimeInForce.IOC)
        await until(lambda: gw.position(SYM).qty == Decimal("0.001"), what="fill")
        mark = sup.market.mark(SYM)
        # Far from the touch, so neither fills: a buy (grows the long) and a sell (reduces).
        buy = gw.submit(SYM, Side.BUY, Decimal("0.001"), (mark * Decimal("0.9")).quantize(
            Decimal("0.01")))
        sell = gw.submit(SYM, Side.SELL, Decimal("0.001"), (mark * Decimal("1.1")).quantize(
            Decimal("0.01")))
        await until(lambda: buy.status is sell.status is OrderStatus.NEW, what="acks")
        sup.market.synthetic.step()   # one step's messages lost: the next diff has a gap
        await until(lambda: sup.journal.order_status(buy.client_id) is OrderStatus.CANCELLED,
                    what="the exposure-increasing buy cancelled")
        assert "reducing" in [r for (_, k, d) in sup.journal.audit_rows("state")
                              for r in [d.get("new")]]
        assert buy.reason.startswith(f"reducing: degraded: {SYM} book invalid: ")
        assert "pending_cancel" not in sup.journal.order_history(sell.client_id)
        assert sell.client_id in gw.open
        logged = [r.getMessage() for r in caplog.records if r.name == "bot4d"]
        assert any(re.fullmatch(r"degraded: BTCUSDT book invalid: .+; 1 exposure-increasing "
                                r"orders cancelled", m) for m in logged), logged
        await stop(sup, task)
    asyncio.run(main())
