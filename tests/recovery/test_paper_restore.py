"""The paper venue's side of crash recovery: `restore` (all or nothing, resting orders only,
placed at the back of the queue once the book is valid) and `query_orders` (what it
remembers, bounded). Real OrderBooks fed like the pipeline does."""
from __future__ import annotations

import pytest

from daemon.execution.orders import Order, OrderStatus, OrderType, Side, TimeInForce
from daemon.execution.paper import PaperVenue
from daemon.execution.venue import VenueOrderState
from tests.recovery.rig import ASKS, BIDS, D, LATENCY, SYM, Dropped, World


def _order(cid: str, *, side: Side = Side.BUY, price: str | None = "100", qty: str = "1",
           filled: str = "0", status: OrderStatus = OrderStatus.NEW,
           tif: TimeInForce = TimeInForce.GTC, type: OrderType = OrderType.LIMIT) -> Order:
    return Order(cid, SYM, side, type, D(qty), None if price is None else D(price), tif,
                 status=status, filled_qty=D(filled))


def _fresh() -> tuple[World, Dropped]:
    w = World()
    w.restart_paper()   # a new process: empty venue, book not valid yet
    listener = Dropped()
    w.venue.bind(listener, "r2")
    return w, listener


@pytest.mark.parametrize("bad, why", [
    (dict(tif=TimeInForce.IOC), "not a resting order (limit ioc)"),
    (dict(type=OrderType.MARKET, price=None), "not a resting order (market gtc)"),
    (dict(status=OrderStatus.PENDING_NEW), "status pending_new is not resting"),
    (dict(status=OrderStatus.PENDING_CANCEL), "status pending_cancel is not resting"),
    (dict(price=None), "limit order needs a positive price"),
    (dict(price="0"), "limit order needs a positive price"),
    (dict(filled="1"), "nothing left to fill (1 of 1 filled)"),
])
def test_restore_refuses_what_does_not_rest_and_restores_nothing(bad, why):
    w, _ = _fresh()
    good = _order("ok")
    with pytest.raises(ValueError, match=f"^cannot restore x: {__import__('re').escape(why)}$"):
        w.venue.restore([good, _order("x", **bad)])
    assert w.venue.open_orders() == [] and w.venue.stats["restored"] == 0
    assert w.venue.query_orders(["ok"]) == {"ok": None}


def test_restore_refuses_an_id_working_or_listed_twice():
    w, _ = _fresh()
    w.venue.restore([_order("a")])
    with pytest.raises(ValueError, match="^cannot restore a: already working at this venue$"):
        w.venue.restore([_order("a")])
    with pytest.raises(ValueError, match="^cannot restore b: already working at this venue$"):
        w.venue.restore([_order("b"), _order("b")])
    assert w.venue.open_orders() == ["a"]


def test_restore_needs_a_listener():
    v = PaperVenue()
    with pytest.raises(RuntimeError, match="bind"):
        v.restore([_order("a")])


def test_restored_orders_keep_their_order_at_one_price_and_fill_for_what_is_left():
    w, listener = _fresh()
    w.venue.restore([_order("a", qty="1", filled="0.4", status=OrderStatus.PARTIALLY_FILLED),
                     _order("b", qty="1")])
    assert w.venue.query_orders(["a", "b"]) == {
        "a": VenueOrderState("a", OrderStatus.PARTIALLY_FILLED, D("0.4"), (), None, 0),
        "b": VenueOrderState("b", OrderStatus.NEW, D("0"), (), None, 0)}   # venue time 0
    w.snapshot([(100.0, 2.0)], ASKS)
    assert w.venue.queue_ahead("a") == 2.0 and w.venue.queue_ahead("b") == 2.0
    w.trade(100.0, 2.8, sell=True)                  # 2 ahead, then a's 0.6, then b's 0.2
    fills = [f for f in listener.lost if not isinstance(f, tuple)]
    assert [(f.client_id, f.qty) for f in fills] == [("a", D("0.6")), ("b", D("0.2"))]
    st = w.venue.query_orders(["a", "b"])
    assert (st["a"].status, st["a"].filled_qty, st["a"].fills) == (OrderStatus.FILLED, D("1.0"),
                                                                   (fills[0],))
    assert (st["b"].status, st["b"].filled_qty) == (OrderStatus.PARTIALLY_FILLED, D("0.2"))
    assert st["b"].working and not st["a"].working


def test_a_sell_is_cancelled_when_the_bid_moved_through_it():
    w, listener = _fresh()
    w.venue.restore([_order("s", side=Side.SELL, price="101")])
    w.snapshot([(101.0, 1.0)], [(101.5, 1.0)])      # best bid at our ask
    assert ("s", OrderStatus.CANCELLED) in listener.lost
    assert w.venue.query_orders(["s"])["s"].status is OrderStatus.CANCELLED
    assert w.venue.open_orders() == []


def test_a_sell_below_the_best_ask_is_placed_on_an_empty_level():
    w, listener = _fresh()
    w.venue.restore([_order("s", side=Side.SELL, price="100.50")])
    w.snapshot(BIDS, ASKS)
    assert w.venue.queue_ahead("s") == 0.0 and listener.lost == []


def test_query_orders_remembers_every_outcome():
    w = World()
    listener = Dropped()
    v = w.venue
    v.bind(listener, "r1")
    v.submit(_order("rest"))
    v.submit(_order("ioc", price="99", tif=TimeInForce.IOC))
    v.submit(_order("late", price="101", tif=TimeInForce.POST_ONLY))
    v.submit(_order("gone"))
    w.tick()
    v.cancel("gone")
    sent = w.t
    w.tick()
    st = v.query_orders(["rest", "ioc", "late", "gone", "never"])
    assert st["never"] is None
    assert (st["rest"].status, st["rest"].reason) == (OrderStatus.NEW, None)
    assert (st["ioc"].status, st["ioc"].reason) == (OrderStatus.EXPIRED,
                                                    "IOC remainder not immediately fillable")
    assert (st["late"].status, st["late"].reason) == (OrderStatus.REJECTED,
                                                      "post-only order would take liquidity")
    assert st["gone"].status is OrderStatus.CANCELLED and st["gone"].ts_ns == sent + LATENCY


def test_a_duplicate_id_does_not_overwrite_what_the_venue_remembers():
    w = World()
    v = w.venue
    v.bind(Dropped(), "r1")
    v.submit(_order("a"))
    w.tick()
    v.submit(_order("a"))
    w.tick()
    assert v.query_orders(["a"])["a"].status is OrderStatus.NEW


def test_query_memory_is_bounded_and_never_forgets_a_working_order():
    w = World()
    v = PaperVenue(entry_latency_ns=0, history=2)
    v.bind(Dropped(), "r1")
    v.on_depth(w.book, w.t)
    v.submit(_order("working"))
    for cid in ("x1", "x2", "x3"):
        v.submit(_order(cid))
        v.cancel(cid)
    v.advance(w.t + 1)
    st = v.query_orders(["working", "x1", "x2", "x3"])
    assert st["working"].status is OrderStatus.NEW
    assert (st["x1"], st["x2"]) == (None, None) and st["x3"].status is OrderStatus.CANCELLED
    with pytest.raises(ValueError, match="history must be >= 1"):
        PaperVenue(history=0)
