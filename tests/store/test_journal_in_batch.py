"""Order records written inside an open transaction join it directly (Journal.record_orders'
path for a batch, no nested context per call): they commit with the batch, roll back with
it, a failed write among them fails the whole batch as a JournalError, and outside a batch
every call is still its own commit. Both journal kinds: the daemon's file and a backtest's
in-memory copy."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.execution.orders import Order, OrderStatus, OrderType, Side, TimeInForce
from daemon.store.journal import Journal, JournalError


def _order(cid: str, **kw) -> Order:
    return Order(client_id=cid, symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                 qty=Decimal("0.001"), price=Decimal("60000.5"), tif=TimeInForce.POST_ONLY,
                 created_ns=5, **kw)


@pytest.fixture(params=[True, False], ids=["durable", "in-memory"])
def j(tmp_path, request):
    jr = Journal(tmp_path / "j.sqlite3", durable=request.param)
    yield jr
    jr.close()


def test_records_in_a_batch_are_one_commit_with_every_row(j):
    before = j.commits
    a, b, c = _order("a"), _order("b"), _order("c")
    with j.batch():
        j.record_order(a, 10)
        b.status, b.reason = OrderStatus.PENDING_CANCEL, "requote"
        j.record_orders([b, c], 11)
        assert j.commits == before
    assert j.commits == before + 1
    row = j._db.execute("SELECT side, type, tif, price, qty, status, reason, created_ns, "
                        "updated_ns FROM orders WHERE client_id = 'b'").fetchone()
    assert row == ("buy", "limit", "post_only", "60000.5", "0.001", "pending_cancel",
                   "requote", 5, 11)
    assert [j.order_history(x) for x in "abc"] == [["pending_new"], ["pending_cancel"],
                                                   ["pending_new"]]
    j.record_orders([a, c], 12)   # outside a batch: one commit per call, as before
    assert j.commits == before + 2


def test_a_failed_write_in_a_batch_rolls_the_whole_batch_back(j):
    j.record_order(_order("kept"), 1)
    with pytest.raises(JournalError):
        with j.batch():
            j.record_order(_order("a"), 2)
            bad = _order("b")
            bad.symbol = None   # NOT NULL: the write fails inside the batch
            j.record_orders([_order("c"), bad], 3)
    assert j.count("orders") == 1 and j.count("order_events") == 1
    assert j.order("a") is None and j.order("c") is None
    j.record_order(_order("d"), 4)   # no transaction was left open
    assert j.count("orders") == 2
