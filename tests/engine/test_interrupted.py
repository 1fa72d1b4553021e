"""Which parent orders a run left unfinished (daemon/engine/executor.interrupted_parents),
read from a real journal file: by run number and id, never by wall time alone (a Pi
without a clock battery can step its clock back at boot or when NTP syncs)."""
from __future__ import annotations

import time

import pytest

from daemon.engine.executor import interrupted_parents
from daemon.store.journal import Journal

S = 1_000_000_000


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def _boot(j: Journal) -> int:
    run = j.begin_run()
    j.audit("boot", run=run)
    return run


def _start(j: Journal, run: int, pid: str, **kw) -> None:
    j.audit("execution_start", id=pid, run=run, symbol="BTCUSDT", side="sell",
            reduce_only=True, reason="operator flatten", qty="0.002", **kw)


def _end(j: Journal, run: int, pid: str) -> None:
    j.audit("execution_end", id=pid, run=run, state="done", why="filled")


def test_the_previous_runs_parents_without_an_end_are_interrupted(journal):
    r1 = _boot(journal)
    _start(journal, r1, "x1")
    _start(journal, r1, "x2")
    _end(journal, r1, "x1")
    _start(journal, r1, "x3")
    r2 = _boot(journal)
    assert [d["id"] for d in interrupted_parents(journal, r2)] == ["x2", "x3"]
    assert interrupted_parents(journal, r2)[0]["qty"] == "0.002"


def test_ids_repeat_across_runs_and_only_the_previous_run_counts(journal):
    r1 = _boot(journal)
    _start(journal, r1, "x1")              # run 1 died with x1 running
    r2 = _boot(journal)
    _start(journal, r2, "x1")              # run 2's own x1 ended normally
    _end(journal, r2, "x1")
    _start(journal, r2, "x2")              # and its x2 did not
    r3 = _boot(journal)
    assert [(d["id"], d["run"]) for d in interrupted_parents(journal, r3)] == [("x2", r2)]
    # An end of the same id in another run does not end it.
    r4 = _boot(journal)
    assert interrupted_parents(journal, r4) == []


def test_the_first_run_has_nothing_to_report(journal):
    assert interrupted_parents(journal, _boot(journal)) == []


def test_a_run_that_never_wrote_its_boot_row_is_not_searched(journal):
    journal.begin_run()                    # died between counting the run and its boot row
    r2 = _boot(journal)
    assert interrupted_parents(journal, r2) == []


def test_a_clock_stepped_back_after_boot_still_finds_the_runs_parents(journal, monkeypatch):
    base = time.time_ns()
    now = [base]
    monkeypatch.setattr(time, "time_ns", lambda: now[0])
    r1 = _boot(journal)
    now[0] = base - 3600 * S               # NTP stepped the clock back an hour
    _start(journal, r1, "x1")
    now[0] = base - 23 * 3600 * S          # and a parent started "before" the boot by 23 h
    _start(journal, r1, "x2")
    now[0] = base + 60 * S
    r2 = _boot(journal)
    assert [d["id"] for d in interrupted_parents(journal, r2)] == ["x1", "x2"]


def test_rows_far_older_than_the_previous_boot_are_not_read(journal, monkeypatch):
    """The read is bounded by time (a day before the previous boot), so a journal of years
    is not scanned at every boot; the run number still decides."""
    base = time.time_ns()
    now = [base]
    monkeypatch.setattr(time, "time_ns", lambda: now[0])
    r1 = _boot(journal)
    now[0] = base - 25 * 3600 * S          # beyond the day of slack: out of the read
    _start(journal, r1, "x1")
    now[0] = base + S
    _start(journal, r1, "x2")
    r2 = _boot(journal)
    assert [d["id"] for d in interrupted_parents(journal, r2)] == ["x2"]


def test_note_interrupted_journals_shows_and_describes(tmp_path):
    from tests.engine_rig import EngineRig
    rig = EngineRig(tmp_path / "rig")
    ex = rig.engine.executor
    found = [{"id": "x4", "run": 6, "symbol": "BTCUSDT", "side": "sell", "qty": "0.002",
              "reduce_only": True, "reason": "operator flatten", "algo": "twap"}]
    texts = ex.note_interrupted(found, {"BTCUSDT": rig.gw.position("BTCUSDT")})
    assert texts == ["execution x4 of run 6 (sell 0.002 BTCUSDT reduce-only: operator "
                     "flatten) was interrupted: run 6 stopped before it ended; not resumed "
                     "(position BTCUSDT is 0 now); `bot4ctl flatten` starts a new one"]
    (row,) = ex.status()
    assert (row["id"], row["state"], row["qty"], row["algo"], row["reduce_only"]) == \
        ("x4@run6", "interrupted", "0.002", "twap", True)
    (rec,) = [d for _, _, d in rig.journal.audit_rows("execution_interrupted")]
    assert (rec["id"], rec["run"], rec["found_by_run"], rec["position"], rec["qty"]) == \
        ("x4", 6, rig.run, "0", "0.002")
    # A symbol the gateway has no position for reads "?", not a crash.
    (text,) = ex.note_interrupted([{**found[0], "symbol": "ETHUSDT"}], {})
    assert "(position ETHUSDT is ? now)" in text
