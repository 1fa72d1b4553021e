"""The backtest journal (durable=False): it runs in memory and reaches its file whole at
close(); the daemon's journal (durable, the default) is on disk at every commit.

Real SQLite files; a second connection reads the file as any other process would."""
from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Position,
                                     Side)
from daemon.store.journal import Journal


def _order(cid: str) -> Order:
    return Order(client_id=cid, symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                 qty=Decimal("0.001"), price=Decimal("60000.01"), created_ns=1)


def _write_run(j: Journal) -> None:
    """What a backtest's gateway writes: orders in batches, a fill with its position."""
    j.begin_run()
    j.audit("backtest", files=["a.gz"])
    with j.batch():
        for i in range(3):
            j.record_order(_order(f"o{i}"), 10 + i)
    o = _order("o0")
    o.status, o.filled_qty = OrderStatus.FILLED, Decimal("0.001")
    fill = Fill("f1", "o0", "BTCUSDT", Side.BUY, Decimal("60000.01"), Decimal("0.001"),
                Decimal("0.006"), Liquidity.MAKER, 20)
    pos = Position("BTCUSDT")
    pos.apply(fill)
    j.record_fill(fill, o, pos)


def _orders_on_disk(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    finally:
        db.close()


def test_backtest_journal_reaches_its_file_whole_at_close(tmp_path):
    path = tmp_path / "backtest.sqlite3"
    j = Journal(path, durable=False)
    _write_run(j)
    # The journal itself reads everything back while it runs ...
    assert j.count("orders") == 3 and j.count("fills") == 1
    assert j.order_history("o0") == ["pending_new", "filled"]
    # ... but the file does not have the run yet: no page or WAL write per commit.
    assert _orders_on_disk(path) == 0
    j.close()
    assert _orders_on_disk(path) == 3
    j2 = Journal(path, must_exist=True)   # integrity-checked like any journal file
    assert j2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j2.count("orders") == 3 and j2.count("fills") == 1
    assert j2.positions()["BTCUSDT"].qty == Decimal("0.001")
    assert j2.order_history("o0") == ["pending_new", "filled"]
    assert [r[2] for r in j2.audit_rows("backtest")] == [{"files": ["a.gz"]}]
    j2.close()


def test_daemon_journal_is_on_disk_at_every_commit(tmp_path):
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)   # durable: the daemon's
    _write_run(j)
    assert _orders_on_disk(path) == 3   # another process sees every commit at once
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    j.close()
