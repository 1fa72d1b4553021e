"""The ExecStopPost helper after an abnormal end (watchdog kill): it journals the event and
latches halt; it leaves the orders the dead process had open to the next boot's
reconciliation (a live venue may still be working them), and the next boot is halted."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from tests.daemon_harness import CONFIG, REPO, wait_for


def _stop_post(state_dir, result: str, code: str = "killed",
               status: str = "ABRT") -> subprocess.CompletedProcess:
    env = {**os.environ, "SERVICE_RESULT": result, "EXIT_CODE": code, "EXIT_STATUS": status}
    return subprocess.run([sys.executable, "-m", "daemon.cli", "stop-post", "--config",
                           str(CONFIG), "--state-dir", str(state_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_watchdog_kill_then_stop_post_then_restart_is_halted(start_daemon):
    d = start_daemon()
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"]["open"] >= 2, 20, what="quotes")
    d.proc.send_signal(6)   # SIGABRT, what systemd sends on a watchdog timeout
    d.proc.wait(10)
    d.close()
    r = _stop_post(d.state_dir, "watchdog")
    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    assert db.execute("SELECT tripped, source FROM latch").fetchone() == (1, "halt")
    left = {r[0] for r in db.execute("SELECT client_id FROM orders WHERE status NOT IN "
                                     "('filled','cancelled','rejected','expired')")}
    assert left, "stop-post must not close orders: reconciliation settles them"
    assert "watchdog" in db.execute(
        "SELECT detail FROM audit WHERE kind='service_stopped'").fetchone()[0]
    d2 = start_daemon()
    d2.wait_ready()
    st = d2.status()
    assert st["state"] == "halted" and "watchdog" in st["reason"]
    rec = st["reconciliation"]
    assert rec["ok"] and rec["mode"] == "restore"
    # Every order the dead run left open is accounted for; halted at boot means none rests.
    settled = sum(rec[k] for k in ("restored", "rejected", "cancelled", "expired"))
    assert settled == len(left)
    wait_for(lambda: d2.status()["orders"]["open"] == 0, 20, what="restored orders cancelled")
    assert d2.ctl("start").returncode == 1
    assert d2.ctl("reset").returncode == 0
    d2.wait_state("ready")
    assert d2.terminate() == 0


def test_stop_post_after_clean_stop_changes_nothing(start_daemon):
    d = start_daemon()
    d.wait_ready()
    assert d.terminate() == 0
    assert _stop_post(d.state_dir, "success").returncode == 0
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM latch WHERE tripped = 1").fetchone()[0] == 0


def test_stop_post_after_a_refused_start_does_not_latch(tmp_path):
    """Exit 78 (config) / 69 (no GPIO) / 65 (journal damaged) / 75 (another instance): the
    daemon never traded, and stop-post leaves the journal alone (a damaged one above all)."""
    for status in ("78", "69", "65", "75"):
        assert _stop_post(tmp_path, "exit-code", "exited", status).returncode == 0
    assert not (tmp_path / "journal.sqlite3").exists()
    assert _stop_post(tmp_path, "exit-code", "exited", "70").returncode == 0   # a crash
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    assert db.execute("SELECT tripped FROM latch").fetchone() == (1,)
