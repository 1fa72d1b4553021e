"""Internal watchdog with bot4d as a subprocess: a stalled component halts trading, is
named in the status, and the systemd watchdog pings stop."""
from __future__ import annotations

import pytest

from tests.daemon_harness import wait_for


@pytest.mark.parametrize("component", ["strategy", "market"])
def test_stalled_component_halts_and_stops_pings(start_daemon, component):
    d = start_daemon(watchdog_usec=300_000,
                     env={"BOT4__WATCHDOG__STRATEGY_DEADLINE_S": "1.0",
                          "BOT4__WATCHDOG__FEED_DEADLINE_S": "1.0"})
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"]["open"] >= 1, 20, what="quotes")
    wait_for(lambda: d.notify.lines().count("WATCHDOG=1") >= 3, 30, what="pings")
    assert d.ctl("sim", "stall", component, "--seconds", "60").returncode == 0
    st = d.wait_state("halted", timeout=30)
    assert component in st["reason"] and "stalled" in st["reason"]
    assert st["watchdog"]["pings_blocked"]
    wait_for(lambda: d.status()["orders"]["open"] == 0, 30, what="orders cancelled")
    assert st["led"]["pattern"] == "red_slow_blink"
    pings_at_halt = d.notify.lines().count("WATCHDOG=1")
    # No ping while the stall goes on: wait until the daemon itself has seen the stalled
    # heartbeat age by another full second (several watchdog checks, on any machine).
    comps = st["watchdog"]["components"]
    name, age = max(((n, c["age_s"]) for n, c in comps.items()
                     if c["age_s"] > c["deadline_s"]), key=lambda x: x[1])
    wait_for(lambda: d.status()["watchdog"]["components"][name]["age_s"] >= age + 1.0, 30,
             what=f"the {name} stall to go on")
    assert d.notify.lines().count("WATCHDOG=1") == pings_at_halt, "WATCHDOG=1 after a stall"
    assert d.status()["watchdog"]["pings"] == pings_at_halt
    r = d.ctl("reset")
    assert r.returncode == 1 and "restarted by systemd" in r.stderr
    assert d.terminate() == 0


def test_blocked_event_loop_closes_the_gate_while_blocked(start_daemon):
    d = start_daemon(watchdog_usec=300_000, env={"BOT4__WATCHDOG__LOOP_DEADLINE_S": "0.5"})
    d.wait_ready()
    assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["orders"]["open"] >= 1, 20, what="quotes")
    # The loop sleeps 2 s inside the command: the monitor thread must trip the latch.
    assert d.ctl("sim", "stall", "loop", "--seconds", "2").returncode == 0
    st = d.wait_state("halted", timeout=30)
    assert "event loop stalled" in st["reason"]
    assert st["watchdog"]["pings_blocked"]
    assert d.terminate() == 0
