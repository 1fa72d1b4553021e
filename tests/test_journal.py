"""The SQLite journal: WAL + synchronous=FULL, latch persistence, atomic fills, crash safety."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal

from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Position,
                                     Side)
from daemon.store.journal import Journal
from tests.daemon_harness import REPO


def _order(cid="o1", status=OrderStatus.PENDING_NEW) -> Order:
    return Order(client_id=cid, symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                 qty=Decimal("0.001"), price=Decimal("60000.01"), status=status, created_ns=1)


def test_pragmas_wal_and_full(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    j.close()


def test_latch_persists_across_reopen(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    assert j.latch() is None
    j.set_latch(True, "estop", "button", open_orders=3)
    j.close()
    j2 = Journal(tmp_path / "j.sqlite3")
    rec = j2.latch()
    assert rec.tripped and rec.source == "estop" and rec.reason == "button"
    rows = j2.audit_rows("latch_trip")
    assert rows and rows[-1][2] == {"source": "estop", "reason": "button", "open_orders": 3}
    j2.set_latch(False, "operator", "reset")
    assert not j2.latch().tripped


def test_order_history_and_open_orders(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    o = _order()
    j.record_order(o)
    o.status = OrderStatus.NEW
    j.record_order(o)
    o2 = _order("o2")
    j.record_orders([o2])
    assert [x.client_id for x in j.open_orders()] == ["o1", "o2"]
    assert j.open_orders()[0].price == Decimal("60000.01")
    o.status = OrderStatus.CANCELLED
    j.record_order(o)
    assert j.order_history("o1") == ["pending_new", "new", "cancelled"]
    assert [x.client_id for x in j.open_orders()] == ["o2"]


def test_fill_order_and_position_are_one_commit(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    o = _order()
    j.record_order(o)
    before = j.commits
    fill = Fill("f1", "o1", "BTCUSDT", Side.BUY, Decimal("60000.01"), Decimal("0.001"),
                Decimal("0.006"), Liquidity.MAKER, 5)
    o.filled_qty, o.status = Decimal("0.001"), OrderStatus.FILLED
    pos = Position("BTCUSDT")
    pos.apply(fill)
    j.record_fill(fill, o, pos)
    assert j.commits == before + 1
    assert j.positions()["BTCUSDT"].qty == Decimal("0.001")
    assert j.order_status("o1") is OrderStatus.FILLED
    # a duplicate fill id is refused and leaves nothing half-written
    try:
        j.record_fill(fill, o, pos)
        raise AssertionError("duplicate fill accepted")
    except Exception as e:
        assert "UNIQUE" in str(e)
    assert j.count("fills") == 1


def test_commit_survives_a_killed_process(tmp_path):
    """A writer that dies with os._exit (no close, no checkpoint) loses nothing committed."""
    path = tmp_path / "j.sqlite3"
    code = (
        "import os, sys\n"
        "from decimal import Decimal\n"
        "from daemon.store.journal import Journal\n"
        "from daemon.execution.orders import *\n"
        f"j = Journal({str(path)!r})\n"
        "j.set_latch(True, 'estop', 'pressed')\n"
        "for i in range(50):\n"
        "    j.record_order(Order(client_id=f'o{i}', symbol='BTCUSDT', side=Side.SELL,\n"
        "        type=OrderType.LIMIT, qty=Decimal('1'), price=Decimal('2'), created_ns=i))\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    assert (tmp_path / "j.sqlite3-wal").exists(), "the WAL was not left behind"
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 50
    assert db.execute("SELECT tripped, source FROM latch").fetchone() == (1, "estop")


def test_position_math():
    p = Position("X")
    buy = lambda px, q: Fill("f", "c", "X", Side.BUY, Decimal(px), Decimal(q), Decimal(0),
                             Liquidity.TAKER, 0)
    sell = lambda px, q: Fill("f", "c", "X", Side.SELL, Decimal(px), Decimal(q), Decimal("0.1"),
                              Liquidity.TAKER, 0)
    p.apply(buy("100", "2"))
    p.apply(buy("110", "2"))
    assert p.qty == 4 and p.avg_price == 105
    p.apply(sell("120", "3"))
    assert p.qty == 1 and p.realized_pnl == 45 and p.fees == Decimal("0.1")
    p.apply(sell("90", "3"))   # through zero: short 2 at 90
    assert p.qty == -2 and p.avg_price == 90 and p.realized_pnl == 30


def test_a_damaged_file_is_refused_untouched(tmp_path):
    """The integrity check runs on a read-only connection first: before, setting WAL mode
    rewrote a 1-byte file into an SQLite header before refusing it."""
    import pytest
    from daemon.store.journal import JournalDamaged
    for content in (b"x", b"garbage " * 1000):
        path = tmp_path / "journal.sqlite3"
        path.write_bytes(content)
        with pytest.raises(JournalDamaged):
            Journal(path)
        assert path.read_bytes() == content
        assert not (tmp_path / "journal.sqlite3-wal").exists()
