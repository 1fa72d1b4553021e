"""The journal, pinned where scripts/mutation-check found mutants no test noticed: every
field of an order, fill and position survives the round trip through SQLite, which
statuses count as open, what one commit holds, what a failed write leaves behind, and how a
missing, empty, foreign or replaced file is refused. Real SQLite files in tmp_path only.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from decimal import Decimal

import pytest

from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Position,
                                     Side, TimeInForce)
from daemon.store.journal import (RECOVERY_HINT, SCHEMA_VERSION, Journal, JournalDamaged,
                                  JournalError)

D = Decimal


def _order(cid: str = "o1", **kw) -> Order:
    base = dict(client_id=cid, symbol="BTCUSDT", side=Side.BUY, type=OrderType.LIMIT,
                qty=D("0.001"), price=D("60000.01"), created_ns=10)
    base.update(kw)
    return Order(**base)


def _fill(fid: str = "f1", cid: str = "o1", **kw) -> Fill:
    base = dict(fill_id=fid, client_id=cid, symbol="BTCUSDT", side=Side.SELL,
                price=D("60000.5"), qty=D("0.0004"), fee=D("0.024"),
                liquidity=Liquidity.TAKER, ts_ns=77)
    base.update(kw)
    return Fill(**base)


@pytest.fixture
def j(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    yield journal
    try:
        journal.close()
    except sqlite3.ProgrammingError:
        pass   # the test closed it


def test_every_order_field_round_trips(j):
    o = _order(side=Side.SELL, type=OrderType.MARKET, price=None, tif=TimeInForce.IOC,
               reduce_only=True, venue="paper2", status=OrderStatus.PARTIALLY_FILLED,
               filled_qty=D("0.0004"), avg_price=D("60000.5"), reason="why", updated_ns=11)
    j.record_order(o, 42)
    (back,) = j.open_orders()
    assert back == Order(client_id="o1", symbol="BTCUSDT", side=Side.SELL,
                         type=OrderType.MARKET, qty=D("0.001"), price=None,
                         tif=TimeInForce.IOC, reduce_only=True, venue="paper2",
                         status=OrderStatus.PARTIALLY_FILLED, filled_qty=D("0.0004"),
                         avg_price=D("60000.5"), reason="why", created_ns=10, updated_ns=42)
    limit = _order("o2", reduce_only=False, created_ns=12)
    j.record_order(limit, 43)
    back = j.open_orders()[1]
    assert (back.price, back.avg_price, back.reduce_only, back.type, back.tif, back.side) == \
        (D("60000.01"), None, False, OrderType.LIMIT, TimeInForce.GTC, Side.BUY)


def test_update_keeps_what_an_order_cannot_change(j):
    o = _order()
    j.record_order(o, 100)
    o.status, o.filled_qty, o.avg_price, o.reason = (OrderStatus.PENDING_CANCEL, D("0.0002"),
                                                     D("60000"), "requote")
    o.qty, o.price, o.created_ns = D("5"), D("1"), 999   # never changed after creation
    j.record_order(o, 200)
    (back,) = j.open_orders()
    assert (back.status, back.filled_qty, back.avg_price, back.reason, back.updated_ns) == \
        (OrderStatus.PENDING_CANCEL, D("0.0002"), D("60000"), "requote", 200)
    assert (back.qty, back.price, back.created_ns) == (D("0.001"), D("60000.01"), 10)


def test_times_default_to_now(j):
    before = time.time_ns()
    o = _order(created_ns=0)
    j.record_orders([o])
    (back,) = j.open_orders()
    after = time.time_ns()
    assert before <= back.updated_ns <= after
    assert back.created_ns == back.updated_ns, "an order with no creation time gets the write's"
    j.audit("x")
    (ts, kind, detail), = j.audit_rows("x")
    assert before <= ts <= time.time_ns() and kind == "x" and detail == {}


@pytest.mark.parametrize("status, is_open", [
    (OrderStatus.PENDING_NEW, True), (OrderStatus.NEW, True),
    (OrderStatus.PARTIALLY_FILLED, True), (OrderStatus.PENDING_CANCEL, True),
    (OrderStatus.FILLED, False), (OrderStatus.CANCELLED, False),
    (OrderStatus.REJECTED, False), (OrderStatus.EXPIRED, False)])
def test_open_orders_are_exactly_the_non_terminal_ones(j, status, is_open):
    j.record_order(_order(status=status), 1)
    assert [o.client_id for o in j.open_orders()] == (["o1"] if is_open else [])
    assert j.order_status("o1") is status


def test_open_orders_come_oldest_first(j):
    j.record_orders([_order("late", created_ns=30), _order("early", created_ns=5),
                     _order("mid", created_ns=20)], 1)
    assert [o.client_id for o in j.open_orders()] == ["early", "mid", "late"]


def test_unknown_order_has_no_status_and_no_history(j):
    assert j.order_status("nope") is None and j.order_history("nope") == []


def test_history_records_reason_per_event(j):
    o = _order()
    j.record_order(o, 1)
    o.status, o.reason = OrderStatus.CANCELLED, "e-stop"
    j.record_order(o, 2)
    assert j.order_history("o1") == ["pending_new", "cancelled"]
    rows = j._db.execute("SELECT ts_ns, status, reason FROM order_events WHERE client_id='o1' "
                         "ORDER BY id").fetchall()
    assert rows == [(1, "pending_new", None), (2, "cancelled", "e-stop")]


def test_fill_order_and_position_round_trip_in_one_commit(j):
    o = _order()
    j.record_order(o, 1)
    f = _fill()
    o.filled_qty, o.status = f.qty, OrderStatus.PARTIALLY_FILLED
    pos = Position("BTCUSDT", D("-0.0004"), D("60000.5"), D("1.5"), D("0.024"))
    before = j.commits
    j.record_fill(f, o, pos)
    assert j.commits == before + 1
    assert j.has_fill("f1") and not j.has_fill("f2")
    row = j._db.execute("SELECT * FROM fills").fetchone()
    assert row == ("f1", "o1", "BTCUSDT", "sell", "60000.5", "0.0004", "0.024", "taker", 77)
    assert j.positions() == {"BTCUSDT": pos}
    (back,) = j.open_orders()
    assert (back.filled_qty, back.status, back.updated_ns) == \
        (D("0.0004"), OrderStatus.PARTIALLY_FILLED, 77)
    j.record_fill(_fill("f2", ts_ns=0), o, Position("BTCUSDT", D("1"), D("2"), D("3"), D("4")))
    assert j.positions()["BTCUSDT"] == Position("BTCUSDT", D("1"), D("2"), D("3"), D("4"))
    assert j.open_orders()[0].updated_ns > 77, "a fill without a time gets the write's"


def test_positions_of_several_symbols(j):
    o = _order()
    j.record_order(o, 1)
    a = Position("BTCUSDT", D("1"), D("60000"), D("0"), D("0.1"))
    b = Position("ETHUSDT", D("-2"), D("3000"), D("5"), D("0.2"))
    j.record_fill(_fill("f1"), o, a)
    j.record_fill(_fill("f2", symbol="ETHUSDT"), o, b)
    assert j.positions() == {"BTCUSDT": a, "ETHUSDT": b}


def test_count_knows_its_tables(j):
    j.record_order(_order(), 1)
    assert [j.count(t) for t in ("orders", "order_events", "fills", "positions")] == [1, 1, 0, 0]
    assert j.count("audit") == 0
    with pytest.raises(ValueError, match="latch"):
        j.count("latch")
    with pytest.raises(ValueError):
        j.count("orders; DROP TABLE orders")


def test_latch_record_and_its_audit_row_share_one_commit_and_time(j):
    before = j.commits
    j.set_latch(True, "halt", "operator", open_orders=2, price=D("1.5"))
    assert j.commits == before + 1
    rec = j.latch()
    (ts, kind, detail), = j.audit_rows("latch_trip")
    assert (rec.tripped, rec.source, rec.reason, rec.ts_ns) == (True, "halt", "operator", ts)
    assert kind == "latch_trip"
    assert detail == {"source": "halt", "reason": "operator", "open_orders": 2, "price": "1.5"}
    j.set_latch(False, "operator", "bot4ctl reset", was="halt")
    rec = j.latch()
    assert (rec.tripped, rec.source, rec.reason) == (False, "operator", "bot4ctl reset")
    (_, kind, detail), = j.audit_rows("latch_reset")
    assert detail == {"source": "operator", "reason": "bot4ctl reset", "was": "halt"}
    assert [k for _, k, _ in j.audit_rows()] == ["latch_trip", "latch_reset"]


def test_batch_is_one_commit_and_all_or_nothing(j):
    before = j.commits
    with j.batch():
        j.record_order(_order("a"), 1)
        with j.batch():   # nested: joins the outer transaction
            j.record_order(_order("b"), 1)
        j.audit("inside")
    assert j.commits == before + 1 and j.count("orders") == 2
    with pytest.raises(RuntimeError, match="boom"):
        with j.batch():
            j.record_order(_order("c"), 1)
            j.audit("lost")
            raise RuntimeError("boom")
    assert j.commits == before + 1
    assert j.count("orders") == 2 and j.audit_rows("lost") == []
    j.record_order(_order("d"), 1)   # the failed batch left no transaction open
    assert j.count("orders") == 3 and j.commits == before + 2


def test_a_failed_write_is_a_journal_error_and_rolls_back(j):
    o = _order()
    j.record_order(o, 1)
    j.record_fill(_fill(), o, Position("BTCUSDT"))
    before = (j.commits, j.count("order_events"), j.count("fills"))
    with pytest.raises(JournalError, match="UNIQUE"):
        j.record_fill(_fill(), o, Position("BTCUSDT", D("9")))   # the same fill id again
    assert (j.commits, j.count("order_events"), j.count("fills")) == before
    assert j.positions()["BTCUSDT"].qty == 0, "half of a failed fill was kept"
    j.audit("still writable")
    assert j.audit_rows("still writable")


def test_pragmas_schema_and_parent_dirs(tmp_path):
    j = Journal(tmp_path / "a" / "b" / "j.sqlite3")
    try:
        assert j._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert j._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == \
            (str(SCHEMA_VERSION),)
    finally:
        j.close()


def test_close_folds_the_wal_into_the_file(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.set_latch(True, "estop", "pressed")
    j.record_order(_order(), 1)
    j.close()
    wal = tmp_path / "j.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copy" / "j.sqlite3"
    alone.parent.mkdir()
    shutil.copy(path, alone)   # the main file alone, without its WAL
    j2 = Journal(alone)
    try:
        assert j2.latch().source == "estop" and j2.order_status("o1") is OrderStatus.PENDING_NEW
    finally:
        j2.close()


def test_runs_are_counted_across_reopens(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    assert [j.begin_run(), j.begin_run()] == [1, 2]
    j.close()
    j = Journal(tmp_path / "j.sqlite3", must_exist=True)
    try:
        assert j.begin_run() == 3
    finally:
        j.close()


def test_a_journal_that_must_exist_is_never_created(tmp_path):
    path = tmp_path / "j.sqlite3"
    with pytest.raises(JournalDamaged, match="is missing, but a journal existed here before"):
        Journal(path, must_exist=True)
    assert not path.exists()
    path.write_bytes(b"")
    with pytest.raises(JournalDamaged, match=r"j\.sqlite3 is empty \(0 bytes\), but a "
                                             r"journal existed here before"):
        Journal(path, must_exist=True)
    assert path.stat().st_size == 0


def test_garbage_and_foreign_files_are_damage(tmp_path):
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(JournalDamaged, match="journal-reset"):
        Journal(junk)
    foreign = tmp_path / "foreign.sqlite3"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(JournalDamaged, match="not a bot4 journal") as refused:
        Journal(foreign)
    # Refused and closed at once, even while the error is still being handled (it holds the
    # half-built journal): no WAL or shared-memory file of ours is left beside the file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.sqlite3", "junk.sqlite3"]
    del refused


def test_a_path_that_cannot_hold_a_journal_is_a_journal_error(tmp_path):
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(JournalError, match="dir.sqlite3"):
        Journal(tmp_path / "dir.sqlite3")


def test_deleted_or_replaced_file_is_noticed(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    try:
        j.check_file()   # unchanged: fine
        os.rename(path, tmp_path / "moved")
        with pytest.raises(JournalError, match="was deleted while the daemon runs"):
            j.check_file()
        path.write_bytes(b"x")
        with pytest.raises(JournalError, match="was replaced while the daemon runs"):
            j.check_file()
    finally:
        j.close()


def test_fresh_journal_has_made_one_commit(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")   # the schema, in one transaction
    try:
        assert j.commits == 1
        j.audit("x")
        assert j.commits == 2
    finally:
        j.close()


def test_an_empty_file_without_a_previous_journal_is_a_first_boot(tmp_path):
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"")   # e.g. created by the state-dir setup, never written
    j = Journal(path)
    try:
        j.record_order(_order(), 1)
        assert j.order_status("o1") is OrderStatus.PENDING_NEW
    finally:
        j.close()


def test_a_one_byte_file_is_damage_not_a_first_boot(tmp_path):
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"x")
    with pytest.raises(JournalDamaged):
        Journal(path)


def test_parent_that_is_a_file_is_a_journal_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(JournalError, match="file"):
        Journal(tmp_path / "file" / "j.sqlite3")


def test_journal_opened_on_one_thread_is_used_on_another(tmp_path):
    """The supervisor opens it before its loop may run on another thread (and the stop-post
    helper and tests use it from theirs): the connection must not be tied to one thread."""
    import threading
    j = Journal(tmp_path / "j.sqlite3")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            j.record_order(_order(), 1)
        except BaseException as e:   # noqa: BLE001 - reported below
            errors.append(e)
    t = threading.Thread(target=use)
    t.start()
    t.join()
    try:
        assert errors == [] and j.order_status("o1") is OrderStatus.PENDING_NEW
    finally:
        j.close()


def test_a_damaged_page_fails_the_integrity_check_with_sqlites_words(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    with j.batch():
        for i in range(400):
            j.record_order(_order(f"o{i:04d}", created_ns=i + 1), 1)
    j.close()
    # A leaf page of order_events that is not its root (which page that is depends on the
    # schema: the dbstat table says where SQLite put it).
    leaf = sqlite3.connect(path).execute(
        "SELECT max(pageno) FROM dbstat WHERE name = 'order_events' AND pagetype = 'leaf'"
    ).fetchone()[0]
    page = 4096
    with open(path, "r+b") as f:   # scribble over the cell pointers of a later b-tree page
        f.seek((leaf - 1) * page + 8)
        f.write(b"\xff\x00\xfe" * 300)
    db = sqlite3.connect(path)
    rows = [r[0] for r in db.execute("PRAGMA quick_check")]
    db.close()
    assert 2 <= len(rows) <= 3 and rows[0].startswith("*** in database main ***\nOn tree page")
    with pytest.raises(JournalDamaged) as e:
        Journal(path)
    assert str(e.value) == f"{path} fails its integrity check ({'; '.join(rows)}): {RECOVERY_HINT}"


def test_a_name_the_file_system_refuses_is_a_journal_error(tmp_path):
    with pytest.raises(JournalError, match="File name too long"):
        Journal(tmp_path / ("x" * 300))


def test_a_database_that_cannot_do_wal_is_refused():
    with pytest.raises(JournalError, match=r"^:memory:: could not enable WAL \(got memory\)$"):
        Journal(":memory:")


def test_a_path_that_became_a_symlink_loop_is_noticed(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    try:
        os.rename(path, tmp_path / "moved")
        os.symlink(path, path)   # points at itself
        with pytest.raises(JournalError, match="j.sqlite3: .*Too many levels of symbolic links"):
            j.check_file()
    finally:
        j.close()


def test_close_folds_the_wal_even_while_another_reader_is_open(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    reader = sqlite3.connect(path)   # e.g. an operator's sqlite3 shell, idle
    try:
        assert reader.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)
        j.set_latch(True, "estop", "pressed")
        j.close()
        alone = tmp_path / "copy.sqlite3"
        shutil.copy(path, alone)   # the main file only, not its WAL
        db = sqlite3.connect(alone)
        assert db.execute("SELECT tripped, source FROM latch").fetchone() == (1, "estop")
        db.close()
    finally:
        reader.close()


def test_a_failing_checkpoint_is_logged_not_raised(tmp_path, caplog):
    j = Journal(tmp_path / "j.sqlite3")
    j._db.close()   # whatever made the connection unusable
    with caplog.at_level(logging.WARNING, logger="daemon.store.journal"):
        j.checkpoint()
    assert [r.getMessage() for r in caplog.records] == [
        "journal checkpoint failed: Cannot operate on a closed database."]


@pytest.mark.parametrize("dirname", ["a#b", "c?d", "e%41", "f g"])
def test_a_state_dir_with_uri_characters_in_its_name_reopens(tmp_path, dirname):
    """The read-only check opens the file through an SQLite URI. Unquoted, '#' or '?' in the
    path cut it short: mode=ro was lost, an empty database was CREATED at the truncated
    path, and the healthy journal was refused as "not a bot4 journal" (exit 65, with a hint
    to reset it); '%41' opened another name. The path is percent-encoded now."""
    path = tmp_path / dirname / "journal.sqlite3"
    j = Journal(path)
    j.set_latch(True, "estop", "pressed")
    j.close()
    j = Journal(path, must_exist=True)
    try:
        assert j.latch().source == "estop"
    finally:
        j.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [dirname]
    assert sorted(p.name for p in (tmp_path / dirname).iterdir()) == ["journal.sqlite3"]


def test_a_locked_journal_is_a_journal_error_not_damage(tmp_path):
    """Another process holds the file exclusively (e.g. an operator's sqlite3 shell in
    exclusive locking mode): the read-only check cannot read it. That is not proven damage:
    JournalError (the daemon retries under systemd), never JournalDamaged (exit 65 and a
    hint to reset a healthy journal)."""
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(JournalError) as e:
            Journal(path)   # waits out SQLite's busy timeout (5 s), then gives up
        assert type(e.value) is JournalError
        assert str(e.value) == f"{path}: database is locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_refused_file_keeps_its_wal_untouched(tmp_path):
    """A foreign database whose last commits are only in its -wal (its writer was
    killed) is refused without being checkpointed: the read-only connection cannot fold
    the WAL into the file, as a read-write one would when it closes."""
    import subprocess
    import sys
    from tests.daemon_harness import REPO
    path = tmp_path / "foreign.sqlite3"
    code = ("import os, sqlite3\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('PRAGMA journal_mode=WAL')\n"
            "db.execute('CREATE TABLE t (x)')\n"
            "db.execute('INSERT INTO t VALUES (1)')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    wal = tmp_path / "foreign.sqlite3-wal"
    before = (path.read_bytes(), wal.read_bytes())
    assert before[1], "the commit is not in the WAL"
    with pytest.raises(JournalDamaged, match="not a bot4 journal"):
        Journal(path)
    assert (path.read_bytes(), wal.read_bytes()) == before


def test_a_failed_open_closes_its_connection_at_once(tmp_path, monkeypatch):
    """A migration that fails after the read-write connection is open: the connection is
    closed before the error leaves __init__ (while the error still holds the half-built
    journal), so the -wal and -shm files are gone, as after any last close."""
    from daemon.store import migrations
    from tests.store.test_migrations import build
    path = build(tmp_path / "journal.sqlite3", 1)

    def fail(db: sqlite3.Connection) -> None:
        raise RuntimeError("no")
    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.Migration(2, "x", apply=fail),))
    with pytest.raises(JournalError, match="no; the copy taken") as refused:
        Journal(path)
    assert not (tmp_path / "journal.sqlite3-wal").exists()
    assert not (tmp_path / "journal.sqlite3-shm").exists()
    del refused


def test_commit_time_accounting(tmp_path):
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    j = Journal(path)   # already the newest schema: opening commits nothing
    try:
        assert (j.commits, j.commit_seconds_sum, j.commit_seconds_max) == (0, 0.0, 0.0)
        j.audit("x")
        j.audit("y")
        assert j.commits == 2
        assert 0 < j.commit_seconds_max <= j.commit_seconds_sum
    finally:
        j.close()


def test_recent_orders_and_fills_default_to_fifty(j):
    o = _order()
    with j.batch():
        for i in range(51):
            j.record_order(_order(f"o{i:02d}"), 1)
            j.record_fill(_fill(f"f{i:02d}"), o, Position("BTCUSDT"))
    orders, fills = j.recent_orders(), j.recent_fills()
    assert len(orders) == 50 and orders[0]["client_id"] == "o50"
    assert len(fills) == 50 and fills[-1]["fill_id"] == "f01"


def test_state_type_error_names_the_type(j):
    with pytest.raises(TypeError, match=r"^state 'k' must be a dict, got list$"):
        j.save_state("k", [])
