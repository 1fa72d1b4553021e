"""Issue 6 with bot4d as a real subprocess: restarts, kill -9 after an acknowledged e-stop,
a second instance, and a damaged journal. Each test failed on the code before its fix."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_harness import CONFIG, REPO, wait_for

DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
SPOT = DATA / "binance" / "spot_btcusdt_20240808.gz"
needs_data = pytest.mark.skipif(not SPOT.is_file(), reason=f"shared captures not found under {DATA}")

FILLING = {"BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.5", "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.5",
           "BOT4__RISK__MAX_POSITION": "1"}


def _bot4d(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args, "--config", str(CONFIG)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def _fills(d) -> list[tuple[str, str]]:
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    try:
        return db.execute("SELECT fill_id, client_id FROM fills").fetchall()
    finally:
        db.close()


@needs_data
def test_fills_after_a_restart_on_the_same_journal(start_daemon):
    """Defect 1: paper fill ids restarted at paper-1 in every process, so the first fill
    after a restart faulted the daemon on `UNIQUE constraint failed: fills.fill_id`."""
    seen: list[tuple[str, str]] = []
    for run in range(2):
        d = start_daemon("--replay", str(SPOT), "--replay-speed", "0", env=FILLING)
        d.wait_ready()
        if d.status()["state"] != "ready":
            assert d.ctl("reset").returncode == 0
        assert d.ctl("start").returncode == 0
        wait_for(lambda: len(_fills(d)) > len(seen) or d.status()["market"]["replay_finished"],
                 120, interval=0.2, what="a fill in this run")
        st = d.status()
        assert st["state"] in ("trading", "reducing"), st["reason"]
        assert "UNIQUE" not in d.log
        assert d.terminate() == 0
        d.close()
        fills = _fills(d)
        assert len(fills) > len(seen), f"run {run + 1} got no fill"
        seen = fills
    ids = [f for f, _ in seen]
    clients = {c for _, c in seen}
    assert len(ids) == len(set(ids))
    assert len({c.split("-")[1] for c in clients}) == 2, "both runs should have filled"


def test_estop_acknowledged_then_kill9_is_latched_after_restart(start_daemon):
    """Defect 5: SIGKILL 0-8 ms after `bot4ctl sim estop press` replied lost the latch in
    16 of 40 trials. Now the reply means the trip is on disk: every trial must hold."""
    for trial in range(3):
        d = start_daemon()
        d.wait_ready()
        if trial == 0:
            assert d.ctl("start").returncode == 0
        else:   # come back from the previous trial's latch first
            assert d.ctl("sim", "estop", "release").returncode == 0
            wait_for(lambda: d.status()["estop"]["circuit_closed"], what="circuit closed")
            wait_for(lambda: d.ctl("reset").returncode == 0, 20, interval=0.2, what="reset")
            assert d.ctl("start").returncode == 0
        r = d.ctl("sim", "estop", "press")
        d.kill9()                       # at once, after the acknowledgement
        assert r.returncode == 0, r.stderr
        d.close()
        db = sqlite3.connect(d.state_dir / "journal.sqlite3")
        assert db.execute("SELECT tripped, source FROM latch").fetchone() == (1, "estop"), \
            f"trial {trial}: acknowledged e-stop lost to kill -9"
        db.close()
    d = start_daemon()
    d.wait_ready()
    st = d.status()
    assert st["state"] == "estop" and st["latch"]["kind"] == "estop"
    assert d.terminate() == 0


def test_second_instance_on_the_same_state_dir_is_refused(start_daemon):
    """Defect 6: a second bot4d unlinked the first's socket and its recovery cancelled the
    first's live orders in the journal while the first kept trading, unreachable."""
    d = start_daemon()
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"]["open"] >= 2, 20, what="open quotes")
    d2 = start_daemon(sub="d")   # same tmp dir: same state dir, same socket
    assert d2.proc.wait(30) == 75
    assert "another bot4d" in d2.log and f"pid {d.proc.pid}" in d2.log
    st = d.status()   # the first still answers on its socket
    assert st["state"] in ("trading", "reducing") and st["orders"]["open"] >= 2
    db = sqlite3.connect(d.state_dir / "journal.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM reconciliations").fetchone()[0] == 1, \
        "the second instance touched the first's orders"
    db.close()
    assert d.terminate() == 0


def _journal_with_history(start_daemon) -> Path:
    d = start_daemon()
    d.wait_ready()
    assert d.terminate() == 0
    d.close()
    return d.state_dir


@pytest.mark.parametrize("damage", ["truncated", "deleted", "garbage", "corrupt_page"])
def test_damaged_journal_refuses_boot_and_the_documented_recovery_works(start_daemon, damage):
    """Defect 7: a journal truncated to 0 bytes was silently replaced by a fresh one (latch,
    orders, positions gone; boot `ready`); a damaged-but-openable one booted."""
    state = _journal_with_history(start_daemon)
    path = state / "journal.sqlite3"
    if damage == "truncated":
        path.write_bytes(b"")
    elif damage == "deleted":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(os.urandom(8192))
    else:   # overwrite one b-tree page in the middle: the file still opens
        data = bytearray(path.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        assert len(data) >= 3 * page, "journal too small to damage a middle page"
        data[2 * page:3 * page] = b"\xff" * page
        path.write_bytes(bytes(data))
    d = start_daemon()
    assert d.proc.wait(30) == 65, d.log
    assert "journal damaged" in d.log and "journal-reset" in d.log
    if damage != "deleted":
        assert path.exists() and (damage != "truncated" or path.stat().st_size == 0), \
            "the damaged journal was replaced"
    d.close()

    chk = _bot4d("journal-check", "--state-dir", str(state))
    assert chk.returncode == 65, chk.stderr
    assert _bot4d("journal-reset", "--state-dir", str(state)).returncode == 64   # needs --yes
    rst = _bot4d("journal-reset", "--state-dir", str(state), "--yes")
    assert rst.returncode == 0, rst.stderr
    if damage != "deleted":
        assert list(state.glob("journal.sqlite3.damaged-*")), "damaged file not kept aside"
    assert _bot4d("journal-check", "--state-dir", str(state)).returncode == 0
    d = start_daemon()
    d.wait_ready()
    st = d.status()
    assert st["state"] == "halted" and "journal replaced" in st["reason"]
    assert d.terminate() == 0


def test_unclean_end_comes_back_halted_even_without_stop_post(start_daemon):
    """A kill -9 outside systemd (no ExecStopPost): the run marker brings the next boot
    back halted instead of ready, so nothing resumes that an operator did not look at."""
    d = start_daemon()
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    d.kill9()
    d.close()
    d = start_daemon()
    d.wait_ready()
    st = d.status()
    assert st["state"] == "halted" and "previous run ended uncleanly" in st["reason"]
    assert d.ctl("start").returncode == 1
    assert d.ctl("reset").returncode == 0
    assert d.terminate() == 0
    d.close()
    d = start_daemon()   # after a clean stop: ready, as before
    d.wait_ready()
    assert d.status()["state"] == "ready"
    assert d.terminate() == 0


def test_network_outage_longer_than_the_feed_deadline_is_not_a_watchdog_kill(start_daemon):
    """Defect 9: with the exchange unreachable for longer than feed_deadline_s, the market
    heartbeat went stale, the daemon stopped its systemd pings and was killed and restarted
    into `halted`, again and again. A feed that is down is not a hung process."""
    import socket
    with socket.socket() as s:   # a port that was just free: every connect is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = start_daemon(watchdog_usec=2_000_000, env={
        "BOT4__MARKET__SOURCE": "binance", "BOT4__MARKET__WS_BASE": f"ws://127.0.0.1:{port}",
        "BOT4__MARKET__REST_BASE": f"http://127.0.0.1:{port}",
        "BOT4__MARKET__STALE_AFTER_S": "1.0", "BOT4__WATCHDOG__FEED_DEADLINE_S": "1.5"})
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    st = wait_for(lambda: (s := d.status())["state"] in ("reducing", "halted") and s, 20,
                  what="reducing on a dead feed")
    assert "live feed disconnected" in " ".join(st["degraded"]) or "breaker" in st["reason"]
    # Outlive the feed deadline several times over, as a network outage would.
    wait_for(lambda: d.status()["market"]["live"]["connect_failures"] >= 4, 60, interval=0.2,
             what="several failed reconnects")
    wait_for(lambda: d.status()["uptime_s"] > 4 * 1.5, 30, interval=0.2,
             what="four feed deadlines")
    st = d.status()
    assert st["watchdog"]["pings_blocked"] is None, st["watchdog"]
    assert "watchdog" not in st["reason"] and st["state"] != "fault"
    pings = st["watchdog"]["pings"]
    wait_for(lambda: d.status()["watchdog"]["pings"] > pings, 20, what="pings still going")
    assert d.proc.poll() is None
    assert d.terminate() == 0
