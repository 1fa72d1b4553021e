"""What a backtest's journal (durable=False) is made of, beyond what it writes: its file
connection never fsyncs (synchronous=OFF) while the daemon's is FULL, it says which kind
it is, its working copy is really in memory (no file appears anywhere, the working
directory included), and like the daemon's journal it may be written from another thread
than the one that opened it. Real SQLite files."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from daemon.execution.orders import Order, OrderType, Side
from daemon.store.journal import Journal


def _order(cid: str) -> Order:
    return Order(client_id=cid, symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                 qty=Decimal("0.001"), price=Decimal("60000.01"), created_ns=1)


def test_a_backtest_journal_never_fsyncs_and_says_it_is_not_durable(tmp_path):
    j = Journal(tmp_path / "bt.sqlite3", durable=False)
    assert j.durable is False
    assert j._file_db.execute("PRAGMA synchronous").fetchone()[0] == 0   # OFF
    j.close()
    d = Journal(tmp_path / "daemon.sqlite3")
    assert d.durable is True and d._file_db is None
    assert d._db.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    d.close()


def test_the_working_copy_is_in_memory_and_makes_no_file(tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)   # a file named after a mistyped ":memory:" would land here
    j = Journal(tmp_path / "bt.sqlite3", durable=False)
    j.record_order(_order("o1"), 5)
    (_, name, file), = j._db.execute("PRAGMA database_list").fetchall()
    assert (name, file) == ("main", "")   # "" = an in-memory database
    assert list(work.iterdir()) == []
    j.close()
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "in-memory"])
def test_written_from_another_thread_than_the_opener(tmp_path, durable):
    j = Journal(tmp_path / "j.sqlite3", durable=durable)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with j.batch():
                j.record_order(_order("o1"), 5)
        except BaseException as e:   # handed to the test thread below
            errors.append(e)
    t = threading.Thread(target=write)
    t.start()
    t.join()
    assert errors == [] and j.order_history("o1") == ["pending_new"]
    j.close()
