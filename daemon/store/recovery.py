"""Operator commands for a damaged or lost journal: `bot4d journal-check` and
`bot4d journal-reset --yes`.

bot4d refuses to boot on a damaged journal (exit 65) rather than start a fresh one that
has forgotten the latch, the orders and the positions. These commands are the documented
way out. `check` only reads. `reset` never deletes anything: it moves the damaged files
aside (`journal.sqlite3.damaged-<UTC time>` with its -wal/-shm), creates a new journal and
latches it `halt`, so the daemon comes back halted and an operator reconciles positions
with the exchange before `bot4ctl reset`. Both take the state dir's lock, so they never
touch the journal of a running daemon.
"""
from __future__ import annotations

import sqlite3
import urllib.parse
import sys
import time
from pathlib import Path
from typing import Callable

from daemon.store.journal import Journal, JournalError
from daemon.store.statedir import StateDir, StateDirError

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75

JOURNAL = "journal.sqlite3"


def _say(msg: str) -> None:
    print(f"bot4d: {msg}", file=sys.stderr)


def _locked(state_dir: Path, action: Callable[[StateDir], int]) -> int:
    """Run `action` holding the state dir's lock (never beside a running daemon)."""
    sd = StateDir(state_dir)
    try:
        sd.lock()
    except StateDirError as e:
        _say(str(e))
        return EX_TEMPFAIL
    try:
        return action(sd)
    finally:
        sd.unlock()


def check(state_dir: Path) -> int:
    """Print the journal's integrity and a summary; 0 when healthy, 65 when damaged."""
    return _locked(state_dir, lambda sd: _check(sd, state_dir / JOURNAL))


def _check(sd: StateDir, path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        what = "missing" if not path.exists() else "empty (0 bytes)"
        expected = sd.journal_expected()
        _say(f"{path} is {what}" + (f"; a journal existed here ({expected})" if expected
                                    else "; no journal was ever created here"))
        return EX_DATAERR if expected else EX_OK
    try:
        # Percent-encoded: a #, ? or % in the path would otherwise end the file name.
        db = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                _say(f"{path}: integrity check failed: {'; '.join(rows[:5])}")
                return EX_DATAERR
            counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                      for t in ("orders", "fills", "positions", "audit")}
            latch = db.execute("SELECT tripped, source, reason FROM latch").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        _say(f"{path}: {e}")
        return EX_DATAERR
    latched = f"tripped {latch[1]} ({latch[2]})" if latch and latch[0] else "clear"
    print(f"{path}: ok; " + ", ".join(f"{n} {t}" for t, n in counts.items())
          + f"; latch: {latched}")
    return EX_OK


def reset(state_dir: Path, confirmed: bool) -> int:
    """Move the journal aside and start a new one, latched halt. Needs --yes."""
    if not confirmed:
        _say("journal-reset starts a NEW journal (the old one is kept aside); the daemon will "
             "not know its orders and positions. Reconcile them with the exchange, then run "
             "again with --yes")
        return EX_USAGE
    return _locked(state_dir, lambda sd: _reset(sd, state_dir))


def _reset(sd: StateDir, state_dir: Path) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for suffix in ("", "-wal", "-shm"):
        src = state_dir / f"{JOURNAL}{suffix}"
        if src.exists():
            dst = state_dir / f"{JOURNAL}.damaged-{stamp}{suffix}"
            src.rename(dst)
            moved.append(dst.name)
    try:
        journal = Journal(state_dir / JOURNAL)
        try:
            journal.set_latch(True, "halt", f"journal replaced on {stamp} after damage "
                              f"(kept aside: {', '.join(moved) or 'nothing found'}); "
                              "positions and orders unknown: reconcile, then reset")
            journal.audit("journal_reset", kept=moved)
        finally:
            journal.close()
    except JournalError as e:
        _say(f"could not create the new journal: {e}")
        return EX_DATAERR
    sd.expect_journal(JOURNAL)
    print(f"new journal at {state_dir / JOURNAL}, latched halt; kept aside: "
          f"{', '.join(moved) or 'nothing'}")
    return EX_OK
