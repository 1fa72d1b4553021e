"""The e-stop chain end to end, with bot4d as a real subprocess (mock GPIO)."""
from __future__ import annotations

import json
import sqlite3

from tests.daemon_harness import wait_for


def _trading_with_orders(d) -> dict:
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    return wait_for(lambda: (s := d.status())["orders"]["open"] >= 2 and s, 20,
                    what="open quotes")


def test_press_cancels_everything_and_latches(start_daemon):
    d = start_daemon()
    st = _trading_with_orders(d)
    ids = [o["id"] for o in st["orders"]["list"]]
    assert d.ctl("sim", "estop", "press").returncode == 0
    st = d.wait_state("estop")
    assert st["latch"]["tripped"] and st["latch"]["kind"] == "estop"
    assert st["led"]["pattern"] == "red_fast_blink"
    assert st["estop"]["circuit_closed"] is False
    wait_for(lambda: d.status()["orders"]["open"] == 0, what="all orders cancelled")
    submitted = d.status()["orders"]["submitted"]

    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    trips = db.execute("SELECT detail FROM audit WHERE kind='latch_trip'").fetchall()
    assert trips and "estop" in trips[-1][0]
    for cid in ids:
        hist = [r[0] for r in db.execute(
            "SELECT status FROM order_events WHERE client_id=? ORDER BY id", (cid,))]
        # each quote was cancelled (or had filled) — and the cancel was journalled first
        assert hist[-1] in ("cancelled", "filled"), hist
        if hist[-1] == "cancelled":
            assert "pending_cancel" in hist

    # reset refused while the button is still pressed
    r = d.ctl("reset")
    assert r.returncode == 1 and "e-stop circuit is open" in r.stderr
    # start refused while latched
    assert d.ctl("start").returncode == 1
    assert d.status()["orders"]["submitted"] == submitted, "an order left while latched"

    assert d.ctl("sim", "estop", "release").returncode == 0
    wait_for(lambda: d.status()["estop"]["circuit_closed"], what="circuit closed")
    assert d.status()["state"] == "estop", "release alone must not re-arm"
    r = d.ctl("reset")
    assert r.returncode == 0, r.stderr
    st = d.wait_state("ready")
    assert st["led"]["pattern"] == "green_slow_blink" and not st["latch"]["tripped"]
    assert d.ctl("start").returncode == 0
    st = d.wait_state("trading")
    assert st["led"]["pattern"] in ("green", "amber")
    wait_for(lambda: d.status()["orders"]["open"] >= 1, what="trading again")
    assert d.terminate() == 0


def test_broken_wire_at_boot_is_estop(start_daemon):
    d = start_daemon("--sim-estop-open")
    d.wait_ready()
    st = d.status()
    assert st["state"] == "estop" and st["estop"]["circuit_closed"] is False
    assert "open at boot" in st["reason"]
    assert d.ctl("reset").returncode == 1
    assert d.ctl("start").returncode == 1
    assert d.terminate() == 0


def test_latch_survives_kill9_and_restart(start_daemon):
    d = start_daemon()
    _trading_with_orders(d)
    assert d.ctl("sim", "estop", "press").returncode == 0
    d.wait_state("estop")
    d.kill9()
    d.close()
    # Restart in the same state dir with the circuit healthy: still latched.
    d2 = start_daemon()
    d2.wait_ready()
    st = d2.status()
    assert st["state"] == "estop" and st["latch"]["kind"] == "estop"
    assert "latched before restart" in st["reason"]
    assert st["led"]["pattern"] == "red_fast_blink"
    assert d2.ctl("start").returncode == 1
    assert d2.ctl("reset").returncode == 0      # circuit is closed now: operator may re-arm
    d2.wait_state("ready")
    assert d2.terminate() == 0


def test_orders_open_at_kill9_are_closed_on_restart(start_daemon):
    d = start_daemon()
    _trading_with_orders(d)
    d.kill9()
    d.close()
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    left = {r[0] for r in db.execute("SELECT client_id FROM orders WHERE status NOT IN "
                                     "('filled','cancelled','rejected','expired')")}
    db.close()
    assert left
    d2 = start_daemon()
    d2.wait_ready()
    # Reconciled visibly: one journalled result naming every order the killed run left open.
    db = sqlite3.connect(d2.state_dir / "journal.sqlite3")
    (result,) = db.execute("SELECT result FROM reconciliations ORDER BY id DESC").fetchone()
    assert {o["client_id"] for o in json.loads(result)["orders"]} == left
    # The unclean end comes back halted, and halted means nothing rests at the venue.
    assert d2.status()["state"] == "halted"
    wait_for(lambda: d2.status()["orders"]["open"] == 0, 20, what="restored orders cancelled")
    assert db.execute("SELECT COUNT(*) FROM orders WHERE status NOT IN "
                      "('filled','cancelled','rejected','expired')").fetchone()[0] == 0
    assert d2.terminate() == 0


def test_orderly_stop_cancels_and_turns_led_off(start_daemon):
    d = start_daemon()
    _trading_with_orders(d)
    assert d.terminate() == 0
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    open_ = db.execute("SELECT COUNT(*) FROM orders WHERE status NOT IN "
                       "('filled','cancelled','rejected','expired')").fetchone()[0]
    assert open_ == 0
    assert "(0 unconfirmed)" in d.log, "orders were still open when the daemon exited"
    assert "refused" not in d.log
    assert db.execute("SELECT COUNT(*) FROM audit WHERE kind='stop'").fetchone()[0] == 1


def test_without_sim_on_a_machine_without_gpio_refuses(start_daemon):
    d = start_daemon(sim=False)
    assert d.proc.wait(30) == 69
    assert "no usable GPIO" in d.log and "--sim" in d.log


def test_unusable_state_dir_fails_clearly(start_daemon, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    d = start_daemon("--state-dir", str(blocker / "state"))
    assert d.proc.wait(30) == 69
    assert "journal" in d.log and "cannot start" in d.log
