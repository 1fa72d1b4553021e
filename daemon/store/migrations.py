"""The journal's schema versions and the forward migrations between them.

The version stored in the journal's `meta` table (key 'schema') is authoritative. A new
journal is created as version 1 (`BASE_SCHEMA`, frozen as released) followed by every
migration, in one transaction, so a new file and a migrated one have the same schema by
construction. An older journal is first copied beside itself (`<name>.v<N>.bak`, via
SQLite's backup API, fsynced, then renamed into place), then moved forward one version at a
time, each migration in ONE transaction together with its version bump: a crash or an
error in the middle of a migration leaves the journal at the version before it, whole.

This module never decides whether the daemon may run, never edits a released migration
(a released version's schema is frozen in tests/fixtures/journal/), and never migrates
backwards: a journal newer than `LATEST` is refused (SchemaTooNew) before anything writes.

Adding version N+1: append `Migration(N + 1, ...)` to MIGRATIONS, then run
`.venv/bin/python -m tests.fixtures.journal.freeze` to freeze it; tests/store/
test_migrations.py then migrates a journal of every earlier version, with rows, to it.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

BASE_VERSION = 1
# Version 1 exactly as released (the `_SCHEMA` of the first journal). Never edit it.
BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS latch (
    id INTEGER PRIMARY KEY CHECK (id = 1), tripped INTEGER NOT NULL, source TEXT NOT NULL,
    reason TEXT NOT NULL, ts_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, side TEXT NOT NULL, type TEXT NOT NULL,
    tif TEXT NOT NULL, price TEXT, qty TEXT NOT NULL, reduce_only INTEGER NOT NULL,
    venue TEXT NOT NULL, status TEXT NOT NULL, filled_qty TEXT NOT NULL, avg_price TEXT,
    reason TEXT, created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_open ON orders (status)
    WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired');
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT);
CREATE TABLE IF NOT EXISTS fills (
    fill_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
    price TEXT NOT NULL, qty TEXT NOT NULL, fee TEXT NOT NULL, liquidity TEXT NOT NULL,
    ts_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, qty TEXT NOT NULL, avg_price TEXT NOT NULL,
    realized_pnl TEXT NOT NULL, fees TEXT NOT NULL, updated_ns INTEGER NOT NULL);
"""

# Version 2 (issue 8): snapshots the risk engine and the breaker board restore after a
# restart (kv_state: one JSON object per key, replaced whole), the results of the
# reconciliation with the venue at each boot, and indexes for the reads the operator and
# the reconciliation make (fills of one order, audit rows of one kind). TEXT, not "JSON",
# as the column type: a declared type "JSON" gets NUMERIC affinity in SQLite, which would
# turn a stored '123' into an integer.
V2_SCHEMA = """
CREATE TABLE kv_state (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, ts_ns INTEGER NOT NULL);
CREATE TABLE reconciliations (
    id INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, run INTEGER NOT NULL,
    result TEXT NOT NULL);
CREATE INDEX fills_client ON fills (client_id);
CREATE INDEX audit_kind ON audit (kind, id);
"""


# Version 3 (issue 9, the order path): the open-orders index with the same meaning, its
# condition written as four `<>` terms instead of NOT IN: SQLite evaluates a partial index's
# condition on every row written, and NOT IN over a list cost ~3.5 us more per order write
# (measured: an upsert 7.6 -> 4.1 us). `Journal.open_orders` states the same terms, which
# is what lets SQLite use the index for it.
OPEN_ORDERS_WHERE = ("status <> 'filled' AND status <> 'cancelled' AND status <> 'rejected' "
                     "AND status <> 'expired'")
V3_SCHEMA = f"""
DROP INDEX orders_open;
CREATE INDEX orders_open ON orders (status) WHERE {OPEN_ORDERS_WHERE};
"""


class SchemaError(Exception):
    """The journal's schema cannot be brought to the version this code needs."""


class SchemaTooNew(SchemaError):
    """The journal was written by a newer bot4 (its schema version is above LATEST)."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(f"journal schema version {found} is newer than this bot4 supports "
                         f"(version {supported}); upgrade bot4 to a release that knows schema "
                         f"version {found} (the journal is left untouched)")
        self.found = found
        self.supported = supported


class SchemaInvalid(SchemaError):
    """The meta table has no usable schema version: not a journal this code wrote."""


class MigrationFailed(SchemaError):
    """One migration failed and was rolled back: the journal is still at `version`."""

    def __init__(self, version: int, target: int, cause: BaseException, backup: Path) -> None:
        super().__init__(f"migration of the journal from schema version {version} to {target} "
                         f"failed and was rolled back (still version {version}): {cause}; "
                         f"the copy taken before migrating is {backup}")
        self.version = version
        self.target = target
        self.backup = backup


@dataclass(frozen=True)
class Migration:
    """One step forward. Both parts run inside the migration's one transaction: first the
    `ddl` statements, then `apply` (data changes, when a version needs any)."""

    version: int                                    # the version it produces
    summary: str
    ddl: str = ""
    apply: Callable[[sqlite3.Connection], None] | None = None


def _statements(ddl: str) -> list[str]:
    return [s for s in ddl.split(";") if s.strip()]


def _apply(db: sqlite3.Connection, m: Migration) -> None:
    for stmt in _statements(m.ddl):
        db.execute(stmt)
    if m.apply is not None:
        m.apply(db)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "kv_state, reconciliations, indexes on fills(client_id) and audit(kind)",
              V2_SCHEMA),
    Migration(3, "the open-orders index condition as <> terms (cheaper order writes)",
              V3_SCHEMA),
)


def latest(migrations: tuple[Migration, ...] | None = None) -> int:
    """The version a journal has after every migration."""
    steps = MIGRATIONS if migrations is None else migrations
    return steps[-1].version if steps else BASE_VERSION


def check_order(migrations: tuple[Migration, ...]) -> None:
    """Migrations must produce the versions BASE_VERSION+1, +2, ... in order, no gap."""
    want = list(range(BASE_VERSION + 1, BASE_VERSION + 1 + len(migrations)))
    got = [m.version for m in migrations]
    if got != want:
        raise ValueError(f"migrations must produce versions {want} in order, got {got}")


check_order(MIGRATIONS)
LATEST = latest()


def read_version(db: sqlite3.Connection) -> int | None:
    """The schema version in `meta`, or None when the database has no meta table (a new,
    empty file). SchemaInvalid when meta exists without a whole-number version."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                  ).fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None:
        raise SchemaInvalid("the journal has no schema version (no 'schema' row in meta)")
    text = str(row[0])
    if not text.isdigit() or int(text) < BASE_VERSION:
        raise SchemaInvalid(f"the journal's schema version {text!r} is not a version")
    return int(text)


def check_supported(version: int) -> None:
    """Raise SchemaTooNew for a journal written by a newer bot4 (above LATEST)."""
    if version > LATEST:
        raise SchemaTooNew(version, LATEST)


def _set_version(db: sqlite3.Connection, version: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(version),))


def create(db: sqlite3.Connection, migrations: tuple[Migration, ...] | None = None) -> int:
    """Create the newest schema in an empty database. The caller holds the transaction
    (a new journal is one commit). Returns the version created."""
    steps = MIGRATIONS if migrations is None else migrations
    for stmt in _statements(BASE_SCHEMA):
        db.execute(stmt)
    for m in steps:
        _apply(db, m)
    version = latest(steps)
    _set_version(db, version)
    return version


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass   # SQLite rolled back by itself (e.g. after an I/O error)
        raise


def backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.v{version}.bak")


def backup(db: sqlite3.Connection, dest: Path) -> None:
    """A complete, durable copy of the database (its WAL included) at `dest`: copied with
    SQLite's backup API to a temporary name, fsynced, then renamed into place, so `dest`
    is never a half-written copy."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    out = sqlite3.connect(tmp)
    try:
        db.backup(out)
    finally:
        out.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    fd = os.open(dest.parent, os.O_RDONLY)   # the rename is durable once the directory is
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def upgrade(db: sqlite3.Connection, path: Path, version: int,
            migrations: tuple[Migration, ...] | None = None) -> int:
    """Move a journal at `version` (already checked: not too new) to the newest version.

    `db` is in autocommit mode (isolation_level=None) with no transaction open. Before the
    first migration the file is backed up to `<name>.v<version>.bak`; then each migration
    runs in its own transaction with its version bump. Returns the version reached. Raises
    MigrationFailed (that migration rolled back, the earlier ones kept) or the OSError /
    sqlite3.Error of a failed backup (nothing migrated)."""
    steps = MIGRATIONS if migrations is None else migrations
    pending = [m for m in steps if m.version > version]
    if not pending:
        return version
    bak = backup_path(path, version)
    backup(db, bak)
    log.warning("journal %s: schema version %d, migrating to %d (backup %s)", path, version,
                pending[-1].version, bak)
    for m in pending:
        try:
            with _transaction(db):
                _apply(db, m)
                _set_version(db, m.version)
        except Exception as e:
            raise MigrationFailed(version, m.version, e, bak) from e
        log.info("journal %s: migrated to schema version %d: %s", path, m.version, m.summary)
        version = m.version
    return version
