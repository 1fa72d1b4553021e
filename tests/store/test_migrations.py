"""Journal schema versions and forward migrations, on real SQLite files.

A journal of every released version is built from its frozen fixture (tests/fixtures/
journal/vN.schema.sql + vN.rows.sql, the rows written by that version's own code) and
opened with today's code: every row of every table survives, the schema equals a new
journal's, the file was backed up first. A migration that fails, or a process killed in
the middle of one, leaves the journal at its old version, whole. A journal newer than this
code is refused untouched.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.execution.orders import OrderStatus, Position
from daemon.store import migrations
from daemon.store.journal import (SCHEMA_VERSION, Journal, JournalDamaged, JournalError,
                                  JournalTooNew)
from tests.daemon_harness import REPO

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "journal"
VERSIONS = list(range(migrations.BASE_VERSION, SCHEMA_VERSION + 1))
OLDER = VERSIONS[:-1]


def _fixture(version: int, part: str) -> str:
    return (FIXTURES / f"v{version}.{part}.sql").read_text()


def build(path: Path, version: int) -> Path:
    """A journal file of `version` with the rows that version's code wrote, in WAL mode as
    the daemon leaves it."""
    db = sqlite3.connect(path)
    db.executescript(_fixture(version, "schema"))
    db.executescript(_fixture(version, "rows"))
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    return path


def tables(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, by table, in rowid order, with the column names."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for t in tables(db):
            cur = db.execute(f'SELECT * FROM "{t}" ORDER BY rowid')
            out[t] = [tuple(c[0] for c in cur.description), *cur.fetchall()]
        return out
    finally:
        db.close()


def schema_of(db: sqlite3.Connection) -> set[tuple[str, str, str]]:
    return {(t, n, " ".join(sql.split())) for t, n, sql in db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")}


def version_of(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    finally:
        db.close()


# -- the fixtures themselves ---------------------------------------------------------------
def test_every_version_up_to_this_one_is_frozen():
    """Bumping the schema without freezing the new version (tests/fixtures/journal/
    freeze.py) would leave it untested as an "earlier version" once the next one comes."""
    for v in VERSIONS:
        assert (FIXTURES / f"v{v}.schema.sql").is_file(), f"v{v}.schema.sql not frozen"
        assert (FIXTURES / f"v{v}.rows.sql").is_file(), f"v{v}.rows.sql not frozen"
    assert not (FIXTURES / f"v{SCHEMA_VERSION + 1}.schema.sql").exists()


def test_base_schema_is_the_released_v1_text():
    frozen = "".join(line + "\n" for line in _fixture(1, "schema").splitlines()
                     if not line.startswith("--"))
    assert migrations.BASE_SCHEMA.strip() == frozen.strip()


def test_a_new_journal_has_the_frozen_schema_of_this_version(tmp_path):
    """Changing the DDL without a migration (and a new frozen version) fails here."""
    j = Journal(tmp_path / "j.sqlite3")
    try:
        fresh = schema_of(j._db)
    finally:
        j.close()
    frozen = sqlite3.connect(":memory:")
    frozen.executescript(_fixture(SCHEMA_VERSION, "schema"))
    assert fresh == schema_of(frozen)


def test_migrations_are_numbered_in_order():
    assert [m.version for m in migrations.MIGRATIONS] == VERSIONS[1:]
    assert migrations.LATEST == SCHEMA_VERSION == migrations.latest()
    assert migrations.latest(()) == migrations.BASE_VERSION
    m2 = migrations.MIGRATIONS[0]
    migrations.check_order((m2,))
    for bad in ((), (m2, m2), (migrations.Migration(3, "gap", m2.ddl),)):
        if bad == ():
            migrations.check_order(bad)   # no migration at all is a valid list
            continue
        with pytest.raises(ValueError, match="in order"):
            migrations.check_order(bad)


# -- from every earlier version ---------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_a_journal_of_every_version_opens_with_every_row_kept(tmp_path, version):
    path = build(tmp_path / "journal.sqlite3", version)
    before = snapshot(path)
    j = Journal(path, must_exist=True)
    try:
        assert j.schema_version == SCHEMA_VERSION
        assert j.migrated_from == (version if version < SCHEMA_VERSION else None)
        fresh = Journal(tmp_path / "fresh.sqlite3")
        try:
            assert schema_of(j._db) == schema_of(fresh._db)
        finally:
            fresh.close()
    finally:
        j.close()
    after = snapshot(path)
    assert version_of(path) == str(SCHEMA_VERSION)
    for table, (cols, *rows) in before.items():
        assert table in after, f"table {table} lost"
        new_cols = after[table][0]
        keep = [new_cols.index(c) for c in cols]   # migrations may add columns, never drop
        kept = [tuple(r[i] for i in keep) for r in after[table][1:]]
        if table == "meta":
            rows = [r for r in rows if r[0] != "schema"]
            kept = [r for r in kept if r[0] != "schema"]
        if table == "audit":
            kept = kept[:len(rows)]   # then the journal's own schema_migrated row
        assert kept == rows, f"rows of {table} changed"
    bak = tmp_path / f"journal.sqlite3.v{version}.bak"
    if version < SCHEMA_VERSION:
        assert snapshot(bak) == before, "the backup is not the journal as it was"
        assert version_of(bak) == str(version)
    else:
        assert not bak.exists()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_migrated_journal_reads_back_what_its_version_wrote(tmp_path, version):
    path = build(tmp_path / "journal.sqlite3", version)
    j = Journal(path, must_exist=True)
    try:
        assert j.latch().tripped and j.latch().source == "halt"
        assert [o.client_id for o in j.open_orders()] == ["r1-3", "r1-6"]
        assert j.order("r1-3").status is OrderStatus.PARTIALLY_FILLED
        assert j.order_history("r1-1") == ["pending_new", "new", "partially_filled", "filled"]
        assert j.positions() == j.positions_from_fills()
        assert j.positions()["BTCUSDT"] == Position("BTCUSDT", Decimal("-0.0010"),
                                                    Decimal("60100.5"), Decimal("0.200980"),
                                                    Decimal("0.30"))
        assert [f["fill_id"] for f in j.recent_fills()] == ["p1-4", "p1-3", "p1-2", "p1-1"]
        assert j.begin_run() == 3
        kinds = [k for _, k, _ in j.audit_rows()]
        assert kinds[:5] == ["boot", "latch_trip", "latch_reset", "orders_recovered",
                             "latch_trip"]
        if version < SCHEMA_VERSION:
            (_, _, d), = j.audit_rows("schema_migrated")
            assert d == {"from": version, "to": SCHEMA_VERSION,
                         "backup": str(tmp_path / f"journal.sqlite3.v{version}.bak")}
            assert kinds[-1] == "schema_migrated"
        else:
            assert j.audit_rows("schema_migrated") == []
        # v2 tables work whatever version the file came from
        j.save_state("probe", {"a": 1})
        assert j.load_state("probe") == {"a": 1}
        if version >= 2:
            assert j.load_state("risk")["peak_equity"] == "10012.5"
            assert j.last_reconciliation()["mode"] == "rebuild"
    finally:
        j.close()


def test_a_migrated_journal_is_not_migrated_or_backed_up_again(tmp_path):
    path = build(tmp_path / "journal.sqlite3", 1)
    Journal(path).close()
    bak = tmp_path / "journal.sqlite3.v1.bak"
    stamp = bak.stat().st_mtime_ns, bak.read_bytes()
    j = Journal(path)
    try:
        assert j.migrated_from is None and len(j.audit_rows("schema_migrated")) == 1
    finally:
        j.close()
    assert (bak.stat().st_mtime_ns, bak.read_bytes()) == stamp


def test_the_backup_holds_what_is_still_in_the_wal(tmp_path):
    """The backup is taken through SQLite, not by copying the main file: commits that are
    only in the -wal file yet are in it."""
    path = build(tmp_path / "journal.sqlite3", 1)
    other = sqlite3.connect(path)   # stays open: its commit is not checkpointed on close
    other.execute("INSERT INTO audit (ts_ns, kind, detail) VALUES (1, 'only_in_wal', '{}')")
    other.commit()
    assert (tmp_path / "journal.sqlite3-wal").stat().st_size > 0
    try:
        Journal(path).close()
    finally:
        other.close()
    db = sqlite3.connect(tmp_path / "journal.sqlite3.v1.bak")
    assert db.execute("SELECT kind FROM audit WHERE ts_ns = 1").fetchone() == ("only_in_wal",)
    db.close()


def test_a_leftover_backup_is_replaced_whole(tmp_path):
    path = build(tmp_path / "journal.sqlite3", 1)
    bak = tmp_path / "journal.sqlite3.v1.bak"
    bak.write_bytes(b"left by an earlier attempt")
    (tmp_path / "journal.sqlite3.v1.bak.tmp").write_bytes(b"half a copy")
    Journal(path).close()
    assert version_of(bak) == "1"
    assert not (tmp_path / "journal.sqlite3.v1.bak.tmp").exists()


def test_a_backup_that_cannot_be_written_stops_before_migrating(tmp_path):
    path = build(tmp_path / "journal.sqlite3", 1)
    (tmp_path / "journal.sqlite3.v1.bak.tmp").mkdir()   # unlink() of it fails: EISDIR
    with pytest.raises(JournalError, match="journal.sqlite3.v1.bak.tmp"):
        Journal(path)
    assert version_of(path) == "1"


# -- failures in the middle ----------------------------------------------------------------------
def _broken(real: migrations.Migration, when: str) -> migrations.Migration:
    """The real migration failing after all of its statements ran, or after the first."""
    def fail(db: sqlite3.Connection) -> None:
        raise RuntimeError("power cut in the middle of the migration")
    ddl = real.ddl if when == "after" else migrations._statements(real.ddl)[0]
    return migrations.Migration(real.version, real.summary, ddl, fail)


@pytest.mark.parametrize("when", ["midway", "after"])
def test_a_failing_migration_leaves_the_old_version_whole(tmp_path, monkeypatch, when):
    path = build(tmp_path / "journal.sqlite3", 1)
    before = snapshot(path)
    monkeypatch.setattr(migrations, "MIGRATIONS", (_broken(migrations.MIGRATIONS[0], when),))
    with pytest.raises(JournalError) as e:
        Journal(path)
    assert str(e.value) == (
        f"{path}: migration of the journal from schema version 1 to 2 failed and was rolled "
        "back (still version 1): power cut in the middle of the migration; the copy taken "
        f"before migrating is {tmp_path / 'journal.sqlite3.v1.bak'}")
    assert snapshot(path) == before   # no kv_state table, version still 1, every row
    monkeypatch.undo()
    j = Journal(path)   # and the real migration then goes through
    try:
        assert j.schema_version == migrations.LATEST and j.migrated_from == 1 \
            and j.count("kv_state") == 0
    finally:
        j.close()


def test_each_migration_commits_on_its_own(tmp_path):
    """v1 -> v2 -> v3 where v3 fails: the journal stays at v2, not back at v1."""
    path = build(tmp_path / "journal.sqlite3", 1)
    db = sqlite3.connect(path, isolation_level=None)

    def v3(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE v3_table (x)")
        raise sqlite3.OperationalError("database or disk is full")
    steps = (migrations.MIGRATIONS[0], migrations.Migration(3, "fails", apply=v3))
    with pytest.raises(migrations.MigrationFailed) as e:
        migrations.upgrade(db, path, 1, steps)
    assert (e.value.version, e.value.target, e.value.backup) == (
        2, 3, tmp_path / "journal.sqlite3.v1.bak")
    assert "from schema version 2 to 3" in str(e.value)
    assert migrations.read_version(db) == 2 and "kv_state" in tables(db)
    assert "v3_table" not in tables(db)
    assert not db.in_transaction
    assert migrations.upgrade(db, path, 2, steps[:1]) == 2   # nothing pending: no-op
    assert migrations.upgrade(db, path, 1, ()) == 1
    db.close()


def test_a_process_killed_in_the_middle_of_a_migration_leaves_the_old_version(tmp_path):
    """A real crash: the migration's statements ran, the process dies before COMMIT."""
    path = build(tmp_path / "journal.sqlite3", 1)
    before = snapshot(path)
    code = (
        "import os\n"
        "from daemon.store import migrations as m\n"
        "real = m.MIGRATIONS[0]\n"
        "def crash(db):\n"
        "    os._exit(9)\n"   # after every statement of the real migration ran
        "m.MIGRATIONS = (m.Migration(real.version, real.summary, real.ddl, crash),)\n"
        "from daemon.store.journal import Journal\n"
        f"Journal({str(path)!r})\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert r.returncode == 9
    assert snapshot(path) == before
    j = Journal(path, must_exist=True)
    try:
        assert j.migrated_from == 1 and j.positions() == j.positions_from_fills()
    finally:
        j.close()


# -- refused -------------------------------------------------------------------------------------
def test_a_journal_newer_than_this_code_is_refused_untouched(tmp_path):
    path = build(tmp_path / "journal.sqlite3", SCHEMA_VERSION)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    content = path.read_bytes()
    with pytest.raises(JournalTooNew) as e:
        Journal(path, must_exist=True)
    assert isinstance(e.value, JournalError) and not isinstance(e.value, JournalDamaged)
    assert str(e.value) == (
        f"{path}: journal schema version {SCHEMA_VERSION + 1} is newer than this bot4 "
        f"supports (version {SCHEMA_VERSION}); upgrade bot4 to a release that knows schema "
        f"version {SCHEMA_VERSION + 1} (the journal is left untouched)")
    assert path.read_bytes() == content
    assert not list(tmp_path.glob("*.bak"))


def test_too_new_is_anything_above_latest():
    for v in VERSIONS:
        migrations.check_supported(v)
    with pytest.raises(migrations.SchemaTooNew) as e:
        migrations.check_supported(migrations.LATEST + 1)
    assert (e.value.found, e.value.supported) == (migrations.LATEST + 1, migrations.LATEST)


def test_a_migration_runs_its_statements_then_its_data_step(tmp_path):
    db = sqlite3.connect(":memory:", isolation_level=None)
    seen: list[list[str]] = []
    m = migrations.Migration(2, "t", "CREATE TABLE a (x); CREATE TABLE b (y);",
                             lambda conn: seen.append(tables(conn)))
    migrations.create(db, (m,))
    assert seen == [["a", "audit", "b", "fills", "latch", "meta", "order_events", "orders",
                     "positions"]]
    assert migrations.read_version(db) == 2


def test_migrating_logs_the_backup_and_each_step(tmp_path, caplog):
    import logging
    path = build(tmp_path / "journal.sqlite3", 1)
    with caplog.at_level(logging.INFO, logger="daemon.store.migrations"):
        Journal(path).close()
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "daemon.store.migrations"] == [
        ("WARNING", f"journal {path}: schema version 1, migrating to {SCHEMA_VERSION} (backup "
                    f"{tmp_path / 'journal.sqlite3.v1.bak'})"),
        *[("INFO", f"journal {path}: migrated to schema version {m.version}: {m.summary}")
          for m in migrations.MIGRATIONS]]


def test_read_version_messages():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    with pytest.raises(migrations.SchemaInvalid) as e:
        migrations.read_version(db)
    assert str(e.value) == "the journal has no schema version (no 'schema' row in meta)"
    db.execute("INSERT INTO meta VALUES ('schema', '1x')")
    with pytest.raises(migrations.SchemaInvalid) as e:
        migrations.read_version(db)
    assert str(e.value) == "the journal's schema version '1x' is not a version"


@pytest.mark.parametrize("value, words", [
    (None, "no schema version"), ("x", "'x' is not a version"), ("0", "'0' is not a version"),
    ("-1", "'-1' is not a version"), ("", "'' is not a version")])
def test_a_journal_without_a_usable_version_is_damage(tmp_path, value, words):
    path = build(tmp_path / "journal.sqlite3", 1)
    db = sqlite3.connect(path)
    if value is None:
        db.execute("DELETE FROM meta WHERE key = 'schema'")
    else:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (value,))
    db.commit()
    db.close()
    with pytest.raises(JournalDamaged, match=words + ".*journal-reset"):
        Journal(path)
    assert not list(tmp_path.glob("*.bak"))


def test_read_version_of_a_new_file_is_none_and_create_makes_the_newest(tmp_path):
    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    assert migrations.read_version(db) is None
    db.execute("BEGIN")
    assert migrations.create(db) == SCHEMA_VERSION
    db.execute("COMMIT")
    assert migrations.read_version(db) == SCHEMA_VERSION
    other = sqlite3.connect(":memory:", isolation_level=None)
    assert migrations.create(other, ()) == 1 and migrations.read_version(other) == 1
    assert "kv_state" not in tables(other)
    db.close()


def test_backup_path_is_beside_the_journal():
    assert migrations.backup_path(Path("/var/lib/bot4/journal.sqlite3"), 1) == \
        Path("/var/lib/bot4/journal.sqlite3.v1.bak")
