"""Crash recovery (daemon/execution/reconcile.py) on real SQLite journals: a kill at each
point of an order's life, both paper modes (`restore`, `cancel`) and a venue that keeps its
orders (the path a live venue takes). After every restart: no client order id twice, no
lost or doubled fill, every position = the sum (and replay) of its fills, every order that
was open or in flight at the kill reconciled and listed in the journalled result.

A kill is `Proc.kill()`: the process's objects are dropped without closing anything
(tests/recovery/rig.py). Real `bot4d` kills are in tests/test_torture.py.
"""
from __future__ import annotations

import logging
import sqlite3

import pytest

from daemon.execution import reconcile as rc
from daemon.execution.orders import OrderStatus, OrderType, Side, TimeInForce
from daemon.execution.paper import RESTORE_CROSSED
from daemon.execution.venue import VenueOrderState
from daemon.store.journal import JournalError
from tests.recovery.rig import ASKS, BIDS, D, SYM, Proc, World, journal_problems

BUY, SELL = Side.BUY, Side.SELL


def _recovered(p: Proc, open_at_kill: dict[str, str]) -> rc.ReconcileResult:
    """The invariants every restart must hold; returns the result for the details."""
    res = p.result
    assert res is not None
    assert journal_problems(p.path) == []
    assert sorted((o.client_id, o.was) for o in res.orders) == sorted(open_at_kill.items()), \
        "every order open or in flight at the kill is in the result, once"
    assert res.ok and res.positions_ok and res.mismatches == []
    row = p.journal.last_reconciliation()
    mine = res.as_dict()
    assert row["run"] == p.run
    assert {k: v for k, v in row.items() if k != "ts_ns"} == \
        {k: v for k, v in mine.items() if k != "ts_ns"}
    jopen = {o.client_id for o in p.journal.open_orders()}
    assert jopen == set(p.gw.open), "memory = journal after reconciliation"
    kept = set(res.ids(rc.ADOPTED) + res.ids(rc.RESTORED) + res.ids(rc.CANCEL_RESENT))
    assert kept == jopen & set(open_at_kill)
    for o in res.orders:
        assert o.now == p.journal.order_status(o.client_id).value
    return res


def _restart(p: Proc, world: World, on_restart: str = "restore") -> tuple[Proc, dict]:
    open_at_kill = p.kill()
    if not world.survives:
        world.restart_paper()
    p2 = Proc(p.path, world)
    p2.reconcile(on_restart)
    return p2, open_at_kill


@pytest.fixture
def world() -> World:
    return World()


# ------------------------------------------------------------- a kill at each point in life

@pytest.mark.parametrize("mode", ["restore", "cancel"])
def test_journalled_but_never_sent_is_closed_and_never_resent(tmp_path, world, mode):
    p = Proc(tmp_path / "j.sqlite3", world)
    world.venue.submit = lambda order: None   # the process died between commit and send
    o = p.order(BUY, "100")
    assert p.journal.order_status(o.client_id) is OrderStatus.PENDING_NEW
    open_at_kill = p.kill()
    world.restart_paper()

    def not_asked(ids):
        raise AssertionError("the paper venue's memory died with the process: never asked")
    world.venue.query_orders = not_asked
    p2 = Proc(p.path, world)
    p2.reconcile(mode)
    res = _recovered(p2, open_at_kill)
    assert res.ids(rc.REJECTED) == [o.client_id] and res.mode == mode
    got = p2.journal.order(o.client_id)
    assert (got.reason, got.updated_ns) == (rc.NOT_ACKED, world.t)
    assert res.orders[0].reason == rc.NOT_ACKED
    assert p2.journal.order_history(o.client_id) == ["pending_new", "rejected"]
    assert world.venue.stats["submitted"] == 0 and world.venue.open_orders() == []


@pytest.mark.parametrize("mode", ["restore", "cancel"])
def test_sent_not_acknowledged_dies_with_the_paper_venue(tmp_path, world, mode):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(BUY, "100")                      # queued at the venue (entry latency)
    assert world.venue.pending_requests == 1
    p2, at_kill = _restart(p, world, mode)
    res = _recovered(p2, at_kill)
    assert at_kill == {o.client_id: "pending_new"} and res.ids(rc.REJECTED) == [o.client_id]
    assert world.venue.open_orders() == [] and world.venue.stats["submitted"] == 0


def test_acked_resting_order_is_restored_at_the_back_of_the_queue(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(BUY, "100")
    world.tick()
    assert p.journal.order_status(o.client_id) is OrderStatus.NEW
    assert world.venue.queue_ahead(o.client_id) == 5.0
    world.trade(100.0, 4.0, sell=True)           # it moved up: 1.0 ahead of it now
    assert world.venue.queue_ahead(o.client_id) == pytest.approx(1.0)
    p2, at_kill = _restart(p, world)
    res = _recovered(p2, at_kill)
    assert res.ids(rc.RESTORED) == [o.client_id] and res.mode == "restore"
    assert p2.gw.open[o.client_id].status is OrderStatus.NEW
    v = world.venue
    assert v.open_orders() == [o.client_id]
    assert v.queue_ahead(o.client_id) is None, "placed only once the book is valid again"
    world.trade(100.0, 50.0, sell=True)          # no book yet: it cannot fill
    assert p2.journal.count("fills") == 0
    world.snapshot([(100.0, 3.0), (99.9, 2.0)], ASKS)
    # the back of what is displayed now, not the 1.0 it had before the kill
    assert v.queue_ahead(o.client_id) == 3.0
    assert v.stats["submitted"] == 0 and v.stats["restored"] == 1
    # journal history: never journalled as new again (not re-sent, not re-created)
    assert p2.journal.order_history(o.client_id) == ["pending_new", "new"]


def test_a_restored_order_fills_after_restart_and_its_fill_is_journalled_once(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(SELL, "101", qty="0.02")
    world.tick()
    world.trade(101.0, 0.51, sell=False)         # 0.5 ahead, then 0.01 of ours
    assert p.journal.order_status(o.client_id) is OrderStatus.PARTIALLY_FILLED
    p2, at_kill = _restart(p, world)
    res = _recovered(p2, at_kill)
    assert at_kill == {o.client_id: "partially_filled"} and res.ids(rc.RESTORED) == [o.client_id]
    world.snapshot(BIDS, [(101.0, 0.3), (101.5, 1.0)])
    assert world.venue.queue_ahead(o.client_id) == pytest.approx(0.3)
    world.trade(101.0, 0.5, sell=False)          # 0.3 ahead, then our remaining 0.01
    fills = p2.journal.fills_of(o.client_id)
    assert [f.qty for f in fills] == [D("0.01"), D("0.01")]
    assert len({f.fill_id for f in fills}) == 2 and fills[1].fill_id.startswith(f"paper-r{p2.run}-")
    assert p2.journal.order_status(o.client_id) is OrderStatus.FILLED
    assert p2.gw.open == {} and p2.gw.position(SYM).qty == D("-0.02")
    assert p2.journal.positions()[SYM].qty == D("-0.02")
    assert journal_problems(p2.path) == []
    # and the next restart finds nothing to do, and changes nothing
    p3, at_kill = _restart(p2, world)
    assert at_kill == {} and _recovered(p3, at_kill).orders == []
    assert p3.journal.positions()[SYM].qty == D("-0.02")


def test_cancel_mode_closes_resting_orders_as_cancelled_by_restart(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    a, b = p.order(BUY, "100"), p.order(SELL, "101", qty="0.02")
    world.tick()
    world.trade(101.0, 0.51, sell=False)
    p2, at_kill = _restart(p, world, "cancel")
    res = _recovered(p2, at_kill)
    assert sorted(res.ids(rc.CANCELLED)) == sorted([a.client_id, b.client_id])
    for cid in (a.client_id, b.client_id):
        o = p2.journal.order(cid)
        assert (o.status, o.reason) == (OrderStatus.CANCELLED, rc.CANCELLED_BY_RESTART)
    assert p2.journal.order(b.client_id).filled_qty == D("0.01")
    assert p2.gw.open == {} and world.venue.open_orders() == []
    assert p2.journal.positions()[SYM].qty == D("-0.01")


@pytest.mark.parametrize("mode", ["restore", "cancel"])
def test_pending_cancel_is_cancelled(tmp_path, world, mode):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(BUY, "100")
    world.tick()
    assert p.gw.cancel(o.client_id, "requote")    # cancel journalled, still in flight
    p2, at_kill = _restart(p, world, mode)
    res = _recovered(p2, at_kill)
    assert at_kill == {o.client_id: "pending_cancel"} and res.ids(rc.CANCELLED) == [o.client_id]
    assert p2.journal.order(o.client_id).reason == rc.CANCEL_PENDING
    assert world.venue.open_orders() == [] and world.venue.pending_requests == 0


def test_ioc_caught_between_its_ack_and_its_end_is_closed_expired(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    # The venue acknowledged it and the process died before the expiry was journalled.
    real = p.gw.on_order_status
    p.gw.on_order_status = lambda cid, st, r, ts: (real(cid, st, r, ts)
                                                   if st is OrderStatus.NEW else None)
    o = p.order(BUY, "100", tif=TimeInForce.IOC)
    world.tick()
    assert p.journal.order_status(o.client_id) is OrderStatus.NEW
    p2, at_kill = _restart(p, world)
    res = _recovered(p2, at_kill)
    assert res.ids(rc.EXPIRED) == [o.client_id]
    assert p2.journal.order(o.client_id).reason == rc.NOT_RESTING


def test_market_moved_through_during_the_downtime_cancels_not_fills(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(BUY, "100")
    world.tick()
    p2, at_kill = _restart(p, world)
    _recovered(p2, at_kill)
    world.snapshot([(99.0, 1.0)], [(99.5, 2.0)])   # the ask is now below our bid
    got = p2.journal.order(o.client_id)
    assert (got.status, got.reason) == (OrderStatus.CANCELLED, RESTORE_CROSSED)
    assert p2.journal.count("fills") == 0 and p2.gw.open == {}
    assert world.venue.open_orders() == [] and world.venue.stats["restore_cancelled"] == 1
    assert journal_problems(p2.path) == []


def test_a_restored_order_can_be_cancelled_before_the_book_is_back(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(SELL, "101")
    world.tick()
    p2, at_kill = _restart(p, world)
    _recovered(p2, at_kill)
    assert p2.gw.cancel(o.client_id, "operator")
    world.tick()
    assert p2.journal.order_status(o.client_id) is OrderStatus.CANCELLED
    world.snapshot(BIDS, ASKS)                     # nothing left to place
    assert world.venue.open_orders() == [] and world.venue.stats["restored"] == 1
    world.trade(101.0, 10.0, sell=False)
    assert p2.journal.count("fills") == 0


def test_new_orders_after_restart_never_reuse_an_id(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    first = [p.order(BUY, "100"), p.order(SELL, "101")]
    world.tick()
    p2, at_kill = _restart(p, world)
    _recovered(p2, at_kill)
    world.snapshot(BIDS, ASKS)
    later = [p2.order(BUY, "99.9"), p2.order(SELL, "101.5")]
    world.tick()
    assert not {o.client_id for o in first} & {o.client_id for o in later}
    assert len(set(world.venue.open_orders())) == 4
    assert journal_problems(p2.path) == []


def test_two_kills_in_a_row_keep_every_order_and_fill(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(SELL, "101", qty="0.03")
    world.tick()
    world.trade(101.0, 0.51, sell=False)
    p2, at_kill = _restart(p, world)
    _recovered(p2, at_kill)
    # killed again before the book came back: the order was never placed
    p3, at_kill = _restart(p2, world)
    res = _recovered(p3, at_kill)
    assert at_kill == {o.client_id: "partially_filled"} and res.ids(rc.RESTORED) == [o.client_id]
    world.snapshot(BIDS, [(101.0, 0.0), (101.5, 1.0)])
    world.trade(101.0, 1.0, sell=False)
    assert p3.journal.order_status(o.client_id) is OrderStatus.FILLED
    assert p3.journal.positions()[SYM].qty == D("-0.03")
    assert journal_problems(p3.path) == []


# -------------------------------------------------------- a venue that keeps its orders (live)

@pytest.fixture
def live() -> World:
    return World(survives=True)


def test_live_sent_not_acked_is_adopted_when_the_venue_has_it(tmp_path, live):
    p = Proc(tmp_path / "j.sqlite3", live)
    o = p.order(BUY, "100")
    open_at_kill = p.kill()
    live.tick()                                    # it reaches the venue while we are down
    p2 = Proc(p.path, live)
    res = p2.reconcile()
    _recovered(p2, open_at_kill)
    assert res.mode == "venue" and res.ids(rc.ADOPTED) == [o.client_id]
    assert p2.journal.order_history(o.client_id) == ["pending_new", "new"]
    got = p2.journal.order(o.client_id)
    assert got.updated_ns == res.ts_ns == live.t and p2.gw.open[o.client_id].updated_ns == live.t
    assert got.reason is None and res.orders[0].reason is None
    live.trade(100.0, 6.0, sell=True)              # 5 ahead, then ours: reported to p2
    assert p2.journal.order_status(o.client_id) is OrderStatus.FILLED
    assert p2.journal.positions()[SYM].qty == D("0.01") and journal_problems(p2.path) == []


def test_live_fills_made_while_down_are_applied_once(tmp_path, live):
    p = Proc(tmp_path / "j.sqlite3", live)
    a = p.order(BUY, "100", qty="0.03")
    b = p.order(SELL, "101", qty="0.02")
    live.tick()
    live.trade(100.0, 5.01, sell=True)            # a: 0.01 journalled before the kill
    live.trade(101.0, 0.51, sell=False)           # b: 0.01 journalled before the kill
    journalled = {f.fill_id for cid in (a.client_id, b.client_id)
                  for f in p.journal.fills_of(cid)}
    open_at_kill = p.kill()
    live.trade(100.0, 0.01, sell=True)            # a: 0.01 more while we are down
    live.trade(100.0, 0.01, sell=True)            # a: and the rest
    live.trade(101.0, 0.01, sell=False)           # b: the rest
    p2 = Proc(p.path, live)
    res = p2.reconcile()
    _recovered(p2, open_at_kill)
    assert sorted(res.ids(rc.CLOSED)) == sorted([a.client_id, b.client_id])
    at_venue = [f for st in live.venue.query_orders([a.client_id, b.client_id]).values()
                for f in st.fills]
    assert len(at_venue) == 5 and len(journalled) == 2
    assert res.fills_applied == [
        {"fill_id": f.fill_id, "client_id": f.client_id, "qty": str(f.qty), "price": str(f.price)}
        for f in at_venue if f.fill_id not in journalled]
    assert [f["price"] for f in res.fills_applied] == ["100.00", "100.00", "101.00"]
    assert {f["qty"] for f in res.fills_applied} == {"0.010"}
    assert res.fills_already_journalled == 2
    assert p2.journal.count("fills") == 5
    pos = p2.journal.positions()[SYM]
    assert pos.qty == D("0.01") and p2.gw.position(SYM).qty == D("0.01")
    assert {o.client_id: o.fills_applied for o in res.orders} == {a.client_id: 2,
                                                                  b.client_id: 1}
    # closed by their last fill: journalled with it, not once more
    assert p2.journal.order_history(a.client_id)[-2:] == ["partially_filled", "filled"]
    assert p2.journal.order_history(b.client_id).count("filled") == 1
    # the venue repeating itself at the next boot changes nothing
    open_at_kill = p2.kill()
    p3 = Proc(p.path, live)
    res3 = p3.reconcile()
    _recovered(p3, open_at_kill)
    assert res3.orders == [] and p3.journal.count("fills") == 5


def test_live_fill_then_cancel_while_down(tmp_path, live):
    p = Proc(tmp_path / "j.sqlite3", live)
    o = p.order(SELL, "101", qty="0.02")
    live.tick()
    open_at_kill = p.kill()
    live.trade(101.0, 0.51, sell=False)           # 0.01 filled while down
    live.venue.cancel(o.client_id)                # and cancelled (by the operator, say)
    live.tick()
    p2 = Proc(p.path, live)
    res = p2.reconcile()
    _recovered(p2, open_at_kill)
    got = p2.journal.order(o.client_id)
    assert (got.status, got.filled_qty, got.reason) == (OrderStatus.CANCELLED, D("0.01"),
                                                        rc.CLOSED_AT_VENUE)
    assert res.ids(rc.CLOSED) == [o.client_id] and len(res.fills_applied) == 1


def test_live_pending_cancel_still_working_gets_its_cancel_sent_again(tmp_path, live):
    p = Proc(tmp_path / "j.sqlite3", live)
    o = p.order(BUY, "100")
    live.tick()
    live.venue.cancel = lambda cid: None          # the cancel never left the dead process
    p.gw.cancel(o.client_id, "requote")
    open_at_kill = p.kill()
    del live.venue.cancel
    p2 = Proc(p.path, live)
    res = p2.reconcile()
    _recovered(p2, open_at_kill)
    assert res.ids(rc.CANCEL_RESENT) == [o.client_id]
    assert live.venue.pending_requests == 1
    assert p2.journal.order_history(o.client_id) == ["pending_new", "new", "pending_cancel"]
    live.tick()
    assert p2.journal.order_status(o.client_id) is OrderStatus.CANCELLED
    assert p2.gw.open == {} and live.venue.open_orders() == []


def test_live_unknown_orders(tmp_path, live):
    """Never reached the venue -> rejected, never re-sent; cancel pending -> cancelled;
    acknowledged but unknown -> lost: closed and reported (the daemon must not trade)."""
    p = Proc(tmp_path / "j.sqlite3", live)
    live.venue.submit = lambda order: None
    never = p.order(BUY, "100")
    del live.venue.submit
    acked = p.order(BUY, "99.9")
    cancelling = p.order(SELL, "101")
    live.tick()
    p.gw.cancel(cancelling.client_id, "requote")
    p.kill()
    live.venue = live._new_venue()                 # the venue lost its memory (a reset)
    p2 = Proc(p.path, live)
    res = p2.reconcile()
    assert res.ids(rc.REJECTED) == [never.client_id]
    assert res.ids(rc.CANCELLED) == [cancelling.client_id]
    assert res.ids(rc.LOST) == [acked.client_id]
    assert [o.fills_applied for o in res.orders] == [0, 0, 0]
    assert p2.journal.order(never.client_id).status is OrderStatus.REJECTED
    assert p2.journal.order(cancelling.client_id).status is OrderStatus.CANCELLED
    assert p2.journal.order(acked.client_id).status is OrderStatus.CANCELLED
    assert {o.client_id: o.reason for o in res.orders} == {
        never.client_id: rc.NOT_ACKED, cancelling.client_id: rc.CANCEL_PENDING_UNKNOWN,
        acked.client_id: rc.LOST_REASON}
    assert p2.journal.order(cancelling.client_id).reason == rc.CANCEL_PENDING_UNKNOWN
    assert p2.journal.order(acked.client_id).reason == rc.LOST_REASON
    assert not res.ok and res.positions_ok
    assert res.mismatches == [f"{acked.client_id}: new in the journal (filled 0) but unknown "
                              f"to venue paper"]
    assert p2.journal.last_reconciliation()["ok"] is False
    assert live.venue.stats["submitted"] == 0 and p2.gw.open == {}


def test_live_venue_reporting_a_fill_it_does_not_list_is_a_mismatch(tmp_path, live):
    p = Proc(tmp_path / "j.sqlite3", live)
    o = p.order(BUY, "100")
    live.tick()
    p.kill()
    v = live.venue
    v.query_orders = lambda ids: {i: VenueOrderState(i, OrderStatus.PARTIALLY_FILLED,
                                                     D("0.004")) for i in ids}
    p2 = Proc(p.path, live)
    res = p2.reconcile()
    assert res.mismatches == [f"{o.client_id}: venue reports filled 0.004, the journal has "
                              f"0 after applying the venue's fills"]
    assert not res.ok and res.ids(rc.ADOPTED) == [o.client_id]
    assert p2.journal.count("fills") == 0, "a fill is never made up"
    assert p2.journal.order_history(o.client_id) == ["pending_new", "new"]


# ---------------------------------------------------------------- positions, result, atomicity

def test_a_position_that_does_not_match_its_fills_is_reported_never_fixed(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    p.order(SELL, "101")
    world.tick()
    world.trade(101.0, 0.51, sell=False)
    p.kill()
    db = sqlite3.connect(p.path)
    with db:
        db.execute("UPDATE positions SET qty = '-0.02'")
    db.close()
    world.restart_paper()
    p2 = Proc(p.path, world)
    res = p2.reconcile()
    assert not res.positions_ok and not res.ok
    assert res.mismatches == [f"position {SYM}: positions table vs fills replayed: "
                              f"qty -0.02 != -0.010"]
    assert p2.journal.positions()[SYM].qty == D("-0.02"), "never fixed silently"
    assert p2.journal.last_reconciliation()["positions_ok"] is False


def test_a_lost_positions_row_and_several_wrong_figures_are_all_reported(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    p.order(SELL, "101")
    world.tick()
    world.trade(101.0, 0.51, sell=False)
    p.kill()
    db = sqlite3.connect(p.path)
    with db:
        db.execute("DELETE FROM positions")
    db.close()
    world.restart_paper()
    p2 = Proc(p.path, world)
    p2.gw.position(SYM).qty = D("-0.01")           # memory says short, the table has no row
    res = p2.reconcile()
    assert res.mismatches == [
        f"position {SYM}: positions table vs fills replayed: qty 0 != -0.010, avg_price 0 != "
        f"101.00, fees 0 != 0.00010100",
        f"position {SYM}: gateway memory vs positions table: qty -0.01 != 0"]


def test_memory_that_differs_from_the_positions_table_is_reported(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    p.gw.position(SYM).fees = D("1")               # memory only: never journalled
    res = p.reconcile()
    assert res.mismatches == [f"position {SYM}: gateway memory vs positions table: fees 1 != 0"]
    assert not res.positions_ok


def test_every_boot_journals_a_result_even_with_nothing_open(tmp_path, world, caplog):
    p = Proc(tmp_path / "j.sqlite3", world)
    with caplog.at_level(logging.INFO, logger="daemon.execution.reconcile"):
        res = p.reconcile()
    assert res.orders == [] and res.ok and res.mode == "restore"
    row = p.journal.last_reconciliation()
    assert row["run"] == p.run and row["ok"] is True
    assert row["outcomes"] == {k: [] for k in rc.OUTCOMES}
    assert [r.getMessage() for r in caplog.records] == ["reconciled: nothing was open "
                                                        "(restore mode)"]


def test_result_is_logged_with_its_counts_and_mismatches(tmp_path, world, caplog):
    p = Proc(tmp_path / "j.sqlite3", world)
    p.order(BUY, "100")
    p.order(SELL, "101")
    world.tick()
    p.order(BUY, "99.9")
    p.kill()
    world.restart_paper()
    p2 = Proc(p.path, world)
    p2.gw.position(SYM).qty = D("1")
    with caplog.at_level(logging.INFO, logger="daemon.execution.reconcile"):
        p2.reconcile()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "reconciled 3 order(s) left by the previous run (restore mode): restored 2, "
                    "rejected 1; 0 fill(s) applied from the venue"),
        ("ERROR", f"reconciliation mismatch: position {SYM}: gateway memory vs positions "
                  f"table: qty 1 != 0")]


def test_a_kill_during_reconciliation_leaves_none_of_it(tmp_path, world, monkeypatch):
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(BUY, "100")
    q = p.order(SELL, "101")
    world.tick()
    p.gw.cancel(q.client_id, "requote")
    p.kill()
    world.restart_paper()
    p2 = Proc(p.path, world)
    journal = p2.journal

    def dies(run, result):
        raise JournalError("disk I/O error")
    monkeypatch.setattr(journal, "record_reconciliation", dies)
    with pytest.raises(JournalError):
        p2.reconcile()
    assert journal.order_status(q.client_id) is OrderStatus.PENDING_CANCEL, "rolled back"
    assert journal.last_reconciliation() is None
    assert world.venue.open_orders() == [], "nothing restored before the commit"
    monkeypatch.undo()
    p2.kill()
    world.restart_paper()
    p3 = Proc(p.path, world)
    res = p3.reconcile()
    assert {o.client_id: o.outcome for o in res.orders} == {o.client_id: rc.RESTORED,
                                                            q.client_id: rc.CANCELLED}


def test_result_dict_is_json_and_lists_every_outcome(tmp_path, world):
    import json
    p = Proc(tmp_path / "j.sqlite3", world)
    o = p.order(BUY, "100")
    world.tick()
    p2, _ = _restart(p, world)
    d = p2.result.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["outcomes"][rc.RESTORED] == [o.client_id]
    assert d["orders"] == [{"client_id": o.client_id, "symbol": SYM, "side": "buy",
                            "was": "new", "now": "new", "outcome": "restored", "reason": None,
                            "filled_qty": "0", "fills_applied": 0}]
    assert set(d) == {"run", "mode", "ts_ns", "ok", "positions_ok", "mismatches", "outcomes",
                      "orders", "fills_applied", "fills_already_journalled"}
    assert d["ts_ns"] == world.t and d["run"] == p2.run


def test_refuses_a_foreign_journal_a_busy_gateway_and_an_unknown_mode(tmp_path, world):
    p = Proc(tmp_path / "j.sqlite3", world)
    other = Proc(tmp_path / "other.sqlite3", world)
    own = "^reconcile needs the gateway's own journal and venue$"
    with pytest.raises(ValueError, match=own):
        rc.reconcile(other.journal, world.venue, p.gw, run=p.run, on_restart="restore")
    with pytest.raises(ValueError, match=own):
        rc.reconcile(p.journal, World().venue, p.gw, run=p.run, on_restart="restore")
    with pytest.raises(ValueError, match="^on_restart must be 'restore' or 'cancel', got 'keep'$"):
        rc.reconcile(p.journal, world.venue, p.gw, run=p.run, on_restart="keep")
    p.order(BUY, "100")
    with pytest.raises(ValueError, match="^reconcile runs at boot, before any order: the "
                                         "gateway already has 1 open$"):
        p.reconcile()
    assert p.journal.last_reconciliation() is None


def test_restorable_is_only_a_resting_limit_order_with_quantity_left():
    from daemon.execution.orders import Order
    base = dict(client_id="x", symbol=SYM, side=BUY, type=OrderType.LIMIT, qty=D("1"),
                price=D("100"), status=OrderStatus.NEW)
    assert rc.restorable(Order(**base))
    assert rc.restorable(Order(**{**base, "tif": TimeInForce.POST_ONLY,
                                  "status": OrderStatus.PARTIALLY_FILLED,
                                  "filled_qty": D("0.5")}))
    for bad in ({"tif": TimeInForce.IOC}, {"type": OrderType.MARKET, "price": None},
                {"status": OrderStatus.PENDING_NEW}, {"status": OrderStatus.PENDING_CANCEL},
                {"filled_qty": D("1")}, {"price": None}):
        assert not rc.restorable(Order(**{**base, **bad})), bad
