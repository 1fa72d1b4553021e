"""Alerts through real apprise (`json://`) to a real HTTP receiver on 127.0.0.1: each event
arrives once, duplicates are dropped, bursts are rate-limited, a dead receiver is retried
until it answers, and the daemon's loop keeps running meanwhile (its lag is printed, not
asserted: scripts/bench-operator measures it). `bot4d stop-post` alerts an abnormal end."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter

from daemon.config import AlertsCfg
from daemon.operator.alerts import AlertSender
from tests.daemon_harness import CONFIG, REPO, wait_for
from tests.operator.helpers import Receiver


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there until a Receiver takes it
    return port


def cfg(**kw) -> AlertsCfg:
    return AlertsCfg(**{"retry_backoff_s": 0.2, "timeout_s": 2.0, **kw})


def test_each_alert_arrives_once_duplicates_dropped_bursts_limited():
    rx = Receiver()
    s = AlertSender(cfg(max_per_minute=4), [rx.url("a")])
    s.start()
    try:
        assert s.submit("estop", "E-STOP latched", "pressed") == "queued"
        assert s.submit("estop", "E-STOP latched", "pressed") == "deduped"
        assert s.submit("halt", "halted", "operator: one") == "queued"
        assert s.submit("halt", "halted", "operator: two") == "queued"
        assert s.submit("fault", "FAULT", "x") == "queued"
        assert s.submit("fault", "FAULT", "y") == "rate_limited"   # 5th in a minute
        assert s.submit("nonsense", "t", "b") == "filtered"
        wait_for(lambda: s.status()["pending"] == 0 and len(rx.messages()) >= 4, 10,
                 what="4 alerts delivered")
        msgs = rx.messages()
        assert sorted(m["message"] for m in msgs) == ["operator: one", "operator: two",
                                                       "pressed", "x"]
        assert all(m["path"] == "/a" and m["title"].startswith("bot4 ") for m in msgs)
        st = s.status()
        assert (st["sent"], st["deduped"], st["rate_limited"], st["filtered"]) == (4, 1, 1, 1)
        assert st["failed_attempts"] == 0 and st["last_error"] is None
    finally:
        s.stop()
        rx.close()
    assert len(rx.messages()) == 4   # nothing more after the stop


def test_dead_receiver_is_retried_and_each_url_gets_the_alert_once():
    live = Receiver()
    dead_port = free_port()
    s = AlertSender(cfg(retries=50), [live.url("live"), f"json://127.0.0.1:{dead_port}/dead"])
    s.start()
    try:
        assert s.submit("estop", "E-STOP latched", "pressed") == "queued"
        wait_for(lambda: s.status()["failed_attempts"] >= 2, 20, what="retries")
        st = s.status()
        assert st["pending"] == 1 and st["last_error"] and st["sent"] == 1
        assert len(live.messages()) == 1
        revived = Receiver(dead_port)   # the endpoint comes back
        try:
            wait_for(lambda: s.status()["pending"] == 0, 20, what="delivery after revival")
            assert [m["message"] for m in revived.messages()] == ["pressed"]
            assert len(live.messages()) == 1, "the live URL got the alert again on a retry"
            assert s.status()["recent"][0]["outcome"] == "sent"
        finally:
            revived.close()
    finally:
        s.stop()
        live.close()


def test_daemon_alerts_each_event_once(start_daemon):
    rx = Receiver()
    try:
        d = start_daemon(env={"BOT4__ALERTS__URLS": json.dumps([rx.url()]),
                              "BOT4__DAEMON__AUTO_START": "true"})
        d.wait_ready()
        assert d.ctl("sim", "estop", "press").returncode == 0
        assert d.ctl("sim", "estop", "press").returncode == 0   # already latched: no edge
        assert d.ctl("sim", "estop", "release").returncode == 0
        wait_for(lambda: d.ctl("reset").returncode == 0, 10, interval=0.2, what="reset")
        assert d.ctl("halt", "--reason", "alert test").returncode == 0
        wait_for(lambda: len(rx.messages()) >= 3, 15, what="three alerts")
        wait_for(lambda: d.status()["operator"]["alerts"]["pending"] == 0, 10)
        titles = Counter(m["title"].split(": ", 1)[1] for m in rx.messages())
        assert titles == {"E-STOP latched": 1, "e-stop reset": 1, "halted": 1}, titles
        halt = next(m for m in rx.messages() if m["title"].endswith("halted"))
        assert "operator: alert test" in halt["message"]
        st = d.status()["operator"]["alerts"]
        assert st["sent"] == 3 and st["failed_attempts"] == 0 and st["worker_alive"]
        assert d.terminate() == 0
    finally:
        rx.close()


def test_dead_receiver_never_stops_the_daemon_and_is_retried(start_daemon):
    port = free_port()
    d = start_daemon(env={"BOT4__ALERTS__URLS": json.dumps([f"json://127.0.0.1:{port}/x"]),
                          "BOT4__ALERTS__RETRY_BACKOFF_S": "0.3",
                          "BOT4__ALERTS__TIMEOUT_S": "2", "BOT4__ALERTS__RETRIES": "100",
                          "BOT4__DAEMON__AUTO_START": "true"})
    d.wait_ready()
    for i in range(3):
        assert d.ctl("halt", "--reason", f"dead receiver {i}").returncode == 0
        wait_for(lambda: d.ctl("reset").returncode == 0, 10, interval=0.2, what="reset")
        assert d.ctl("start").returncode == 0
    wait_for(lambda: d.status()["operator"]["alerts"]["failed_attempts"] >= 6, 20,
             what="retries against the dead receiver")
    st = d.status()
    a = st["operator"]["alerts"]
    assert a["pending"] == 3 and a["sent"] == 0 and a["last_error"]
    assert st["state"] == "trading" and st["failures"] == []
    # The loop kept running: its own heartbeat is fresh and commands are answered.
    assert st["watchdog"]["components"]["loop"]["age_s"] < 1.0
    print(f"\nloop lag with the alert receiver down: last {st['operator']['loop_lag_s']}")
    rx = Receiver(port)
    try:
        wait_for(lambda: d.status()["operator"]["alerts"]["pending"] == 0, 20,
                 what="alerts delivered once the receiver is back")
        msgs = sorted(m["message"].split(" (state")[0] for m in rx.messages())
        assert msgs == [f"operator: dead receiver {i}" for i in range(3)]
    finally:
        rx.close()
    assert d.terminate() == 0


def test_stop_post_alerts_a_watchdog_restart(tmp_path):
    rx = Receiver()
    try:
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("BOT4__")}
        env.update({"SERVICE_RESULT": "watchdog", "EXIT_CODE": "killed", "EXIT_STATUS": "ABRT",
                    "BOT4__ALERTS__URLS": json.dumps([rx.url("restart")])})
        r = subprocess.run([sys.executable, "-m", "daemon.cli", "stop-post", "--config",
                            str(CONFIG), "--state-dir", str(tmp_path / "state")], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        msgs = rx.messages()
        assert len(msgs) == 1 and msgs[0]["path"] == "/restart"
        assert msgs[0]["title"].endswith("restarted by the watchdog")
        assert "comes back halted" in msgs[0]["message"] and "ABRT" in msgs[0]["message"]
        # An orderly stop sends nothing.
        env["SERVICE_RESULT"] = "success"
        r = subprocess.run([sys.executable, "-m", "daemon.cli", "stop-post", "--config",
                            str(CONFIG), "--state-dir", str(tmp_path / "state")], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and len(rx.messages()) == 1
    finally:
        rx.close()


def test_feed_down_alerts_once(start_daemon, tmp_path):
    """A replayed capture with a hole in its depth stream: the book goes invalid for good
    (a replay has no REST snapshot to resync from) and the alert says so once."""
    import gzip
    import os
    from pathlib import Path

    import pytest
    data = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
    src = data / "binance" / "spot_btcusdt_20240808.gz"
    if not src.is_file():
        pytest.skip(f"shared captures not found under {data}")
    out = tmp_path / "gap.gz"
    dropped = 0
    with gzip.open(src, "rb") as f, gzip.open(out, "wb") as g:
        for i, line in enumerate(f):
            if i >= 900:
                break
            if i >= 400 and dropped < 20 and b"@depth" in line:
                dropped += 1   # ~2 s of diffs lost: a sequence gap
                continue
            g.write(line)
    rx = Receiver()
    try:
        d = start_daemon("--replay", str(out), "--replay-speed", "1",
                         env={"BOT4__ALERTS__URLS": json.dumps([rx.url()])})
        d.wait_ready()
        wait_for(lambda: any("degraded" in m["title"] for m in rx.messages()), 30,
                 what="the feed-down alert")
        wait_for(lambda: d.status()["market"]["replay_finished"], 30, what="replay end")
        feed = [m for m in rx.messages() if "market data" in m["title"]]
        assert len(feed) == 1, feed
        assert feed[0]["title"].endswith("market data degraded") and "BTCUSDT" in \
            feed[0]["message"]
        assert d.terminate() == 0
    finally:
        rx.close()
