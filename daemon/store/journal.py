"""The durable journal: SQLite in WAL mode with synchronous=FULL.

Every order state change, fill, safety-latch change and audit event is committed here
before the daemon acts on it, so a power cut never loses an acknowledged order or an
e-stop record. Ticks are never written here (SD-card wear). The journal is used only from
the event loop's thread; it never decides anything, it only records and reads back.

The schema is versioned (daemon/store/migrations.py): opening an older journal backs it up
and migrates it forward before anything else writes; a newer one is refused untouched
(JournalTooNew).

Audit kinds (`audit(kind, **detail)`; `audit_rows(kind)` reads them back), with the
fields their writers put in `detail`:
  boot              version, sim, pid, run, previous_run_unclean
  config_loaded     path, file_sha256, effective_sha256, changed (record_config)
  command           the operator's request (cmd, and its arguments), before it acts
  state             old, new, reason
  latch_trip        source, reason, ... (set_latch)        latch_reset  (likewise)
  limit_trip        name, action ("reducing" | "halted"), reason, figures (a dict of the
                    figures that tripped it) (record_limit_trip)
  breaker           name, old, new, reason, ... (record_breaker)
  schema_migrated   from, to, backup (written by the journal itself after a migration)
  service_stopped   result, exit_code, exit_status (bot4d stop-post, after the daemon ended)
  orders_recovered, step_failed, journal_reset
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import ContextManager, Iterator, Mapping

import orjson

from daemon.store import migrations
from daemon.execution.orders import (Fill, Instrument, Liquidity, Order, OrderStatus, OrderType,
                                     Position, Side, TimeInForce)

log = logging.getLogger(__name__)

SCHEMA_VERSION = migrations.LATEST   # what this code reads and writes


class JournalError(Exception):
    """The journal cannot be opened or written: the daemon cannot run safely (fault)."""


class JournalTooNew(JournalError):
    """The journal's schema is newer than this code understands (written by a newer bot4):
    refused untouched. The fix is to upgrade bot4, never to edit or reset the journal."""


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


_ORDER_COLUMNS = ("client_id, symbol, side, type, tif, price, qty, reduce_only, venue, status, "
                  "filled_qty, avg_price, reason, created_ns, updated_ns")
_FILL_COLUMNS = "fill_id, client_id, symbol, side, price, qty, fee, liquidity, ts_ns"
# An order's state: the row (inserted, or its changing columns updated), and its event.
_UPSERT_ORDER = ("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                 "ON CONFLICT(client_id) DO UPDATE SET status=excluded.status, "
                 "filled_qty=excluded.filled_qty, avg_price=excluded.avg_price, "
                 "reason=excluded.reason, updated_ns=excluded.updated_ns")
_INSERT_EVENT = "INSERT INTO order_events (client_id, ts_ns, status, reason) VALUES (?,?,?,?)"


def _order(r: tuple) -> Order:
    return Order(client_id=r[0], symbol=r[1], side=Side(r[2]), type=OrderType(r[3]),
                 tif=TimeInForce(r[4]), price=_d(r[5]), qty=Decimal(r[6]),
                 reduce_only=bool(r[7]), venue=r[8], status=OrderStatus(r[9]),
                 filled_qty=Decimal(r[10]), avg_price=_d(r[11]), reason=r[12],
                 created_ns=r[13], updated_ns=r[14])


def _fill(r: tuple) -> Fill:
    return Fill(fill_id=r[0], client_id=r[1], symbol=r[2], side=Side(r[3]),
                price=Decimal(r[4]), qty=Decimal(r[5]), fee=Decimal(r[6]),
                liquidity=Liquidity(r[7]), ts_ns=r[8])


def _new_position(symbol: str, instruments: Mapping[str, Instrument] | None) -> Position:
    """An empty position for `symbol`: inverse when its instrument is, else linear."""
    inst = instruments.get(symbol) if instruments is not None else None
    return inst.new_position() if inst is not None else Position(symbol)


def _limit(n: int) -> int:
    """A row count asked for by a caller: a whole number >= 1 (bool is not one)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"limit must be an integer >= 1, got {n!r}")
    return n


class Journal:
    def __init__(self, path: str | Path, *, must_exist: bool = False,
                 durable: bool = True) -> None:
        """Open (or, when `must_exist` is false, create) the journal and check it.

        `durable=False` is for a backtest's own journal only: no fsync per commit
        (synchronous=OFF; the report says so). The daemon always journals with FULL.
        Such a journal also runs in memory once its file is created and is written to the
        file whole by `close()`: a commit then writes no WAL frames and takes no file
        locks (the commit sits between a strategy's decision and the venue call). The
        file holds the run only after `close()`.

        `must_exist`: a journal existed here before (the state dir says so): a missing or
        empty file is damage, not a first boot. An existing file always gets `PRAGMA
        quick_check`; a file that fails it raises JournalDamaged."""
        self.path = Path(path)
        self.commits = 0
        # COMMIT latency (fsync included), for /metrics (daemon/operator/metrics.py)
        self.commit_seconds_sum = 0.0
        self.commit_seconds_max = 0.0
        self._depth = 0   # >0 inside batch(): inner writes join the outer transaction
        try:
            existed = self.path.exists() and self.path.stat().st_size > 0
        except OSError as e:
            raise JournalError(f"{self.path}: {e}") from e
        if must_exist and not existed:
            what = "is missing" if not self.path.exists() else "is empty (0 bytes)"
            raise JournalDamaged(f"{self.path} {what}, but a journal existed here before; "
                                 f"refusing to start a new one: {RECOVERY_HINT}")
        self.schema_version = SCHEMA_VERSION
        self.migrated_from: int | None = None   # the version this open migrated from
        if existed:
            self._check_readonly()   # before anything writes to a file that may be damaged
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we open transactions explicitly, one per logical change.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit; NORMAL could lose the last commits.
            self._db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=OFF")
            self.durable = durable
            self._db.execute("PRAGMA foreign_keys=ON")
            mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{self.path}: could not enable WAL (got {mode})")
            self._prepare_schema()   # before anything else writes
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)
            self._file_db: sqlite3.Connection | None = None
            if not durable:
                self._to_memory()
        except JournalError:
            self._close_quietly()
            raise
        except migrations.MigrationFailed as e:
            self._close_quietly()
            raise JournalError(f"{self.path}: {e}") from e
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

    def _prepare_schema(self) -> None:
        """Create the newest schema in a new file (one commit), or migrate an older one."""
        found = self._version(self._db)
        if found is None:
            with self._tx() as db:
                migrations.create(db)
            return
        if found < SCHEMA_VERSION:
            bak = migrations.backup_path(self.path, found)
            migrations.upgrade(self._db, self.path, found)
            self.migrated_from = found
            self.audit("schema_migrated", **{"from": found, "to": SCHEMA_VERSION,
                                             "backup": str(bak)})

    def _version(self, db: sqlite3.Connection) -> int | None:
        """The journal's schema version (None: a new file); a version this code does not
        know is refused as too new, a missing or garbled one as damage."""
        try:
            found = migrations.read_version(db)
            if found is not None:
                migrations.check_supported(found)   # against LATEST == SCHEMA_VERSION
        except migrations.SchemaTooNew as e:
            raise JournalTooNew(f"{self.path}: {e}") from e
        except migrations.SchemaInvalid as e:
            raise JournalDamaged(f"{self.path}: {e}: {RECOVERY_HINT}") from e
        return found

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def _check_readonly(self) -> None:
        """quick_check on a read-only connection: a damaged file is refused untouched."""
        # Percent-encoded: a '#', '?' or '%' in the path would otherwise end or change the
        # URI's file name (and drop mode=ro with it).
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        try:
            ro = sqlite3.connect(uri, uri=True)
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
        if self._version(db) is None:
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

    def batch(self) -> ContextManager[sqlite3.Connection]:
        """Group several records into ONE durable commit (one fsync): all or nothing."""
        return self._tx()   # (the transaction itself: no second generator around it)

    def _tx(self) -> ContextManager[sqlite3.Connection]:
        if self._depth:
            # Inside an open transaction (a batch): join it. A do-nothing context, not a
            # generator, because every order write of the engine's batches comes here; an
            # error goes up to the outer transaction unchanged.
            return nullcontext(self._db)
        return self._open_tx()

    @contextmanager
    def _open_tx(self) -> Iterator[sqlite3.Connection]:
        self._depth = 1
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                t0 = time.perf_counter()
                self._db.execute("COMMIT")
                took = time.perf_counter() - t0
                self.commit_seconds_sum += took
                self.commit_seconds_max = max(self.commit_seconds_max, took)
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

    def audit_rows(self, kind: str | None = None, *, limit: int | None = None,
                   since_ns: int | None = None) -> list[tuple[int, str, dict]]:
        """Audit rows (ts_ns, kind, detail), oldest first: all of them, or those of one
        `kind`, written at or after `since_ns`, only the newest `limit` of them."""
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if since_ns is not None:
            where.append("ts_ns >= ?")
            args.append(since_ns)
        if limit is not None:
            args.append(_limit(limit))
        q = ("SELECT ts_ns, kind, detail FROM audit" + (" WHERE " + " AND ".join(where)
                                                          if where else "")
             + " ORDER BY id DESC LIMIT " + ("?" if limit is not None else "-1"))
        rows = self._db.execute(q, args).fetchall()
        return [(ts, k, orjson.loads(d)) for ts, k, d in reversed(rows)]

    def record_config(self, path: str | None, file_sha256: str | None,
                      effective_sha256: str | None = None) -> bool:
        """Audit `config_loaded` with the hashes of the config a run loaded (the file as
        read, and the effective settings with environment overrides). Returns, and records
        as `changed`, whether either hash differs from the previous run's."""
        with self._tx() as db:
            row = db.execute("SELECT detail FROM audit WHERE kind = 'config_loaded' "
                             "ORDER BY id DESC LIMIT 1").fetchone()
            before = orjson.loads(row[0]) if row else {}
            changed = (before.get("file_sha256"), before.get("effective_sha256")) != \
                (file_sha256, effective_sha256)
            self._audit(db, "config_loaded", {"path": path, "file_sha256": file_sha256,
                                              "effective_sha256": effective_sha256,
                                              "changed": changed})
        return changed

    def record_limit_trip(self, name: str, action: str, reason: str,
                          **figures: object) -> None:
        """Audit `limit_trip`: which risk limit, what it did ("reducing" or "halted"), why,
        and under `figures` the figures that tripped it (Decimals written as strings)."""
        self.audit("limit_trip", name=name, action=action, reason=reason, figures=figures)

    def record_breaker(self, name: str, old: str, new: str, reason: str,
                       **detail: object) -> None:
        """Audit `breaker`: a circuit breaker's transition (closed/open/half_open) and why."""
        self.audit("breaker", name=name, old=old, new=new, reason=reason, **detail)

    def record_command(self, cmd: str, **args: object) -> None:
        """Audit `command`: an operator command, recorded before it acts."""
        self.audit("command", cmd=cmd, **args)

    # -- state snapshots and reconciliations (schema v2) -------------------------------------
    def save_state(self, key: str, value: dict) -> None:
        """Replace the snapshot stored under `key` (durable; joins an open batch, so it
        commits or rolls back with the records it belongs to). Decimals are stored as
        strings: `load_state` returns them as strings."""
        if not isinstance(value, dict):
            raise TypeError(f"state {key!r} must be a dict, got {type(value).__name__}")
        text = orjson.dumps(value, default=str).decode()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO kv_state VALUES (?, ?, ?)",
                       (key, text, time.time_ns()))

    def load_state(self, key: str) -> dict | None:
        """The snapshot last saved under `key`, or None."""
        row = self._db.execute("SELECT value FROM kv_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def record_reconciliation(self, run: int, result: dict) -> None:
        """Journal the result of this run's reconciliation with the venue (durable; joins
        an open batch)."""
        if not isinstance(result, dict):
            raise TypeError(f"a reconciliation result must be a dict, got "
                            f"{type(result).__name__}")
        with self._tx() as db:
            db.execute("INSERT INTO reconciliations (ts_ns, run, result) VALUES (?, ?, ?)",
                       (time.time_ns(), run, orjson.dumps(result, default=str).decode()))

    def last_reconciliation(self) -> dict | None:
        """The newest reconciliation result, with the `run` it belongs to and the `ts_ns`
        it was journalled at (these two replace keys of the same name in the result)."""
        row = self._db.execute("SELECT ts_ns, run, result FROM reconciliations "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return {**orjson.loads(row[2]), "run": row[1], "ts_ns": row[0]}

    # -- orders and fills ----------------------------------------------------------------
    def record_orders(self, orders: list[Order], ts_ns: int | None = None) -> None:
        """Persist the current state of several orders in ONE commit (one fsync)."""
        ts = ts_ns or time.time_ns()
        with self._tx() as db:
            for o in orders:
                self._upsert(db, o, ts)

    def record_order(self, order: Order, ts_ns: int | None = None) -> None:
        self.record_orders((order,), ts_ns)

    @staticmethod
    def _upsert(db: sqlite3.Connection, o: Order, ts: int) -> None:
        # The enums' `_value_` is their text (what `.value` returns, without its property
        # call); the statements' text never changes, so sqlite3 keeps them prepared.
        status = o.status._value_
        price, avg = o.price, o.avg_price
        db.execute(_UPSERT_ORDER,
                   (o.client_id, o.symbol, o.side._value_, o.type._value_, o.tif._value_,
                    None if price is None else str(price), str(o.qty), int(o.reduce_only),
                    o.venue, status, str(o.filled_qty), None if avg is None else str(avg),
                    o.reason, o.created_ns or ts, ts))
        db.execute(_INSERT_EVENT, (o.client_id, ts, status, o.reason))

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
        rows = self._db.execute(   # the index's own condition: SQLite then uses it
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {migrations.OPEN_ORDERS_WHERE} "
            "ORDER BY created_ns").fetchall()
        return [_order(r) for r in rows]

    def order(self, client_id: str) -> Order | None:
        """The order's last journalled state, or None for an id never journalled."""
        row = self._db.execute(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_id = ?",
                               (client_id,)).fetchone()
        return None if row is None else _order(row)

    def recent_orders(self, limit: int = 50, symbol: str | None = None) -> list[dict]:
        """The newest `limit` orders (of one symbol), newest journalled first, as JSON-able
        dicts: every column, money as strings, times as integer ns, reduce_only a bool."""
        rows = self._recent("orders", _ORDER_COLUMNS, limit, symbol)
        names = _ORDER_COLUMNS.split(", ")
        out = []
        for r in rows:
            d = dict(zip(names, r))
            d["reduce_only"] = bool(d["reduce_only"])
            out.append(d)
        return out

    def recent_fills(self, limit: int = 50, symbol: str | None = None) -> list[dict]:
        """The newest `limit` fills (of one symbol), newest journalled first, as JSON-able
        dicts: every column, money as strings, ts_ns as integer ns."""
        names = _FILL_COLUMNS.split(", ")
        return [dict(zip(names, r)) for r in self._recent("fills", _FILL_COLUMNS, limit, symbol)]

    def _recent(self, table: str, columns: str, limit: int, symbol: str | None) -> list[tuple]:
        # rowid order is journal order: the order the records were written in.
        q = f"SELECT {columns} FROM {table}" + (" WHERE symbol = ?" if symbol is not None
                                                else "")
        args = (symbol,) if symbol is not None else ()
        return self._db.execute(q + " ORDER BY rowid DESC LIMIT ?",
                                (*args, _limit(limit))).fetchall()

    def fills_of(self, client_id: str) -> list[Fill]:
        """Every fill of one order, in journal order."""
        return [_fill(r) for r in self._db.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE client_id = ? ORDER BY rowid",
            (client_id,))]

    def positions_from_fills(self, instruments: Mapping[str, Instrument] | None = None
                             ) -> dict[str, Position]:
        """Every position recomputed from the fills alone, replayed in the order they were
        journalled through Position.apply: the independent figure crash recovery compares
        with the `positions` table. `instruments` (id -> Instrument) says how each symbol
        settles; a symbol not in it is linear (an inverse one must be given, or its PnL
        is computed as if linear)."""
        out: dict[str, Position] = {}
        for r in self._db.execute(f"SELECT {_FILL_COLUMNS} FROM fills ORDER BY rowid"):
            f = _fill(r)
            pos = out.get(f.symbol)
            if pos is None:
                pos = out[f.symbol] = _new_position(f.symbol, instruments)
            pos.apply(f)
        return out

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

    def positions(self, instruments: Mapping[str, Instrument] | None = None
                  ) -> dict[str, Position]:
        """The `positions` table, each row as a Position that settles like its instrument
        in `instruments` (linear when not given; see positions_from_fills)."""
        out: dict[str, Position] = {}
        for r in self._db.execute(
                "SELECT symbol, qty, avg_price, realized_pnl, fees FROM positions"):
            pos = out[r[0]] = _new_position(r[0], instruments)
            pos.qty, pos.avg_price = Decimal(r[1]), Decimal(r[2])
            pos.realized_pnl, pos.fees = Decimal(r[3]), Decimal(r[4])
        return out

    def count(self, table: str) -> int:
        if table not in {"audit", "orders", "order_events", "fills", "positions", "kv_state",
                         "reconciliations"}:
            raise ValueError(table)
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (orderly stop), so the file stands alone."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.warning("journal checkpoint failed: %s", e)

    def _to_memory(self) -> None:
        """durable=False: carry on in an in-memory copy of the file (see __init__)."""
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.backup(mem)
        mem.execute("PRAGMA foreign_keys=ON")
        self._file_db, self._db = self._db, mem

    def close(self) -> None:
        if self._file_db is not None:   # durable=False: the whole journal into its file
            mem, self._db, self._file_db = self._db, self._file_db, None
            try:
                mem.backup(self._db)
            finally:
                mem.close()
        self.checkpoint()
        self._db.close()
