"""The durable journal: SQLite in WAL mode with synchronous=FULL.

Every order state change, fill, safety-latch change and audit event is committed here
before the daemon acts on it, so a power cut never loses an acknowledged order or an
e-stop record. Ticks are never written here (SD-card wear). The journal is used only from
the event loop's thread; it never decides anything, it only records and reads back.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import orjson

from daemon.execution.orders import (Fill, Order, OrderStatus, OrderType, Side, TimeInForce,
                                     Position)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
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


class JournalError(Exception):
    """The journal cannot be opened or written: the daemon cannot run safely (fault)."""


class JournalDamaged(JournalError):
    """The journal is missing where one must exist, or fails its integrity check. Boot is
    refused: starting a fresh journal would forget the latch, the orders and the positions."""


RECOVERY_HINT = ("inspect it with `bot4d journal-check`; to start over with an empty journal "
                 "(the damaged file is kept aside, the new one comes up halted) run "
                 "`bot4d journal-reset --yes`")


@dataclass(frozen=True, slots=True)
class LatchRecord:
    tripped: bool
    source: str
    reason: str
    ts_ns: int


def _d(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


class Journal:
    def __init__(self, path: str | Path, *, must_exist: bool = False) -> None:
        """Open (or, when `must_exist` is false, create) the journal and check it.

        `must_exist`: a journal existed here before (the state dir says so): a missing or
        empty file is damage, not a first boot. An existing file always gets `PRAGMA
        quick_check`; a file that fails it raises JournalDamaged."""
        self.path = Path(path)
        self.commits = 0
        self._depth = 0   # >0 inside batch(): inner writes join the outer transaction
        try:
            existed = self.path.exists() and self.path.stat().st_size > 0
        except OSError as e:
            raise JournalError(f"{self.path}: {e}") from e
        if must_exist and not existed:
            what = "is missing" if not self.path.exists() else "is empty (0 bytes)"
            raise JournalDamaged(f"{self.path} {what}, but a journal existed here before; "
                                 f"refusing to start a new one: {RECOVERY_HINT}")
        if existed:
            self._check_readonly()   # before anything writes to a file that may be damaged
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we open transactions explicitly, one per logical change.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit; NORMAL could lose the last commits.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._tx():
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(stmt)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                 (str(SCHEMA_VERSION),))
            mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{self.path}: could not enable WAL (got {mode})")
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)
        except JournalError:
            self._close_quietly()
            raise
        except sqlite3.OperationalError as e:   # disk full, I/O error, locked: not damage
            self._close_quietly()
            raise JournalError(f"{self.path}: {e}") from e
        except sqlite3.DatabaseError as e:
            self._close_quietly()
            if existed:   # "file is not a database", "database disk image is malformed"
                raise JournalDamaged(f"{self.path}: {e}: {RECOVERY_HINT}") from e
            raise JournalError(f"{self.path}: {e}") from e
        except (sqlite3.Error, OSError) as e:
            self._close_quietly()
            raise JournalError(f"{self.path}: {e}") from e

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def _check_readonly(self) -> None:
        """quick_check on a read-only connection: a damaged file is refused untouched."""
        try:
            ro = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error as e:
            raise JournalError(f"{self.path}: {e}") from e
        try:
            self._check_integrity(ro)
        except sqlite3.OperationalError as e:   # unreadable, locked: not proven damage
            raise JournalError(f"{self.path}: {e}") from e
        except sqlite3.DatabaseError as e:      # not a database, malformed
            raise JournalDamaged(f"{self.path}: {e}: {RECOVERY_HINT}") from e
        finally:
            ro.close()

    def _check_integrity(self, db: sqlite3.Connection) -> None:
        rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise JournalDamaged(f"{self.path} fails its integrity check ({'; '.join(rows[:3])}"
                                 f"{' ...' if len(rows) > 3 else ''}): {RECOVERY_HINT}")
        tables = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise JournalDamaged(f"{self.path} is not a bot4 journal (no meta table): "
                                 f"{RECOVERY_HINT}")

    def check_file(self) -> None:
        """Raise JournalError when the file we write is no longer the one at our path
        (deleted or replaced while running: every later commit would go nowhere useful)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise JournalError(f"{self.path} was deleted while the daemon runs") from None
        except OSError as e:
            raise JournalError(f"{self.path}: {e}") from e
        if (st.st_dev, st.st_ino) != self._identity:
            raise JournalError(f"{self.path} was replaced while the daemon runs")

    def begin_run(self) -> int:
        """Count this process's run, durably, before it journals any order: ids built from
        the run number (client order ids, paper fill ids) are unique across restarts by
        construction."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'runs'").fetchone()
            run = (int(row[0]) if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('runs', ?)", (str(run),))
        return run

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several records into ONE durable commit (one fsync): all or nothing."""
        with self._tx():
            yield

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._depth:
            yield self._db
            return
        self._depth = 1
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # After a failed write or COMMIT (disk full, I/O error) SQLite may or may not
                # have rolled back already; an explicit ROLLBACK makes sure no transaction is
                # left open, so the next write is not refused forever.
                self._rollback()
                raise
        except sqlite3.Error as e:
            raise JournalError(f"{self.path}: {e}") from e
        finally:
            self._depth = 0
        self.commits += 1

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass   # already rolled back by SQLite itself

    # -- audit and safety latch ---------------------------------------------------------
    def audit(self, kind: str, **detail: object) -> None:
        with self._tx() as db:
            self._audit(db, kind, detail)

    def _audit(self, db: sqlite3.Connection, kind: str, detail: dict, ts_ns: int | None = None
               ) -> None:
        db.execute("INSERT INTO audit (ts_ns, kind, detail) VALUES (?, ?, ?)",
                   (ts_ns or time.time_ns(), kind,
                    orjson.dumps(detail, default=str).decode()))

    def set_latch(self, tripped: bool, source: str, reason: str, **detail: object) -> None:
        """Record a latch trip or reset, with its audit row, in one durable commit."""
        ts = time.time_ns()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO latch VALUES (1, ?, ?, ?, ?)",
                       (int(tripped), source, reason, ts))
            self._audit(db, "latch_trip" if tripped else "latch_reset",
                        {"source": source, "reason": reason, **detail}, ts)

    def latch(self) -> LatchRecord | None:
        row = self._db.execute("SELECT tripped, source, reason, ts_ns FROM latch").fetchone()
        return None if row is None else LatchRecord(bool(row[0]), row[1], row[2], row[3])

    def audit_rows(self, kind: str | None = None) -> list[tuple[int, str, dict]]:
        q = "SELECT ts_ns, kind, detail FROM audit"
        rows = (self._db.execute(q + " WHERE kind = ? ORDER BY id", (kind,)) if kind
                else self._db.execute(q + " ORDER BY id"))
        return [(ts, k, orjson.loads(d)) for ts, k, d in rows]

    # -- orders and fills ----------------------------------------------------------------
    def record_orders(self, orders: list[Order], ts_ns: int | None = None) -> None:
        """Persist the current state of several orders in ONE commit (one fsync)."""
        ts = ts_ns or time.time_ns()
        with self._tx() as db:
            for o in orders:
                self._upsert(db, o, ts)

    def record_order(self, order: Order, ts_ns: int | None = None) -> None:
        self.record_orders([order], ts_ns)

    def _upsert(self, db: sqlite3.Connection, o: Order, ts: int) -> None:
        db.execute(
            "INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(client_id) DO "
            "UPDATE SET status=excluded.status, filled_qty=excluded.filled_qty, "
            "avg_price=excluded.avg_price, reason=excluded.reason, updated_ns=excluded.updated_ns",
            (o.client_id, o.symbol, o.side.value, o.type.value, o.tif.value,
             None if o.price is None else str(o.price), str(o.qty), int(o.reduce_only), o.venue,
             o.status.value, str(o.filled_qty), None if o.avg_price is None else str(o.avg_price),
             o.reason, o.created_ns or ts, ts))
        db.execute("INSERT INTO order_events (client_id, ts_ns, status, reason) VALUES (?,?,?,?)",
                   (o.client_id, ts, o.status.value, o.reason))

    def record_fill(self, fill: Fill, order: Order, position: Position) -> None:
        """The fill, the order's new state and the position after it, atomically."""
        with self._tx() as db:
            db.execute("INSERT INTO fills VALUES (?,?,?,?,?,?,?,?,?)",
                       (fill.fill_id, fill.client_id, fill.symbol, fill.side.value,
                        str(fill.price), str(fill.qty), str(fill.fee), fill.liquidity.value,
                        fill.ts_ns))
            self._upsert(db, order, fill.ts_ns or time.time_ns())
            db.execute("INSERT OR REPLACE INTO positions VALUES (?,?,?,?,?,?)",
                       (position.symbol, str(position.qty), str(position.avg_price),
                        str(position.realized_pnl), str(position.fees), time.time_ns()))

    def open_orders(self) -> list[Order]:
        rows = self._db.execute(
            "SELECT client_id, symbol, side, type, tif, price, qty, reduce_only, venue, status, "
            "filled_qty, avg_price, reason, created_ns, updated_ns FROM orders WHERE status NOT IN "
            "('filled', 'cancelled', 'rejected', 'expired') ORDER BY created_ns").fetchall()
        return [Order(client_id=r[0], symbol=r[1], side=Side(r[2]), type=OrderType(r[3]),
                      tif=TimeInForce(r[4]), price=_d(r[5]), qty=Decimal(r[6]),
                      reduce_only=bool(r[7]), venue=r[8], status=OrderStatus(r[9]),
                      filled_qty=Decimal(r[10]), avg_price=_d(r[11]), reason=r[12],
                      created_ns=r[13], updated_ns=r[14]) for r in rows]

    def has_fill(self, fill_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM fills WHERE fill_id = ?",
                                (fill_id,)).fetchone() is not None

    def order_status(self, client_id: str) -> OrderStatus | None:
        row = self._db.execute("SELECT status FROM orders WHERE client_id = ?",
                               (client_id,)).fetchone()
        return None if row is None else OrderStatus(row[0])

    def order_history(self, client_id: str) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT status FROM order_events WHERE client_id = ? ORDER BY id", (client_id,))]

    def positions(self) -> dict[str, Position]:
        return {r[0]: Position(r[0], Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]))
                for r in self._db.execute(
                    "SELECT symbol, qty, avg_price, realized_pnl, fees FROM positions")}

    def count(self, table: str) -> int:
        if table not in {"audit", "orders", "order_events", "fills", "positions"}:
            raise ValueError(table)
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (orderly stop), so the file stands alone."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.warning("journal checkpoint failed: %s", e)

    def close(self) -> None:
        self.checkpoint()
        self._db.close()
