"""The torture harness (scripts/torture, tests/torture_lib.py): its checks catch what they
claim to catch, and the fast subset of the torture itself holds every invariant.

The checks are tested on real SQLite journals written by the daemon's own Journal and
then damaged the way the defects of issue 6 damage them. The fast subset runs real bot4d
processes: 7 seeded SIGKILLs while trading the shared BTC capture, one full disk, one
exception inside a journal batch. It asserts invariants only, never timings.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.execution.orders import (Fill, Liquidity, Order, OrderStatus, OrderType, Position,
                                     Side, TimeInForce)
from daemon.store.journal import Journal
from tests import torture_lib as tl
from tests.daemon_harness import REPO
from tests.recovery.rig import Proc, World
from tests.torture_inject import InjectionSpecError, parse_spec


def _order(cid: str, side: Side, qty: str, status: OrderStatus = OrderStatus.PENDING_NEW
           ) -> Order:
    return Order(client_id=cid, symbol="BTCUSDT", side=side, type=OrderType.LIMIT,
                 qty=Decimal(qty), price=Decimal("61000.00"), tif=TimeInForce.POST_ONLY,
                 status=status, created_ns=1, updated_ns=1)


def _journal(tmp_path: Path) -> Path:
    """A journal with two filled orders (one partly, then cancelled) and one open order."""
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    pos = Position("BTCUSDT")
    a, b, c = (_order("b4-1", Side.BUY, "0.0002"), _order("b4-2", Side.SELL, "0.0002"),
               _order("b4-3", Side.BUY, "0.0002"))
    j.record_orders([a, b, c])   # journalled as pending_new, then acknowledged
    for o in (a, b, c):
        o.status = OrderStatus.NEW
    j.record_orders([a, b, c])
    for fid, o, qty, px in (("paper-1", a, "0.0002", "61000.10"),
                            ("paper-2", b, "0.00009", "61010.00")):
        f = Fill(fid, o.client_id, "BTCUSDT", o.side, Decimal(px), Decimal(qty),
                 Decimal("0.00122"), Liquidity.MAKER, 5)
        o.filled_qty += f.qty
        o.status = OrderStatus.FILLED if o.filled_qty == o.qty else OrderStatus.PARTIALLY_FILLED
        pos.apply(f)
        j.record_fill(f, o, pos)
    b.status = OrderStatus.CANCELLED
    j.record_order(b)
    j.set_latch(True, "estop", "e-stop pressed")
    j.close()
    return path


def _status(snap: tl.JournalSnapshot, **over) -> dict:
    """A status reply that agrees with the journal, with `over` replacing parts."""
    st = {"orders": {"list": [{"id": cid, "status": s} for cid, s in snap.open_orders().items()]},
          "positions": {s: {k: str(v) for k, v in p.items()} for s, p in snap.positions.items()},
          "latch": {"tripped": True, "kind": "estop", "reason": "e-stop pressed"},
          "torture": {"venue_open": list(snap.open_orders()), "venue_pending": 0}}
    st.update(over)
    return st


def _sql(path: Path, *stmts: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for s in stmts:
            db.execute(s)
    db.close()


def test_a_consistent_journal_passes_every_check(tmp_path):
    snap = tl.read_journal(_journal(tmp_path))
    assert snap.integrity == "ok" and len(snap.fills) == 2
    assert snap.open_orders() == {"b4-3": "new"}
    assert tl.check_journal(snap) == []
    assert tl.compare_status(_status(snap), snap) == []


def test_an_order_whose_fill_was_never_journalled_is_caught(tmp_path):
    # issue 6 defect 1: the fill row failed (UNIQUE), the order kept its filled quantity
    path = _journal(tmp_path)
    _sql(path, "DELETE FROM fills WHERE fill_id = 'paper-2'")
    found = dict(tl.check_journal(tl.read_journal(path)))
    assert "b4-2 cancelled filled_qty 0.00009 != fills 0" in found["order_filled_qty"]
    assert "position_sums" in found   # the position still counts the lost fill


def test_position_and_fees_must_equal_the_sums_over_fills(tmp_path):
    path = _journal(tmp_path)
    _sql(path, "UPDATE positions SET fees = '0.00244001'")
    found = dict(tl.check_journal(tl.read_journal(path)))
    assert set(found) == {"position_sums"} and "fees 0.00244001" in found["position_sums"]
    _sql(path, "UPDATE positions SET fees = '0.00244', realized_pnl = '1'")
    assert set(dict(tl.check_journal(tl.read_journal(path)))) == {"position_pnl"}


def test_a_client_id_journalled_as_new_twice_is_a_duplicate(tmp_path):
    path = _journal(tmp_path)
    _sql(path, "INSERT INTO order_events (client_id, ts_ns, status, reason) "
               "VALUES ('b4-1', 9, 'pending_new', NULL)")
    found = dict(tl.check_journal(tl.read_journal(path)))
    assert set(found) == {"unique_ids"} and "'b4-1': 2" in found["unique_ids"]


def test_a_fill_of_an_unknown_order_is_caught(tmp_path):
    path = _journal(tmp_path)
    _sql(path, "INSERT INTO fills VALUES ('paper-9', 'nobody', 'BTCUSDT', 'buy', '1', "
               "'0.00001', '0', 'maker', 1)")
    assert "fill_has_order" in dict(tl.check_journal(tl.read_journal(path)))


def test_status_must_show_what_the_journal_and_the_venue_have(tmp_path):
    snap = tl.read_journal(_journal(tmp_path))
    # an order open in the journal that status does not list (left in doubt)
    found = dict(tl.compare_status(_status(snap, orders={"list": []}), snap))
    assert "['b4-3']" in found["open_shown"] and "open orders" in found["status_eq_journal"]
    # an order resting at the venue that the gateway does not know (a ghost)
    ghost = _status(snap, torture={"venue_open": ["b4-3", "b4-77"], "venue_pending": 0})
    assert "['b4-77']" in dict(tl.compare_status(ghost, snap))["open_shown"]
    # a position in memory the journal does not have; a latch that is not journalled
    pos = _status(snap, positions={"BTCUSDT": {"qty": "0.00029", "avg_price": "1",
                                               "realized_pnl": "0", "fees": "0"}})
    assert "position BTCUSDT" in dict(tl.compare_status(pos, snap))["status_eq_journal"]
    clear = _status(snap, latch={"tripped": False, "kind": None, "reason": ""})
    assert "latch" in dict(tl.compare_status(clear, snap))["status_eq_journal"]


def test_a_damaged_journal_fails_the_integrity_check(tmp_path):
    path = _journal(tmp_path)
    _sql(path, *(f"INSERT INTO audit (ts_ns, kind, detail) VALUES ({i}, 'pad', '{'x' * 500}')"
                 for i in range(200)))
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit'").fetchone()[0]
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as f:   # scribble over the interior page of the audit table
        f.seek((root - 1) * page + 12)
        f.write(b"\xff" * 64)
    assert tl.read_journal(path).integrity != "ok"
    assert "integrity" in dict(tl.check_journal(tl.read_journal(path)))


def test_only_fresh_id_collisions_count_in_a_log():
    log = ("x FAULT: journal failed: UNIQUE constraint failed: fills.fill_id\n"
           "x WARNING latch restored from journal: halt (fault: UNIQUE constraint failed: x)\n"
           "x state booting -> halted: latched before restart: fault: UNIQUE constraint failed\n")
    assert len(tl.unique_failures(log)) == 1


def _reconciled(tmp_path: Path) -> tuple[Path, Proc, dict, dict]:
    """The journal above after a real boot reconciliation (restore mode): b4-3 restored."""
    path = _journal(tmp_path)
    before = tl.read_journal(path).open_orders()
    p = Proc(path, World())
    res = p.reconcile()
    return path, p, before, res.as_dict()


def _found(path: Path, run: int, before: dict, status: dict | None = None) -> str:
    found = tl.check_reconciliation(tl.read_journal(path), run, before, status)
    assert {inv for inv, _ in found} <= {"reconciled"}
    return " | ".join(d for _, d in found)


def test_reconciliation_check_passes_a_real_result(tmp_path):
    path, p, before, res = _reconciled(tmp_path)
    assert before == {"b4-3": "new"} and res["outcomes"]["restored"] == ["b4-3"]
    assert _found(path, p.run, before, {"reconciliation": res}) == ""
    assert _found(path, p.run, before) == ""


def test_reconciliation_check_catches_what_the_result_gets_wrong(tmp_path):
    path, p, before, res = _reconciled(tmp_path)
    run = p.run
    assert "missing ['b4-9']" in _found(path, run, {**before, "b4-9": "pending_new"})
    assert "not open ['b4-3']" in _found(path, run, {})
    assert "b4-3 was new, journal had partially_filled" in _found(
        path, run, {"b4-3": "partially_filled"})
    assert f"run {run + 1}: 0 reconciliation results" in _found(path, run + 1, before)
    assert "status shows None" in _found(path, run, before, {"reconciliation": None})
    assert "status shows {'run': 99" in _found(path, run, before,
                                                {"reconciliation": {**res, "run": 99}})
    # status may sum the outcomes up as counts (the supervisor does)
    counts = {"run": run, "mode": "restore", "ts_ns": 1, "ok": True, "positions_ok": True,
              "mismatches": [], **{k: len(v) for k, v in res["outcomes"].items()},
              "fills_applied": 0}
    assert _found(path, run, before, {"reconciliation": counts}) == ""
    assert "'outcomes': {'restored': 1, 'cancelled': 1}" in _found(
        path, run, before, {"reconciliation": {**counts, "cancelled": 1}})
    twice = {**res, "orders": res["orders"] * 2}
    p.journal.record_reconciliation(run + 2, twice)
    assert "listed twice ['b4-3']" in _found(path, run + 2, before)
    misfiled = {**res, "outcomes": {**res["outcomes"], "restored": [], "cancelled": ["b4-3"]}}
    p.journal.record_reconciliation(run + 3, misfiled)
    assert "outcome lists disagree with the orders: ['b4-3']" in _found(path, run + 3, before)
    bad = {**res, "ok": False, "positions_ok": False, "mismatches": ["position BTCUSDT: x"]}
    p.journal.record_reconciliation(run + 4, bad)
    assert "positions_ok False, mismatches ['position BTCUSDT: x']" in _found(path, run + 4,
                                                                               before)
    p.journal.record_reconciliation(run, res)
    assert f"run {run}: 2 reconciliation results" in _found(path, run, before)


def test_reconciliation_check_needs_the_table(tmp_path):
    path, p, before, _ = _reconciled(tmp_path)
    snap = tl.read_journal(path)
    snap.reconciliations = None   # as read from a schema-1 journal
    assert tl.check_reconciliation(snap, p.run, before) == [
        ("reconciled", "the journal has no reconciliations table (schema < 2)")]


def test_protection_check_catches_a_breaker_or_a_trip_a_restart_lost(tmp_path):
    path = _journal(tmp_path)
    j = Journal(path)
    j.audit("breaker", name="paper", old="closed", new="open", reason="storm")
    j.audit("breaker", name="global", old="closed", new="open", reason="cascade")
    j.audit("breaker", name="global", old="open", new="closed", reason="reset")
    j.audit("limit_trip", limit="drawdown", action="halted", reason="x")
    j.audit("limit_trip", limit="daily_loss", action="halted", reason="y")
    j.audit("limit_reset", limits=["drawdown"])
    j.close()
    snap = tl.read_journal(path)
    ok = {"breakers": [{"name": "paper", "state": "half_open"},
                       {"name": "global", "state": "closed"}],
          "risk": {"trips": [{"limit": "daily_loss"}]}}
    assert tl.check_protection(snap, ok) == []
    lost = {"breakers": [{"name": "paper", "state": "closed"},
                         {"name": "global", "state": "closed"}], "risk": {"trips": []}}
    assert tl.check_protection(snap, lost) == [
        ("breaker_restored", "1 breaker(s) closed by the restart: ['paper journalled open, "
                             "status closed']"),
        ("trip_restored", "risk-limit trip(s) journalled and never reset, not standing after "
                          "the restart: ['daily_loss'] (status trips [])")]
    assert tl.check_protection(snap, {"state": "ready"}) == [], "no breaker board: not checked"


def test_several_injection_targets_at_once():
    from tests.torture_inject import parse_specs
    assert parse_specs("venue_reject:3, kill_half_open:1") == [("venue_reject", 3),
                                                              ("kill_half_open", 1)]
    with pytest.raises(InjectionSpecError, match="named twice"):
        parse_specs("kill_probe:1,kill_probe:2")
    with pytest.raises(InjectionSpecError, match="TARGET"):
        parse_specs("kill_probe:1,")


def test_injection_spec_is_checked():
    assert parse_spec("gateway_submit:3") == ("gateway_submit", 3)
    for bad, words in (("submit:3", "TARGET"), ("gateway_submit", "TARGET"),
                       ("journal_record_orders:x", "integer"), ("gateway_submit:0", ">= 1")):
        with pytest.raises(InjectionSpecError, match=words):
            parse_spec(bad)
    p = subprocess.run([sys.executable, "-m", "tests.torture_inject", "check-config",
                        "--config", str(REPO / "etc" / "bot4" / "bot4.toml")], cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env={"BOT4_TORTURE_INJECT": "nope:1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "BOT4_TORTURE_INJECT='nope:1'" in p.stderr


@pytest.mark.skipif(not tl.CAPTURE[0].is_file(), reason=f"shared captures not found: {tl.CAPTURE[0]}")
def test_fast_torture_subset_holds_every_invariant(tmp_path):
    """7 seeded kills on one state dir while trading (boot, fills, time, e-stop moments),
    one full disk, one exception inside a journal batch, a kill inside a risk-limit trip and
    one inside a breaker's move to half-open: every check must hold."""
    t = tl.Torture(tl.Options(seed=5, kills=7, kills_per_run=7, disk_full=1, batch_faults=1,
                              protection=2, protection_kinds=("limit_trip", "half_open"),
                              workdir=tmp_path / "torture"))
    res = t.run()
    c, inv = res["counts"], res["invariants"]
    assert c["kills"] >= 7 + 1 + (1 if c.get("disk_full_cases") else 0)
    assert c.get("batch_faults_fired") == 1, res["skipped"]
    assert c.get("estop_acked_before_kill", 0) >= 1   # seed 5: three acknowledged presses
    for name in ("integrity", "unique_ids", "order_filled_qty", "position_sums",
                 "status_eq_journal", "open_shown", "not_trading", "estop_latched"):
        assert inv[name]["checked"] > 0, name
    # a kill inside a risk-limit trip and one inside a breaker's half-open transition
    assert (c.get("kills_limit_trip"), c.get("kills_half_open")) == (1, 1), res["skipped"]
    for name in ("breaker_restored", "trip_restored", "risk_reset"):
        assert inv[name]["checked"] > 0, name
    if t.wired:   # every restart's reconciliation result checked
        assert inv["reconciled"]["checked"] > 0 and c["runs_on_restart_restore"] == 1
    else:
        assert any(s.startswith("reconciled: the daemon under test") for s in res["skipped"])
    if not c.get("disk_full_cases"):
        assert any("disk-full case skipped" in s for s in res["skipped"])
    assert res["violations_total"] == 0, tl.format_summary(res) + "\n" + "\n".join(
        f"{v['invariant']}: {v.get('run', v.get('case'))}/{v.get('cycle', '-')}: "
        f"{v['detail'][:300]}" for v in res["violations"])
