"""The kill-and-fault torture harness behind `scripts/torture` and tests/test_torture.py.

It runs real `bot4d --sim --replay <shared capture>` subprocesses on a real state dir,
makes them trade (`start`: the built-in quoter fills on the paper venue), and at seeded
moments SIGKILLs them (during boot, after the N-th fill, N ms in, half-way through an
orderly stop, some right after an e-stop press, recording whether the press was
acknowledged first; and, in the protection cases, at exact places of a risk-limit trip, a
breaker opening, going half-open or letting a probe through, and right after a manual
breaker trip, via tests/torture_inject.py), fills the state dir's disk (a small tmpfs mounted for the purpose) or
injects an exception inside a journal batch (tests/torture_inject.py). After every kill or
fault it restarts the daemon on the same state dir and checks, from the SQLite journal read
directly and from the daemon's own status:

  integrity          PRAGMA integrity_check = ok
  unique_ids         no client order id journalled as new twice; no fill-id UNIQUE
                     failure in any daemon log
  fill_has_order     every fill belongs to a journalled order
  order_filled_qty   each order's filled_qty = sum of its fills (and `filled` = its qty)
  position_sums      position qty = sum of signed fill qty, fees = sum of fees (Decimal)
  position_pnl       avg price and realised PnL = the fills replayed through Position.apply
  open_shown         every order open in the journal, and every order working at the
                     venue, is listed in status
  status_eq_journal  status positions, open orders and latch = the journal's
  not_trading        after a kill the restarted daemon is ready/halted/estop, not trading
  estop_latched      an e-stop press acknowledged before the kill is latched after it
  boot               the restarted daemon boots (READY=1) on the state dir it left
  fault_cancels      after a fault (or any stop) every order working at the venue is
                     cancelled, or shown as pending_cancel with its cancel sent
  disk_full_stops    a full disk stops trading
  disk_full_latched  after a disk-full fault, a boot on the still-full disk exits with an
                     error or comes up latched; the boot after space is freed is latched
                     (not ready); neither accepts `start`
  clean_stop         the last daemon of a run stops on SIGTERM with exit code 0
  breaker_restored   after every restart, a breaker whose last journalled change left it
                     open or half-open is not closed (a restart never closes a breaker)
  trip_restored      after every restart, a risk-limit trip journalled and not reset
                     before the kill is standing again (status lists it)
  risk_reset         protection cases: after the restart and the operator's reset, no
                     breaker is held open for a risk limit unless a risk trip stands
  reconciled         after every restart the journal holds exactly one reconciliation
                     result for the new run, listing exactly the orders the journal had
                     open or in flight when the previous process died (each once, with
                     that status), each under the outcome it names, with positions_ok and
                     no mismatch; status shows the same result. Checked only when the
                     daemon under test reconciles at boot (`reconcile_wired`); otherwise
                     the reason is listed under `skipped`.

It never edits product code and never writes outside its work dir and its JSON result.
Timing is used only to pick moments and to bound waits; the verdicts are invariants.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import random
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import orjson

from tests.daemon_harness import Notifications

log = logging.getLogger("torture")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
CAPTURE = [DATA / "binance" / "spot_btcusdt_20240808.gz",
           DATA / "binance" / "spot_btcusdt_20240809.gz"]
WRAPPER = Path(__file__).resolve().parent / "torture_inject.py"
TERMINAL = frozenset({"filled", "cancelled", "rejected", "expired"})
NOT_TRADING_AFTER_KILL = frozenset({"ready", "halted", "estop"})
# The quoter trades tighter than the shipped config so fills come within seconds; the
# position limit is raised so repeated runs on one state dir keep trading.
TRADING_ENV = {"BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.5",
               "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.5",
               "BOT4__RISK__MAX_POSITION": "1"}
INVARIANTS = ("integrity", "unique_ids", "fill_has_order", "order_filled_qty",
              "position_sums", "position_pnl", "open_shown", "status_eq_journal",
              "not_trading", "estop_latched", "boot", "fault_cancels", "disk_full_stops",
              "disk_full_latched", "clean_stop", "breaker_restored", "trip_restored",
              "risk_reset", "reconciled")
UNIQUE_FILL_FAILURE = "UNIQUE constraint failed: fills.fill_id"
UNIQUE_FAILURE = "UNIQUE constraint failed"
# The launcher puts the code under test first on sys.path (it may be an export of an
# older commit) and runs the wrapper from this tree by file path.
_LAUNCH = ("import importlib.util, sys\n"
           "sys.path.insert(0, sys.argv[1])\n"
           "spec = importlib.util.spec_from_file_location('torture_inject', sys.argv[2])\n"
           "mod = importlib.util.module_from_spec(spec)\n"
           "spec.loader.exec_module(mod)\n"
           "sys.exit(mod.main(sys.argv[3:]))\n")


class TortureError(Exception):
    """The harness itself cannot go on (bad options, missing capture, no daemon code)."""


# -- reading the journal --------------------------------------------------------------------
@dataclasses.dataclass
class JournalSnapshot:
    integrity: str
    orders: dict[str, dict[str, Any]]
    new_events: Counter            # client_id -> number of 'pending_new' order events
    fills: list[dict[str, Any]]    # in insertion (rowid) order
    positions: dict[str, dict[str, Decimal]]
    latch: dict[str, Any] | None
    readable: bool = True
    # run -> the reconciliation results journalled for it; None: no such table (schema < 2)
    reconciliations: dict[int, list[dict[str, Any]]] | None = None
    # audit rows of kind breaker / limit_trip / limit_reset, oldest first: (kind, detail)
    protection: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def open_orders(self) -> dict[str, str]:
        return {cid: o["status"] for cid, o in self.orders.items()
                if o["status"] not in TERMINAL}


def read_journal(path: Path) -> JournalSnapshot:
    """One consistent read of the journal (a read-only connection sees one snapshot in a
    transaction), safe while the daemon writes."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no journal")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        try:
            db.execute("BEGIN")
            integrity = "; ".join(r[0] for r in db.execute("PRAGMA integrity_check"))
            return _read_tables(db, integrity)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            return JournalSnapshot(f"unreadable: {e}", {}, Counter(), [], {}, None,
                                   readable=False)
    finally:
        db.close()


def _read_tables(db: sqlite3.Connection, integrity: str) -> JournalSnapshot:
    orders = {r[0]: {"status": r[1], "qty": Decimal(r[2]), "filled_qty": Decimal(r[3]),
                     "side": r[4], "symbol": r[5]}
              for r in db.execute("SELECT client_id, status, qty, filled_qty, side, symbol "
                                  "FROM orders")}
    new_events = Counter(r[0] for r in db.execute(
        "SELECT client_id FROM order_events WHERE status = 'pending_new'"))
    fills = [{"fill_id": r[0], "client_id": r[1], "symbol": r[2], "side": r[3],
              "price": Decimal(r[4]), "qty": Decimal(r[5]), "fee": Decimal(r[6]),
              "liquidity": r[7], "ts_ns": r[8]}
             for r in db.execute("SELECT fill_id, client_id, symbol, side, price, qty, fee, "
                                 "liquidity, ts_ns FROM fills ORDER BY rowid")]
    positions = {r[0]: {"qty": Decimal(r[1]), "avg_price": Decimal(r[2]),
                        "realized_pnl": Decimal(r[3]), "fees": Decimal(r[4])}
                 for r in db.execute("SELECT symbol, qty, avg_price, realized_pnl, fees "
                                     "FROM positions")}
    row = db.execute("SELECT tripped, source, reason FROM latch").fetchone()
    latch = None if row is None else {"tripped": bool(row[0]), "source": row[1],
                                      "reason": row[2]}
    recs: dict[int, list[dict[str, Any]]] | None = None
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                  "name = 'reconciliations'").fetchone():
        recs = {}
        for run, result in db.execute("SELECT run, result FROM reconciliations ORDER BY id"):
            recs.setdefault(run, []).append(orjson.loads(result))
    protection = [(k, orjson.loads(d)) for k, d in db.execute(
        "SELECT kind, detail FROM audit WHERE kind IN ('breaker', 'limit_trip', 'limit_reset') "
        "ORDER BY id")]
    db.execute("COMMIT")
    return JournalSnapshot(integrity, orders, new_events, fills, positions, latch,
                           reconciliations=recs, protection=protection)


def _replay_position(symbol: str, fills: list[dict[str, Any]]) -> Any:
    from daemon.execution.orders import Fill, Liquidity, Position, Side
    pos = Position(symbol)
    for f in fills:
        pos.apply(Fill(f["fill_id"], f["client_id"], f["symbol"], Side(f["side"]), f["price"],
                       f["qty"], f["fee"], Liquidity(f["liquidity"]), f["ts_ns"]))
    return pos


def check_journal(snap: JournalSnapshot) -> list[tuple[str, str]]:
    """Violations of the journal's own invariants, as (invariant, detail)."""
    out: list[tuple[str, str]] = []
    if snap.integrity != "ok":
        out.append(("integrity", f"PRAGMA integrity_check: {snap.integrity[:300]}"))
    if not snap.readable:
        return out
    dup = {cid: n for cid, n in snap.new_events.items() if n > 1}
    if dup:
        out.append(("unique_ids", f"{len(dup)} client id(s) journalled as new more than once: "
                                  f"{dict(list(dup.items())[:5])}"))
    by_order: dict[str, Decimal] = {}
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    orphans = []
    for f in snap.fills:
        by_order[f["client_id"]] = by_order.get(f["client_id"], Decimal(0)) + f["qty"]
        by_symbol.setdefault(f["symbol"], []).append(f)
        if f["client_id"] not in snap.orders:
            orphans.append(f["fill_id"])
    if orphans:
        out.append(("fill_has_order", f"{len(orphans)} fill(s) of unknown orders: {orphans[:5]}"))
    bad = []
    for cid, o in snap.orders.items():
        s = by_order.get(cid, Decimal(0))
        if o["filled_qty"] != s:
            bad.append(f"{cid} {o['status']} filled_qty {o['filled_qty']} != fills {s}")
        elif o["status"] == "filled" and o["filled_qty"] != o["qty"]:
            bad.append(f"{cid} filled with filled_qty {o['filled_qty']} != qty {o['qty']}")
    if bad:
        out.append(("order_filled_qty", f"{len(bad)} order(s): {bad[:5]}"))
    sums, pnl = [], []
    for sym in sorted(set(by_symbol) | set(snap.positions)):
        fills = by_symbol.get(sym, [])
        qty = sum((f["qty"] * (1 if f["side"] == "buy" else -1) for f in fills), Decimal(0))
        fees = sum((f["fee"] for f in fills), Decimal(0))
        p = snap.positions.get(sym)
        if p is None:
            if fills:
                sums.append(f"{sym}: {len(fills)} fills but no position row")
            continue
        if p["qty"] != qty or p["fees"] != fees:
            sums.append(f"{sym}: journal qty {p['qty']} fees {p['fees']} != fills qty {qty} "
                        f"fees {fees}")
        r = _replay_position(sym, fills)
        if r.avg_price != p["avg_price"] or r.realized_pnl != p["realized_pnl"]:
            pnl.append(f"{sym}: journal avg {p['avg_price']} pnl {p['realized_pnl']} != "
                       f"replayed avg {r.avg_price} pnl {r.realized_pnl}")
    if sums:
        out.append(("position_sums", "; ".join(sums)))
    if pnl:
        out.append(("position_pnl", "; ".join(pnl)))
    return out


def compare_status(status: dict, snap: JournalSnapshot) -> list[tuple[str, str]]:
    """Violations of 'status = journal' and 'every open order is shown'."""
    if not snap.readable:
        return [("status_eq_journal", f"journal {snap.integrity}")]
    out: list[tuple[str, str]] = []
    shown = {o["id"]: o["status"] for o in status["orders"]["list"]}
    jopen = snap.open_orders()
    hidden = sorted(set(jopen) - set(shown))
    venue = (status.get("torture") or {}).get("venue_open", [])
    ghosts = sorted(set(venue) - set(shown))
    if hidden or ghosts:
        out.append(("open_shown", f"journal-open not in status: {hidden[:5]}; working at the "
                                  f"venue not in status: {ghosts[:5]}"))
    diffs = []
    if shown != jopen:
        diffs.append(f"open orders: status {dict(list(shown.items())[:6])} != journal "
                     f"{dict(list(jopen.items())[:6])}")
    zero = {"qty": Decimal(0), "fees": Decimal(0), "realized_pnl": Decimal(0),
            "avg_price": Decimal(0)}
    spos = {s: {k: Decimal(v) for k, v in p.items()} for s, p in status["positions"].items()}
    for sym in sorted(set(spos) | set(snap.positions)):
        a, b = spos.get(sym, zero), snap.positions.get(sym, zero)
        if any(a[k] != b[k] for k in zero):
            diffs.append(f"position {sym}: status {({k: str(a[k]) for k in zero})} != journal "
                         f"{({k: str(b[k]) for k in zero})}")
    sl = status["latch"]
    jl = snap.latch if snap.latch and snap.latch["tripped"] else None
    if bool(sl["tripped"]) != bool(jl) or (jl and sl["kind"] != jl["source"]):
        diffs.append(f"latch: status {sl} != journal {snap.latch}")
    if diffs:
        out.append(("status_eq_journal", "; ".join(diffs)))
    return out


def reconcile_wired(code: Path) -> bool:
    """Whether the daemon under test reconciles at boot (its supervisor calls
    daemon/execution/reconcile.py); an older tree closed every open order instead."""
    sup = code / "daemon" / "supervisor.py"
    return sup.is_file() and "daemon.execution.reconcile import" in sup.read_text()


def check_reconciliation(snap: JournalSnapshot, run: int, open_before: dict[str, str],
                         status: dict | None = None) -> list[tuple[str, str]]:
    """Violations of 'the boot of `run` reconciled exactly what the dead process left
    open' (open_before: client id -> journal status, read after the previous process died
    and before this one started)."""
    if not snap.readable:
        return [("reconciled", f"journal {snap.integrity}")]
    if snap.reconciliations is None:
        return [("reconciled", "the journal has no reconciliations table (schema < 2)")]
    rows = snap.reconciliations.get(run, [])
    if len(rows) != 1:
        return [("reconciled", f"run {run}: {len(rows)} reconciliation results journalled, "
                               f"expected exactly 1")]
    r = rows[0]
    out = []
    listed = [(o["client_id"], o["was"]) for o in r["orders"]]
    ids = [cid for cid, _ in listed]
    dup = sorted({cid for cid in ids if ids.count(cid) > 1})
    missing = sorted(set(open_before) - set(ids))
    extra = sorted(set(ids) - set(open_before))
    wrong = sorted(f"{cid} was {was}, journal had {open_before[cid]}" for cid, was in listed
                   if cid in open_before and open_before[cid] != was)
    if dup or missing or extra or wrong:
        out.append(f"orders open at the kill vs the result: missing {missing[:5]}, not open "
                   f"{extra[:5]}, listed twice {dup[:5]}, status differs {wrong[:5]}")
    misfiled = [o["client_id"] for o in r["orders"]
                if o["client_id"] not in r["outcomes"].get(o["outcome"], [])]
    if misfiled or sum(map(len, r["outcomes"].values())) != len(listed):
        out.append(f"outcome lists disagree with the orders: {misfiled[:5]}")
    if not r.get("positions_ok") or r.get("mismatches") or not r.get("ok"):
        out.append(f"ok {r.get('ok')}, positions_ok {r.get('positions_ok')}, mismatches "
                   f"{(r.get('mismatches') or [])[:3]}")
    if status is not None:
        shown = _shown_reconciliation(status.get("reconciliation"))
        journalled = _shown_reconciliation(r)
        if shown != journalled:
            out.append(f"status shows {shown}, the journal has {journalled}")
    return [("reconciled", f"run {run}: {x}") for x in out]


def check_protection(snap: JournalSnapshot, status: dict) -> list[tuple[str, str]]:
    """Violations of 'a restart restores what the journal says is tripped': every breaker
    last journalled open or half-open is not closed in status, and every risk-limit trip
    journalled since the last reset is listed in status."""
    if not snap.readable or "breakers" not in status:
        return []
    last: dict[str, str] = {}
    standing: set[str] = set()
    for kind, d in snap.protection:
        if kind == "breaker":
            last[d["name"]] = d["new"]
        elif kind == "limit_trip":
            standing.add(d["limit"])
        else:
            standing -= set(d.get("limits") or [])
    shown = {b["name"]: b["state"] for b in status.get("breakers") or []}
    out = []
    closed = sorted(f"{n} journalled {s}, status {shown.get(n)}" for n, s in last.items()
                    if s in ("open", "half_open") and shown.get(n) not in ("open", "half_open"))
    if closed:
        out.append(("breaker_restored", f"{len(closed)} breaker(s) closed by the restart: "
                                        f"{closed}"))
    trips = {t.get("limit") for t in ((status.get("risk") or {}).get("trips") or [])}
    lost = sorted(standing - trips)
    if lost:
        out.append(("trip_restored", f"risk-limit trip(s) journalled and never reset, not "
                                     f"standing after the restart: {lost} (status trips "
                                     f"{sorted(t for t in trips if t)})"))
    return out


def _shown_reconciliation(r: dict | None) -> dict | None:
    """What status must agree on: run, ok, and the number of orders per outcome (status
    may show the counts, or the lists as the journal has them)."""
    if not r:
        return None
    outcomes = r.get("outcomes")
    counts = ({k: len(v) for k, v in outcomes.items()} if isinstance(outcomes, dict) else
              {k: v for k, v in r.items() if isinstance(v, int) and not isinstance(v, bool)
               and k not in ("run", "ts_ns", "fills_applied")})
    return {"run": r.get("run"), "ok": r.get("ok"),
            "outcomes": {k: n for k, n in counts.items() if n}}


def unique_failures(log_text: str) -> list[str]:
    """Lines of one daemon log showing an id collision of that process (not the mention
    of an earlier one in a latch reason restored at boot)."""
    return [line.strip()[:300] for line in log_text.splitlines()
            if UNIQUE_FAILURE in line and "restored from journal" not in line
            and "before restart" not in line]


# -- one daemon process ----------------------------------------------------------------------
class Bot4d:
    """A real bot4d subprocess (through tests/torture_inject.py) on a given state dir."""

    def __init__(self, code: Path, run_dir: Path, state_dir: Path, log_path: Path, *,
                 speed: float, inject: str | None = None,
                 env_extra: dict[str, str] | None = None) -> None:
        self.code = code
        self.state_dir = state_dir
        # What the journal has open as this process starts: what the dead process left,
        # which the boot's reconciliation must settle (None: no readable journal yet).
        self.open_before: dict[str, str] | None = None
        journal = state_dir / "journal.sqlite3"
        if journal.is_file():
            snap = read_journal(journal)
            if snap.readable:
                self.open_before = snap.open_orders()
        self.socket = str(run_dir / "ctl.sock")
        self.log_path = log_path
        self.notify = Notifications(run_dir / "notify.sock")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BOT4__", "NOTIFY_", "WATCHDOG_", "BOT4_TORTURE"))}
        env.update(TRADING_ENV, NOTIFY_SOCKET=str(self.notify.path), PYTHONPATH=str(code))
        env.update(env_extra or {})
        if inject:
            env["BOT4_TORTURE_INJECT"] = inject
        args = [sys.executable, "-c", _LAUNCH, str(code), str(WRAPPER), "run", "--config",
                str(code / "etc" / "bot4" / "bot4.toml"), "--sim", "--state-dir",
                str(state_dir), "--socket", self.socket, "--replay", *map(str, CAPTURE),
                "--replay-speed", str(speed)]
        self._log = open(log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, cwd=code, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float) -> str | None:
        """None when READY=1 arrived, else why not (exit code and log tail)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.notify.has("READY=1"):
                return None
            if self.proc.poll() is not None:
                return f"exited {self.proc.returncode} before READY=1: {tail(self.log)}"
            time.sleep(0.02)
        return f"no READY=1 within {timeout} s: {tail(self.log)}"

    def request(self, req: dict, timeout: float = 10.0) -> dict:
        from daemon.control.ctl import request
        return request(self.socket, req, timeout)

    def status(self) -> dict:
        r = self.request({"cmd": "status"})
        if not r.get("ok"):
            raise TortureError(f"status refused: {r}")
        return r["result"]

    def ctl_status(self) -> dict:
        """`bot4ctl status --json` of the code under test, as the operator would run it."""
        p = subprocess.run([sys.executable, "-m", "daemon.control.ctl", "--socket", self.socket,
                            "status", "--json"], cwd=self.code, capture_output=True, text=True,
                           timeout=30, env={**os.environ, "PYTHONPATH": str(self.code)})
        if p.returncode != 0:
            raise TortureError(f"bot4ctl status --json exited {p.returncode}: {p.stderr[-300:]}")
        return json.loads(p.stdout)

    def press_estop(self, wait_reply: bool, delay_s: float) -> tuple[bool, str]:
        """Send `sim estop press` on a real control connection. With wait_reply, return
        once the reply is in (then sleep delay_s); without, sleep delay_s and look whether
        a reply has arrived by then. Returns (acknowledged, reply text). The connection is
        left open (and closed later) so the kill can land while the reply is in flight."""
        from daemon.control.protocol import encode
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.socket)
        self._estop_conn = s
        s.sendall(encode({"cmd": "sim", "what": "estop", "action": "press"}))
        buf = b""
        if wait_reply:
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if delay_s:
                time.sleep(delay_s)
        else:
            if delay_s:
                time.sleep(delay_s)
            if select.select([s], [], [], 0)[0]:
                buf = s.recv(65536)
        if not buf.endswith(b"\n"):
            return False, buf.decode(errors="replace")
        try:
            ok = bool(orjson.loads(buf).get("ok"))
        except orjson.JSONDecodeError:
            ok = False
        return ok, buf.decode(errors="replace").strip()

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 40.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return None
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        conn = getattr(self, "_estop_conn", None)
        if conn is not None:
            conn.close()
        self._log.close()
        self.notify.close()


def tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " | ".join(ln[:240] for ln in lines[-n:])


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll pred() until it is truthy (returned) or timeout (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# -- bookkeeping -----------------------------------------------------------------------------
@dataclasses.dataclass
class Options:
    seed: int = 1
    kills: int = 54
    kills_per_run: int = 9
    disk_full: int = 2
    batch_faults: int = 4
    protection: int = 6   # kills at risk-limit trips and breaker transitions
    protection_kinds: tuple[str, ...] = ()   # case c is kinds[c % len]; () = PROTECTION_KINDS
    speed: float = 20.0
    code: Path = REPO
    workdir: Path | None = None
    keep: bool = False
    boot_timeout: float = 40.0
    moment_timeout: float = 12.0
    moments: tuple[str, ...] = ()   # restrict kill moments to these kinds ("" = all)
    fault_timeout: float = 5.0
    tmpfs_mb: int = 24
    # [paper] on_restart of the daemons: "restore", "cancel", or "mix" (alternating by run)
    on_restart: str = "mix"


class Tally:
    """Counts and evidence for the whole session."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.checked: Counter = Counter()
        self.violated: Counter = Counter()
        self.violations: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        self.skipped: list[str] = []
        self.estop_trials: list[dict[str, Any]] = []   # acked presses: delay -> latched?

    def check(self, invariant: str, problem: str | None, where: dict[str, Any],
              evidence: str = "") -> bool:
        assert invariant in INVARIANTS, invariant
        self.checked[invariant] += 1
        if problem is None:
            return True
        self.violated[invariant] += 1
        v = {"invariant": invariant, "detail": problem, **where}
        if evidence:
            v["evidence"] = evidence
        self.violations.append(v)
        log.warning("VIOLATION %s at %s: %s", invariant,
                    " ".join(f"{k}={v}" for k, v in where.items()), problem)
        return False

    def checks(self, invariants: tuple[str, ...], found: list[tuple[str, str]],
               where: dict[str, Any], evidence: str = "") -> None:
        by = {}
        for inv, detail in found:
            by.setdefault(inv, []).append(detail)
        for inv in invariants:
            self.check(inv, "; ".join(by[inv]) if inv in by else None, where, evidence)

    def event(self, **e: Any) -> None:
        self.events.append(e)
        log.info("%s", " ".join(f"{k}={v}" for k, v in e.items()))

    def summary(self) -> dict[str, Any]:
        by_delay: dict[str, list[int]] = {}
        for t in self.estop_trials:
            lost_total = by_delay.setdefault(f"{str(t['kill_after_ms']):>4}", [0, 0])
            lost_total[0] += not t["latched"]
            lost_total[1] += 1
        return {"invariants": {i: {"checked": self.checked[i], "violated": self.violated[i]}
                               for i in INVARIANTS},
                "counts": dict(self.counts), "violations_total": sum(self.violated.values()),
                "estop_lost_by_kill_delay_ms": {k: {"lost": v[0], "trials": v[1]}
                                                for k, v in sorted(by_delay.items())}}


# -- the torture session ---------------------------------------------------------------------
MOMENT_KINDS = ("boot", "fills", "time", "stop", "estop_ack", "estop_inflight")
PROTECTION_KINDS = ("limit_journalled", "limit_trip", "breaker_open", "half_open", "probe",
                    "manual_trip")
# A daily loss limit below one fill's fee: the first fill trips it (action: halted).
LIMIT_ENV = {"BOT4__RISK__DAILY_LOSS_LIMIT": "0.001"}
# Three venue rejects within a minute (a reject storm) open the venue breaker; it probes
# again after 1 s of market time (the injected run of rejects is one longer, so the first
# probe round fails and the breaker reopens before it closes).
BREAKER_ENV = {"BOT4__BREAKERS__COOLDOWN_S": "1", "BOT4__BREAKERS__MAX_REJECTS_PER_MIN": "3"}
JOURNAL_INVARIANTS = ("integrity", "unique_ids", "fill_has_order", "order_filled_qty",
                      "position_sums", "position_pnl")
STATUS_INVARIANTS = ("open_shown", "status_eq_journal")


class Torture:
    def __init__(self, opts: Options) -> None:
        for f in CAPTURE:
            if not f.is_file():
                raise TortureError(f"shared capture not found: {f} (set BOT4_DATA_DIR)")
        if not (opts.code / "daemon" / "cli.py").is_file():
            raise TortureError(f"--code {opts.code}: no daemon/cli.py there")
        if opts.kills < 1 or opts.kills_per_run < 1:
            raise TortureError("--kills and --kills-per-run must be >= 1")
        bad_kinds = set(opts.protection_kinds) - set(PROTECTION_KINDS)
        if bad_kinds or opts.protection < 0:
            raise TortureError(f"protection cases: unknown kind(s) {sorted(bad_kinds)} or a "
                               f"negative count {opts.protection}")
        bad = set(opts.moments) - set(MOMENT_KINDS)
        if bad:
            raise TortureError(f"unknown moment kind(s) {sorted(bad)}: expected some of "
                               f"{', '.join(MOMENT_KINDS)}")
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.tally = Tally(opts)
        self.work = opts.workdir or Path(f"/tmp/bot4-torture-{opts.seed}-{os.getpid()}")
        self.work.mkdir(parents=True, exist_ok=True)
        self._n_proc = 0
        self.wired = reconcile_wired(opts.code)
        if opts.on_restart not in ("restore", "cancel", "mix"):
            raise TortureError(f"on_restart must be restore, cancel or mix, got "
                               f"{opts.on_restart!r}")
        self.on_restart = "restore" if opts.on_restart == "mix" else opts.on_restart
        if not self.wired:
            self.tally.skipped.append(
                "reconciled: the daemon under test does not reconcile at boot (its "
                "supervisor does not import daemon.execution.reconcile)")

    # .. plumbing ..
    def _spawn(self, run_dir: Path, state_dir: Path, inject: str | None = None,
               env: dict[str, str] | None = None) -> Bot4d:
        self._n_proc += 1
        self.tally.counts["daemon_starts"] += 1
        env = {**(env or {}),
               **({"BOT4__PAPER__ON_RESTART": self.on_restart} if self.wired else {})}
        return Bot4d(self.opts.code, run_dir, state_dir, run_dir / f"bot4d-{self._n_proc:03d}.log",
                     speed=self.opts.speed, inject=inject, env_extra=env)

    def _end_process(self, d: Bot4d, where: dict[str, Any]) -> None:
        """After a process is gone: its log must show no id collision."""
        text = d.log
        bad = unique_failures(text)
        self.tally.check("unique_ids", f"{len(bad)} UNIQUE failure(s) in the log: {bad[0]}"
                         if bad else None, where, evidence=d.log_path.name)
        d.close()

    def _settled_compare(self, d: Bot4d, journal: Path, where: dict[str, Any],
                         invariants: tuple[str, ...] = JOURNAL_INVARIANTS + STATUS_INVARIANTS
                         ) -> dict | None:
        """Status and journal compared until two consecutive status reads agree (the replay
        keeps running, cancels may still be confirming); the last attempt's verdict counts."""
        found: list[tuple[str, str]] = []
        st = None
        unreadable = None
        for attempt in range(20):
            try:
                st = d.status()
                snap = read_journal(journal)
                st2 = d.status()
            except (OSError, ValueError, TortureError, sqlite3.Error) as e:
                unreadable = f"could not read status/journal: {e!r}"
                time.sleep(0.2)
                continue
            unreadable = None
            found = check_journal(snap) + compare_status(st2, snap)
            stable = (st["orders"]["list"] == st2["orders"]["list"]
                      and st["positions"] == st2["positions"] and st["latch"] == st2["latch"])
            if stable and not any(i in STATUS_INVARIANTS for i, _ in found):
                break
            time.sleep(0.15)
        if unreadable:   # nothing was compared: count only that failure
            self.tally.check("status_eq_journal", unreadable, where, evidence=tail(d.log, 3))
            return st
        self.tally.checks(invariants, found, where, evidence=tail(d.log, 3) if found else "")
        return st

    def _make_trade(self, d: Bot4d, where: dict[str, Any]) -> str:
        """Bring a booted daemon to `trading` (release/reset a latch first). Returns the
        state it ended in."""
        def try_start() -> str | None:
            st = d.status()
            s = st["state"]
            if s == "trading":
                return s
            if s == "fault":
                return s
            if s in ("estop", "halted"):
                if st["estop"] and not st["estop"]["circuit_closed"]:
                    d.request({"cmd": "sim", "what": "estop", "action": "release"})
                r = d.request({"cmd": "reset"})
                if not r.get("ok"):
                    return None
                s = "ready"
            if s == "ready":
                r = d.request({"cmd": "start"})
                return "trading" if r.get("ok") else None
            return None
        s = wait_until(try_start, 15.0, 0.2)
        return s or d.status()["state"]

    def _fault_cancels(self, d: Bot4d, where: dict[str, Any]) -> dict | None:
        """A fault (or any stop) must end with every order working at the venue cancelled,
        or shown as unconfirmed with its cancel sent (issue 6, defect 3)."""
        def venue_clear() -> dict | None:
            st = d.status()
            return st if not (st.get("torture") or {}).get("venue_open") else None
        try:
            st = wait_until(venue_clear, self.opts.fault_timeout, 0.1)
            last = st or d.status()
        except (OSError, TortureError) as e:
            self.tally.check("fault_cancels", f"status unreachable after the fault: {e!r}", where)
            return None
        if last.get("torture") is None:
            self.tally.skipped.append("fault_cancels: status has no venue view")
            return last
        venue = last["torture"]["venue_open"]
        sent = set(last["torture"].get("venue_cancel_sent", []))
        shown = {o["id"]: o["status"] for o in last["orders"]["list"]}
        # The rule: cancelled, or shown as unconfirmed with its cancel sent. A
        # cancel sent to the paper venue stays queued when market time stops (the market
        # task ended with the fault): counted apart, not a violation.
        bad = [(i, shown.get(i, "NOT SHOWN"), "cancel sent" if i in sent else "cancel NOT sent")
               for i in venue if not (i in sent and shown.get(i) == "pending_cancel")]
        if venue and not bad:
            self.tally.counts["fault_cancels_sent_unconfirmed"] += 1
            self.tally.event(**where, note=f"{len(venue)} cancel(s) sent but unconfirmed "
                             f"{self.opts.fault_timeout} s after the stop (venue time "
                             f"stopped?), shown as pending_cancel: {venue}")
        self.tally.check("fault_cancels", None if not bad else
                         f"{len(bad)} order(s) still working at the venue "
                         f"{self.opts.fault_timeout} s after the stop (state {last['state']}: "
                         f"{last['reason'][:160]}): {bad}", where, evidence=tail(d.log, 4))
        return last

    def _after_boot(self, d: Bot4d, journal: Path, where: dict[str, Any], *,
                    after_kill: bool, estop_acked: bool, after_disk_full: bool = False,
                    estop_delay_ms: int | None = None) -> dict | None:
        """The checks every restart gets. Returns the status (None if it did not boot)."""
        why = d.wait_ready(self.opts.boot_timeout)
        self.tally.check("boot", why, where)
        if why:
            return None
        try:
            st = d.ctl_status()
        except (TortureError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            self.tally.check("boot", f"bot4ctl status --json failed: {e}", where)
            return None
        state, latch = st["state"], st["latch"]
        if after_kill:
            self.tally.check("not_trading", None if state in NOT_TRADING_AFTER_KILL else
                             f"restarted in state {state} ({st['reason']})", where)
        if estop_acked:
            ok = state == "estop" and latch["tripped"] and latch["kind"] == "estop"
            self.tally.estop_trials.append({"kill_after_ms": estop_delay_ms, "latched": ok})
            self.tally.check("estop_latched", None if ok else
                             f"e-stop press was acknowledged before the kill, restart is in "
                             f"{state} ({st['reason']}), latch {latch}", where,
                             evidence=tail(d.log, 3))
        self._check_reconciled(d, journal, st, where)
        if "breakers" in st:   # a daemon with the breaker board and the risk engine
            self.tally.checks(("breaker_restored", "trip_restored"),
                              check_protection(read_journal(journal), st), where,
                              evidence=tail(d.log, 3))
        if after_disk_full:
            ok = state in ("halted", "estop") and latch["tripped"]
            r = d.request({"cmd": "start"})
            problem = []
            if not ok:
                problem.append(f"restart after the disk-full fault is in {state} "
                               f"({st['reason']}), latch {latch}")
            if r.get("ok"):
                problem.append("`start` was accepted")
            self.tally.check("disk_full_latched", "; ".join(problem) or None, where)
        return self._settled_compare(d, journal, where) or st

    def _check_reconciled(self, d: Bot4d, journal: Path, st: dict, where: dict[str, Any]
                          ) -> None:
        if not self.wired:
            return
        before = d.open_before if d.open_before is not None else {}
        self.tally.counts["reconciled_orders"] += len(before)
        snap = read_journal(journal)
        found = check_reconciliation(snap, st["run"], before, st)
        for r in (snap.reconciliations or {}).get(st["run"], [])[:1]:
            for o in r["orders"]:
                self.tally.counts[f"reconciled_{o['outcome']}"] += 1
        self.tally.checks(("reconciled",), found, where,
                          evidence=tail(d.log, 3) if found else "")

    # .. kill moments ..
    def _plan_moment(self) -> dict[str, Any]:
        while True:
            m = self._draw_moment()
            if not self.opts.moments or m["kind"] in self.opts.moments:
                return m

    def _draw_moment(self) -> dict[str, Any]:
        r = self.rng.random()
        if r < 0.10:
            return {"kind": "boot", "after_ms": self.rng.randint(150, 1500)}
        if r < 0.40:
            return {"kind": "fills", "n": self.rng.randint(1, 4),
                    "extra_ms": self.rng.randint(0, 30)}
        if r < 0.58:
            return {"kind": "time", "after_ms": self.rng.randint(30, 3000)}
        if r < 0.65:   # SIGKILL in the middle of an orderly stop (cancels, journal close)
            return {"kind": "stop", "after_ms": self.rng.randint(50, 1500),
                    "kill_after_ms": self.rng.choice([0, 1, 3, 10, 30, 100, 300])}
        if r < 0.93:
            return {"kind": "estop_ack", "fills": self.rng.randint(0, 2),
                    "kill_after_ms": self.rng.choice([0, 0, 1, 2, 3, 5, 8, 20, 100])}
        return {"kind": "estop_inflight", "fills": self.rng.randint(0, 2),
                "kill_after_ms": self.rng.choice([0, 1, 2, 4])}

    def _wait_fills(self, d: Bot4d, n: int, base: int) -> tuple[str, dict | None]:
        """Wait until the process has n more fills than `base`; stop early if it leaves
        trading. Returns (outcome, last status)."""
        deadline = time.monotonic() + self.opts.moment_timeout
        st = None
        while time.monotonic() < deadline:
            st = d.status()
            if st["state"] != "trading":
                return f"left trading: {st['state']} ({st['reason'][:200]})", st
            if st["orders"].get("fills", 0) - base >= n:
                return "reached", st
            time.sleep(0.02)
        return f"no {n} fills within {self.opts.moment_timeout} s", st

    def _execute_moment(self, d: Bot4d, m: dict[str, Any]) -> dict[str, Any]:
        """Run up to the moment and SIGKILL. Returns what happened (acked e-stop etc.)."""
        out: dict[str, Any] = {"estop_acked": False}
        kind = m["kind"]
        st0 = d.status()
        base = st0["orders"].get("fills", 0)
        if kind == "fills":
            out["outcome"], st = self._wait_fills(d, m["n"], base)
            time.sleep(m["extra_ms"] / 1000)
        elif kind in ("time", "stop"):
            deadline = time.monotonic() + m["after_ms"] / 1000
            out["outcome"] = "reached"
            while time.monotonic() < deadline:   # watch for a fault while waiting
                st = d.status()
                if st["state"] != "trading":
                    out["outcome"] = f"left trading: {st['state']} ({st['reason'][:200]})"
                    break
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        else:
            outcome, st = (self._wait_fills(d, m["fills"], base) if m["fills"]
                           else ("reached", st0))
            out["outcome"] = outcome
            if not outcome.startswith("left trading"):
                acked, reply = d.press_estop(wait_reply=kind == "estop_ack",
                                             delay_s=m["kill_after_ms"] / 1000)
                out["estop_acked"], out["estop_reply"] = acked, reply[:200]
        if out["outcome"].startswith("left trading"):
            return out   # not killed yet: the caller looks at the stopped daemon first
        if kind == "stop":
            d.proc.send_signal(signal.SIGTERM)
            time.sleep(m["kill_after_ms"] / 1000)
            out["exited_before_kill"] = d.proc.poll()
        d.kill9()
        return out

    # .. runs ..
    def kill_run(self, run: int, kills: int) -> None:
        run_dir = self.work / f"run{run:02d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        state_dir = run_dir / "state"
        journal = state_dir / "journal.sqlite3"
        self.tally.counts["runs"] += 1
        if self.opts.on_restart == "mix":   # the paper venue's two restart modes in turn
            self.on_restart = ("restore", "cancel")[run % 2]
        self.tally.counts[f"runs_on_restart_{self.on_restart}"] += 1
        after_kill = estop_acked = False
        estop_delay: int | None = None   # kill delay after the last acknowledged press
        last_moment: dict[str, Any] = {}
        for cycle in range(kills + 1):
            final = cycle == kills
            m = None if final else self._plan_moment()
            where = {"seed": self.opts.seed, "run": run, "cycle": cycle,
                     "after": last_moment or "fresh state dir"}
            d = self._spawn(run_dir, state_dir)
            try:
                if m is not None and m["kind"] == "boot":
                    time.sleep(m["after_ms"] / 1000)
                    ready = d.notify.has("READY=1")
                    d.kill9()
                    self.tally.counts["kills"] += 1
                    self.tally.counts["kills_boot"] += 1
                    self.tally.event(run=run, cycle=cycle, moment=m, ready_before_kill=ready)
                    self._end_process(d, where)
                    # a kill during boot does not clear what the previous kill left to check
                    last_moment = {**m, "previous": last_moment} if last_moment else m
                    after_kill = True
                    continue
                st = self._after_boot(d, journal, where, after_kill=after_kill,
                                      estop_acked=estop_acked,
                                      estop_delay_ms=estop_delay)
                if st is None:   # did not boot: nothing more to do on this state dir
                    self.tally.event(run=run, cycle=cycle, outcome="did not boot; run ends")
                    self._end_process(d, where)
                    return
                if st["state"] == "fault":
                    self.tally.counts["faults_seen"] += 1
                    self._fault_cancels(d, where)
                if final:
                    rc = d.terminate()
                    self.tally.check("clean_stop", None if rc == 0 else
                                     f"SIGTERM exit code {rc}", where, evidence=tail(d.log, 3))
                    snap = read_journal(journal)
                    self.tally.checks(JOURNAL_INVARIANTS, check_journal(snap),
                                      {**where, "after": "orderly stop"})
                    self._end_process(d, where)
                    return
                moment_where = {**where, "moment": m}
                try:
                    state = self._make_trade(d, where)
                except (OSError, ValueError, TortureError) as e:
                    state = f"unreachable ({e!r}, exit {d.proc.poll()})"
                if state != "trading":
                    self.tally.event(run=run, cycle=cycle, moment=m,
                                     outcome=f"could not trade: {state}")
                    self.tally.counts["moments_preempted"] += 1
                    if state == "fault":
                        self.tally.counts["faults_seen"] += 1
                        self._fault_cancels(d, moment_where)
                    d.kill9()
                    res = {"outcome": f"could not trade: {state}", "estop_acked": False}
                else:
                    try:
                        res = self._execute_moment(d, m)
                    except (OSError, ValueError, TortureError) as e:
                        # the daemon went away by itself before the moment
                        self.tally.counts["daemon_died"] += 1
                        d.kill9()
                        res = {"outcome": f"daemon unreachable before the moment: {e!r}, exit "
                                          f"{d.proc.returncode}: {tail(d.log, 3)}",
                               "estop_acked": False}
                    if res["outcome"].startswith("left trading"):
                        # It stopped by itself before the moment (a fault, a breaker):
                        # look at it as it stands, then kill it there.
                        self.tally.counts["moments_preempted"] += 1
                        self.tally.counts["faults_seen"] += "fault" in res["outcome"]
                        stopped_where = {**moment_where, "at": res["outcome"][:200]}
                        self._settled_compare(d, journal, stopped_where, STATUS_INVARIANTS)
                        self._fault_cancels(d, stopped_where)
                        d.kill9()
                self.tally.counts["kills"] += 1
                self.tally.counts[f"kills_{m['kind']}"] += 1
                self.tally.counts["estop_acked_before_kill"] += res["estop_acked"]
                self.tally.event(run=run, cycle=cycle, moment=m, **res)
                last_moment = {**m, **{k: v for k, v in res.items() if k != "estop_reply"}}
                after_kill, estop_acked = True, res["estop_acked"]
                estop_delay = m.get("kill_after_ms") if estop_acked else None
                self._end_process(d, moment_where)
            finally:
                d.close()

    def _trading_daemon(self, run_dir: Path, state_dir: Path, where: dict[str, Any],
                        inject: str | None = None, env: dict[str, str] | None = None
                        ) -> Bot4d | None:
        d = self._spawn(run_dir, state_dir, inject, env)
        why = d.wait_ready(self.opts.boot_timeout)
        self.tally.check("boot", why, where)
        if why:
            d.close()
            return None
        if self._make_trade(d, where) != "trading":
            self.tally.event(**where, outcome=f"could not trade: {d.status()['state']}")
        return d

    def disk_full_case(self, case: int) -> None:
        run_dir = self.work / f"diskfull{case:02d}"
        mnt = run_dir / "mnt"
        mnt.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.opts.tmpfs_mb}m",
                            "tmpfs", str(mnt)], capture_output=True, text=True)
        if p.returncode != 0:
            msg = (f"disk-full case skipped: cannot mount a tmpfs at {mnt} "
                   f"({(p.stderr or p.stdout).strip() or 'exit ' + str(p.returncode)}); "
                   "run as root or with CAP_SYS_ADMIN")
            self.tally.skipped.append(msg)
            log.warning("%s", msg)
            return
        self.tally.counts["disk_full_cases"] += 1
        state_dir = mnt / "state"
        journal = state_dir / "journal.sqlite3"
        after_fills = self.rng.randint(1, 3)
        where: dict[str, Any] = {"seed": self.opts.seed, "case": f"disk_full{case}",
                                 "moment": f"disk filled after {after_fills} fill(s)"}
        d = None
        try:
            d = self._trading_daemon(run_dir, state_dir, where)
            if d is None:
                return
            outcome, _ = self._wait_fills(d, after_fills, 0)
            filler = mnt / "filler"
            written = _fill_disk(filler)
            self.tally.event(**where, outcome=outcome, filler_bytes=written)
            st = wait_until(lambda: (s := d.status())["state"] != "trading" and s,
                            self.opts.fault_timeout, 0.1)
            self.tally.check("disk_full_stops", None if st else
                             f"still trading {self.opts.fault_timeout} s after the disk filled",
                             where, evidence=tail(d.log, 4))
            if st:
                self.tally.event(**where, state_after=st["state"], reason=st["reason"][:200])
            self._fault_cancels(d, where)
            d.kill9()
            self.tally.counts["kills"] += 1
            self.tally.counts["kills_disk_full"] += 1
            self._end_process(d, where)
            d = self._spawn(run_dir, state_dir)
            self._boot_on_full_disk(d, {**where, "after": "restart, disk still full"})
            self._end_process(d, where)
            filler.unlink()
            d = self._spawn(run_dir, state_dir)
            st = self._after_boot(d, journal, {**where, "after": "restart, space freed"},
                                  after_kill=True, estop_acked=False, after_disk_full=True)
            if st is not None:
                rc = d.terminate()
                self.tally.check("clean_stop", None if rc == 0 else f"SIGTERM exit code {rc}",
                                 where, evidence=tail(d.log, 3))
                self.tally.checks(JOURNAL_INVARIANTS, check_journal(read_journal(journal)),
                                  {**where, "after": "orderly stop"})
            self._end_process(d, where)
            d = None
        finally:
            if d is not None:
                d.close()
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

    def _boot_on_full_disk(self, d: Bot4d, where: dict[str, Any]) -> None:
        """A restart while the disk is still full must refuse to start (exit with an
        error) or boot latched; it must never be able to trade."""
        deadline = time.monotonic() + self.opts.boot_timeout
        while time.monotonic() < deadline and d.alive() and not d.notify.has("READY=1"):
            time.sleep(0.05)
        if not d.alive():
            rc = d.proc.returncode
            self.tally.event(**where, outcome=f"exited {rc}: {tail(d.log, 1)}")
            self.tally.check("disk_full_latched", None if rc != 0 else
                             "exited 0 on a full disk", where, evidence=tail(d.log, 3))
            return
        if not d.notify.has("READY=1"):
            self.tally.check("disk_full_latched", f"neither READY=1 nor an exit within "
                             f"{self.opts.boot_timeout} s on a full disk", where,
                             evidence=tail(d.log, 3))
            d.kill9()
            return
        st = d.status()
        started = d.request({"cmd": "start"}).get("ok")
        ok = st["state"] in ("halted", "estop", "fault") and not started
        self.tally.event(**where, outcome=f"booted into {st['state']}: {st['reason'][:160]}")
        self.tally.check("disk_full_latched", None if ok else
                         f"booted into {st['state']} ({st['reason'][:160]}) on a full disk"
                         + ("; `start` was accepted" if started else ""), where,
                         evidence=tail(d.log, 3))
        d.kill9()

    def batch_fault_case(self, case: int) -> None:
        run_dir = self.work / f"batchfault{case:02d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        state_dir = run_dir / "state"
        journal = state_dir / "journal.sqlite3"
        target = ("journal_record_orders", "gateway_submit")[case % 2]
        nth = self.rng.randint(2, 40)
        spec = f"{target}:{nth}"
        where: dict[str, Any] = {"seed": self.opts.seed, "case": f"batch_fault{case}",
                                 "moment": spec}
        self.tally.counts["batch_fault_cases"] += 1
        d = self._trading_daemon(run_dir, state_dir, where, inject=spec)
        if d is None:
            return
        try:
            fired = wait_until(lambda: "TORTURE-INJECTED" in d.log, 30.0, 0.1)
            if not fired:
                self.tally.event(**where, outcome="injection never fired (not counted)")
                self.tally.skipped.append(f"batch fault {spec}: never fired")
                return
            self.tally.counts["batch_faults_fired"] += 1
            st = wait_until(lambda: (s := d.status())["state"] != "trading" and s, 5.0, 0.05)
            self.tally.event(**where, outcome="fired",
                             state_after=(st or d.status())["state"],
                             reason=(st or d.status())["reason"][:200])
            # whatever the daemon decided, the gateway's memory must equal the journal,
            # and a fault must leave nothing working at the venue
            self._settled_compare(d, journal, {**where, "after": "injected exception"},
                                  STATUS_INVARIANTS)
            if st and st["state"] == "fault":
                self.tally.counts["faults_seen"] += 1
                self._fault_cancels(d, where)
            d.kill9()
            self.tally.counts["kills"] += 1
            self.tally.counts["kills_batch_fault"] += 1
            self._end_process(d, where)
            d = self._spawn(run_dir, state_dir)
            st = self._after_boot(d, journal, {**where, "after": "restart"}, after_kill=True,
                                  estop_acked=False)
            if st is not None:
                rc = d.terminate()
                self.tally.check("clean_stop", None if rc == 0 else f"SIGTERM exit code {rc}",
                                 where, evidence=tail(d.log, 3))
                self.tally.checks(JOURNAL_INVARIANTS, check_journal(read_journal(journal)),
                                  {**where, "after": "orderly stop"})
            self._end_process(d, where)
        finally:
            d.close()

    def protection_case(self, case: int) -> None:
        """A kill at an exact place of a risk-limit trip or a breaker transition (the
        daemon kills itself there, tests/torture_inject.py), or right after an acknowledged
        manual breaker trip; then a restart with every check, then trading again and an
        orderly stop."""
        kinds = self.opts.protection_kinds or PROTECTION_KINDS
        kind = kinds[case % len(kinds)]
        run_dir = self.work / f"protection{case:02d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        state_dir = run_dir / "state"
        journal = state_dir / "journal.sqlite3"
        env = LIMIT_ENV if kind.startswith("limit") else BREAKER_ENV
        nth = self.rng.randint(1, 6)
        spec = {"limit_journalled": "kill_limit_journalled:1",
                "limit_trip": "kill_limit_trip:1",
                "breaker_open": f"venue_reject:{nth},kill_breaker_open:1",
                "half_open": f"venue_reject:{nth},kill_half_open:1",
                "probe": f"venue_reject:{nth},kill_probe:1",
                "manual_trip": None}[kind]
        where: dict[str, Any] = {"seed": self.opts.seed, "case": f"protection{case}",
                                 "moment": {"kind": kind, "inject": spec}}
        self.tally.counts["protection_cases"] += 1
        d = self._trading_daemon(run_dir, state_dir, where, inject=spec, env=env)
        if d is None:
            return
        try:
            if kind == "manual_trip":
                delay = self.rng.choice([0, 1, 3, 10, 50])
                self._wait_fills(d, self.rng.randint(0, 2), d.status()["orders"].get("fills", 0))
                r = d.request({"cmd": "breaker", "action": "trip", "name": "paper",
                               "reason": "torture"})
                time.sleep(delay / 1000)
                d.kill9()
                outcome = f"trip {'acknowledged' if r.get('ok') else r}, SIGKILL {delay} ms later"
            else:
                died = wait_until(lambda: not d.alive(), 45.0, 0.1)
                if not died or "TORTURE-KILL" not in d.log:
                    why = ("never fired" if not died else
                           f"died otherwise: exit {d.proc.returncode}: {tail(d.log, 2)}")
                    self.tally.event(**where, outcome=f"kill point {why} (not counted)")
                    self.tally.skipped.append(f"protection {kind} ({spec}): {why}")
                    d.kill9()
                    self._end_process(d, where)
                    return
                outcome = "killed itself at the point"
            self.tally.counts["kills"] += 1
            self.tally.counts[f"kills_{kind}"] += 1
            self.tally.event(**where, outcome=outcome)
            self._end_process(d, where)
            d = self._spawn(run_dir, state_dir, env=env)
            st = self._after_boot(d, journal, {**where, "after": "restart"}, after_kill=True,
                                  estop_acked=False)
            if st is None:
                return
            self._make_trade(d, where)
            st = d.status()
            held = [f"{b['name']}: {b['reason'][:120]}" for b in st.get("breakers") or []
                    if b["state"] != "closed" and "risk: " in (b["reason"] or "")]
            standing = (st.get("risk") or {}).get("trips")
            self.tally.check("risk_reset", None if not held or standing else
                             f"after the operator's reset no risk trip stands, yet breakers "
                             f"stay open for risk: {held}", where, evidence=tail(d.log, 3))
            self._wait_fills(d, 1, d.status()["orders"].get("fills", 0))
            rc = d.terminate()
            self.tally.check("clean_stop", None if rc == 0 else f"SIGTERM exit code {rc}",
                             where, evidence=tail(d.log, 3))
            self.tally.checks(JOURNAL_INVARIANTS, check_journal(read_journal(journal)),
                              {**where, "after": "orderly stop"})
            self._end_process(d, where)
        finally:
            d.close()

    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        o = self.opts
        remaining, run = o.kills, 0
        error = None
        try:
            while remaining > 0:
                n = min(o.kills_per_run, remaining)
                self.kill_run(run, n)
                remaining -= n
                run += 1
            self.on_restart = "restore" if o.on_restart == "mix" else o.on_restart
            for c in range(o.disk_full):
                self.disk_full_case(c)
            for c in range(o.batch_faults):
                self.batch_fault_case(c)
            for c in range(o.protection):
                self.protection_case(c)
        except Exception:   # a harness failure still reports what it found so far
            error = traceback.format_exc()
            log.error("torture stopped by a harness error:\n%s", error)
        finally:
            if not o.keep:
                shutil.rmtree(self.work, ignore_errors=True)
        res = self.result(time.monotonic() - t0)
        res["error"] = error
        return res

    def result(self, seconds: float) -> dict[str, Any]:
        return {"seed": self.opts.seed,
                "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "options": {k: str(v) for k, v in
                                                    dataclasses.asdict(self.opts).items()},
                "code": str(self.opts.code), "code_rev": _git_rev(self.opts.code),
                "seconds": round(seconds, 1), **self.tally.summary(),
                "skipped": self.tally.skipped, "violations": self.tally.violations,
                "events": self.tally.events}


def _fill_disk(path: Path) -> int:
    """Write zeros until the file system says ENOSPC; returns the bytes written."""
    n = 0
    chunk = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return n
                chunk = chunk[: len(chunk) // 16 or 1]


def _git_rev(code: Path) -> str:
    p = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    if p.returncode != 0:
        return "not a git work tree"
    return p.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def format_summary(res: dict[str, Any]) -> str:
    c = res["counts"]
    lines = [f"torture seed {res['seed']} on {res['code']} ({res['code_rev']}): "
             f"{res['seconds']} s",
             f"runs {c.get('runs', 0)}, daemon starts {c.get('daemon_starts', 0)}, kills "
             f"{c.get('kills', 0)} (boot {c.get('kills_boot', 0)}, fills {c.get('kills_fills', 0)}, "
             f"time {c.get('kills_time', 0)}, mid-stop {c.get('kills_stop', 0)}, "
             f"estop_ack {c.get('kills_estop_ack', 0)}, "
             f"estop_inflight {c.get('kills_estop_inflight', 0)}, disk_full "
             f"{c.get('kills_disk_full', 0)}, batch_fault {c.get('kills_batch_fault', 0)}), "
             f"e-stop acked before kill {c.get('estop_acked_before_kill', 0)}",
             f"faults: disk-full cases {c.get('disk_full_cases', 0)}, batch faults fired "
             f"{c.get('batch_faults_fired', 0)}/{c.get('batch_fault_cases', 0)}, faults seen "
             f"{c.get('faults_seen', 0)}, moments pre-empted {c.get('moments_preempted', 0)}, "
             f"stops with cancels sent but unconfirmed "
             f"{c.get('fault_cancels_sent_unconfirmed', 0)}",
             f"protection kills: " + ", ".join(f"{k} {c.get('kills_' + k, 0)}"
                                               for k in PROTECTION_KINDS)
             + f" of {c.get('protection_cases', 0)} case(s)",
             f"reconciliation: {c.get('reconciled_orders', 0)} order(s) open at a kill "
             f"reconciled at the next boot (" + ", ".join(
                 f"{k[len('reconciled_'):]} {v}" for k, v in sorted(c.items())
                 if k.startswith("reconciled_") and k != "reconciled_orders") + ")",
             f"{'invariant':<18} {'checked':>8} {'violated':>9}"]
    for name, v in res["invariants"].items():
        lines.append(f"{name:<18} {v['checked']:>8} {v['violated']:>9}")
    lost = res["estop_lost_by_kill_delay_ms"]
    if lost:
        lines.append("e-stop acked, then SIGKILL after d ms -> latch lost/trials: " + ", ".join(
            f"{d} ms {v['lost']}/{v['trials']}" for d, v in lost.items()))
    for s in res["skipped"]:
        lines.append(f"skipped: {s}")
    lines.append(f"violations: {res['violations_total']}")
    if res.get("error"):
        lines.append(f"HARNESS ERROR (results incomplete): {res['error'].strip().splitlines()[-1]}")
    return "\n".join(lines)
