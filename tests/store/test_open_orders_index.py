"""Schema version 3: the open-orders partial index. Its condition is four `<>` terms (NOT IN
made every order write ~3.5 us dearer), it means the same set of statuses, and the query
`Journal.open_orders` runs is one SQLite answers from that index (a query must state the
index's condition for SQLite to use a partial index)."""
from __future__ import annotations

import sqlite3
from decimal import Decimal

from daemon.execution.orders import Order, OrderStatus, OrderType, Side
from daemon.store.journal import Journal

ENDED = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}


def _journal(tmp_path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite3")
    j.begin_run()
    for i, st in enumerate(OrderStatus):
        o = Order(client_id=f"r1-{i}", symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                  qty=Decimal("0.001"), price=Decimal("60000"), created_ns=i)
        o.status = st
        j.record_order(o, i)
    return j


def test_open_orders_are_every_status_but_the_ended_ones_and_read_through_the_index(tmp_path):
    j = _journal(tmp_path)
    try:
        seen: list[str] = []
        j._db.set_trace_callback(seen.append)
        got = j.open_orders()
        j._db.set_trace_callback(None)
        assert {o.status for o in got} == set(OrderStatus) - ENDED
        (sql,) = [s for s in seen if s.startswith("SELECT")]
        plan = " ".join(r[3] for r in j._db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX orders_open" in plan, plan
        # The index holds exactly the open orders.
        n_index = j._db.execute("SELECT count(*) FROM orders INDEXED BY orders_open "
                                "WHERE status <> 'filled' AND status <> 'cancelled' AND "
                                "status <> 'rejected' AND status <> 'expired'").fetchone()[0]
        assert n_index == len(got)
    finally:
        j.close()


def test_the_index_condition_is_the_v3_one(tmp_path):
    j = _journal(tmp_path)
    j.close()
    con = sqlite3.connect(tmp_path / "journal.sqlite3")
    try:
        (ddl,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'orders_open'"
                             ).fetchone()
    finally:
        con.close()
    assert "NOT IN" not in ddl and ddl.count("<>") == 4
