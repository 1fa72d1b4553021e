"""sd_notify protocol with bot4d as a real subprocess and a real datagram socket."""
from __future__ import annotations

import os

import pytest

from tests.daemon_harness import Notifications, wait_for


def test_ready_watchdog_status_stopping(start_daemon):
    d = start_daemon(watchdog_usec=400_000)   # pings expected every 200 ms
    d.wait_ready()
    # READY=1 only once everything is up: the control socket answers at once.
    assert d.status()["state"] == "ready"
    ready = [m for m in d.notify.lines() if "READY=1" in m]
    assert len(ready) == 1 and "STATUS=ready" in ready[0]

    # Pings keep coming while the daemon is up: a pinger that sent a few and stopped fails
    # here. How often they come is not asserted (a slow core stretches any window); the
    # cadence against a real WatchdogSec= is exercised by tests/test_systemd_e2e.py.
    assert d.status()["watchdog"]["systemd_usec"] == 400_000
    wait_for(lambda: d.notify.lines().count("WATCHDOG=1") >= 8, 60, what="8 pings")
    assert d.status()["state"] == "ready"
    sent = d.status()["watchdog"]["pings"]
    assert sent >= 8 and d.notify.lines().count("WATCHDOG=1") <= sent   # status counts them

    assert d.ctl("start").returncode == 0
    wait_for(lambda: any("STATUS=trading" in m for m in d.notify.lines()), what="STATUS trading")
    assert d.ctl("halt", "--reason", "test").returncode == 0
    wait_for(lambda: any("STATUS=halted: operator: test" in m for m in d.notify.lines()),
             what="STATUS halted")

    assert d.terminate() == 0
    lines = d.notify.lines()
    stopping = [m for m in lines if "STOPPING=1" in m]
    assert stopping, lines[-5:]
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in lines)
    assert "orderly stop" in d.log


def test_no_watchdog_pings_without_watchdog_usec(start_daemon):
    d = start_daemon()
    d.wait_ready()
    # Let the daemon do real work (quoting through the loop that also runs the pinger)
    # instead of sleeping for a guessed while.
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"]["open"] >= 1, 30, what="quotes")
    wait_for(lambda: any("STATUS=trading" in m for m in d.notify.lines()), what="STATUS")
    assert "WATCHDOG=1" not in d.notify.lines()
    st = d.status()
    assert st["watchdog"]["systemd_usec"] == 0 and st["watchdog"]["pings"] == 0
    assert d.terminate() == 0


def test_sigint_is_an_orderly_stop_too(start_daemon):
    import signal
    d = start_daemon()
    d.wait_ready()
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(20) == 0
    assert d.notify.has("STOPPING=1")


def test_notify_socket_gone_daemon_keeps_working_and_stops_orderly(start_daemon):
    """systemd's socket vanishes (a daemon-reexec, a bad mount namespace): sd_notify fails
    with ENOENT. That must neither kill the watchdog pinger nor skip the orderly stop; once
    the socket is back, pings resume."""
    d = start_daemon(watchdog_usec=400_000)
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"]["open"] >= 1, 30, what="quotes")
    wait_for(lambda: d.notify.lines().count("WATCHDOG=1") >= 2, 30, what="pings")
    path = d.notify.path
    d.notify.close()
    path.unlink()
    wait_for(lambda: "sd_notify failed" in d.log or d.status()["state"] != "trading", 30,
             what="a ping attempted into the missing socket")
    assert d.status()["state"] == "trading", d.log
    d.notify = Notifications(path)   # systemd recreates its socket
    wait_for(lambda: d.notify.lines().count("WATCHDOG=1") >= 2, 30, what="pings resume")
    assert d.status()["state"] == "trading"
    assert d.log.count("sd_notify failed") == 1, "one line per outage, not one per ping"
    assert "sd_notify works again" in d.log
    d.notify.close()
    path.unlink()
    assert d.terminate() == 0, d.log
    assert "cancel on stop failed" not in d.log
    assert "orderly stop" in d.log and "cancelled" in d.log


def test_status_text_cannot_inject_notify_assignments(start_daemon):
    """STATUS= carries an operator's halt reason: a newline in it would start another
    sd_notify assignment (here a forged watchdog ping), a NUL would end the datagram."""
    d = start_daemon()
    d.wait_ready()
    r = d.cmd(cmd="halt", reason="test\nWATCHDOG=1\nREADY=1\x00tail")
    if r["ok"]:
        wait_for(lambda: any(m.startswith("STATUS=halted") for m in d.notify.lines()),
                 what="STATUS halted")
        status = [m for m in d.notify.lines() if m.startswith("STATUS=halted")]
        assert all("\n" not in m for m in status), status
        assert any("WATCHDOG=1 READY=1 tail" in m for m in status), status
    else:   # refusing such a reason outright is fine too, if the error says why
        assert "reason" in r["error"] and "internal error" not in r["error"], r
    assignments = [line for m in d.notify.lines() for line in m.split("\n")]
    assert "WATCHDOG=1" not in assignments and assignments.count("READY=1") == 1, assignments
    assert d.terminate() == 0


@pytest.mark.skipif(os.path.exists("/run/systemd/journal/socket"),
                    reason="a real journal socket here would take the records")
def test_bot4d_under_a_journal_stream_without_socket_writes_priorities(start_daemon, tmp_path):
    # What systemd does for a unit: stderr is a stream to journald, and JOURNAL_STREAM
    # names it. Without the journal socket the records still reach journald through the
    # stream, with their priority as a "<N>" prefix.
    log = tmp_path / "d" / "bot4d.log"
    log.parent.mkdir()
    log.touch()
    st = os.stat(log)
    d = start_daemon(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    d.wait_ready()
    assert d.terminate() == 0
    lines = d.log.splitlines()
    assert "<6>bot4d: logging to stderr(journal)" in lines, lines[:5]
    assert all(line.startswith("<") for line in lines if line and not line[0].isspace())
