"""A real full disk for a real SQLite journal, without mounting anything.

`PRAGMA max_page_count` caps the database file of ONE connection: SQLite then fails every
write that needs a new page with SQLITE_FULL ("database or disk is full"), exactly as on a
full SD card. Only the daemon's connection is capped, so a restart (a new connection) sees
the space "freed". The torture script uses a real small tmpfs for the same fault.
"""
from __future__ import annotations

from daemon.store.journal import Journal, JournalError


def fill_up(journal: Journal) -> None:
    """Cap the journal at its current size and fill what room is left, so the next write
    of any size fails."""
    db = journal._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    for _ in range(20):   # a failed write can leave a little room behind: go until none
        for size in (2000, 200, 20, 0):
            for _ in range(10_000):
                try:
                    journal.audit("filler", pad="x" * size)
                except JournalError:
                    break
        try:
            journal.audit("probe")
        except JournalError:
            return
    raise AssertionError("the journal still takes writes after fill_up()")
