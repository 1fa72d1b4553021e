"""Control socket: permissions, malformed input, and the bot4ctl contract."""
from __future__ import annotations

import os
import socket
import stat

import orjson


def _raw(path: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return buf


def test_socket_mode_and_bad_requests(start_daemon):
    d = start_daemon()
    d.wait_ready()
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
    cases = {
        b"garbage\n": "not JSON",
        b"[1,2]\n": "JSON object",
        b'{"nocmd": 1}\n': '"cmd"',
        b'{"cmd": "selfdestruct"}\n': "unknown command",
        b'{"cmd": "sim", "what": "estop", "action": "explode"}\n': "sim: expected",
        b"\xff\xfe\x00\n": "not JSON",
        b'{"cmd": "status"': "newline",
    }
    for payload, words in cases.items():
        reply = orjson.loads(_raw(d.socket, payload).splitlines()[0])
        assert reply["ok"] is False and words in reply["error"], (payload, reply)
    big = _raw(d.socket, b'{"cmd": "status", "pad": "' + b"x" * 200_000 + b'"}\n')
    assert b"longer than" in big
    # still alive and answering
    assert d.status()["state"] == "ready"
    assert d.proc.poll() is None
    assert d.terminate() == 0


def test_bot4ctl_status_text_and_json(start_daemon):
    d = start_daemon()
    d.wait_ready()
    r = d.ctl("status")
    assert r.returncode == 0 and "state:     ready" in r.stdout and "LED:" in r.stdout
    r = d.ctl("status", "--json")
    st = orjson.loads(r.stdout)
    assert st["state"] == "ready" and st["led"]["pattern"] == "green_slow_blink"
    assert st["board"]["machine"] and st["board"]["summary"]
    assert d.ctl("reset").returncode == 1   # nothing to reset
    assert d.terminate() == 0


def test_bot4ctl_without_daemon(tmp_path):
    import subprocess, sys
    from tests.daemon_harness import REPO
    r = subprocess.run([sys.executable, "-m", "daemon.control.ctl", "--socket",
                        str(tmp_path / "none.sock"), "status"], cwd=REPO, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 69 and "not running" in r.stderr


def test_socket_group_is_configurable(start_daemon):
    import grp
    name = next((g for g in ("nogroup", "daemon", "adm") if _has_group(g)), None)
    if name is None:
        import pytest
        pytest.skip("no spare group on this machine")
    d = start_daemon(env={"BOT4__DAEMON__SOCKET_GROUP": name})
    d.wait_ready()
    assert os.stat(d.socket).st_gid == grp.getgrnam(name).gr_gid
    assert d.terminate() == 0


def _has_group(name: str) -> bool:
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def test_bad_sim_argument_is_an_error_reply_not_a_log_flood(start_daemon):
    """`sim stall` with a non-number: a clear error reply every time, the daemon keeps
    answering, and the log gets at most one traceback however often it is sent. (The
    supervisor refuses it as a CommandError; the server's own policy for any other handler
    exception is tested in test_control_server.py.)"""
    d = start_daemon()
    d.wait_ready()
    for _ in range(20):
        reply = d.cmd(cmd="sim", what="stall", action="market", seconds="abc")
        assert reply["ok"] is False and "abc" in reply["error"], reply
    assert d.status()["state"] == "ready"
    assert d.log.count("Traceback") <= 1
    assert d.terminate() == 0


def test_status_text_shows_control_socket_counters(capsys):
    from daemon.control.ctl import _print_status
    st = {"state": "ready", "reason": "booted", "latch": {"tripped": False},
          "watchdog": {"systemd_usec": 0, "pings": 0, "pings_blocked": None},
          "orders": {"open": 0}, "pid": 1, "uptime_s": 1.0,
          "control": {"open": 3, "max": 32, "refused": 268, "evicted": 1, "timed_out": 2,
                      "errors": 4, "internal_errors": 1, "accept_errors": 5}}
    _print_status(st)
    out = capsys.readouterr().out
    # wrapped at a figure boundary to stay within 80 columns (issue 8)
    assert "control:   3/32 connections, 268 refused, 1 dropped, 2 timed out, 4 errors,\n" \
           "           1 internal errors, 5 accept errors\n" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    del st["control"]   # a daemon that does not report it yet
    _print_status(st)
    assert "control:" not in capsys.readouterr().out


def test_text_status_names_why_the_book_is_not_traded(start_daemon):
    """Issue 7: the reasons were only in `status --json`; the operator's plain `bot4ctl
    status` now says why a book is invalid and what the sanity stage rejected."""
    from pathlib import Path
    from tests.daemon_harness import REPO, wait_for
    data = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
    eth = data / "binance" / "spot_ethusdt_20240808.gz"
    if not eth.is_file():
        import pytest
        pytest.skip(f"shared captures not found under {data}")
    d = start_daemon("--replay", str(eth), "--replay-speed", "0")   # config trades BTCUSDT
    d.wait_ready()
    wait_for(lambda: d.status()["market"]["replay_finished"], 60, interval=0.2,
             what="replay to finish")
    out = d.ctl("status").stdout
    assert "BTCUSDT INVALID" in out and "(" in out.split("BTCUSDT INVALID", 1)[1].splitlines()[0]
    assert "unconfigured symbols ETHUSDT" in out
    assert d.terminate() == 0
