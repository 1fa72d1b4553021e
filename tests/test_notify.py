"""sd_notify protocol with bot4d as a real subprocess and a real datagram socket."""
from __future__ import annotations

import time

from tests.daemon_harness import wait_for


def test_ready_watchdog_status_stopping(start_daemon):
    d = start_daemon(watchdog_usec=400_000)   # pings expected every 200 ms
    d.wait_ready()
    # READY=1 only once everything is up: the control socket answers at once.
    assert d.status()["state"] == "ready"
    ready = [m for m in d.notify.lines() if "READY=1" in m]
    assert len(ready) == 1 and "STATUS=ready" in ready[0]

    t0 = time.monotonic()
    time.sleep(2.0)
    pings = [t for t, m in d.notify.drain() if m == "WATCHDOG=1" and t >= t0]
    # 2 s at one ping per 200 ms = ~10; allow scheduling slack, but it must be a cadence.
    assert 6 <= len(pings) <= 14, len(pings)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.4, f"a gap reached WATCHDOG_USEC: {max(gaps):.3f} s"

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
    time.sleep(0.5)
    assert "WATCHDOG=1" not in d.notify.lines()
    assert d.status()["watchdog"]["systemd_usec"] == 0
    assert d.terminate() == 0


def test_sigint_is_an_orderly_stop_too(start_daemon):
    import signal
    d = start_daemon()
    d.wait_ready()
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(20) == 0
    assert d.notify.has("STOPPING=1")
